// native/cpu/reduce.h — per-thread f32 partial sums for column reductions (dbias, dgamma, ...).
// Each OpenMP thread accumulates into its own slot; reduce_to adds the slots in thread order
// and converts to the output dtype, so a run is deterministic for a given thread count.
#pragma once
#include <omp.h>
#include <cstdint>
#include <vector>
#include "core/dtype.h"
#include "core/threads.h"

namespace seqfuse::cpu {

struct PartialSums {
  int64_t cols, stride;
  int groups, threads;
  std::vector<float> buf;
  // pad: scratch floats after each group's cols (stride = cols + pad), left out of reduce_to
  PartialSums(int64_t cols_, int groups_, int64_t pad = 0)
      : cols(cols_), stride(cols_ + pad), groups(groups_), threads(get_num_threads()),
        buf(size_t(stride) * size_t(groups_) * size_t(threads), 0.0f) {}
  // This thread's slot: `groups` consecutive arrays of `stride` floats.
  float* slot() { return buf.data() + size_t(omp_get_thread_num()) * size_t(groups) * size_t(stride); }
  // out[j] = sum over threads of slot[group][j], converted to `dt`; if accumulate, adds to out.
  void reduce_to(void* out, DType dt, int group, bool accumulate = false) const {
    for (int64_t j = 0; j < cols; ++j) {
      float s = 0.0f;
      for (int t = 0; t < threads; ++t) s += buf[(size_t(t) * groups + group) * stride + j];
      switch (dt) {
        case DType::F32: { float* o = static_cast<float*>(out); o[j] = accumulate ? o[j] + s : s; break; }
        case DType::BF16: { bf16_t* o = static_cast<bf16_t*>(out); o[j] = f32_to_bf16(accumulate ? bf16_to_f32(o[j]) + s : s); break; }
        case DType::F16: { f16_t* o = static_cast<f16_t*>(out); o[j] = f32_to_f16(accumulate ? f16_to_f32(o[j]) + s : s); break; }
        default: break;
      }
    }
  }
};

}  // namespace seqfuse::cpu
