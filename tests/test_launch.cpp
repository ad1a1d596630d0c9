// @brief The launch plumbing of kernels/launch.cuh on the host: the block-size check and the grid
// policy (no GPU needed; the launches themselves are exercised by every GPU test).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "kernels/grad_norm.h"
#include "kernels/launch.cuh"
#include "kernels/reduction_workspace.h"

namespace fusedvae {
namespace {

TEST(Launch, BlockSizeCheckAcceptsWholeWarpsUpTo1024) {
  for (int block = kWarpSize; block <= gpu::kMaxBlockSize; block += kWarpSize)
    EXPECT_NO_THROW(gpu::check_block_size(block, "op")) << block;
  EXPECT_EQ(gpu::kDefaultBlockSize % kWarpSize, 0);
}

TEST(Launch, BlockSizeCheckNamesTheOpAndTheValue) {
  for (const int block : {0, -32, 16, 48, 100, 1056, 2048}) {
    try {
      gpu::check_block_size(block, "my_op");
      ADD_FAILURE() << block << " accepted";
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.rfind("my_op: ", 0), 0u) << what;
      EXPECT_NE(what.find("got " + std::to_string(block)), std::string::npos) << what;
    }
  }
}

TEST(Launch, GridStrideGridCoversSmallProblemsAndCapsThreads) {
  EXPECT_EQ(gpu::ceil_div(1, 256), 1u);
  EXPECT_EQ(gpu::ceil_div(256, 256), 1u);
  EXPECT_EQ(gpu::ceil_div(257, 256), 2u);
  for (const int block : {32, 64, 256, 1024}) {
    SCOPED_TRACE(block);
    const int cap = static_cast<int>(gpu::kGridStrideMaxThreads / block);
    EXPECT_EQ(gpu::grid_stride_grid(1, block), 1);
    EXPECT_EQ(gpu::grid_stride_grid(static_cast<size_t>(block) * 3 + 1, block), 4);
    EXPECT_EQ(gpu::grid_stride_grid(gpu::kGridStrideMaxThreads, block), cap);
    EXPECT_EQ(gpu::grid_stride_grid(size_t{1} << 40, block), cap);  // fits an int, loops
    EXPECT_EQ(gpu::row_stride_grid(5, block), 5);
    EXPECT_EQ(gpu::row_stride_grid(1 << 30, block), cap);
  }
  EXPECT_EQ(gpu::grid_stride_grid(size_t{1} << 40, gpu::kDefaultBlockSize), 4096);
}

// The reducing grids fix the summation order (tests/support's gpu_batch_sum_depth assumes this
// one), so they are pinned here: one warp per row, at most kReduceMaxBlocks blocks.
TEST(Launch, RowReductionGridIsOneWarpPerRowCappedAtTheWorkspace) {
  for (const int block : {32, 64, 256, 1024})
    for (const int rows : {1, 7, 8, 9, 1000, 8192, 32768, 1 << 20}) {
      const int warps = block / 32;
      const int expected = std::min((rows + warps - 1) / warps, kReduceMaxBlocks);
      EXPECT_EQ(row_reduction_grid(rows, block), expected) << rows << " rows, block " << block;
    }
  EXPECT_EQ(kReduceMaxBlocks, 1024);
  EXPECT_EQ(gpu::kGradNormMaxBlocks, 1024);
  EXPECT_LE(gpu::kGradNormMaxBlocks, gpu::kMaxBlockSize);  // the finish adds one partial a thread
  EXPECT_EQ(gpu::capped_grid(gpu::ceil_div(1 << 30, 256), gpu::kGradNormMaxBlocks), 1024);
}

}  // namespace
}  // namespace fusedvae
