// @brief fusedvae._C: the fused ops (CUDA launchers and CPU twins) and the CLI's trainer, for the
// Python package (python/fusedvae).
//
// Tensors cross as raw addresses plus shapes (never PyTorch's C++ types, so the module does not
// depend on PyTorch's ABI); the Python side (fusedvae/ops.py) checks dtype, layout, shape and
// device, allocates the outputs and keeps every tensor alive for the call. Each op then runs the
// C++ op itself, with its own argument checks (std::invalid_argument becomes ValueError). CUDA
// work goes on the stream the caller names (PyTorch's current stream), on the tensors' device.
#include <nanobind/nanobind.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cblas.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <thread>
#include <utility>

#include "host/cli/app.h"
#include "host/cli/commands.h"
#include "host/data/load.h"
#include "host/ops/recon_loss_cpu.h"
#include "host/ops/reparam_kl_cpu.h"
#include "host/train/trainer.h"
#include "kernels/op_params.h"
#include "kernels/recon_loss.h"
#include "kernels/reduction_workspace.h"
#include "kernels/reparam_kl.h"

namespace nb = nanobind;

namespace fusedvae::python {
namespace {

template <typename T>
T* at(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

ReconLoss recon_loss_of(const std::string& kind, float sigma, float beta, const char* op) {
  ReconLoss loss;
  if (!parse_recon_loss_kind(kind.c_str(), &loss.kind))
    throw std::invalid_argument(std::string(op) + ": kind must be bernoulli, gaussian, mse or " +
                                "smooth_l1, got '" + kind + "'");
  loss.gaussian_sigma = sigma;
  loss.smooth_l1_beta = beta;
  check_recon_loss(loss, op);
  return loss;
}

BatchReduction reduction_of(const std::string& name) {
  if (name == "mean") return BatchReduction::kMean;
  if (name == "sum") return BatchReduction::kSum;
  throw std::invalid_argument("reduction must be mean or sum, got '" + name + "'");
}

LogvarClamp clamp_of(float min, float max, const char* op) {
  const LogvarClamp clamp{min, max};
  check_logvar_clamp(clamp, op);
  return clamp;
}

// ---------------------------------------------------------------------------------------------
// CPU twins. Host addresses; rng.draw_index and kl_weight point to host values.
//
// The twins run on one thread; here the rows are split into contiguous chunks, one a thread (up to
// `threads`, PyTorch's intra-op thread count), each chunk a call of the twin on its rows. Every row
// is computed as in one call (the eps of row r is keyed by r through RngState::first_row), so the
// results are bitwise those of a single call, whatever the thread count.

constexpr int64_t kMinElementsPerThread = 16384;  // below this a thread costs more than it saves

template <typename Fn>
void for_row_chunks(int batch, int dim, int threads, const Fn& fn) {
  const int64_t by_work = std::max<int64_t>(1, int64_t{batch} * dim / kMinElementsPerThread);
  const int chunks =
      static_cast<int>(std::min<int64_t>({int64_t{std::max(threads, 1)}, int64_t{batch}, by_work}));
  auto first_row = [&](int c) { return static_cast<int>(int64_t{batch} * c / chunks); };
  if (chunks == 1) {
    fn(0, batch);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](int c) {
    try {
      fn(first_row(c), first_row(c + 1) - first_row(c));
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (int c = 1; c < chunks; ++c) pool.emplace_back(run, c);
  run(0);
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

size_t offset(int row, int dim) {
  return static_cast<size_t>(row) * dim;
}

void reparam_kl_forward_cpu(uintptr_t mu, uintptr_t logvar, int batch, int dim, uint64_t seed,
                            uint64_t draw, float logvar_min, float logvar_max, uintptr_t z,
                            uintptr_t kl_per_sample, int threads) {
  const LogvarClamp clamp = clamp_of(logvar_min, logvar_max, "reparam_kl");
  nb::gil_scoped_release unlocked;
  for_row_chunks(batch, dim, threads, [&](int first, int rows) {
    const size_t at_row = offset(first, dim);
    float kl_reduced = 0.0f;  // the chunk's; unused
    cpu::reparam_kl_forward(at<const float>(mu) + at_row, at<const float>(logvar) + at_row, rows,
                            dim, RngState{seed, &draw, static_cast<uint64_t>(first)}, clamp,
                            BatchReduction::kSum, at<float>(z) + at_row,
                            at<float>(kl_per_sample) + first, &kl_reduced);
  });
}

// dmu = dz + kl_weight * mu, dlogvar = [clamp passes] (dz * sigma * eps / 2 + kl_weight *
// (exp(logvar) - 1) / 2): the batch-sum reduction with loss_scale 1, so kl_weight is the gradient
// that reaches each sample's KL.
void reparam_kl_backward_cpu(uintptr_t dz, uintptr_t mu, uintptr_t logvar, int batch, int dim,
                             uint64_t seed, uint64_t draw, float kl_weight, float logvar_min,
                             float logvar_max, uintptr_t dmu, uintptr_t dlogvar, int threads) {
  const LogvarClamp clamp = clamp_of(logvar_min, logvar_max, "reparam_kl_backward");
  nb::gil_scoped_release unlocked;
  for_row_chunks(batch, dim, threads, [&](int first, int rows) {
    const size_t at_row = offset(first, dim);
    cpu::reparam_kl_backward(at<const float>(dz) + at_row, at<const float>(mu) + at_row,
                             at<const float>(logvar) + at_row, rows, dim,
                             RngState{seed, &draw, static_cast<uint64_t>(first)}, &kl_weight, 1.0f,
                             clamp, BatchReduction::kSum, at<float>(dmu) + at_row,
                             at<float>(dlogvar) + at_row);
  });
}

void draw_normal_eps_cpu(int batch, int dim, uint64_t seed, uint64_t draw, uintptr_t eps,
                         int threads) {
  nb::gil_scoped_release unlocked;
  for_row_chunks(batch, dim, threads, [&](int first, int rows) {
    cpu::draw_normal_eps(rows, dim, RngState{seed, &draw, static_cast<uint64_t>(first)},
                         at<float>(eps) + offset(first, dim));
  });
}

// Returns the batch reduction, summed in double in row order and rounded once, as the twin does.
float recon_loss_cpu(uintptr_t output, uintptr_t target, int batch, int dim,
                     const std::string& kind, float sigma, float beta, const std::string& reduction,
                     float loss_scale, uintptr_t loss_per_sample, uintptr_t grad_output,
                     int threads) {
  const ReconLoss loss = recon_loss_of(kind, sigma, beta, "recon_loss");
  const float batch_scale = batch_reduction_scale(reduction_of(reduction), batch);
  // Each chunk is summed on its own, so the batch's 1/batch goes into the gradient's scale here:
  // the same float product, loss_scale * batch_scale, that the twin forms.
  const float grad_scale = loss_scale * batch_scale;
  nb::gil_scoped_release unlocked;
  for_row_chunks(batch, dim, threads, [&](int first, int rows) {
    float chunk_reduced = 0.0f;  // unused
    cpu::recon_loss_forward_backward(
        at<const float>(output) + offset(first, dim), at<const float>(target) + offset(first, dim),
        rows, dim, loss, BatchReduction::kSum, grad_scale, at<float>(loss_per_sample) + first,
        &chunk_reduced, at<float>(grad_output) + offset(first, dim));
  });
  double batch_loss = 0.0;
  for (int row = 0; row < batch; ++row) batch_loss += at<const float>(loss_per_sample)[row];
  return static_cast<float>(batch_loss) * batch_scale;
}

// ---------------------------------------------------------------------------------------------
// CUDA launchers. Device addresses (draw_index and kl_weight included) on `device`; the work is
// queued on `stream` and not waited for.

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

// Makes `device` current for the call and restores the caller's device after it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// The launchers' reduction scratch serves one stream at a time: one per (device, stream), made on
// first use and kept for the life of the process (never per call).
ReductionWorkspace workspace_for(int device, uintptr_t stream) {
  static std::mutex mutex;
  static std::map<std::pair<int, uintptr_t>, ReductionWorkspace> workspaces;
  const std::lock_guard<std::mutex> lock(mutex);
  auto found = workspaces.find({device, stream});
  if (found != workspaces.end()) return found->second;
  const ReductionWorkspace made = gpu::create_reduction_workspace();
  workspaces.emplace(std::make_pair(device, stream), made);
  return made;
}

void reparam_kl_forward_cuda(uintptr_t mu, uintptr_t logvar, int batch, int dim, uint64_t seed,
                             uintptr_t draw_index, float logvar_min, float logvar_max, uintptr_t z,
                             uintptr_t kl_per_sample, uintptr_t kl_reduced, int device,
                             uintptr_t stream) {
  const LogvarClamp clamp = clamp_of(logvar_min, logvar_max, "reparam_kl");
  nb::gil_scoped_release unlocked;
  const DeviceGuard guard(device);
  gpu::reparam_kl_forward(at<const float>(mu), at<const float>(logvar), batch, dim,
                          RngState{seed, at<const uint64_t>(draw_index), 0}, clamp,
                          BatchReduction::kSum, at<float>(z), at<float>(kl_per_sample),
                          at<float>(kl_reduced), workspace_for(device, stream),
                          at<CUstream_st>(stream));
}

void reparam_kl_backward_cuda(uintptr_t dz, uintptr_t mu, uintptr_t logvar, int batch, int dim,
                              uint64_t seed, uintptr_t draw_index, uintptr_t kl_weight,
                              float logvar_min, float logvar_max, uintptr_t dmu, uintptr_t dlogvar,
                              int device, uintptr_t stream) {
  const LogvarClamp clamp = clamp_of(logvar_min, logvar_max, "reparam_kl_backward");
  nb::gil_scoped_release unlocked;
  const DeviceGuard guard(device);
  gpu::reparam_kl_backward(at<const float>(dz), at<const float>(mu), at<const float>(logvar), batch,
                           dim, RngState{seed, at<const uint64_t>(draw_index), 0},
                           at<const float>(kl_weight), 1.0f, clamp, BatchReduction::kSum,
                           at<float>(dmu), at<float>(dlogvar), at<CUstream_st>(stream));
}

void draw_normal_eps_cuda(int batch, int dim, uint64_t seed, uintptr_t draw_index, uintptr_t eps,
                          int device, uintptr_t stream) {
  nb::gil_scoped_release unlocked;
  const DeviceGuard guard(device);
  gpu::draw_normal_eps(batch, dim, RngState{seed, at<const uint64_t>(draw_index), 0},
                       at<float>(eps), at<CUstream_st>(stream));
}

void recon_loss_cuda(uintptr_t output, uintptr_t target, int batch, int dim,
                     const std::string& kind, float sigma, float beta, const std::string& reduction,
                     float loss_scale, uintptr_t loss_per_sample, uintptr_t loss_reduced,
                     uintptr_t grad_output, int device, uintptr_t stream) {
  const ReconLoss loss = recon_loss_of(kind, sigma, beta, "recon_loss");
  const BatchReduction reduce = reduction_of(reduction);
  nb::gil_scoped_release unlocked;
  const DeviceGuard guard(device);
  gpu::recon_loss_forward_backward(at<const float>(output), at<const float>(target), batch, dim,
                                   loss, reduce, loss_scale, at<float>(loss_per_sample),
                                   at<float>(loss_reduced), at<float>(grad_output),
                                   workspace_for(device, stream), at<CUstream_st>(stream));
}

// ---------------------------------------------------------------------------------------------
// The trainer: cli::train, the function behind `fusedvae train`, with the data given as arrays or
// as the CLI's data keys, and its lines of output handed to a Python callable.

// A split given as the address of a C-ordered array: (address, rows, dim, "uint8" | "float32",
// image_height, image_width, address of int32 labels or 0). Python keeps the arrays alive.
using ArraySpec = std::tuple<uintptr_t, int, int, std::string, int, int, uintptr_t>;

Dataset dataset_from(const ArraySpec& spec, const std::string& source) {
  const auto& [address, rows, dim, dtype, height, width, labels] = spec;
  Dataset d;
  d.source = source;
  d.rows = rows;
  d.dim = dim;
  d.image_height = height;
  d.image_width = width;
  const size_t count = static_cast<size_t>(rows) * dim;
  if (dtype == "uint8") {
    d.u8.assign(at<const uint8_t>(address), at<const uint8_t>(address) + count);
  } else if (dtype == "float32") {
    d.f32.assign(at<const float>(address), at<const float>(address) + count);
  } else {
    throw std::invalid_argument(source + ": dtype must be uint8 or float32, got " + dtype);
  }
  if (labels != 0) d.labels.assign(at<const int32_t>(labels), at<const int32_t>(labels) + rows);
  return d;
}

// Hands each line written to it to a Python callable (or drops it), checking for Ctrl-C between
// lines. A Python exception raised there is kept and rethrown once the trainer has unwound.
class PythonLines : public std::streambuf {
 public:
  explicit PythonLines(nb::object write) : write_(std::move(write)) {}
  void rethrow_pending() {
    if (pending_) {
      pending_->restore();
      pending_.reset();
      throw nb::python_error();
    }
  }

 protected:
  int overflow(int c) override {
    if (c == traits_type::eof()) return 0;
    line_.push_back(static_cast<char>(c));
    if (c == '\n') send();
    return c;
  }
  int sync() override {
    send();
    return 0;
  }

 private:
  struct Interrupted : std::runtime_error {
    Interrupted() : std::runtime_error("interrupted from Python") {}
  };
  void send() {
    if (line_.empty()) return;
    nb::gil_scoped_acquire locked;
    try {
      if (!write_.is_none()) write_(line_);
      line_.clear();
      if (PyErr_CheckSignals() != 0) throw nb::python_error();
    } catch (nb::python_error& e) {
      pending_ = std::make_unique<nb::python_error>(std::move(e));
      throw Interrupted();
    }
  }

  nb::object write_;
  std::string line_;
  std::unique_ptr<nb::python_error> pending_;
};

cli::RunConfig config_from(const std::string& settings_json, const std::string& run_dir,
                           bool resume) {
  const nlohmann::json settings = nlohmann::json::parse(settings_json);
  if (!resume) {
    cli::RunConfig config;
    cli::apply_json(settings, "fusedvae.train", &config);
    return config;
  }
  std::vector<std::string> given;
  for (const auto& item : settings.items()) given.push_back(item.key());
  return cli::resume_config(run_dir, given, [&](const std::string& name, cli::RunConfig* config) {
    cli::apply_json(nlohmann::json{{name, settings.at(name)}}, "fusedvae.train", config);
  });
}

// The resolved configuration (every key, as config.json holds it) of these settings.
std::string resolve_config(const std::string& settings_json) {
  cli::RunConfig config = config_from(settings_json, "", false);
  cli::validate(config);
  return cli::to_json(config).dump();
}

std::string train(const std::string& settings_json, const std::string& run_dir, bool resume,
                  bool overwrite, std::optional<ArraySpec> train_data,
                  std::optional<ArraySpec> test_data, nb::object write) {
  cli::TrainRequest request;
  request.config = config_from(settings_json, run_dir, resume);
  request.run_dir = run_dir;
  request.resume = resume;
  request.overwrite = overwrite;
  cli::DataLoader loader = cli::load_run_data;
  if (train_data) {
    loader = [&](const cli::RunConfig&) {
      DataSplits splits;
      splits.train = dataset_from(*train_data, "train array");
      if (test_data) splits.test = dataset_from(*test_data, "test array");
      set_normalisation(&splits);
      return splits;
    };
  }
  PythonLines lines(std::move(write));
  std::string written;
  {
    nb::gil_scoped_release unlocked;
    std::ostream out(&lines);
    out.exceptions(std::ios::badbit);  // an exception from `lines` stops the run, not just output
    try {
      written = cli::train(request, loader, out);
    } catch (...) {
      nb::gil_scoped_acquire locked;
      lines.rethrow_pending();
      throw;
    }
    out.flush();
  }
  lines.rethrow_pending();
  return written;
}

std::pair<bool, std::string> cuda_device_usable() {
  std::string reason;
  const bool present = cuda_device_present(&reason);
  return {present, reason};
}

}  // namespace
}  // namespace fusedvae::python

NB_MODULE(_C, m) {
  using namespace fusedvae::python;
  m.doc() = "fusedvae's fused ops and trainer (use the fusedvae package, not this module)";
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("check_logvar_clamp",
        [](float min, float max, const std::string& op) { clamp_of(min, max, op.c_str()); });
  m.def("check_recon_loss",
        [](const std::string& kind, float sigma, float beta, const std::string& op) {
          recon_loss_of(kind, sigma, beta, op.c_str());
        });
  m.def("reparam_kl_forward_cpu", &reparam_kl_forward_cpu);
  m.def("reparam_kl_backward_cpu", &reparam_kl_backward_cpu);
  m.def("draw_normal_eps_cpu", &draw_normal_eps_cpu);
  m.def("recon_loss_cpu", &recon_loss_cpu);
  m.def("reparam_kl_forward_cuda", &reparam_kl_forward_cuda);
  m.def("reparam_kl_backward_cuda", &reparam_kl_backward_cuda);
  m.def("draw_normal_eps_cuda", &draw_normal_eps_cuda);
  m.def("recon_loss_cuda", &recon_loss_cuda);
  m.def("resolve_config", &resolve_config);
  m.def("train", &train, nb::arg("settings_json"), nb::arg("run_dir"), nb::arg("resume"),
        nb::arg("overwrite"), nb::arg("train").none(), nb::arg("test").none(),
        nb::arg("write").none());
  m.def("cuda_device_present", &cuda_device_usable,
        "(True, '') when a CUDA device is usable, else (False, the reason)");
}
