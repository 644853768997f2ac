// cuda/emu/wmma.h — nvcuda::wmma for the 16x16x16 shape: f16 and bf16 inputs with an f32 (or f16)
// accumulator, s8/u8 inputs with an s32 accumulator.
// Fragment layout: lane l holds elements l*8 .. l*8+7 of the 16x16 tile in row-major order
// (row = e / 16, col = e % 16). It is NOT the hardware's layout on purpose: a kernel that assumes
// one layout gives wrong results here, a kernel that only does elementwise work on frag.x[i]
// over num_elements (valid on hardware for any layout) gives the same results as on a GPU.
// load/store read and write memory first and synchronise the warp afterwards, so missing
// barriers before a load stay visible; mma_sync gathers the fragments of all 32 lanes.
#pragma once

#include "device.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
template <class T>
constexpr bool is_input = std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value ||
                          std::is_same<T, signed char>::value || std::is_same<T, unsigned char>::value;
template <class T>
constexpr bool is_accum = std::is_same<T, float>::value || std::is_same<T, __half>::value || std::is_same<T, int>::value;

template <class T>
float to_float(T v) {
  return float(v);
}
template <>
inline float to_float<__half>(__half v) {
  return __half2float(v);
}
template <>
inline float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
  static_assert(M == 16 && N == 16 && K == 16, "sfemu: wmma emulates the m16n16k16 shape only");
  static_assert(std::is_same<Use, accumulator>::value ? detail::is_accum<T> : detail::is_input<T>,
                "sfemu: wmma fragment type not emulated (inputs: half, __nv_bfloat16, signed/unsigned char; "
                "accumulators: float, half, int)");
  static_assert(std::is_same<Use, accumulator>::value == std::is_same<Layout, void>::value,
                "sfemu: matrix_a/matrix_b fragments take row_major or col_major, accumulators no layout");

 public:
  using element_type = T;
  using storage_element_type = T;
  static constexpr int num_elements = 8;
  T x[num_elements];
};

template <class Use, int M, int N, int K, class T, class L, class V>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, const V& v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = T(v);
}

namespace detail {
using sfemu::detail::Fiber;

// All 32 lanes, with the same pointer and ldm.
inline const char* tile_combine(Fiber* const* lanes, int count) {
  if (count != 32) return "wmma: all 32 lanes of the warp must take part";
  for (int i = 1; i < count; ++i)
    if (lanes[i]->post.ptr[0] != lanes[0]->post.ptr[0] || lanes[i]->post.arg != lanes[0]->post.arg ||
        lanes[i]->post.value != lanes[0]->post.value)
      return "wmma: the lanes of a warp passed different pointers, ldm or layouts";
  return nullptr;
}

template <class T>
size_t tile_offset(int lane, int i, unsigned ldm, bool col_major) {
  const int e = lane * 8 + i, r = e / 16, c = e % 16;
  return col_major ? size_t(c) * ldm + size_t(r) : size_t(r) * ldm + size_t(c);
}

template <class T>
void check_tile(const char* name, const T* p, unsigned ldm) {
  sfemu::detail::Fiber& f = sfemu::detail::current(name);
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
    sfemu::detail::executor().fail(f, std::string(name) + ": the pointer must be 32-byte aligned");
  if (ldm * sizeof(T) % 16 != 0)
    sfemu::detail::executor().fail(f, std::string(name) + ": ldm * sizeof(element) must be a multiple of 16 bytes, got ldm " +
                                          std::to_string(ldm));
}

template <class T>
void tile_sync(const char* name, const T* p, unsigned ldm, bool col_major) {
  sfemu::detail::warp_collective(name, tile_combine, 0xffffffffu, col_major, ldm, 32, p);
}

template <class TA, class TC, class TD>
const char* mma_combine(Fiber* const* lanes, int count) {
  if (count != 32) return "wmma::mma_sync: all 32 lanes of the warp must take part";
  using Acc = typename std::conditional<std::is_same<TC, int>::value, int, float>::type;
  Acc a[256], b[256], c[256];
  for (int j = 0; j < 32; ++j) {
    const int l = lanes[j]->lane;
    const TA* fa = static_cast<const TA*>(lanes[j]->post.ptr[0]);
    const TA* fb = static_cast<const TA*>(lanes[j]->post.ptr[1]);
    const TC* fc = static_cast<const TC*>(lanes[j]->post.ptr[2]);
    for (int i = 0; i < 8; ++i) {
      a[l * 8 + i] = Acc(to_float(fa[i]));
      b[l * 8 + i] = Acc(to_float(fb[i]));
      c[l * 8 + i] = Acc(to_float(fc[i]));
    }
  }
  Acc d[256];
  for (int r = 0; r < 16; ++r)
    for (int col = 0; col < 16; ++col) {
      Acc s = c[r * 16 + col];
      for (int k = 0; k < 16; ++k) s += a[r * 16 + k] * b[k * 16 + col];
      d[r * 16 + col] = s;
    }
  for (int j = 0; j < 32; ++j) {  // every lane's c was read above, so d may alias c
    TD* fd = static_cast<TD*>(const_cast<void*>(lanes[j]->post.ptr[3]));
    for (int i = 0; i < 8; ++i) fd[i] = TD(d[lanes[j]->lane * 8 + i]);
  }
  return nullptr;
}
}  // namespace detail

