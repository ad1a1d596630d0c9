// @brief Which fields of the kernels' parameter structs are device pointers, so that the SIMT
// harness checks them at every launch as it checks pointer arguments (a host pointer there would
// fault on a GPU and read silently on the CPU). Included before each kernel file in the harness
// build (the generated kernels_as_cxx/*.cpp).
#pragma once

#include "kernels/gru.h"
#include "kernels/philox_normal.cuh"
#include "kernels/reduction_workspace.h"

namespace fusedvae::simt::detail {

template <>
struct DevicePointers<ReductionWorkspace> {
  template <typename Visit>
  static void visit(const ReductionWorkspace& w, Visit&& visit) {
    visit(w.block_partials, "ReductionWorkspace::block_partials");
    visit(w.blocks_done, "ReductionWorkspace::blocks_done");
  }
};

template <>
struct DevicePointers<PhiloxEps> {
  template <typename Visit>
  static void visit(const PhiloxEps& e, Visit&& visit) {
    visit(e.draw_index, "PhiloxEps::draw_index");
  }
};

template <>
struct DevicePointers<GivenEps> {
  template <typename Visit>
  static void visit(const GivenEps& e, Visit&& visit) {
    visit(e.eps, "GivenEps::eps");
  }
};

template <>
struct DevicePointers<gpu::GruDirectionParams> {
  template <typename Visit>
  static void visit(const gpu::GruDirectionParams& p, Visit&& visit) {
    visit(p.gi, "GruDirectionParams::gi");
    visit(p.w_hh, "GruDirectionParams::w_hh");
    visit(p.b_ih, "GruDirectionParams::b_ih");
    visit(p.b_hh, "GruDirectionParams::b_hh");
    visit(p.h0, "GruDirectionParams::h0");
    visit(p.hs, "GruDirectionParams::hs");
    visit(p.gates, "GruDirectionParams::gates");
  }
};

template <>
struct DevicePointers<gpu::GruDirectionBackwardParams> {
  template <typename Visit>
  static void visit(const gpu::GruDirectionBackwardParams& p, Visit&& visit) {
    visit(p.w_hh, "GruDirectionBackwardParams::w_hh");
    visit(p.gates, "GruDirectionBackwardParams::gates");
    visit(p.hs, "GruDirectionBackwardParams::hs");
    visit(p.d_h_n, "GruDirectionBackwardParams::d_h_n");
    visit(p.d_gi, "GruDirectionBackwardParams::d_gi");
    visit(p.d_gh, "GruDirectionBackwardParams::d_gh");
    visit(p.d_h0, "GruDirectionBackwardParams::d_h0");
  }
};

}  // namespace fusedvae::simt::detail
