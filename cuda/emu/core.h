// cuda/emu/core.h — the emulator's execution engine: a grid's blocks run one after another
// (or over OpenMP threads with SF_EMU_PARALLEL), the threads of a block run as ucontext fibers
// on the OS thread that runs the block. A fiber runs until its next synchronisation point
// (__syncthreads, a warp collective, exit); the scheduler then resolves what can proceed:
// complete warp groups first, then the block barrier; when nothing can, the block deadlocked
// (a divergent barrier) and the launch throws sfemu::Error.
// Passes over the fibers alternate ascending and descending thread order, so a missing barrier
// shows up as a wrong result instead of being hidden by a lucky interleaving.
#pragma once

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define SF_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SF_EMU_ASAN 1
#endif
#endif
#ifdef SF_EMU_ASAN
#include <dlfcn.h>
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// The kernel-visible built-ins: per OS thread, set by the scheduler before it resumes a fiber.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace sfemu {

// Everything the emulator detects (barrier divergence, deadlocks, bad launch configurations,
// misuse of warp collectives and wmma) is thrown as this from the launch.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {

enum class Wait : uint8_t { ready, warp, block, done };

struct Fiber;
// Runs once every lane of a warp group has posted; fills each lane's post.result (or writes
// through the posted pointers). Returns an error message or nullptr.
using CombineFn = const char* (*)(Fiber* const* lanes, int count);

// What a lane posts at a warp collective.
struct Post {
  const char* name;
  CombineFn combine;
  uint32_t mask;   // as given, before dropping lanes the block does not have
  uint64_t value;  // the lane's operand, bit-copied
  int64_t arg;     // srcLane / delta / laneMask
  int width;
  const void* ptr[4];
  uint64_t result;
};

struct Fiber {
  ucontext_t ctx;
  char* stack = nullptr;  // usable stack, above a guard page
  size_t stack_size = 0;
  void* fake_stack = nullptr;
  uint3 tid;
  int linear = 0, lane = 0, warp = 0;
  Wait wait = Wait::done;
  Post post;
  const char* bar_name = nullptr;  // block barrier: which, where, operand, result
  const char* bar_file = nullptr;
  int bar_line = 0;
  int bar_pred = 0;
  int bar_result = 0;
};

inline size_t stack_bytes() {
  const char* e = std::getenv("SF_EMU_STACK_KB");
  long kb = e ? std::atol(e) : 0;
  return (kb >= 16 ? size_t(kb) : size_t(256)) * 1024;
}

inline bool start_reversed() {
  const char* e = std::getenv("SF_EMU_ORDER");
  return e && std::strcmp(e, "reverse") == 0;
}

inline std::string fmt3(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

inline std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}

void fiber_entry();

// ASan intercepts swapcontext to wipe the shadow of the whole target stack on every switch (it
// cannot know the fibers' bounds); that would erase the redzones of suspended kernel frames and
// cost a shadow clear per switch. The emulator annotates its switches itself
// (__sanitizer_start/finish_switch_fiber), so it calls libc's swapcontext directly.
inline int switch_context(ucontext_t* from, const ucontext_t* to) {
#ifdef SF_EMU_ASAN
  using Fn = int (*)(ucontext_t*, const ucontext_t*);
  static const Fn real = [] {
    void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void* sym = libc ? dlsym(libc, "swapcontext") : nullptr;
    return sym ? reinterpret_cast<Fn>(sym) : &swapcontext;
  }();
  return real(from, to);
#else
  return swapcontext(from, to);
#endif
}

// One per OS thread that runs blocks.
class Executor {
 public:
  Fiber* cur = nullptr;
  unsigned char* dyn_smem = nullptr;
  size_t dyn_bytes = 0;

  ~Executor() {
    for (Fiber& f : fibers_)
      if (f.stack) munmap(f.stack - page_, f.stack_size + page_);
  }

  // Runs block `bidx` of the launch to completion; throws Error on divergence or misuse.
  void run_block(uint3 bidx, dim3 grid, dim3 block, size_t smem, void (*body)(void*), void* ctx) {
    const int n = int(block.x * block.y * block.z);
    blockIdx = bidx;
    blockDim = block;
    gridDim = grid;
    body_ = body;
    body_ctx_ = ctx;
    nthreads_ = n;
    error_.clear();
    prepare_fibers(n, block);
    SharedBuffer shared(this, smem);
    bool reverse = start_reversed();
    for (;;) {
      for (int k = 0; k < n; ++k) {
        Fiber& f = fibers_[size_t(reverse ? n - 1 - k : k)];
        if (f.wait != Wait::ready) continue;
        resume(f);
        if (!error_.empty()) abort_block(error_);
      }
      reverse = !reverse;
      if (all_done()) break;
      if (release_warp_groups()) continue;
      release_block_barrier();
    }
  }

