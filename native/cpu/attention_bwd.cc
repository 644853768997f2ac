// native/cpu/attention_bwd.cc — placeholder until the kernel lands (branch attn-*).
#include "cpu/simd.h"
#include "ops/attention.h"
#if SF_ISA_MAIN
namespace seqfuse {
void attention_bwd_cpu(const AttentionArgs&) { fail(ErrorCode::Backend, "attention: kernel not written yet"); }
}  // namespace seqfuse
#endif
