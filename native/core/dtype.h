// native/core/dtype.h — element types, devices, and scalar 16-bit float conversions.
// The numeric values of DType and Device are part of the JS<->native contract (lib/dtype.ts).
// Helpers are `static inline` so each ISA-specific translation unit keeps its own copy: a weak
// inline symbol compiled with AVX-512 must never be picked by the linker for the portable path.
#pragma once
#include <cstdint>
#include <cstring>

namespace seqfuse {

enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2, I8 = 3, I32 = 4, U8 = 5 };
enum class Device : int32_t { CPU = 0, CUDA = 1 };
constexpr int kNumDTypes = 6;

static inline int64_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::I8: case DType::U8: return 1;
  }
  return 0;
}

static inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I8: return "i8";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
  }
  return "?";
}

static inline bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

static inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

// 16-bit storage types. Plain structs so kernels can template on them.
struct bf16_t { uint16_t bits; };
struct f16_t { uint16_t bits; };

static inline float bits_to_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline uint32_t f32_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

static inline float bf16_to_f32(bf16_t h) { return bits_to_f32(uint32_t(h.bits) << 16); }
// Round to nearest even; NaN stays NaN (quiet bit forced so rounding cannot make it Inf).
static inline bf16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_t{uint16_t((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16_t{uint16_t(u >> 16)};
}

// IEEE binary16, round to nearest even, overflow to Inf, subnormals kept.
static inline float f16_to_f32(f16_t h) {
  uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  uint32_t exp = (h.bits >> 10) & 0x1fu, man = h.bits & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    float v = float(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}
static inline f16_t f32_to_f16(float f) {
  uint32_t u = f32_to_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return f16_t{uint16_t(sign | 0x7e00u)};           // NaN
  if (a >= 0x477ff000u) return f16_t{uint16_t(sign | 0x7c00u)};          // rounds to >= 65520: Inf
  if (a < 0x38800000u) {                                                 // below 2^-14: subnormal
    // value * 2^24 rounded to nearest even gives the subnormal mantissa.
    float v = bits_to_f32(a) * 16777216.0f;
    float r = __builtin_nearbyintf(v);  // default rounding mode is nearest-even
    return f16_t{uint16_t(sign | uint16_t(r))};
  }
  uint32_t mant_odd = (a >> 13) & 1u;
  a += 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round to nearest even
  return f16_t{uint16_t(sign | (a >> 13))};
}

template <class T> static inline float to_f32(T v);
template <> inline float to_f32<float>(float v) { return v; }
template <> inline float to_f32<bf16_t>(bf16_t v) { return bf16_to_f32(v); }
template <> inline float to_f32<f16_t>(f16_t v) { return f16_to_f32(v); }
template <class T> static inline T from_f32(float v);
template <> inline float from_f32<float>(float v) { return v; }
template <> inline bf16_t from_f32<bf16_t>(float v) { return f32_to_bf16(v); }
template <> inline f16_t from_f32<f16_t>(float v) { return f32_to_f16(v); }

}  // namespace seqfuse