  // Called on a fiber: park it until the scheduler releases it.
  void park(Fiber& f) {
    switch_to_scheduler(f);
  }

  // Called on a fiber: a misuse. Unwinds the fiber's stack (so nothing it holds leaks) to
  // entry(), which reports it to the scheduler.
  [[noreturn]] void fail(Fiber& f, const std::string& msg) {
    throw Fault{msg + " (thread " + fmt3(f.tid) + " of block " + fmt3(blockIdx) + ")"};
  }

  void entry() {
    Fiber& f = *cur;
#ifdef SF_EMU_ASAN
    __sanitizer_finish_switch_fiber(f.fake_stack, &sched_bottom_, &sched_size_);
#endif
    try {
      body_(body_ctx_);
    } catch (const Fault& e) {
      error_ = e.msg;
    }
    f.wait = Wait::done;
    switch_to_scheduler(f);
  }

 private:
  struct Fault {
    std::string msg;
  };

  struct SharedBuffer {  // dynamic shared memory of one block, exact size so ASan sees overruns
    Executor* ex;
    SharedBuffer(Executor* e, size_t bytes) : ex(e) {
      void* p = nullptr;
      if (posix_memalign(&p, 128, bytes ? bytes : 1) != 0) throw Error("sfemu: out of memory for shared memory");
#ifdef SF_EMU_ASAN
      if (!bytes) ASAN_POISON_MEMORY_REGION(p, 1);
#endif
      std::memset(p, 0xff, bytes);  // NaN / -1 until the kernel writes it
      ex->dyn_smem = static_cast<unsigned char*>(p);
      ex->dyn_bytes = bytes;
    }
    ~SharedBuffer() {
#ifdef SF_EMU_ASAN
      ASAN_UNPOISON_MEMORY_REGION(ex->dyn_smem, 1);
#endif
      std::free(ex->dyn_smem);
      ex->dyn_smem = nullptr;
      ex->dyn_bytes = 0;
    }
  };

  std::vector<Fiber> fibers_;
  ucontext_t sched_;
  void* sched_fake_ = nullptr;
  const void* sched_bottom_ = nullptr;
  size_t sched_size_ = 0;
  size_t page_ = size_t(sysconf(_SC_PAGESIZE));
  bool dirty_ = false;  // a block was abandoned: its fibers' stack shadow may hold stale poison
  void (*body_)(void*) = nullptr;
  void* body_ctx_ = nullptr;
  int nthreads_ = 0;
  std::string error_;

