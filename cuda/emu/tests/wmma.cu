// nvcuda::wmma 16x16x16 tiles against a CPU product: f16 and bf16 inputs with an f32
// accumulator, s8 inputs with an s32 accumulator, every combination of row/col-major A and B,
// accumulators loaded and stored in both layouts; then a 32x48x64 GEMM of six warps with tiles
// staged in shared memory and an elementwise epilogue over frag.x.
#include <cmath>
#include <vector>

#include "check.h"

using namespace nvcuda;

// a, b [16x16] in the fragment's layout, c [16x16] in c_layout, d [16x16] stored in d_layout:
// d = a*b + c. One warp.
template <class T, class Acc, class LA, class LB>
__global__ void tile_mma(const T* a, const T* b, const Acc* c, Acc* d, int c_col, int d_col) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, LA> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LB> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, Acc> fc;
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::load_matrix_sync(fc, c, 16, c_col ? wmma::mem_col_major : wmma::mem_row_major);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(d, fc, 16, d_col ? wmma::mem_col_major : wmma::mem_row_major);
}

template <class T>
T from_int(int v) { return T(float(v)); }
template <>
signed char from_int<signed char>(int v) { return (signed char)v; }

int g_seed = 12345;
int next_int(int lo, int hi) {  // LCG: small, deterministic
  g_seed = g_seed * 1103515245 + 12345;
  return lo + int((unsigned(g_seed) >> 8) % unsigned(hi - lo + 1));
}

// Row-major logical matrices, stored in memory as the layout asks.
template <class T>
void store(T* mem, const int* logical, bool col) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) mem[col ? c * 16 + r : r * 16 + c] = from_int<T>(logical[r * 16 + c]);
}

template <class T, class Acc, class LA, class LB>
void check_tile(const char* name, int lo, int hi) {
  const bool a_col = std::is_same<LA, wmma::col_major>::value, b_col = std::is_same<LB, wmma::col_major>::value;
  T* a = managed<T>(256);
  T* b = managed<T>(256);
  Acc* c = managed<Acc>(256);
  Acc* d = managed<Acc>(256);
  for (int cl = 0; cl < 2; ++cl)
    for (int dl = 0; dl < 2; ++dl) {
      int la[256], lb[256], lc[256];
      for (int i = 0; i < 256; ++i) {
        la[i] = next_int(lo, hi);
        lb[i] = next_int(lo, hi);
        lc[i] = next_int(-1000, 1000);
      }
      store(a, la, a_col);
      store(b, lb, b_col);
      for (int r = 0; r < 16; ++r)
        for (int col = 0; col < 16; ++col) c[cl ? col * 16 + r : r * 16 + col] = Acc(lc[r * 16 + col]);
      for (int i = 0; i < 256; ++i) d[i] = Acc(-7777);
      SF_LAUNCH((tile_mma<T, Acc, LA, LB>), 1, 32, 0, 0)(a, b, c, d, cl, dl);
      cudaDeviceSynchronize();
      int bad = 0;
      for (int r = 0; r < 16; ++r)
        for (int col = 0; col < 16; ++col) {
          long long want = lc[r * 16 + col];
          for (int k = 0; k < 16; ++k) want += (long long)la[r * 16 + k] * lb[k * 16 + col];
          const double got = double(d[dl ? col * 16 + r : r * 16 + col]);
          if (got != double(want) && bad++ < 3)
            CHECK(false, "%s (c %s, d %s) d[%d][%d] = %.1f, want %lld", name, cl ? "col" : "row", dl ? "col" : "row", r,
                  col, got, want);
        }
    }
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  cudaFree(d);
}

// a [32x64] row-major, b [64x48] col-major (each column contiguous), d [32x48] row-major:
// d = alpha * a*b. Block of 6 warps, warp w computes the output tile (w / 3, w % 3); each
// k-step stages a [32x16] slab of a and a [16x48] slab of b in shared memory.
__global__ void gemm_32x48x64(const __half* a, const __half* b, float* d, float alpha) {
  __shared__ __align__(32) __half sa[32 * 16];
  __shared__ __align__(32) __half sb[48 * 16];
  const int t = threadIdx.x, w = t / 32, tm = w / 3, tn = w % 3;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  for (int k0 = 0; k0 < 64; k0 += 16) {
    for (int i = t; i < 32 * 16; i += blockDim.x) sa[i] = a[(i / 16) * 64 + k0 + i % 16];
    for (int i = t; i < 48 * 16; i += blockDim.x) sb[i] = b[(i / 16) * 64 + k0 + i % 16];
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
    wmma::load_matrix_sync(fa, sa + tm * 16 * 16, 16);
    wmma::load_matrix_sync(fb, sb + tn * 16 * 16, 16);
    wmma::mma_sync(acc, fa, fb, acc);
    __syncthreads();
  }
  for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= alpha;
  wmma::store_matrix_sync(d + tm * 16 * 48 + tn * 16, acc, 48, wmma::mem_row_major);
}

void check_gemm() {
  __half* a = managed<__half>(32 * 64);
  __half* b = managed<__half>(64 * 48);
  float* d = managed<float>(32 * 48);
  std::vector<float> fa(32 * 64), fb(64 * 48);
  for (int i = 0; i < 32 * 64; ++i) a[i] = __float2half(fa[i] = float(next_int(-64, 64)) / 32.0f);
  for (int i = 0; i < 64 * 48; ++i) b[i] = __float2half(fb[i] = float(next_int(-64, 64)) / 32.0f);
  SF_LAUNCH(gemm_32x48x64, 1, 192, 0, 0)(a, b, d, 0.5f);
  cudaDeviceSynchronize();
  double err = 0, ref = 0;
  for (int m = 0; m < 32; ++m)
    for (int n = 0; n < 48; ++n) {
      double want = 0;
      for (int k = 0; k < 64; ++k) want += double(fa[m * 64 + k]) * fb[n * 64 + k];
      want *= 0.5;
      err += (d[m * 48 + n] - want) * (d[m * 48 + n] - want);
      ref += want * want;
    }
  CHECK(std::sqrt(err / ref) <= 1e-6, "gemm relative L2 error %g", std::sqrt(err / ref));
  cudaFree(a);
  cudaFree(b);
  cudaFree(d);
}

int main() {
  check_tile<__half, float, wmma::row_major, wmma::row_major>("f16 rr", -8, 8);
  check_tile<__half, float, wmma::row_major, wmma::col_major>("f16 rc", -8, 8);
  check_tile<__half, float, wmma::col_major, wmma::row_major>("f16 cr", -8, 8);
  check_tile<__half, float, wmma::col_major, wmma::col_major>("f16 cc", -8, 8);
  check_tile<__nv_bfloat16, float, wmma::row_major, wmma::row_major>("bf16 rr", -8, 8);
  check_tile<__nv_bfloat16, float, wmma::row_major, wmma::col_major>("bf16 rc", -8, 8);
  check_tile<__nv_bfloat16, float, wmma::col_major, wmma::row_major>("bf16 cr", -8, 8);
  check_tile<__nv_bfloat16, float, wmma::col_major, wmma::col_major>("bf16 cc", -8, 8);
  check_tile<signed char, int, wmma::row_major, wmma::row_major>("s8 rr", -128, 127);
  check_tile<signed char, int, wmma::row_major, wmma::col_major>("s8 rc", -128, 127);
  check_tile<signed char, int, wmma::col_major, wmma::row_major>("s8 cr", -128, 127);
  check_tile<signed char, int, wmma::col_major, wmma::col_major>("s8 cc", -128, 127);
  check_gemm();
  return finish("wmma");
}
