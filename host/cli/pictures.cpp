// @brief Reconstruction and sample grids, loss curves and the latent scatter of a run.
#include "host/cli/pictures.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "host/io/plot.h"
#include "host/io/png.h"

namespace fusedvae::cli {
namespace {

// Magnify small images so that a grid is comfortable to look at (28 x 28 -> 2x).
int magnification(PictureShape shape) {
  return std::clamp(64 / std::max(shape.height, shape.width), 1, 8);
}

std::vector<float> normalised_rows(const Dataset& data, int first, int count) {
  std::vector<float> rows(static_cast<size_t>(count) * data.dim);
  for (int r = 0; r < count; ++r)
    for (int c = 0; c < data.dim; ++c)
      rows[static_cast<size_t>(r) * data.dim + c] = data.normalised(first + r, c);
  return rows;
}

bool is_fashion_mnist(const Dataset& data) {
  return data.source.find("fashion") != std::string::npos;
}

}  // namespace

PictureShape picture_shape_of(int dim, int height, int width) {
  PictureShape shape;
  io::picture_shape(dim, height, width, &shape.height, &shape.width);
  return shape;
}

void write_reconstructions(Trainer& trainer, const Dataset& data, int count, PictureShape shape,
                           const std::string& path) {
  count = std::min(count, data.rows);
  if (count < 1) throw std::invalid_argument(data.source + ": no rows to reconstruct");
  const int latent = trainer.config().model.latent_dim;
  const std::vector<float> originals = normalised_rows(data, 0, count);
  std::vector<float> mu(static_cast<size_t>(count) * latent), logvar(mu.size());
  trainer.encode(originals.data(), count, mu.data(), logvar.data());
  std::vector<float> recon(originals.size());
  trainer.decode(mu.data(), count, recon.data());

  // Rows of `columns` originals, each followed by the same images reconstructed.
  const int columns = std::min(count, 8);
  const size_t dim = data.dim;
  const std::vector<float>* sources[] = {&originals, &recon};
  std::vector<float> tiles;
  for (int first = 0; first < count; first += columns) {
    const int n = std::min(columns, count - first);
    for (const std::vector<float>* source : sources) {
      tiles.insert(tiles.end(), source->begin() + first * dim, source->begin() + (first + n) * dim);
      tiles.resize(tiles.size() + (columns - n) * dim, 0.0f);  // blank the rest of a short row
    }
  }
  const int tile_count = static_cast<int>(tiles.size() / dim);
  io::write_png(path, io::image_grid(tiles.data(), tile_count, shape.height, shape.width, columns,
                                     2, magnification(shape)));
}

void write_samples(Trainer& trainer, int count, uint64_t seed, PictureShape shape,
                   const std::string& path) {
  if (count < 1) throw std::invalid_argument("--count must be >= 1");
  const ModelConfig& model = trainer.config().model;
  std::mt19937_64 generator(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> z(static_cast<size_t>(count) * model.latent_dim);
  for (float& v : z) v = normal(generator);
  std::vector<float> x(static_cast<size_t>(count) * model.input_dim);
  trainer.decode(z.data(), count, x.data());
  const int columns =
      std::max(1, static_cast<int>(std::ceil(std::sqrt(static_cast<double>(count)))));
  io::write_png(path, io::image_grid(x.data(), count, shape.height, shape.width, columns, 2,
                                     magnification(shape)));
}

void write_loss_curves(const std::vector<nlohmann::json>& metrics, const std::string& path) {
  const auto number = [](const nlohmann::json& record, const char* key) {
    return record.contains(key) && record[key].is_number() ? record[key].get<double>()
                                                           : std::nan("");
  };
  io::Series loss{"train loss", io::palette(0), {}, {}, false};
  io::Series recon{"train recon", io::palette(1), {}, {}, false};
  io::Series kl{"train KL", io::palette(2), {}, {}, false};
  io::Series eval_nelbo{"-ELBO", io::palette(3), {}, {}, true};
  io::Series eval_recon{"recon (z=mu)", io::palette(4), {}, {}, true};
  io::Series eval_kl{"KL", io::palette(3), {}, {}, true};
  std::string split = "test";
  for (const nlohmann::json& record : metrics) {
    const double step = number(record, "step");
    if (record.value("kind", "") == "epoch") {
      split = record.value("eval_split", split);
      eval_nelbo.x.push_back(step);
      eval_nelbo.y.push_back(-number(record, (split + "_elbo").c_str()));
      eval_recon.x.push_back(step);
      eval_recon.y.push_back(number(record, (split + "_recon").c_str()));
      eval_kl.x.push_back(step);
      eval_kl.y.push_back(number(record, (split + "_kl").c_str()));
    } else {
      for (auto [series, key] : {std::pair{&loss, "loss"}, {&recon, "recon"}, {&kl, "kl"}}) {
        series->x.push_back(step);
        series->y.push_back(number(record, key));
      }
    }
  }
  eval_nelbo.name = split + " -ELBO";
  eval_recon.name = split + " recon (z=mu)";
  eval_kl.name = split + " KL";
  io::Image image(1280, 480, io::Rgb{255, 255, 255});
  io::draw_line_chart(image, 0, 0, 640, 480, {loss, recon, eval_nelbo, eval_recon},
                      {"Loss", "step", "nats / sample"});
  io::draw_line_chart(image, 640, 0, 640, 480, {kl, eval_kl},
                      {"KL divergence", "step", "nats / sample"});
  io::write_png(path, image);
}

void write_latent_scatter(Trainer& trainer, const Dataset& data, const std::string& path) {
  const ModelConfig& model = trainer.config().model;
  if (model.latent_dim != 2) throw std::invalid_argument("the latent scatter needs --latent 2");
  std::vector<float> rows = normalised_rows(data, 0, data.rows);
  std::vector<float> mu(static_cast<size_t>(data.rows) * 2), logvar(mu.size());
  trainer.encode(rows.data(), data.rows, mu.data(), logvar.data());
  std::vector<double> xs(data.rows), ys(data.rows);
  for (int r = 0; r < data.rows; ++r) {
    xs[r] = mu[2 * r];
    ys[r] = mu[2 * r + 1];
  }
  std::vector<int> labels(data.labels.begin(), data.labels.end());
  static const std::vector<std::string> kFashionNames = {
      "0 T-shirt/top", "1 Trouser", "2 Pullover", "3 Dress", "4 Coat",
      "5 Sandal",      "6 Shirt",   "7 Sneaker",  "8 Bag",   "9 Ankle boot"};
  const std::vector<std::string> names =
      is_fashion_mnist(data) ? kFashionNames : std::vector<std::string>{};
  io::write_png(path, io::scatter_plot(xs, ys, labels, names,
                                       {"Latent means (" + std::to_string(data.rows) + " samples)",
                                        "mu[0]", "mu[1]"},
                                       720, 640));
}

}  // namespace fusedvae::cli
