// cuda/emu/device.h — the device functions kernels call: barriers, warp collectives, atomics,
// memory fences, loads and the math intrinsics. Each warp collective parks the lane until every
// lane of its mask has arrived; the group's result is computed once, from all lanes' operands,
// before any lane runs on (the "publish, then read" of a shuffle).
#pragma once

#include <math.h>

#include "core.h"

namespace sfemu {
namespace detail {

template <class T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "sfemu: warp collectives move at most 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}

template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(static_cast<void*>(&v), &b, sizeof(T));
  return v;
}

inline uint64_t warp_collective(const char* name, CombineFn combine, uint32_t mask, uint64_t value, int64_t arg = 0,
                                int width = 32, const void* p0 = nullptr, const void* p1 = nullptr,
                                const void* p2 = nullptr, const void* p3 = nullptr) {
  Fiber& f = current(name);
  Executor& ex = executor();
  if (!(mask >> f.lane & 1))
    ex.fail(f, std::string(name) + ": the calling lane " + std::to_string(f.lane) + " is not in mask " + hex32(mask));
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    ex.fail(f, std::string(name) + ": width must be a power of two in 1..32, got " + std::to_string(width));
  f.post = Post{name, combine, mask, value, arg, width, {p0, p1, p2, p3}, 0};
  f.wait = Wait::warp;
  ex.park(f);
  return f.post.result;
}

inline const Post* lane_post(Fiber* const* lanes, int count, int lane) {
  for (int i = 0; i < count; ++i)
    if (lanes[i]->lane == lane) return &lanes[i]->post;
  return nullptr;
}

// Shuffles: the lane reads `value` of lane src(lane); a source outside the group, or one the
// width segment forbids, leaves the lane's own value (CUDA: undefined for inactive sources).
template <int (*Src)(int lane, int64_t arg, int width)>
const char* shuffle_combine(Fiber* const* lanes, int count) {
  for (int i = 0; i < count; ++i) {
    Post& p = lanes[i]->post;
    const int src = Src(lanes[i]->lane, p.arg, p.width);
    const Post* s = src >= 0 ? lane_post(lanes, count, src) : nullptr;
    p.result = s ? s->value : p.value;
  }
  return nullptr;
}

inline int src_idx(int lane, int64_t src, int width) {
  return (lane & ~(width - 1)) + int(src & (width - 1));
}
inline int src_up(int lane, int64_t delta, int width) {
  return (lane & (width - 1)) >= delta ? int(lane - delta) : -1;
}
inline int src_down(int lane, int64_t delta, int width) {
  return (lane & (width - 1)) + delta < width ? int(lane + delta) : -1;
}
inline int src_xor(int lane, int64_t lane_mask, int width) {
  const int src = lane ^ int(lane_mask & 31);
  return src < (lane & ~(width - 1)) + width ? src : -1;  // earlier segments allowed, later ones not
}

inline const char* sync_combine(Fiber* const*, int) {
  return nullptr;
}

enum class Vote { ballot, any, all };

template <Vote V>
const char* vote_combine(Fiber* const* lanes, int count) {
  uint32_t bits = 0;
  for (int i = 0; i < count; ++i)
    if (lanes[i]->post.value) bits |= 1u << lanes[i]->lane;
  uint32_t group = 0;
  for (int i = 0; i < count; ++i) group |= 1u << lanes[i]->lane;
  const uint64_t r = V == Vote::ballot ? bits : V == Vote::any ? bits != 0 : bits == group;
  for (int i = 0; i < count; ++i) lanes[i]->post.result = r;
  return nullptr;
}

inline const char* match_any_combine(Fiber* const* lanes, int count) {
  for (int i = 0; i < count; ++i) {
    uint32_t same = 0;
    for (int j = 0; j < count; ++j)
      if (lanes[j]->post.value == lanes[i]->post.value) same |= 1u << lanes[j]->lane;
    lanes[i]->post.result = same;
  }
  return nullptr;
}

enum class Reduce { add, min, max, band, bor, bxor };

template <Reduce R, class T>
const char* reduce_combine(Fiber* const* lanes, int count) {
  T acc = from_bits<T>(lanes[0]->post.value);
  for (int i = 1; i < count; ++i) {
    const T v = from_bits<T>(lanes[i]->post.value);
    acc = R == Reduce::add ? T(acc + v) : R == Reduce::min ? (v < acc ? v : acc) : R == Reduce::max ? (v > acc ? v : acc)
        : R == Reduce::band ? T(acc & v) : R == Reduce::bor ? T(acc | v) : T(acc ^ v);
  }
  for (int i = 0; i < count; ++i) lanes[i]->post.result = to_bits(acc);
  return nullptr;
}

inline int block_barrier(const char* name, int pred, const char* file, int line) {
  Fiber& f = current(name);
  f.bar_name = name;
  f.bar_file = file;
  f.bar_line = line;
  f.bar_pred = pred;
  f.wait = Wait::block;
  executor().park(f);
  return f.bar_result;
}

template <class T>
T atomic_cas_loop(T* addr, T (*op)(T, T), T v) {
  T old;
  __atomic_load(addr, &old, __ATOMIC_RELAXED);
  T desired;
  do desired = op(old, v);
  while (!__atomic_compare_exchange(addr, &old, &desired, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
  return old;
}

}  // namespace detail
}  // namespace sfemu

// --- barriers and fences (the call site names the barrier in divergence reports) -----------------
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  sfemu::detail::block_barrier("__syncthreads", 0, file, line);
}
inline int __syncthreads_count(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return sfemu::detail::block_barrier("__syncthreads_count", pred, file, line);
}
inline int __syncthreads_and(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return sfemu::detail::block_barrier("__syncthreads_and", pred, file, line);
}
inline int __syncthreads_or(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return sfemu::detail::block_barrier("__syncthreads_or", pred, file, line);
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// --- warp collectives ---------------------------------------------------------------------------
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  sfemu::detail::warp_collective("__syncwarp", sfemu::detail::sync_combine, mask, 0);
}
// The lanes of the warp that have not exited (the emulator does not model divergent sub-groups).
inline unsigned __activemask() {
  using namespace sfemu::detail;
  Fiber& f = current("__activemask");
  uint32_t live = 0;
  Fiber* base = &f - f.lane;
  const int n = int(blockDim.x * blockDim.y * blockDim.z) - f.warp * 32;
  for (int l = 0; l < 32 && l < n; ++l)
    if (base[l].wait != Wait::done) live |= 1u << l;
  return live;
}
#define SF_EMU_SHUFFLE(name, Arg, src)                                                                       \
  template <class T>                                                                                        \
  T name(unsigned mask, T var, Arg arg, int width = warpSize) {                                             \
    using namespace sfemu::detail;                                                                          \
    return from_bits<T>(warp_collective(#name, shuffle_combine<src>, mask, to_bits(var), int64_t(arg), width)); \
  }
SF_EMU_SHUFFLE(__shfl_sync, int, src_idx)
SF_EMU_SHUFFLE(__shfl_up_sync, unsigned, src_up)
SF_EMU_SHUFFLE(__shfl_down_sync, unsigned, src_down)
SF_EMU_SHUFFLE(__shfl_xor_sync, int, src_xor)
#undef SF_EMU_SHUFFLE
inline unsigned __ballot_sync(unsigned mask, int pred) {
  using namespace sfemu::detail;
  return unsigned(warp_collective("__ballot_sync", vote_combine<Vote::ballot>, mask, pred != 0));
}
inline int __any_sync(unsigned mask, int pred) {
  using namespace sfemu::detail;
  return int(warp_collective("__any_sync", vote_combine<Vote::any>, mask, pred != 0));
}
inline int __all_sync(unsigned mask, int pred) {
  using namespace sfemu::detail;
  return int(warp_collective("__all_sync", vote_combine<Vote::all>, mask, pred != 0));
}
template <class T>
unsigned __match_any_sync(unsigned mask, T value) {
  using namespace sfemu::detail;
  return unsigned(warp_collective("__match_any_sync", match_any_combine, mask, to_bits(value)));
}
#define SF_EMU_REDUCE(name, R, T)                                                                   \
  inline T name(unsigned mask, T value) {                                                           \
    using namespace sfemu::detail;                                                                  \
    return from_bits<T>(warp_collective(#name, reduce_combine<Reduce::R, T>, mask, to_bits(value))); \
  }
SF_EMU_REDUCE(__reduce_add_sync, add, unsigned)
SF_EMU_REDUCE(__reduce_add_sync, add, int)
SF_EMU_REDUCE(__reduce_min_sync, min, unsigned)
SF_EMU_REDUCE(__reduce_min_sync, min, int)
SF_EMU_REDUCE(__reduce_max_sync, max, unsigned)
SF_EMU_REDUCE(__reduce_max_sync, max, int)
SF_EMU_REDUCE(__reduce_and_sync, band, unsigned)
SF_EMU_REDUCE(__reduce_or_sync, bor, unsigned)
SF_EMU_REDUCE(__reduce_xor_sync, bxor, unsigned)
#undef SF_EMU_REDUCE

// --- atomics (real atomics: blocks may run on several OS threads) -----------------------------
#define SF_EMU_ATOMIC_BUILTIN(name, builtin, T) \
  inline T name(T* a, T v) { return builtin(a, v, __ATOMIC_SEQ_CST); }
SF_EMU_ATOMIC_BUILTIN(atomicAdd, __atomic_fetch_add, int)
SF_EMU_ATOMIC_BUILTIN(atomicAdd, __atomic_fetch_add, unsigned)
SF_EMU_ATOMIC_BUILTIN(atomicAdd, __atomic_fetch_add, unsigned long long)
SF_EMU_ATOMIC_BUILTIN(atomicSub, __atomic_fetch_sub, int)
SF_EMU_ATOMIC_BUILTIN(atomicSub, __atomic_fetch_sub, unsigned)
SF_EMU_ATOMIC_BUILTIN(atomicAnd, __atomic_fetch_and, int)
SF_EMU_ATOMIC_BUILTIN(atomicAnd, __atomic_fetch_and, unsigned)
SF_EMU_ATOMIC_BUILTIN(atomicAnd, __atomic_fetch_and, unsigned long long)
SF_EMU_ATOMIC_BUILTIN(atomicOr, __atomic_fetch_or, int)
SF_EMU_ATOMIC_BUILTIN(atomicOr, __atomic_fetch_or, unsigned)
SF_EMU_ATOMIC_BUILTIN(atomicOr, __atomic_fetch_or, unsigned long long)
SF_EMU_ATOMIC_BUILTIN(atomicXor, __atomic_fetch_xor, int)
SF_EMU_ATOMIC_BUILTIN(atomicXor, __atomic_fetch_xor, unsigned)
SF_EMU_ATOMIC_BUILTIN(atomicXor, __atomic_fetch_xor, unsigned long long)
SF_EMU_ATOMIC_BUILTIN(atomicExch, __atomic_exchange_n, int)
SF_EMU_ATOMIC_BUILTIN(atomicExch, __atomic_exchange_n, unsigned)
SF_EMU_ATOMIC_BUILTIN(atomicExch, __atomic_exchange_n, unsigned long long)
#undef SF_EMU_ATOMIC_BUILTIN

#define SF_EMU_ATOMIC_LOOP(name, T, expr) \
  inline T name(T* a, T v) { return sfemu::detail::atomic_cas_loop<T>(a, [](T o, T x) -> T { return expr; }, v); }
SF_EMU_ATOMIC_LOOP(atomicAdd, float, o + x)
SF_EMU_ATOMIC_LOOP(atomicAdd, double, o + x)
SF_EMU_ATOMIC_LOOP(atomicMin, int, x < o ? x : o)
SF_EMU_ATOMIC_LOOP(atomicMin, unsigned, x < o ? x : o)
SF_EMU_ATOMIC_LOOP(atomicMin, long long, x < o ? x : o)
SF_EMU_ATOMIC_LOOP(atomicMin, unsigned long long, x < o ? x : o)
SF_EMU_ATOMIC_LOOP(atomicMax, int, x > o ? x : o)
SF_EMU_ATOMIC_LOOP(atomicMax, unsigned, x > o ? x : o)
SF_EMU_ATOMIC_LOOP(atomicMax, long long, x > o ? x : o)
SF_EMU_ATOMIC_LOOP(atomicMax, unsigned long long, x > o ? x : o)
SF_EMU_ATOMIC_LOOP(atomicInc, unsigned, o >= x ? 0u : o + 1u)
SF_EMU_ATOMIC_LOOP(atomicDec, unsigned, (o == 0u || o > x) ? x : o - 1u)
#undef SF_EMU_ATOMIC_LOOP
inline float atomicExch(float* a, float v) {
  float old;
  __atomic_exchange(a, &v, &old, __ATOMIC_SEQ_CST);
  return old;
}

template <class T>
T sfemu_atomic_cas(T* a, T compare, T v) {
  __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;  // the old value either way
}
inline int atomicCAS(int* a, int c, int v) { return sfemu_atomic_cas(a, c, v); }
inline unsigned atomicCAS(unsigned* a, unsigned c, unsigned v) { return sfemu_atomic_cas(a, c, v); }
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long c, unsigned long long v) {
  return sfemu_atomic_cas(a, c, v);
}
inline unsigned short atomicCAS(unsigned short* a, unsigned short c, unsigned short v) {
  return sfemu_atomic_cas(a, c, v);
}

// --- loads ------------------------------------------------------------------------------------
template <class T>
T __ldg(const T* p) { return *p; }
template <class T>
T __ldcg(const T* p) { return *p; }
template <class T>
T __ldcs(const T* p) { return *p; }
template <class T>
void __stcg(T* p, T v) { *p = v; }
template <class T>
void __stcs(T* p, T v) { *p = v; }

// --- integer and bit intrinsics -----------------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= (x >> i & 1u) << (31 - i);
  return r;
}
inline int __mul24(int a, int b) { return (a << 8 >> 8) * (b << 8 >> 8); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline int __mulhi(int a, int b) { return int((long long)a * b >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((unsigned long long)a * b >> 32); }
inline long long __mul64hi(long long a, long long b) { return (long long)((__int128)a * b >> 64); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)((unsigned __int128)a * b >> 64);
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s) {
  s &= 31;
  return s ? (hi << s) | (lo >> (32 - s)) : hi;
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
  s &= 31;
  return s ? (lo >> s) | (hi << (32 - s)) : lo;
}

// --- float bits and conversions -----------------------------------------------------------------
inline int __float_as_int(float x) { return sfemu::detail::from_bits<int>(sfemu::detail::to_bits(x)); }
inline unsigned __float_as_uint(float x) { return sfemu::detail::from_bits<unsigned>(sfemu::detail::to_bits(x)); }
inline float __int_as_float(int x) { return sfemu::detail::from_bits<float>(sfemu::detail::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return sfemu::detail::from_bits<float>(sfemu::detail::to_bits(x)); }
inline long long __double_as_longlong(double x) { return sfemu::detail::from_bits<long long>(sfemu::detail::to_bits(x)); }
inline double __longlong_as_double(long long x) { return sfemu::detail::from_bits<double>(sfemu::detail::to_bits(x)); }
inline int __float2int_rn(float x) { return int(nearbyintf(x)); }  // default rounding: to nearest even
inline int __float2int_rz(float x) { return int(x); }
inline int __float2int_rd(float x) { return int(floorf(x)); }
inline int __float2int_ru(float x) { return int(ceilf(x)); }
inline unsigned __float2uint_rn(float x) { return unsigned(nearbyintf(x)); }
inline long long __float2ll_rn(float x) { return (long long)nearbyintf(x); }
inline float __int2float_rn(int x) { return float(x); }
inline float __uint2float_rn(unsigned x) { return float(x); }

// --- float math (the fast intrinsics computed at full precision) ---------------------------------
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { *s = sinf(x); *c = cosf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __saturatef(float x) { return x > 1.0f ? 1.0f : x > 0.0f ? x : 0.0f; }  // NaN -> 0
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fmaf_rz(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }

// --- min / max (CUDA's global overloads) --------------------------------------------------------
#define SF_EMU_MINMAX(T)                                  \
  inline T min(T a, T b) { return b < a ? b : a; }        \
  inline T max(T a, T b) { return a < b ? b : a; }
SF_EMU_MINMAX(int)
SF_EMU_MINMAX(unsigned)
SF_EMU_MINMAX(long)
SF_EMU_MINMAX(unsigned long)
SF_EMU_MINMAX(long long)
SF_EMU_MINMAX(unsigned long long)
#undef SF_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline unsigned min(int a, unsigned b) { return min(unsigned(a), b); }
inline unsigned min(unsigned a, int b) { return min(a, unsigned(b)); }
inline unsigned max(int a, unsigned b) { return max(unsigned(a), b); }
inline unsigned max(unsigned a, int b) { return max(a, unsigned(b)); }
inline double min(float a, double b) { return fmin(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double max(double a, float b) { return fmax(a, b); }
