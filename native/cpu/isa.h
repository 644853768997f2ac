// native/cpu/isa.h — which ISA pass (simd.h) the CPU ops run, chosen once by cpuid and
// lowered by SEQFUSE_ISA=avx2|generic (or set_isa from JS, for tests).
#pragma once

namespace seqfuse::cpu {

enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2 };

Isa best_isa();                 // what this CPU (and this build) supports
Isa active_isa();               // what ops use now
void set_active_isa(Isa isa);   // fails with ERR_UNSUPPORTED above best_isa()
const char* isa_name(Isa isa);

}  // namespace seqfuse::cpu

// Declares an ISA-pass function in the other two namespaces (use inside namespace seqfuse::cpu,
// in the SF_ISA_MAIN pass) and picks the active one.
#if defined(SEQFUSE_X86_ISA)
#define SF_ISA_DECLARE(...) namespace avx512 { __VA_ARGS__; } namespace avx2 { __VA_ARGS__; }
#define SF_PICK(fn)                                                              \
  (::seqfuse::cpu::active_isa() == ::seqfuse::cpu::Isa::Avx512 ? &::seqfuse::cpu::avx512::fn     \
   : ::seqfuse::cpu::active_isa() == ::seqfuse::cpu::Isa::Avx2 ? &::seqfuse::cpu::avx2::fn       \
                                                               : &::seqfuse::cpu::generic::fn)
#else
#define SF_ISA_DECLARE(...)
#define SF_PICK(fn) (&::seqfuse::cpu::generic::fn)
#endif