  void prepare_fibers(int n, dim3 block) {
    if (fibers_.size() < size_t(n)) fibers_.resize(size_t(n));
    for (int i = 0; i < n; ++i) {
      Fiber& f = fibers_[size_t(i)];
      if (!f.stack) {
        f.stack_size = stack_bytes();
        void* m = mmap(nullptr, f.stack_size + page_, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) throw Error("sfemu: cannot map a fiber stack");
        mprotect(m, page_, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting
        f.stack = static_cast<char*>(m) + page_;
      }
#ifdef SF_EMU_ASAN
      if (dirty_) ASAN_UNPOISON_MEMORY_REGION(f.stack, f.stack_size);
#endif
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = f.stack;
      f.ctx.uc_stack.ss_size = f.stack_size;
      f.ctx.uc_link = nullptr;
      makecontext(&f.ctx, fiber_entry, 0);
      f.fake_stack = nullptr;
      f.linear = i;
      f.lane = i % 32;
      f.warp = i / 32;
      f.tid = make_uint3(unsigned(i) % block.x, unsigned(i) / block.x % block.y, unsigned(i) / (block.x * block.y));
      f.wait = Wait::ready;
    }
    dirty_ = false;
  }

  void resume(Fiber& f) {
    cur = &f;
    threadIdx = f.tid;
#ifdef SF_EMU_ASAN
    __sanitizer_start_switch_fiber(&sched_fake_, f.stack, f.stack_size);
#endif
    switch_context(&sched_, &f.ctx);
#ifdef SF_EMU_ASAN
    __sanitizer_finish_switch_fiber(sched_fake_, nullptr, nullptr);
#endif
    cur = nullptr;
  }

  void switch_to_scheduler(Fiber& f) {
#ifdef SF_EMU_ASAN
    __sanitizer_start_switch_fiber(f.wait == Wait::done ? nullptr : &f.fake_stack, sched_bottom_, sched_size_);
#endif
    switch_context(&f.ctx, &sched_);
#ifdef SF_EMU_ASAN
    __sanitizer_finish_switch_fiber(f.fake_stack, nullptr, nullptr);
#endif
  }

  [[noreturn]] void abort_block(const std::string& msg) {
    dirty_ = true;
    throw Error("sfemu: " + msg);
  }

  bool all_done() const {
    for (int i = 0; i < nthreads_; ++i)
      if (fibers_[size_t(i)].wait != Wait::done) return false;
    return true;
  }

  uint32_t existing_lanes(int warp) const {
    int count = nthreads_ - warp * 32;
    return count >= 32 ? 0xffffffffu : (1u << count) - 1u;
  }

  // Completes every warp group whose lanes have all arrived. Returns whether any did.
  bool release_warp_groups() {
    bool released = false;
    for (int w = 0; w * 32 < nthreads_; ++w) {
      const uint32_t exists = existing_lanes(w);
      Fiber* lanes = &fibers_[size_t(w) * 32];
      uint32_t handled = 0;
      for (int l = 0; l < 32; ++l) {
        if (!(exists >> l & 1) || (handled >> l & 1) || lanes[l].wait != Wait::warp) continue;
        const Post& p = lanes[l].post;
        const uint32_t group = p.mask & exists;
        handled |= group;
        Fiber* members[32];
        int count = 0;
        bool complete = true;
        for (int m = 0; m < 32; ++m) {
          if (!(group >> m & 1)) continue;
          Fiber& g = lanes[m];
          if (g.wait == Wait::done)
            abort_block(std::string(p.name) + " with mask " + hex32(p.mask) + " in warp " + std::to_string(w) +
                        " of block " + fmt3(blockIdx) + " waits for lane " + std::to_string(m) + ", which has exited");
          if (g.wait != Wait::warp || (g.post.mask & exists) != group) {
            complete = false;
            continue;
          }
          if (g.post.combine != p.combine)
            abort_block("lanes of warp " + std::to_string(w) + " of block " + fmt3(blockIdx) + " with mask " +
                        hex32(group) + " are in different collectives: lane " + std::to_string(l) + " in " +
                        p.name + ", lane " + std::to_string(m) + " in " + g.post.name);
          members[count++] = &g;
        }
        if (!complete) continue;
        if (const char* err = p.combine(members, count))
          abort_block(std::string(err) + " (warp " + std::to_string(w) + " of block " + fmt3(blockIdx) + ")");
        for (int m = 0; m < count; ++m) members[m]->wait = Wait::ready;
        released = true;
      }
    }
    return released;
  }

  // Every fiber is parked and no warp group can complete: either the whole block waits at one
  // barrier (release it) or the block is stuck (report why).
  void release_block_barrier() {
    const Fiber* first = nullptr;
    int waiting = 0, exited = -1;
    for (int i = 0; i < nthreads_; ++i) {
      const Fiber& f = fibers_[size_t(i)];
      if (f.wait == Wait::block) {
        ++waiting;
        if (!first) first = &f;
      } else if (f.wait == Wait::done && exited < 0) {
        exited = i;
      }
    }
    const bool all_waiting = first && waiting + count_done() == nthreads_;
    if (all_waiting && exited >= 0)
      abort_block("barrier divergence in block " + fmt3(blockIdx) + ": thread " + fmt3(fibers_[size_t(exited)].tid) +
                  " exited while threads wait at " + site(*first) + "\n" + describe());
    if (all_waiting) {
      int count = 0, all = 1, any = 0;
      for (int i = 0; i < nthreads_; ++i) {
        const Fiber& f = fibers_[size_t(i)];
        if (std::strcmp(f.bar_name, first->bar_name) != 0 || f.bar_line != first->bar_line || std::strcmp(f.bar_file, first->bar_file) != 0)
          abort_block("barrier divergence in block " + fmt3(blockIdx) + ": thread " + fmt3(first->tid) + " waits at " +
                      site(*first) + ", thread " + fmt3(f.tid) + " at " + site(f) + "\n" + describe());
        count += f.bar_pred != 0;
        all &= f.bar_pred != 0;
        any |= f.bar_pred != 0;
      }
      for (int i = 0; i < nthreads_; ++i) {
        Fiber& f = fibers_[size_t(i)];
        f.bar_result = std::strcmp(f.bar_name, "__syncthreads_and") == 0   ? all
                       : std::strcmp(f.bar_name, "__syncthreads_or") == 0 ? any
                                                                          : count;
        f.wait = Wait::ready;
      }
      return;
    }
    abort_block("deadlock in block " + fmt3(blockIdx) + " (divergent barrier or warp collective)\n" + describe());
  }

  int count_done() const {
    int d = 0;
    for (int i = 0; i < nthreads_; ++i) d += fibers_[size_t(i)].wait == Wait::done;
    return d;
  }

  static std::string site(const Fiber& f) {
    return std::string(f.bar_name) + " at " + f.bar_file + ":" + std::to_string(f.bar_line);
  }

  static std::string state(const Fiber& f) {
    switch (f.wait) {
      case Wait::done: return "exited";
      case Wait::block: return "wait at " + site(f);
      case Wait::warp: return std::string("wait in ") + f.post.name + " with mask " + hex32(f.post.mask);
      default: return "ready";
    }
  }

  // One line per run of consecutive threads in the same state.
  std::string describe() const {
    std::string out;
    int start = 0;
    for (int i = 1; i <= nthreads_; ++i) {
      if (i < nthreads_ && state(fibers_[size_t(i)]) == state(fibers_[size_t(start)])) continue;
      out += "  threads " + std::to_string(start) + ".." + std::to_string(i - 1) + ": " + state(fibers_[size_t(start)]) + "\n";
      start = i;
    }
    return out;
  }
};

inline Executor& executor() {
  thread_local Executor ex;
  return ex;
}

inline void fiber_entry() {
  executor().entry();
}

// The fiber of the calling kernel thread; a device function called outside a launch throws.
inline Fiber& current(const char* what) {
  Fiber* f = executor().cur;
  if (!f) throw Error(std::string("sfemu: ") + what + " called outside a kernel launch");
  return *f;
}

// Runs every block of a grid. body(ctx) is one kernel thread.
inline void run_grid(dim3 grid, dim3 block, size_t smem, void (*body)(void*), void* ctx) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64)
    throw Error("sfemu: invalid block " + fmt3(make_uint3(block.x, block.y, block.z)) +
                ": expected at most 1024 threads, x,y <= 1024, z <= 64, none zero");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    throw Error("sfemu: invalid grid " + fmt3(make_uint3(grid.x, grid.y, grid.z)) +
                ": expected x in 1..2^31-1, y and z in 1..65535");
  if (smem > 227 * 1024)
    throw Error("sfemu: dynamic shared memory of " + std::to_string(smem) + " bytes exceeds the 227 KiB a block may have");
  const int64_t nblocks = int64_t(grid.x) * grid.y * grid.z;
  auto block_index = [&](int64_t b) {
    return make_uint3(unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / (int64_t(grid.x) * grid.y)));
  };