template <class Use, class T, class L>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, L>& f, const T* p, unsigned ldm) {
  static_assert(!std::is_same<Use, accumulator>::value, "sfemu: accumulator loads take a layout_t");
  const char* name = "wmma::load_matrix_sync";
  detail::check_tile(name, p, ldm);
  const bool col = std::is_same<L, col_major>::value;
  const int lane = sfemu::detail::current(name).lane;
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = p[detail::tile_offset<T>(lane, i, ldm, col)];
  detail::tile_sync(name, p, ldm, col);
}

template <class T>
void load_matrix_sync(fragment<accumulator, 16, 16, 16, T>& f, const T* p, unsigned ldm, layout_t layout) {
  const char* name = "wmma::load_matrix_sync";
  detail::check_tile(name, p, ldm);
  const int lane = sfemu::detail::current(name).lane;
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = p[detail::tile_offset<T>(lane, i, ldm, layout == mem_col_major)];
  detail::tile_sync(name, p, ldm, layout == mem_col_major);
}

template <class T>
void store_matrix_sync(T* p, const fragment<accumulator, 16, 16, 16, T>& f, unsigned ldm, layout_t layout) {
  const char* name = "wmma::store_matrix_sync";
  detail::check_tile(name, p, ldm);
  const int lane = sfemu::detail::current(name).lane;
  for (int i = 0; i < f.num_elements; ++i) p[detail::tile_offset<T>(lane, i, ldm, layout == mem_col_major)] = f.x[i];
  detail::tile_sync(name, p, ldm, layout == mem_col_major);
}

template <class TA, class LA, class LB, class TC, class TD>
void mma_sync(fragment<accumulator, 16, 16, 16, TD>& d, const fragment<matrix_a, 16, 16, 16, TA, LA>& a,
              const fragment<matrix_b, 16, 16, 16, TA, LB>& b, const fragment<accumulator, 16, 16, 16, TC>& c) {
  constexpr bool int_in = std::is_same<TA, signed char>::value || std::is_same<TA, unsigned char>::value;
  static_assert(std::is_same<TC, TD>::value, "sfemu: wmma::mma_sync needs c and d of the same type");
  static_assert(int_in == std::is_same<TC, int>::value, "sfemu: s8/u8 inputs accumulate in int, f16/bf16 in float/half");
  static_assert(!std::is_same<TA, __nv_bfloat16>::value || std::is_same<TC, float>::value,
                "sfemu: bf16 inputs accumulate in float");
  sfemu::detail::warp_collective("wmma::mma_sync", detail::mma_combine<TA, TC, TD>, 0xffffffffu, 0, 0, 32, a.x, b.x,
                                 c.x, d.x);
}

}  // namespace wmma
}  // namespace nvcuda
