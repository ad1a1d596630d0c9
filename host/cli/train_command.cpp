// @brief `fusedvae train`: the run directory, the epoch loop with progress and metrics, per-epoch
// evaluation and checkpoints, resumption, and the pictures at the end.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "host/cli/commands.h"
#include "host/cli/pictures.h"
#include "host/cli/progress.h"
#include "host/cli/stop_signals.h"
#include "host/io/memory_check.h"
#include "host/io/safetensors.h"

namespace fusedvae::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string default_run_dir() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "runs/%Y%m%d-%H%M%S", &utc);
  std::string dir = stamp;
  for (int n = 2; fs::exists(dir); ++n) dir = std::string(stamp) + "-" + std::to_string(n);
  return dir;
}

bool holds_run(const fs::path& dir) {
  for (const char* name : {run_files::kConfig, run_files::kModel, run_files::kMetrics})
    if (fs::exists(dir / name)) return true;
  return false;
}

std::string fmt(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

// Appends one JSON object a line, flushed at once so a crash loses nothing already logged.
class MetricsLog {
 public:
  MetricsLog(const std::string& path, std::vector<nlohmann::json> kept) : path_(path) {
    std::string text;
    for (const auto& record : kept) text += record.dump() + "\n";
    io::write_file_atomically(path, text);
    records_ = std::move(kept);
    out_.open(path, std::ios::app);
    if (!out_) throw std::runtime_error(path + ": cannot open for appending");
  }
  void append(const nlohmann::json& record) {
    out_ << record.dump() << '\n' << std::flush;
    if (!out_) throw std::runtime_error(path_ + ": write failed");
    records_.push_back(record);
  }
  const std::vector<nlohmann::json>& records() const { return records_; }

 private:
  std::string path_;
  std::ofstream out_;
  std::vector<nlohmann::json> records_;
};

const Dataset* eval_split(const DataSplits& splits, std::string* name) {
  if (splits.validation.rows > 0) {
    *name = "validation";
    return &splits.validation;
  }
  if (splits.test.rows > 0) {
    *name = "test";
    return &splits.test;
  }
  return nullptr;
}

bool finite(const StepLosses& l) {
  return std::isfinite(l.loss) && std::isfinite(l.recon) && std::isfinite(l.kl);
}

bool all_finite(const std::vector<float>& values) {
  for (float v : values)
    if (!std::isfinite(v)) return false;
  return true;
}

// How to start a run again from scratch with its own settings.
std::string restart_command(const std::string& run_dir) {
  return "fusedvae train --config " + (fs::path(run_dir) / run_files::kConfig).string() +
         " --run-dir " + run_dir + " --overwrite";
}

[[noreturn]] void stop_on_signal(int signal, uint64_t step, int epoch, int batch, int batches,
                                 int last_good_epoch, const std::string& run_dir) {
  std::string message = std::string("stopped by ") + signal_name(signal) + " at step " +
                        std::to_string(step) + " (epoch " + std::to_string(epoch + 1) + ", batch " +
                        std::to_string(batch) + " of " + std::to_string(batches) + "); ";
  if (last_good_epoch > 0)
    message += "the checkpoint of epoch " + std::to_string(last_good_epoch) + " is kept in " +
               run_dir + "; resume with: fusedvae train --resume " + run_dir;
  else
    message +=
        "no checkpoint had been written yet (the first comes at the end of epoch 1); "
        "start again with: " +
        restart_command(run_dir);
  throw Stopped(message, signal);
}

[[noreturn]] void stop_non_finite(const std::string& what, uint64_t step, int epoch,
                                  int last_good_epoch, const std::string& run_dir) {
  std::string kept = last_good_epoch > 0
                         ? "the last good checkpoint (epoch " + std::to_string(last_good_epoch) +
                               ") is kept in " + run_dir
                         : "no checkpoint had been written yet";
  throw std::runtime_error(what + " at step " + std::to_string(step) + " (epoch " +
                           std::to_string(epoch + 1) + "); training stopped, " + kept +
                           " (try a lower --lr or --max-grad-norm)");
}

// Data larger than the GPU's free memory is refused with both sizes before the upload (the CPU
// trainer's data was checked against host memory when it was read).
void check_fits_on_device(const Trainer& trainer, const Dataset& data) {
  if (trainer.device_name().rfind("cpu", 0) == 0) return;
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return;
  const size_t bytes = data.is_u8() ? data.u8.size() : data.f32.size() * sizeof(float);
  io::check_fits_in_device_memory(data.source, bytes, free_bytes, trainer.device_name());
}

}  // namespace

