// @brief RGB image buffer, PNG encoding and image grids.
#include "host/io/png.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

#include "host/io/safetensors.h"

namespace fusedvae::io {
namespace {
// Dark blue-grey: distinct from any grey an image can hold, so tiles stay apart visually.
constexpr Rgb kGridPadding{40, 44, 64};
}  // namespace

Image::Image(int w, int h, Rgb fill) : width(w), height(h) {
  if (w <= 0 || h <= 0) throw std::invalid_argument("image size must be positive");
  pixels.resize(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0; i < pixels.size(); i += 3) {
    pixels[i] = fill.r;
    pixels[i + 1] = fill.g;
    pixels[i + 2] = fill.b;
  }
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  uint8_t* p = &pixels[(static_cast<size_t>(y) * width + x) * 3];
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

Rgb Image::get(int x, int y) const {
  const uint8_t* p = &pixels[(static_cast<size_t>(y) * width + x) * 3];
  return {p[0], p[1], p[2]};
}

void Image::fill_rect(int x0, int y0, int x1, int y1, Rgb c) {
  for (int y = std::max(0, y0); y < std::min(height, y1); ++y)
    for (int x = std::max(0, x0); x < std::min(width, x1); ++x) set(x, y, c);
}

void Image::blit(const Image& src, int x, int y) {
  for (int sy = 0; sy < src.height; ++sy)
    for (int sx = 0; sx < src.width; ++sx) set(x + sx, y + sy, src.get(sx, sy));
}

void write_png(const std::string& path, const Image& image) {
  std::vector<unsigned char> encoded;
  auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(context);
    const auto* bytes = static_cast<const unsigned char*>(data);
    out->insert(out->end(), bytes, bytes + size);
  };
  if (!stbi_write_png_to_func(append, &encoded, image.width, image.height, 3, image.pixels.data(),
                              image.width * 3))
    throw std::runtime_error(path + ": PNG encoding failed");
  write_file_atomically(path, encoded.data(), encoded.size());
}

Image image_grid(const float* images, int count, int height, int width, int columns, int pad,
                 int scale) {
  if (count <= 0 || height <= 0 || width <= 0 || columns <= 0 || scale <= 0)
    throw std::invalid_argument("image grid: sizes must be positive");
  columns = std::min(columns, count);
  const int rows = (count + columns - 1) / columns;
  const int cell_w = width * scale, cell_h = height * scale;
  Image grid(columns * cell_w + (columns + 1) * pad, rows * cell_h + (rows + 1) * pad,
             kGridPadding);
  for (int i = 0; i < count; ++i) {
    const int gx = pad + (i % columns) * (cell_w + pad);
    const int gy = pad + (i / columns) * (cell_h + pad);
    const float* image = images + static_cast<size_t>(i) * height * width;
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        const float v = image[static_cast<size_t>(y) * width + x];
        // NaN maps to 0 through the comparison chain rather than to an undefined cast.
        const float clamped = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;
        const auto g = static_cast<uint8_t>(std::lround(clamped * 255.0f));
        grid.fill_rect(gx + x * scale, gy + y * scale, gx + (x + 1) * scale, gy + (y + 1) * scale,
                       Rgb{g, g, g});
      }
  }
  return grid;
}

void picture_shape(int dim, int known_height, int known_width, int* height, int* width) {
  if (known_height > 0 && known_width > 0 && known_height * known_width == dim) {
    *height = known_height;
    *width = known_width;
    return;
  }
  const int side = static_cast<int>(std::lround(std::sqrt(static_cast<double>(dim))));
  if (side * side == dim) {
    *height = *width = side;
  } else {
    *height = 1;
    *width = dim;
  }
}

}  // namespace fusedvae::io
