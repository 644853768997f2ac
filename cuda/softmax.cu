// cuda/softmax.cu — softmax over the last dim with an additive f32 mask and causal masking,
// forward and backward, on CUDA (ops/softmax.h): the operation of native/cpu/softmax.cc.
// Shapes: x, y, dy, dx [rows, cols] row-major in T (rows = the flattened leading dims a.lead);
// mask f32, broadcast to x through a.mask_stride / a.mask_col_stride. Math in f32, one rounding
// to T on store.
//
// Design: the row-in-registers layout of rows.cuh — a warp per row when the row fits in its
// registers (several rows per block), else a block per row, else ("wide") a block per row
// re-reading the row from global memory for each pass. Forward: x (+ mask) is read once into
// registers; a group max, e = exp(x + mask - max) (expf: a few ulp, like the CPU's polynomial),
// a group sum, y = e * (1 / sum) written once; columns hidden by causality are 0. Backward: y and
// dy are read once, s = sum(dy * y), dx = y * (dy - s). So each pass streams its inputs in and
// its output out once (memory-bound), with 16-byte accesses when rows and pointers allow.
// Special rows, as the CPU: a row that sees no column (causal n = 0, or every visible
// x + mask = -Inf, or a row-constant mask of -Inf) gives zeros, and its gradient is zero since
// y = 0; a visible NaN or +Inf (in x or mask) gives NaN in every column (NaN is folded into the
// max as +Inf, so one max reduction finds both). A mask constant over the row (mask_col_stride
// = 0) is not added (softmax(x + c) = softmax(x) for finite c), as the CPU.
// The row sums run in another order than the CPU's, so outputs agree to rounding (relative L2,
// tests/softmax.cu), not bit for bit. Output may alias the input (y = x, dx = dy): a row is read
// whole before it is written.
#include "rows.cuh"
#include "ops/softmax.h"