std::unique_ptr<Trainer> make_trainer_for(const TrainConfig& config, const std::string& device,
                                          std::ostream& out) {
  if (device == "cpu") return make_cpu_trainer(config);
  if (device == "gpu") return make_gpu_trainer(config);
  if (device != "auto")
    throw std::invalid_argument("--device: expected auto, cpu or gpu, got '" + device + "'");
  std::string reason;
  if (cuda_device_present(&reason)) {
    // auto promises a run: a GPU that is present but cannot start the trainer (an old driver, a
    // cuBLASLt that refuses every plan) falls back to the CPU, loudly; --device gpu makes it fatal.
    try {
      return make_gpu_trainer(config);
    } catch (const std::exception& e) {
      reason = std::string("the GPU trainer did not start: ") + e.what() +
               "; --device gpu makes this an error";
    }
  }
  // A notice, not a result: stderr, so that results piped to a file do not carry it.
  (void)out;
  std::cerr << "fusedvae: running on the CPU (" << reason << ")\n";
  return make_cpu_trainer(config);
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path);
  if (!in) return records;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    try {
      records.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception&) {
      // A line cut short by a crash is the last one; anything else is corruption.
      if (in.peek() == std::char_traits<char>::eof()) break;
      throw std::runtime_error(path + ": line " + std::to_string(number) + " is not JSON");
    }
  }
  return records;
}

