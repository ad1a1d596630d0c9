// @brief Line charts and scatter plots rasterised into an Image, text from stb_easy_font.
#include "host/io/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

#include <stb_easy_font.h>

namespace fusedvae::io {
namespace {

constexpr Rgb kBlack{0, 0, 0};
constexpr Rgb kGrid{225, 225, 225};
constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kGreyText{90, 90, 90};

struct Range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
};

// The plotting area of a chart: maps data coordinates to pixels and draws the frame around it.
struct Frame {
  int left, top, right, bottom;  // pixel bounds of the plotting area
  double x_lo, x_hi, y_lo, y_hi;
  std::vector<double> x_ticks, y_ticks;

  double px(double x) const { return left + (x - x_lo) / (x_hi - x_lo) * (right - left); }
  double py(double y) const { return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top); }
};

double tick_step(const std::vector<double>& ticks) {
  return ticks.size() > 1 ? ticks[1] - ticks[0] : 1.0;
}

// Widens a degenerate range and snaps it outwards to the tick grid.
void fit_axis(Range r, int target, double* lo, double* hi, std::vector<double>* ticks) {
  if (r.empty()) r = {0.0, 1.0};
  if (r.hi - r.lo <= 1e-12 * std::max(1.0, std::fabs(r.hi))) {
    const double half = std::max(0.5, std::fabs(r.hi) * 0.05);
    r.lo -= half;
    r.hi += half;
  }
  *ticks = nice_ticks(r.lo, r.hi, target);
  const double step = tick_step(*ticks);
  *lo = std::floor(r.lo / step + 1e-9) * step;
  *hi = std::ceil(r.hi / step - 1e-9) * step;
  *ticks = nice_ticks(*lo, *hi, target);
}

Frame make_frame(Image& image, int x, int y, int width, int height, Range xr, Range yr,
                 const ChartText& text) {
  Frame f{};
  fit_axis(yr, 6, &f.y_lo, &f.y_hi, &f.y_ticks);
  fit_axis(xr, 7, &f.x_lo, &f.x_hi, &f.x_ticks);
  int label_width = 0;
  for (double t : f.y_ticks)
    label_width = std::max(label_width, text_width(tick_label(t, tick_step(f.y_ticks))));
  f.left = x + label_width + 14;
  const int last_x_label = text_width(tick_label(f.x_ticks.back(), tick_step(f.x_ticks)));
  f.right = x + width - std::max(16, last_x_label / 2 + 8);
  f.top = y + 2 * text_height(2) + 18;
  f.bottom = y + height - 2 * text_height() - 24;

  image.fill_rect(x, y, x + width, y + height, kWhite);
  draw_text(image, x + (width - text_width(text.title, 2)) / 2, y + 6, text.title, kBlack, 2);
  draw_text(image, std::max(x + 4, f.left - label_width - 10), f.top - text_height() - 10,
            text.y_label, kGreyText);
  draw_text(image, (f.left + f.right - text_width(text.x_label)) / 2,
            y + height - text_height() - 4, text.x_label, kGreyText);
  for (double t : f.y_ticks) {
    const double yy = std::round(f.py(t));
    draw_line(image, f.left, yy, f.right, yy, kGrid);
    const std::string label = tick_label(t, tick_step(f.y_ticks));
    draw_text(image, f.left - 8 - text_width(label), static_cast<int>(yy) - 4, label, kBlack);
    draw_line(image, f.left - 4, yy, f.left, yy, kBlack);
  }
  for (double t : f.x_ticks) {
    const double xx = std::round(f.px(t));
    draw_line(image, xx, f.top, xx, f.bottom, kGrid);
    const std::string label = tick_label(t, tick_step(f.x_ticks));
    draw_text(image, static_cast<int>(xx) - text_width(label) / 2, f.bottom + 8, label, kBlack);
    draw_line(image, xx, f.bottom, xx, f.bottom + 4, kBlack);
  }
  draw_line(image, f.left, f.top, f.left, f.bottom, kBlack);
  draw_line(image, f.left, f.bottom, f.right, f.bottom, kBlack);
  return f;
}

