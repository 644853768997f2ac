// native/core/threads.cc — the thread count shared by our kernels and oneDNN (both OpenMP).
#include "core/threads.h"
#include <atomic>

namespace seqfuse {

static std::atomic<int> g_threads{0};  // 0 = not set yet: all cores OpenMP sees

void set_num_threads(int n) {
  g_threads.store(n);
  omp_set_num_threads(n);
}

int get_num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  static const int procs = omp_get_num_procs();  // a syscall: ask once
  return procs;
}

void apply_num_threads() {
  thread_local int applied = -1;
  int n = get_num_threads();
  if (applied != n) {
    omp_set_num_threads(n);
    applied = n;
  }
}

}  // namespace seqfuse