std::string train(const TrainRequest& request, const DataLoader& loader, std::ostream& out) {
  RunConfig config = request.config;
  validate(config);
  std::string run_dir = request.run_dir;
  if (request.resume) {
    if (run_dir.empty()) throw std::invalid_argument("--resume needs the run directory");
    if (!has_checkpoint(run_dir))
      throw std::runtime_error(run_dir +
                               ": no checkpoint to resume (the run stopped before the end of its "
                               "first epoch, where the first is written); start it again with: " +
                               restart_command(run_dir));
  } else {
    if (run_dir.empty()) run_dir = default_run_dir();
    if (holds_run(run_dir) && !request.overwrite) {
      if (has_checkpoint(run_dir))
        throw std::runtime_error(run_dir + " already holds a run; continue it with: fusedvae " +
                                 "train --resume " + run_dir +
                                 ", or pick another --run-dir (--overwrite replaces it)");
      throw std::runtime_error(run_dir +
                               " holds a run that stopped before its first checkpoint; start it "
                               "again with: " +
                               restart_command(run_dir) + " (or pick another --run-dir)");
    }
    if (fs::exists(run_dir) && !fs::is_directory(run_dir))
      throw std::runtime_error(run_dir + " exists and is not a directory");
  }
  const fs::path dir(run_dir);

  // From here on SIGINT and SIGTERM stop the run at the next step boundary (stop_signals.h).
  const StopSignals stop_signals;
  const DataSplits splits = loader(config);
  config.train.model.input_dim = splits.train.dim;
  validate(config.train.model);
  std::string eval_name;
  const Dataset* eval_data = eval_split(splits, &eval_name);
  std::unique_ptr<Trainer> trainer = make_trainer_for(config.train, config.device, out);
  check_fits_on_device(*trainer, splits.train);
  trainer->set_train_data(splits.train);
  const int batches = trainer->batches_per_epoch();

  CheckpointInfo info;
  info.image_height = splits.train.image_height;
  info.image_width = splits.train.image_width;
  std::vector<nlohmann::json> kept_metrics;
  std::string resumed_from;  // the folder of the checkpoint a resume starts from
  double previous_wall = 0.0;
  if (request.resume) {
    ResumePoint point;
    if (!find_resume_point(run_dir, config.train.model, &point))
      throw std::runtime_error(
          run_dir + ": no checkpoint to resume; start it again with: " + restart_command(run_dir));
    for (const std::string& line : point.skipped)
      std::cerr << "fusedvae: skipped a checkpoint that does not load: " << line << "\n";
    info = point.info;
    resumed_from = point.where;
    const std::vector<float>& params = point.params;
    OptimizerState& state = point.state;
    if (info.step != static_cast<uint64_t>(info.epoch) * batches)
      throw std::runtime_error(
          run_dir + ": the checkpoint is at step " + std::to_string(info.step) + " after " +
          std::to_string(info.epoch) + " epochs, but this data " + "and batch size give " +
          std::to_string(batches) + " steps an epoch; resume with the run's own data");
    if (config.train.epochs < info.epoch)
      throw std::invalid_argument(run_dir + " has already trained " + std::to_string(info.epoch) +
                                  " epochs; --epochs must be at least that to resume it");
    // A finished run: nothing to train; its pictures are written again only if a stop during
    // them left some missing.
    bool pictures_done = true;
    for (const char* name :
         {run_files::kReconstructions, run_files::kSamples, run_files::kLossCurves})
      pictures_done = pictures_done && fs::exists(dir / name);
    if (config.train.epochs == info.epoch && pictures_done) {
      if (fs::path(point.where) != dir) publish_checkpoint(run_dir, point.where);
      out << run_dir << " has already trained its " << info.epoch
          << " epochs; nothing to do (train more with: fusedvae train --resume " << run_dir
          << " --epochs " << info.epoch + 1 << " or more)\n";
      return run_dir;
    }
    trainer->set_params(params);
    trainer->set_optimizer_state(state);
    // Metrics logged after the checkpoint (an interrupted epoch) are replayed by this run.
    for (nlohmann::json& record : read_metrics((dir / run_files::kMetrics).string()))
      if (record.value("step", uint64_t{0}) <= info.step) {
        if (record.value("kind", "") == "epoch") previous_wall = record.value("wall_time_s", 0.0);
        kept_metrics.push_back(std::move(record));
      }
    out << "resuming " << run_dir << " after epoch " << info.epoch << " (step " << info.step
        << ")\n";
  }
  // Recorded afresh on resume too, so a checkpoint from before they were recorded gains them.
  set_data_info(splits.train, run_data_format(config), &info);
  try {
    fs::create_directories(dir);
  } catch (const fs::filesystem_error& e) {
    throw std::runtime_error(run_dir + ": cannot create the run directory (" + e.code().message() +
                             ")");
  }
  if (!request.resume && request.overwrite) {  // --overwrite: no stale checkpoint may outlive it
    for (const char* name : {run_files::kModel, run_files::kOptimizer, run_files::kReconstructions,
                             run_files::kSamples, run_files::kLossCurves, run_files::kLatent})
      fs::remove(dir / name);
    remove_checkpoints(run_dir);
  }
  remove_uncommitted_checkpoints(run_dir);
  // A crash between a commit and its publication left the top-level pair a checkpoint behind.
  if (request.resume && fs::path(resumed_from) != dir) publish_checkpoint(run_dir, resumed_from);
  io::write_file_atomically((dir / run_files::kConfig).string(), to_json(config).dump(2) + "\n");
  MetricsLog metrics((dir / run_files::kMetrics).string(), std::move(kept_metrics));

  out << "device: " << trainer->device_name() << "\n"
      << "data: " << splits.train.source << " (" << splits.train.rows << " x " << splits.train.dim
      << " train";
  if (splits.validation.rows > 0) out << ", " << splits.validation.rows << " validation";
  if (splits.test.rows > 0) out << ", " << splits.test.rows << " test";
  out << "), " << batches << (batches == 1 ? " step" : " steps") << " an epoch\n"
      << "run directory: " << run_dir << "\n";

  Progress progress(out, request.terminal);
  if (const int signal = StopSignals::requested())
    stop_on_signal(signal, info.step, info.epoch, 0, batches, info.epoch, run_dir);
  // A loss that climbs far above the best it has logged is diverging even while it stays finite.
  double best_loss = 0.0;
  bool have_best_loss = false, warned_divergence = false;
  const Clock::time_point start = Clock::now();
  const int epochs = config.train.epochs;
  const int batch_size = config.train.batch_size;
  int last_good_epoch = info.epoch;
  const int first_epoch = info.epoch;
  for (int epoch = info.epoch; epoch < epochs; ++epoch) {
    const Clock::time_point epoch_start = Clock::now();
    trainer->start_epoch(epoch);
    progress.begin_epoch(epoch, epochs, batches);
    Clock::time_point last_log = epoch_start;
    int last_log_batch = 0;
    double loss_sum = 0, recon_sum = 0, kl_sum = 0;
    int logged = 0;
    StepLosses losses;
    for (int b = 0; b < batches; ++b) {
      trainer->train_step(b);
      const uint64_t step = static_cast<uint64_t>(epoch) * batches + b + 1;
      if (const int signal = StopSignals::requested()) {
        progress.break_line();
        stop_on_signal(signal, step, epoch, b + 1, batches, last_good_epoch, run_dir);
      }
      if (step % static_cast<uint64_t>(config.log_every) != 0 && b != batches - 1) continue;
      losses = trainer->last_losses();  // synchronises: the timing below is real
      if (!finite(losses))
        stop_non_finite("non-finite loss (" + fmt("%g", losses.loss) + ")", step, epoch,
                        last_good_epoch, run_dir);
      const double interval = seconds_since(last_log);
      last_log = Clock::now();
      const double images_per_s =
          interval > 0 ? (b + 1 - last_log_batch) * batch_size / interval : 0;
      last_log_batch = b + 1;
      if (have_best_loss && !warned_divergence &&
          losses.loss > best_loss + 10.0 * std::max(std::fabs(best_loss), 1.0)) {
        warned_divergence = true;
        progress.break_line();
        std::cerr << "fusedvae: warning: the loss is diverging (" << fmt("%.4g", losses.loss)
                  << " at step " << step << ", down to " << fmt("%.4g", best_loss)
                  << " before); try a lower --lr or --max-grad-norm\n";
      }
      if (!have_best_loss || losses.loss < best_loss) best_loss = losses.loss;
      have_best_loss = true;
      loss_sum += losses.loss;
      recon_sum += losses.recon;
      kl_sum += losses.kl;
      ++logged;
      metrics.append({{"kind", "step"},
                      {"step", step},
                      {"epoch", epoch + 1},
                      {"loss", float_to_json(losses.loss)},
                      {"recon", float_to_json(losses.recon)},
                      {"kl", float_to_json(losses.kl)},
                      {"kl_weight", float_to_json(losses.kl_weight)},
                      {"lr", float_to_json(losses.lr)},
                      {"images_per_s", images_per_s},
                      {"grad_norm", float_to_json(losses.grad_norm)},
                      {"wall_time_s", previous_wall + seconds_since(start)}});
      ProgressSample sample;
      sample.batch = b + 1;
      sample.step = step;
      sample.images_per_s = images_per_s;
      const double elapsed = seconds_since(epoch_start);
      sample.eta_s = elapsed / (b + 1) * (batches - b - 1);
      sample.loss = losses.loss;
      sample.running_loss = loss_sum / logged;
      sample.recon = losses.recon;
      sample.kl = losses.kl;
      sample.kl_weight = losses.kl_weight;
      sample.lr = losses.lr;
      progress.update(sample);
    }
    const uint64_t step = static_cast<uint64_t>(epoch + 1) * batches;
    const double train_seconds = seconds_since(epoch_start);
    const std::vector<float> params = trainer->params();
    if (!all_finite(params))
      stop_non_finite("non-finite parameters", step, epoch, last_good_epoch, run_dir);

    nlohmann::json record = {
        {"kind", "epoch"},
        {"step", step},
        {"epoch", epoch + 1},
        {"loss", loss_sum / logged},
        {"recon", recon_sum / logged},
        {"kl", kl_sum / logged},
        {"kl_weight", float_to_json(losses.kl_weight)},
        {"lr", float_to_json(losses.lr)},
        {"images_per_s", batches * static_cast<double>(batch_size) / train_seconds},
        {"grad_norm", float_to_json(losses.grad_norm)}};
    std::string summary = "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs) +
                          "  train loss " + fmt("%.4f", loss_sum / logged);
    if (eval_data) {
      const EvalResult result = trainer->evaluate(*eval_data, 0, config.train.seed);
      if (!std::isfinite(result.mean_elbo))
        stop_non_finite("non-finite " + eval_name + " ELBO", step, epoch, last_good_epoch, run_dir);
      record["eval_split"] = eval_name;
      record[eval_name + "_elbo"] = result.mean_elbo;
      record[eval_name + "_recon"] = result.mean_recon;
      record[eval_name + "_kl"] = result.mean_kl;
      // Labelled as eval labels them: the ELBO is a one-sample estimate, the reconstruction is
      // taken at z = mu, so the two parts do not add up to the ELBO.
      summary += "  " + eval_name + ": ELBO (1 sample) " + fmt("%.4f", result.mean_elbo) +
                 ", recon at z=mu " + fmt("%.4f", result.mean_recon) + ", KL " +
                 fmt("%.4f", result.mean_kl);
    }
    info.epoch = epoch + 1;
    info.step = step;
    // Both files committed as one unit (checkpoint.h): a crash leaves the old pair or the new one.
    commit_checkpoint(run_dir, config.train.model, params, trainer->optimizer_state(), info);
    last_good_epoch = epoch + 1;
    const double epoch_seconds = seconds_since(epoch_start);
    record["epoch_time_s"] = epoch_seconds;
    record["wall_time_s"] = previous_wall + seconds_since(start);
    metrics.append(record);
    progress.end_epoch(
        summary + "  " + fmt("%.1f s", epoch_seconds) + ", " +
        fmt("%.0f img/s", batches * static_cast<double>(batch_size) / train_seconds));
    if (const int signal = StopSignals::requested())
      stop_on_signal(signal, step, epoch, batches, batches, last_good_epoch, run_dir);
  }

  const Dataset& picture_data = splits.test.rows > 0         ? splits.test
                                : splits.validation.rows > 0 ? splits.validation
                                                             : splits.train;
  const PictureShape shape =
      picture_shape_of(picture_data.dim, picture_data.image_height, picture_data.image_width);
  // A stop asked for while the pictures are drawn: training is done and checkpointed, and a resume
  // draws the pictures that are missing.
  const auto stop_if_asked = [&] {
    if (const int signal = StopSignals::requested())
      throw Stopped(std::string("stopped by ") + signal_name(signal) +
                        " after the last epoch, while writing the pictures; the checkpoint of "
                        "epoch " +
                        std::to_string(last_good_epoch) + " is kept in " + run_dir +
                        "; write the pictures with: fusedvae train --resume " + run_dir,
                    signal);
  };
  stop_if_asked();
  write_reconstructions(*trainer, picture_data, 32, shape,
                        (dir / run_files::kReconstructions).string());
  stop_if_asked();
  write_samples(*trainer, 64, config.train.seed, shape, (dir / run_files::kSamples).string());
  stop_if_asked();
  write_loss_curves(metrics.records(), (dir / run_files::kLossCurves).string());
  std::string written = last_good_epoch > first_epoch
                            ? "wrote config.json, metrics.jsonl, model.safetensors, "
                              "optimizer.safetensors, reconstructions.png, samples.png, "
                              "loss_curves.png"
                            : "wrote the missing pictures: reconstructions.png, samples.png, "
                              "loss_curves.png";
  if (config.train.model.latent_dim == 2) {
    write_latent_scatter(*trainer, picture_data, (dir / run_files::kLatent).string());
    written += ", latent.png";
  }
  out << written << " in " << run_dir << "\n";
  return run_dir;
}

}  // namespace fusedvae::cli