// A legend box in the top-right corner of the plotting area.
void draw_legend(Image& image, const Frame& f,
                 const std::vector<std::pair<std::string, Rgb>>& items) {
  if (items.empty()) return;
  int widest = 0;
  for (const auto& item : items) widest = std::max(widest, text_width(item.first));
  const int row = text_height() + 4;
  const int box_w = widest + 30, box_h = static_cast<int>(items.size()) * row + 8;
  const int x0 = f.right - box_w - 6, y0 = f.top + 6;
  image.fill_rect(x0, y0, x0 + box_w, y0 + box_h, kWhite);
  draw_line(image, x0, y0, x0 + box_w, y0, kGreyText);
  draw_line(image, x0, y0 + box_h, x0 + box_w, y0 + box_h, kGreyText);
  draw_line(image, x0, y0, x0, y0 + box_h, kGreyText);
  draw_line(image, x0 + box_w, y0, x0 + box_w, y0 + box_h, kGreyText);
  for (size_t i = 0; i < items.size(); ++i) {
    const int yy = y0 + 5 + static_cast<int>(i) * row;
    image.fill_rect(x0 + 6, yy + 2, x0 + 20, yy + row - 4, items[i].second);
    draw_text(image, x0 + 25, yy + 1, items[i].first, kBlack);
  }
}

}  // namespace

