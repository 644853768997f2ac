// native/cpu/attention.cc — placeholder until the kernel lands (branch attn-*).
#include "cpu/simd.h"
#include "ops/attention.h"
#if SF_ISA_MAIN
namespace seqfuse {
void attention_fwd_cpu(const AttentionArgs&) { fail(ErrorCode::Backend, "attention: kernel not written yet"); }
}  // namespace seqfuse
#endif
