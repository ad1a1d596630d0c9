// @brief The pictures of a run: test images beside their reconstructions, samples from the
// prior, loss curves from metrics.jsonl, and the 2-D latent means coloured by label.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/data/dataset.h"
#include "host/train/trainer.h"

namespace fusedvae::cli {

struct PictureShape {
  int height = 0, width = 0;
};
// The dataset's image shape when it has one, else a square or a strip (io::picture_shape).
PictureShape picture_shape_of(int dim, int height, int width);

// The first `count` rows of `data`, each row of originals followed by a row of reconstructions
// (decoder output at z = mu).
void write_reconstructions(Trainer& trainer, const Dataset& data, int count, PictureShape shape,
                           const std::string& path);
// `count` decoder outputs for z ~ N(0, I) drawn from `seed`.
void write_samples(Trainer& trainer, int count, uint64_t seed, PictureShape shape,
                   const std::string& path);
// Train loss, recon and KL per logged step; validation/test -ELBO, recon and KL per epoch.
void write_loss_curves(const std::vector<nlohmann::json>& metrics, const std::string& path);
// Latent means of `data` (latent_dim must be 2), coloured by label when the data has labels.
void write_latent_scatter(Trainer& trainer, const Dataset& data, const std::string& path);

}  // namespace fusedvae::cli