Rgb palette(int index) {
  static constexpr Rgb kTab10[] = {
      {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return kTab10[((index % 10) + 10) % 10];
}

void draw_text(Image& image, int x, int y, const std::string& text, Rgb color, int scale) {
  if (text.empty()) return;
  std::vector<char> buffer(text.begin(), text.end());
  buffer.push_back('\0');
  // stb_easy_font needs about 270 bytes of vertices a character; 4 vertices of 16 bytes a quad.
  std::vector<unsigned char> vertices(400 * buffer.size() + 1024);
  const int quads = stb_easy_font_print(0, 0, buffer.data(), nullptr, vertices.data(),
                                        static_cast<int>(vertices.size()));
  for (int q = 0; q < quads; ++q) {
    float xs[4], ys[4];
    for (int v = 0; v < 4; ++v) {
      const unsigned char* vertex = vertices.data() + (q * 4 + v) * 16;
      std::memcpy(&xs[v], vertex, 4);
      std::memcpy(&ys[v], vertex + 4, 4);
    }
    const float x0 = *std::min_element(xs, xs + 4), x1 = *std::max_element(xs, xs + 4);
    const float y0 = *std::min_element(ys, ys + 4), y1 = *std::max_element(ys, ys + 4);
    image.fill_rect(x + static_cast<int>(std::lround(x0 * scale)),
                    y + static_cast<int>(std::lround(y0 * scale)),
                    x + static_cast<int>(std::lround(x1 * scale)),
                    y + static_cast<int>(std::lround(y1 * scale)), color);
  }
}

int text_width(const std::string& text, int scale) {
  std::vector<char> buffer(text.begin(), text.end());
  buffer.push_back('\0');
  return stb_easy_font_width(buffer.data()) * scale;
}

int text_height(int scale) {
  return 8 * scale;
}

void draw_line(Image& image, double x0, double y0, double x1, double y1, Rgb color, int thickness) {
  const double length = std::max(std::fabs(x1 - x0), std::fabs(y1 - y0));
  const int steps = std::max(1, static_cast<int>(std::ceil(length)));
  const int lo = -(thickness - 1) / 2, hi = thickness / 2;
  for (int i = 0; i <= steps; ++i) {
    const double t = static_cast<double>(i) / steps;
    const int x = static_cast<int>(std::lround(x0 + (x1 - x0) * t));
    const int y = static_cast<int>(std::lround(y0 + (y1 - y0) * t));
    for (int dy = lo; dy <= hi; ++dy)
      for (int dx = lo; dx <= hi; ++dx) image.set(x + dx, y + dy, color);
  }
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * magnitude >= raw) {
      step = m * magnitude;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

std::string tick_label(double value, double step) {
  char text[32];
  if (std::fabs(value) >= 1e6 || (std::fabs(value) < 1e-3 && value != 0.0)) {
    std::snprintf(text, sizeof text, "%.2g", value);
  } else {
    const int decimals = step >= 1.0 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
    std::snprintf(text, sizeof text, "%.*f", std::min(decimals, 6), value);
  }
  return text;
}

void draw_line_chart(Image& image, int x, int y, int width, int height,
                     const std::vector<Series>& series, const ChartText& text) {
  Range xr, yr;
  for (const Series& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        xr.add(s.x[i]);
        yr.add(s.y[i]);
      }
  const Frame f = make_frame(image, x, y, width, height, xr, yr, text);
  if (yr.empty()) {
    draw_text(image, (f.left + f.right) / 2 - 30, (f.top + f.bottom) / 2, "no data", kGreyText);
    return;
  }
  std::vector<std::pair<std::string, Rgb>> legend;
  for (const Series& s : series) {
    bool have_previous = false;
    double px0 = 0, py0 = 0;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        have_previous = false;
        continue;
      }
      const double px1 = f.px(s.x[i]), py1 = f.py(s.y[i]);
      if (have_previous) draw_line(image, px0, py0, px1, py1, s.color, 2);
      if (s.markers) {
        const int cx = static_cast<int>(std::lround(px1)), cy = static_cast<int>(std::lround(py1));
        image.fill_rect(cx - 3, cy - 3, cx + 4, cy + 4, s.color);
      }
      px0 = px1;
      py0 = py1;
      have_previous = true;
    }
    legend.emplace_back(s.name, s.color);
  }
  draw_legend(image, f, legend);
}

Image scatter_plot(const std::vector<double>& xs, const std::vector<double>& ys,
                   const std::vector<int>& labels, const std::vector<std::string>& class_names,
                   const ChartText& text, int width, int height) {
  Image image(width, height, kWhite);
  // The legend sits right of the plotting area, where it cannot hide points.
  int legend_width = 0;
  if (!labels.empty()) {
    for (int label : std::set<int>(labels.begin(), labels.end())) {
      const bool named = label >= 0 && label < static_cast<int>(class_names.size());
      legend_width =
          std::max(legend_width, text_width(named ? class_names[label] : std::to_string(label)));
    }
    legend_width += 46;
  }
  Range xr, yr;
  for (size_t i = 0; i < xs.size() && i < ys.size(); ++i)
    if (std::isfinite(xs[i]) && std::isfinite(ys[i])) {
      xr.add(xs[i]);
      yr.add(ys[i]);
    }
  const Frame f = make_frame(image, 0, 0, width - legend_width, height, xr, yr, text);
  // Bigger dots when there are few points, small ones when thousands overlap.
  const int radius = xs.size() > 3000 ? 1 : 2;
  std::set<int> present;
  for (size_t i = 0; i < xs.size() && i < ys.size(); ++i) {
    if (!std::isfinite(xs[i]) || !std::isfinite(ys[i])) continue;
    const int label = i < labels.size() ? labels[i] : 0;
    present.insert(label);
    const int cx = static_cast<int>(std::lround(f.px(xs[i])));
    const int cy = static_cast<int>(std::lround(f.py(ys[i])));
    image.fill_rect(cx - radius, cy - radius, cx + radius + 1, cy + radius + 1, palette(label));
  }
  std::vector<std::pair<std::string, Rgb>> legend;
  if (!labels.empty())
    for (int label : present) {
      const bool named = label >= 0 && label < static_cast<int>(class_names.size());
      legend.emplace_back(named ? class_names[label] : std::to_string(label), palette(label));
    }
  Frame legend_area = f;
  legend_area.right = width - 4;
  draw_legend(image, legend_area, legend);
  return image;
}

}  // namespace fusedvae::io
