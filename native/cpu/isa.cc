// native/cpu/isa.cc — run-time choice of the ISA pass (see simd.h).
#include "cpu/isa.h"
#include <atomic>
#include <cstdlib>
#include <cstring>
#include "core/error.h"

namespace seqfuse::cpu {

static Isa detect() {
#if defined(SEQFUSE_X86_ISA)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Isa::Avx2;
#endif
  return Isa::Generic;
}

static Isa from_env(Isa best) {
  const char* e = std::getenv("SEQFUSE_ISA");
  if (!e || !*e) return best;
  Isa want = best;
  if (!std::strcmp(e, "avx512")) want = Isa::Avx512;
  else if (!std::strcmp(e, "avx2")) want = Isa::Avx2;
  else if (!std::strcmp(e, "generic")) want = Isa::Generic;
  // An unknown name or a level the CPU lacks keeps the best available path (a lower one is
  // only ever forced, never a higher one).
  return int(want) < int(best) ? want : best;
}

Isa best_isa() {
  static const Isa best = detect();
  return best;
}

static std::atomic<int>& active() {
  static std::atomic<int> a{int(from_env(best_isa()))};
  return a;
}

Isa active_isa() { return Isa(active().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) {
  if (int(isa) > int(best_isa()))
    fail(ErrorCode::Unsupported, "setIsa: this CPU supports up to '", isa_name(best_isa()),
         "' but received '", isa_name(isa), "'");
  active().store(int(isa));
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Generic: return "generic";
  }
  return "generic";
}

}  // namespace seqfuse::cpu