namespace seqfuse {
namespace {

using gpu::from_f32;
using gpu::group_max;
using gpu::group_sum;
using gpu::load_f32;
using gpu::RowGroup;
using gpu::store_f32;
using gpu::to_f32;

constexpr int kFwdElems = 32;  // floats of the row per thread: forward (x)
constexpr int kBwdElems = 16;  // backward (y and dy)
constexpr int kWarps = 4;      // rows (warps) per block in warp mode
constexpr int kMaxThreads = gpu::kRowMaxThreads;
constexpr int kWideThreads = 512;

// What a row sees: n visible columns (causal), the mask row (nullptr: none to add; col stride
// mcs), or a whole-row verdict from a row-constant mask.
struct RowView {
  int64_t n;
  const float* m;
  bool nan_row;
};

__device__ __forceinline__ RowView row_view(const SoftmaxArgs& a, int64_t row) {
  RowView v{a.cols, nullptr, false};
  if (a.causal) {  // query i = row mod sq sees keys j <= i + cols - sq
    const int64_t sq = a.lead[a.nlead - 1];
    const int64_t vis = row % sq + a.cols - sq + 1;
    v.n = vis < 0 ? 0 : vis > a.cols ? a.cols : vis;
  }
  if (a.mask) {
    int64_t off = 0, r = row;
    for (int d = a.nlead - 1; d >= 0; --d) {
      off += (r % a.lead[d]) * a.mask_stride[d];
      r /= a.lead[d];
    }
    const float* m = a.mask + off;
    if (a.mask_col_stride != 0) v.m = m;
    else if (*m == -INFINITY) v.n = 0;
    else v.nan_row = !(*m < INFINITY);  // +Inf or NaN
  }
  return v;
}

// x + mask at column j (visible)
template <class T>
__device__ __forceinline__ float xm(const T* x, const RowView& v, int64_t mcs, int64_t j) {
  const float u = to_f32(x[j]);
  return v.m ? u + v.m[j * mcs] : u;
}

// Forward, the row in registers. x, y [rows, cols]. WARP: one warp per row, block kWarps * 32,
// grid ceil(rows / kWarps); else one block per row (block <= 512 threads, a multiple of 32),
// grid rows. Static shared memory: 32 floats (block reductions). Each thread loads its chunks of
// x (+ mask), then: group max (NaN counted as +Inf), exp and group sum, y = e / sum.
template <class T, int VEC, int CH, bool WARP>
__global__ void __launch_bounds__(kMaxThreads) softmax_fwd_kernel(const SoftmaxArgs a) {
  __shared__ float scratch[32];
  const RowGroup<WARP> g;
  if (g.row >= a.rows) return;  // warp mode: whole warps of the last block
  const int64_t cols = a.cols, mcs = a.mask_col_stride;
  const RowView rv = row_view(a, g.row);
  const T* x = static_cast<const T*>(a.x) + g.row * cols;
  T* y = static_cast<T*>(a.y) + g.row * cols;
  float v[CH][VEC];
  float mx = -INFINITY;
  for (int c = 0; c < CH; ++c) {
    const int64_t j = g.template col<VEC>(c);
    if (j < cols) {
      load_f32<VEC>(x + j, v[c]);
      for (int k = 0; k < VEC; ++k) {
        if (j + k >= rv.n) {
          v[c][k] = -INFINITY;
        } else {
          if (rv.m) v[c][k] += rv.m[(j + k) * mcs];
          mx = fmaxf(mx, v[c][k] != v[c][k] ? INFINITY : v[c][k]);
        }
      }
    } else {
      for (int k = 0; k < VEC; ++k) v[c][k] = -INFINITY;
    }
  }
  mx = group_max<WARP>(mx, scratch);
  // +Inf: a NaN or +Inf is visible (NaN row); -Inf: nothing visible (zero row). Uniform per row.
  const float fill = rv.nan_row || mx == INFINITY ? NAN : 0.0f;
  if (rv.nan_row || mx == INFINITY || mx == -INFINITY) {
    for (int c = 0; c < CH; ++c) {
      const int64_t j = g.template col<VEC>(c);
      if (j >= cols) break;
      float o[VEC];
      for (int k = 0; k < VEC; ++k) o[k] = fill;
      store_f32<VEC>(y + j, o);
    }
    return;
  }
  float s = 0.0f;
  for (int c = 0; c < CH; ++c)
    for (int k = 0; k < VEC; ++k) {
      v[c][k] = expf(v[c][k] - mx);  // hidden and padding columns: exp(-Inf) = 0
      s += v[c][k];
    }
  const float inv = __fdiv_rn(1.0f, group_sum<WARP>(s, scratch));
  for (int c = 0; c < CH; ++c) {
    const int64_t j = g.template col<VEC>(c);
    if (j >= cols) break;
    float o[VEC];
    for (int k = 0; k < VEC; ++k) o[k] = __fmul_rn(v[c][k], inv);
    store_f32<VEC>(y + j, o);
  }
}

// Backward, the row in registers: dx = y * (dy - sum(dy * y)). Geometry as the forward's
// (WARP: block kWarps * 32, grid ceil(rows / kWarps); else a block per row).
template <class T, int VEC, int CH, bool WARP>
__global__ void __launch_bounds__(kMaxThreads) softmax_bwd_kernel(const SoftmaxArgs a) {
  __shared__ float scratch[32];
  const RowGroup<WARP> g;
  if (g.row >= a.rows) return;
  const int64_t cols = a.cols;
  const T* y = static_cast<const T*>(a.y) + g.row * cols;
  const T* dy = static_cast<const T*>(a.dy) + g.row * cols;
  T* dx = static_cast<T*>(a.dx) + g.row * cols;
  float yv[CH][VEC], dv[CH][VEC];
  float s = 0.0f;
  for (int c = 0; c < CH; ++c) {
    const int64_t j = g.template col<VEC>(c);
    if (j >= cols) break;
    load_f32<VEC>(y + j, yv[c]);
    load_f32<VEC>(dy + j, dv[c]);
    for (int k = 0; k < VEC; ++k) s = fmaf(dv[c][k], yv[c][k], s);
  }
  s = group_sum<WARP>(s, scratch);
  for (int c = 0; c < CH; ++c) {
    const int64_t j = g.template col<VEC>(c);
    if (j >= cols) break;
    float o[VEC];
    for (int k = 0; k < VEC; ++k) o[k] = __fmul_rn(yv[c][k], __fsub_rn(dv[c][k], s));
    store_f32<VEC>(dx + j, o);
  }
}

// Forward for rows too wide for registers: grid rows, block kWideThreads, static shared memory 32
// floats; x (+ mask) is read three times (max, sum, output; the rereads hit L1/L2), element j by
// thread j mod blockDim.x.
template <class T>
__global__ void __launch_bounds__(kMaxThreads) softmax_fwd_wide_kernel(const SoftmaxArgs a) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, cols = a.cols, mcs = a.mask_col_stride;
  const RowView rv = row_view(a, row);
  const T* x = static_cast<const T*>(a.x) + row * cols;
  T* y = static_cast<T*>(a.y) + row * cols;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < rv.n; j += blockDim.x) {
    const float u = xm(x, rv, mcs, j);
    mx = fmaxf(mx, u != u ? INFINITY : u);
  }
  mx = gpu::block_max(mx, scratch);
  if (rv.nan_row || mx == INFINITY || mx == -INFINITY) {
    const float fill = rv.nan_row || mx == INFINITY ? NAN : 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) y[j] = from_f32<T>(fill);
    return;
  }
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < rv.n; j += blockDim.x) s += expf(xm(x, rv, mcs, j) - mx);
  const float inv = __fdiv_rn(1.0f, gpu::block_sum(s, scratch));
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
    y[j] = from_f32<T>(j < rv.n ? __fmul_rn(expf(xm(x, rv, mcs, j) - mx), inv) : 0.0f);
}

