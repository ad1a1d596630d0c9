// @brief 8-bit RGB images in memory, PNG output (stb_image_write, written atomically) and grids of
// greyscale images for reconstructions and samples.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fusedvae::io {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // RGB, row-major, 3 bytes a pixel

  Image() = default;
  Image(int width, int height, Rgb fill);
  void set(int x, int y, Rgb c);  // ignores pixels outside the image
  Rgb get(int x, int y) const;
  void fill_rect(int x0, int y0, int x1, int y1, Rgb c);  // [x0, x1) x [y0, y1), clipped
  void blit(const Image& src, int x, int y);
};

// Throws std::runtime_error naming the path when the file cannot be written.
void write_png(const std::string& path, const Image& image);

// Lays out `count` greyscale images of height x width (values in [0, 1], clamped; row-major, one
// image after another) in a grid of `columns` columns with `pad` pixels of dark blue-grey between
// them, magnified `scale` times (nearest neighbour).
Image image_grid(const float* images, int count, int height, int width, int columns, int pad,
                 int scale);

// Chooses image height and width for rows of `dim` features: the stored shape when known, else a
// square when dim is a perfect square, else a 1-pixel-high strip.
void picture_shape(int dim, int known_height, int known_width, int* height, int* width);

}  // namespace fusedvae::io