#if defined(SF_EMU_PARALLEL) && defined(_OPENMP)
  std::string first_error;
  bool failed = false;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t b = 0; b < nblocks; ++b) {
    bool stop;
#pragma omp atomic read
    stop = failed;
    if (stop) continue;
    try {
      executor().run_block(block_index(b), grid, block, smem, body, ctx);
    } catch (const std::exception& e) {
#pragma omp critical(sfemu_error)
      if (!failed) {
        failed = true;
        first_error = e.what();
      }
    }
  }
  if (failed) throw Error(first_error);
#else
  // Static __shared__ arrays are plain statics in this mode: one launch at a time per process.
  static std::mutex one_launch;
  std::lock_guard<std::mutex> lock(one_launch);
  for (int64_t b = 0; b < nblocks; ++b) executor().run_block(block_index(b), grid, block, smem, body, ctx);
#endif
}

}  // namespace detail

// The object SF_LAUNCH returns: calling it with the kernel's arguments runs the grid.
template <class... P>
struct Launch {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t smem;

  template <class... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "sfemu: wrong number of kernel arguments");
    using Args = std::tuple<std::decay_t<P>...>;
    struct Ctx {
      void (*kernel)(P...);
      const Args* args;
    };
    const Args args{std::forward<A>(a)...};  // converted once, like CUDA's parameter buffer
    Ctx ctx{kernel, &args};
    detail::run_grid(grid, block, smem,
                     [](void* c) {
                       const Ctx& x = *static_cast<const Ctx*>(c);
                       Args mine = *x.args;  // each thread owns its copy of the parameters
                       std::apply(x.kernel, mine);
                     },
                     &ctx);
  }
};

template <class... P>
Launch<P...> launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem = 0, cudaStream_t = nullptr) {
  return Launch<P...>{kernel, grid, block, smem};
}

// Pointer to the current block's dynamic shared memory (SF_DYNAMIC_SHARED).
template <class T>
T* dynamic_shared() {
  detail::current("extern __shared__ memory");
  return reinterpret_cast<T*>(detail::executor().dyn_smem);
}

}  // namespace sfemu
