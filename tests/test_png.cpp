// @brief PNG writer, image grids and charts: decoded dimensions and pixel values, tick choice.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include <cmath>
#include <filesystem>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#include "host/io/plot.h"
#include "host/io/png.h"

namespace fusedvae::io {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("fusedvae_test_png_" + name + "_" + std::to_string(::getpid())))
      .string();
}

struct Decoded {
  int width = 0, height = 0;
  std::vector<unsigned char> rgb;
};

Decoded decode(const std::string& path) {
  Decoded d;
  int channels = 0;
  unsigned char* data = stbi_load(path.c_str(), &d.width, &d.height, &channels, 3);
  EXPECT_NE(data, nullptr) << path << ": " << stbi_failure_reason();
  if (data) {
    d.rgb.assign(data, data + static_cast<size_t>(d.width) * d.height * 3);
    stbi_image_free(data);
  }
  return d;
}

TEST(Png, GridHasTheExpectedSizeAndPixels) {
  // 5 images of 3 x 4 (odd sizes) in 2 columns, pad 1, scale 2: 2 columns x 3 rows.
  const int count = 5, h = 3, w = 4;
  std::vector<float> images(count * h * w);
  for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<float>(i % 7) / 6.0f;
  images[0] = -0.5f;  // clamped to black
  images[1] = 2.0f;   // clamped to white
  const Image grid = image_grid(images.data(), count, h, w, 2, 1, 2);
  EXPECT_EQ(grid.width, 2 * w * 2 + 3);
  EXPECT_EQ(grid.height, 3 * h * 2 + 4);

  const std::string path = temp_path("grid.png");
  write_png(path, grid);
  const Decoded d = decode(path);
  ASSERT_EQ(d.width, grid.width);
  ASSERT_EQ(d.height, grid.height);
  EXPECT_EQ(d.rgb, grid.pixels);
  // Pixel (x=1, y=1) is image 0's first value (clamped to 0), (3, 1) its second (clamped to 255).
  EXPECT_EQ(grid.get(1, 1).r, 0);
  EXPECT_EQ(grid.get(3, 1).r, 255);
  // Image 3 (row 1, column 1), pixel (y=2, x=3), scaled: value index 3*12 + 2*4 + 3 = 47.
  const int gx = 1 + (w * 2 + 1) + 3 * 2, gy = 1 + (h * 2 + 1) + 2 * 2;
  EXPECT_EQ(grid.get(gx, gy).g, static_cast<int>(std::lround((47 % 7) / 6.0 * 255.0)));
  EXPECT_EQ(grid.get(0, 0).b, 64);  // padding
  std::filesystem::remove(path);
}

TEST(Png, UnwritablePathNamesTheFile) {
  const Image image(3, 2, Rgb{1, 2, 3});
  try {
    write_png("/nonexistent_dir/x.png", image);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent_dir/x.png"), std::string::npos);
  }
}

TEST(Png, PictureShapeFallsBackToSquareOrStrip) {
  int h = 0, w = 0;
  picture_shape(784, 0, 0, &h, &w);
  EXPECT_EQ(h, 28);
  EXPECT_EQ(w, 28);
  picture_shape(12, 3, 4, &h, &w);
  EXPECT_EQ(h, 3);
  picture_shape(7, 0, 0, &h, &w);
  EXPECT_EQ(h, 1);
  EXPECT_EQ(w, 7);
}

TEST(Plot, NiceTicksAreRoundAndCoverTheRange) {
  const std::vector<double> ticks = nice_ticks(0.0, 97.0, 5);
  ASSERT_GE(ticks.size(), 4u);
  EXPECT_DOUBLE_EQ(ticks[0], 0.0);
  EXPECT_DOUBLE_EQ(ticks[1], 20.0);
  EXPECT_LE(ticks.back(), 97.0);
  const std::vector<double> small = nice_ticks(-0.013, 0.021, 4);
  EXPECT_NEAR(small[1] - small[0], 0.01, 1e-12);
  EXPECT_EQ(tick_label(0.01, 0.01), "0.01");
  EXPECT_EQ(tick_label(250.0, 50.0), "250");
}

TEST(Plot, TextIsDrawnInsideItsBox) {
  Image image(60, 20, Rgb{255, 255, 255});
  draw_text(image, 2, 2, "A1", Rgb{0, 0, 0});
  int dark = 0, outside = 0;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      if (image.get(x, y).r == 0) {
        ++dark;
        if (x >= 2 + text_width("A1") || y >= 2 + text_height() + 2) ++outside;
      }
  EXPECT_GT(dark, 10);
  EXPECT_EQ(outside, 0);
}

TEST(Plot, ChartsHaveTheRequestedSizeAndUseTheSeriesColours) {
  std::vector<Series> series(2);
  series[0] = {"loss", palette(0), {}, {}, false};
  series[1] = {"test", palette(3), {}, {}, true};
  for (int i = 0; i < 200; ++i) {
    series[0].x.push_back(i);
    series[0].y.push_back(500.0 * std::exp(-i / 50.0) + 100.0);
  }
  series[1].x = {50, 100, 150, 199};
  series[1].y = {300, 200, 150, std::nan("")};  // the NaN is skipped, not drawn
  Image chart(640, 400, Rgb{255, 255, 255});
  draw_line_chart(chart, 0, 0, 640, 400, series, {"Loss", "step", "nats"});
  int loss_pixels = 0, test_pixels = 0;
  for (int y = 0; y < chart.height; ++y)
    for (int x = 0; x < chart.width; ++x) {
      const Rgb c = chart.get(x, y);
      loss_pixels += c.r == palette(0).r && c.g == palette(0).g && c.b == palette(0).b;
      test_pixels += c.r == palette(3).r && c.g == palette(3).g && c.b == palette(3).b;
    }
  EXPECT_GT(loss_pixels, 400);
  EXPECT_GT(test_pixels, 3 * 49);

  std::vector<double> xs, ys;
  std::vector<int> labels;
  for (int i = 0; i < 300; ++i) {
    xs.push_back(std::cos(i * 0.1) * (1 + i % 3));
    ys.push_back(std::sin(i * 0.1) * (1 + i % 3));
    labels.push_back(i % 3);
  }
  const Image scatter =
      scatter_plot(xs, ys, labels, {"a", "b", "c"}, {"Latent", "z0", "z1"}, 500, 480);
  const std::string path = temp_path("scatter.png");
  write_png(path, scatter);
  const Decoded d = decode(path);
  EXPECT_EQ(d.width, 500);
  EXPECT_EQ(d.height, 480);
  if (const char* keep = std::getenv("FUSEDVAE_KEEP_PICTURES")) {
    write_png(std::string(keep) + "/chart.png", chart);
    write_png(std::string(keep) + "/scatter.png", scatter);
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace fusedvae::io