// Backward for rows too wide for registers: grid rows, block kWideThreads; y and dy read twice.
template <class T>
__global__ void __launch_bounds__(kMaxThreads) softmax_bwd_wide_kernel(const SoftmaxArgs a) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, cols = a.cols;
  const T* y = static_cast<const T*>(a.y) + row * cols;
  const T* dy = static_cast<const T*>(a.dy) + row * cols;
  T* dx = static_cast<T*>(a.dx) + row * cols;
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s = fmaf(to_f32(dy[j]), to_f32(y[j]), s);
  s = gpu::block_sum(s, scratch);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
    dx[j] = from_f32<T>(__fmul_rn(to_f32(y[j]), __fsub_rn(to_f32(dy[j]), s)));
}

// Launches the register kernel K<VEC, CH, WARP> of plan pl, or the wide one.
template <class T, int E, class Launch>
void launch_rows(const SoftmaxArgs& a, const gpu::RowPlan& pl, Launch launch) {
  gpu::with_tile<T, E>(pl, [&](auto vec, auto ch) {
    if (pl.warp) launch(vec, ch, std::true_type{}, dim3(unsigned((a.rows + kWarps - 1) / kWarps)), dim3(kWarps * 32));
    else launch(vec, ch, std::false_type{}, dim3(unsigned(a.rows)), dim3(unsigned(pl.threads)));
  });
}

template <class T>
void fwd(const SoftmaxArgs& a, cudaStream_t stream) {
  const gpu::RowPlan pl = gpu::plan_rows<T>(a.cols, kFwdElems, {a.x, a.y});
  if (pl.wide) {
    SF_LAUNCH(softmax_fwd_wide_kernel<T>, dim3(unsigned(a.rows)), dim3(kWideThreads), 0, stream)(a);
  } else {
    launch_rows<T, kFwdElems>(a, pl, [&](auto vec, auto ch, auto warp, dim3 grid, dim3 block) {
      SF_LAUNCH((softmax_fwd_kernel<T, decltype(vec)::value, decltype(ch)::value, decltype(warp)::value>), grid, block, 0,
                stream)(a);
    });
  }
  gpu::check_launch("softmax");
}

template <class T>
void bwd(const SoftmaxArgs& a, cudaStream_t stream) {
  const gpu::RowPlan pl = gpu::plan_rows<T>(a.cols, kBwdElems, {a.y, a.dy, a.dx});
  if (pl.wide) {
    SF_LAUNCH(softmax_bwd_wide_kernel<T>, dim3(unsigned(a.rows)), dim3(kWideThreads), 0, stream)(a);
  } else {
    launch_rows<T, kBwdElems>(a, pl, [&](auto vec, auto ch, auto warp, dim3 grid, dim3 block) {
      SF_LAUNCH((softmax_bwd_kernel<T, decltype(vec)::value, decltype(ch)::value, decltype(warp)::value>), grid, block, 0,
                stream)(a);
    });
  }
  gpu::check_launch("softmaxBackward");
}

}  // namespace

void softmax_fwd_cuda(const SoftmaxArgs& a, Stream s) {
  if (a.rows == 0 || a.cols == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  gpu::with_float_type(a.dtype, "softmax", [&](auto z) { fwd<decltype(z)>(a, stream); });
}

void softmax_bwd_cuda(const SoftmaxArgs& a, Stream s) {
  if (a.rows == 0 || a.cols == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(s.handle);
  gpu::with_float_type(a.dtype, "softmaxBackward", [&](auto z) { bwd<decltype(z)>(a, stream); });
}

}  // namespace seqfuse
