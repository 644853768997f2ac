// native/core/threads.h — one thread pool (OpenMP, the runtime oneDNN uses) for every CPU op.
// setNumThreads stores the count globally; each op applies it on the thread that runs it
// (the JS thread or a libuv worker), since OpenMP's thread count is per calling thread.
#pragma once
#include <cstdint>

namespace seqfuse {

void set_num_threads(int n);
int get_num_threads();
// Called at the start of every native op on the thread that runs it.
void apply_num_threads();

// Splits [0, n) into contiguous chunks over the pool; `fn(begin, end)` runs once per chunk.
// `cost` is the rough work per item in elements touched: small jobs stay on one thread.
template <class Fn>
void parallel_for(int64_t n, int64_t cost, const Fn& fn);

}  // namespace seqfuse

#include <omp.h>

namespace seqfuse {

template <class Fn>
void parallel_for(int64_t n, int64_t cost, const Fn& fn) {
  if (n <= 0) return;
  int64_t total = n * (cost > 0 ? cost : 1);
  int threads = get_num_threads();
  constexpr int64_t kMinWorkPerThread = 32 * 1024;  // below this a fork/join costs more than it saves
  int64_t useful = total / kMinWorkPerThread;
  if (useful < threads) threads = int(useful < 1 ? 1 : useful);
  if (threads > n) threads = int(n);
  if (threads <= 1) { fn(int64_t(0), n); return; }
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t b = n * t / nt, e = n * (t + 1) / nt;
    if (b < e) fn(b, e);
  }
}

}  // namespace seqfuse
