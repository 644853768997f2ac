// Atomics across blocks that run in parallel on several OS threads (SF_EMU_PARALLEL, OpenMP):
// every result is exact (integer-valued floats), so a lost update shows as a wrong total.
#define SF_EMU_PARALLEL 1
#include "check.h"

constexpr int kBlocks = 64, kThreads = 128, kN = kBlocks * kThreads;

struct Totals {
  int add_i;
  unsigned add_u;
  unsigned long long add_ull;
  float add_f;
  double add_d;
  int max_i, min_i;
  unsigned max_u, min_u;
  int sub_i;
  unsigned or_u, inc_u;
  int cas_lock;
  int under_lock;
  int exch_i;
};

// One thread per input; each block also counts itself under a CAS spin lock (a lock held
// across threads of different blocks only: a warp-level spin lock deadlocks on hardware).
__global__ void accumulate(Totals* t, const int* x) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int v = x[i];
  atomicAdd(&t->add_i, v);
  atomicAdd(&t->add_u, unsigned(v));
  atomicAdd(&t->add_ull, (unsigned long long)v << 33);
  atomicAdd(&t->add_f, float(v));
  atomicAdd(&t->add_d, double(v) * 0.25);
  atomicMax(&t->max_i, v - 500);
  atomicMin(&t->min_i, v - 500);
  atomicMax(&t->max_u, unsigned(v));
  atomicMin(&t->min_u, unsigned(v));
  atomicSub(&t->sub_i, 1);
  atomicOr(&t->or_u, 1u << (v % 32));
  atomicInc(&t->inc_u, 1000u);
  atomicExch(&t->exch_i, v);
  if (threadIdx.x == 0) {
    while (atomicCAS(&t->cas_lock, 0, 1) != 0) {
    }
    const int seen = t->under_lock;  // a plain read-modify-write, safe only under the lock
    t->under_lock = seen + 1;
    __threadfence();
    atomicExch(&t->cas_lock, 0);
  }
}

int main() {
  int* x = managed<int>(kN);
  for (int i = 0; i < kN; ++i) x[i] = (i * 37) % 1000;
  Totals* t = managed<Totals>(1);
  std::memset(t, 0, sizeof *t);
  t->max_i = -1000000;
  t->min_i = 1000000;
  t->min_u = ~0u;
  SF_LAUNCH(accumulate, kBlocks, kThreads, 0, 0)(t, x);
  cudaDeviceSynchronize();
  long long sum = 0;
  int mx = -1, mn = 1 << 30;
  unsigned bits = 0;
  for (int i = 0; i < kN; ++i) {
    sum += x[i];
    mx = x[i] > mx ? x[i] : mx;
    mn = x[i] < mn ? x[i] : mn;
    bits |= 1u << (x[i] % 32);
  }
  CHECK(t->add_i == sum, "int add %d, want %lld", t->add_i, sum);
  CHECK(t->add_u == unsigned(sum), "unsigned add %u", t->add_u);
  CHECK(t->add_ull == (unsigned long long)sum << 33, "ull add %llu", t->add_ull);
  CHECK(t->add_f == float(sum), "float add %g, want %lld", t->add_f, sum);
  CHECK(t->add_d == double(sum) * 0.25, "double add %g", t->add_d);
  CHECK(t->max_i == mx - 500 && t->min_i == mn - 500, "int max/min %d %d", t->max_i, t->min_i);
  CHECK(t->max_u == unsigned(mx) && t->min_u == unsigned(mn), "unsigned max/min %u %u", t->max_u, t->min_u);
  CHECK(t->sub_i == -kN, "sub %d", t->sub_i);
  CHECK(t->or_u == bits, "or %08x, want %08x", t->or_u, bits);
  CHECK(t->inc_u == unsigned(kN % 1001), "inc %u, want %d", t->inc_u, kN % 1001);
  CHECK(t->under_lock == kBlocks && t->cas_lock == 0, "CAS lock: %d blocks counted, lock %d", t->under_lock, t->cas_lock);
  bool exch_seen = false;
  for (int i = 0; i < kN; ++i) exch_seen |= x[i] == t->exch_i;
  CHECK(exch_seen, "exch left %d, which no thread wrote", t->exch_i);
  cudaFree(x);
  cudaFree(t);
  return finish("atomics");
}
