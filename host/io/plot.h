// @brief Small raster charts for the run directory: line charts (loss curves) and a labelled
// scatter (2-D latent means), with axes, tick labels, legends and text from stb_easy_font.
#pragma once

#include <string>
#include <vector>

#include "host/io/png.h"

namespace fusedvae::io {

// A categorical palette (matplotlib's tab10), distinct for indices 0..9, repeating after.
Rgb palette(int index);

// stb_easy_font glyphs magnified `scale` times; (x, y) is the top-left corner of the text.
void draw_text(Image& image, int x, int y, const std::string& text, Rgb color, int scale = 1);
int text_width(const std::string& text, int scale = 1);
int text_height(int scale = 1);
void draw_line(Image& image, double x0, double y0, double x1, double y1, Rgb color,
               int thickness = 1);

// About `target` round tick positions (1, 2 or 5 times a power of ten) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target);
std::string tick_label(double value, double step);

struct Series {
  std::string name;
  Rgb color;
  std::vector<double> x, y;
  bool markers = false;  // draw each point as a square (sparse series such as per-epoch values)
};

struct ChartText {
  std::string title;
  std::string x_label;
  std::string y_label;  // written above the y axis
};

// Draws a line chart into the rectangle [x, x + width) x [y, y + height) of `image`. Non-finite
// points are skipped (they break the line). A chart with no finite point says so.
void draw_line_chart(Image& image, int x, int y, int width, int height,
                     const std::vector<Series>& series, const ChartText& text);

// Points coloured by integer label with a legend naming each label present (class_names[label]
// when given, else the number).
Image scatter_plot(const std::vector<double>& xs, const std::vector<double>& ys,
                   const std::vector<int>& labels, const std::vector<std::string>& class_names,
                   const ChartText& text, int width, int height);

}  // namespace fusedvae::io
