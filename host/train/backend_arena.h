// @brief Per-batch buffers in a backend's memory: one allocation carved into aligned pieces, for
// the trainers (vae_trainer.cpp, dyad_trainer.cpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>

#include "host/train/backend.h"

namespace fusedvae {

// One allocation of backend memory carved into 256-byte-aligned pieces, in two passes over the
// same carving code: sizes first (no base), then the pointers.
class Arena {
 public:
  explicit Arena(Backend& backend) : backend_(backend) {}
  void begin_sizing() {
    storage_.reset();
    base_ = nullptr;
    used_ = 0;
  }
  void allocate_sized() {
    storage_ = backend_.allocate(std::max<size_t>(used_, 256));
    base_ = static_cast<char*>(storage_.get());
    used_ = 0;
  }
  template <typename T>
  T* take(size_t count) {
    const size_t offset = (used_ + 255) / 256 * 256;
    used_ = offset + std::max<size_t>(count * sizeof(T), 1);
    return base_ ? reinterpret_cast<T*>(base_ + offset) : nullptr;
  }

 private:
  Backend& backend_;
  std::shared_ptr<void> storage_;
  char* base_ = nullptr;
  size_t used_ = 0;
};

}  // namespace fusedvae
