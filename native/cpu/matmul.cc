// native/cpu/matmul.cc — gemm and linear on CPU through oneDNN matmul (ops/matmul.h).
// Shapes: gemm   a [M,K] (strides {K,1}; [K,M] read with strides {1,M} when trans_a),
//                b [K,N] (strides {N,1}; [N,K] read with strides {1,K} when trans_b), c, out [M,N];
//         linear x [M,K], w [N,K] = oneDNN weights {K,N} in layout `ba`, bias [N] as {1,N},
//                residual, y [M,N]. Transposes are strides, never copies.
// Listed under `common` in sources.txt (compiled once): oneDNN does the SIMD and picks its own
// ISA at run time, so this file has no ISA passes.
//
// Primitives: one per distinct (op, dtype, M, N, K, transposes, bias, activation, residual,
// alpha, beta, thread count) in a bounded LRU shared by all threads. Dims, output scales and
// post-op scales are fixed at creation: runtime values drop oneDNN 2.6 off its fast kernels
// (REFERENCES.md §9). The thread count is part of the key because oneDNN fixes its partitioning
// when the primitive is created. On AVX2 CPUs oneDNN 2.6 runs all of these on `gemm:jit`.
//
// linear fuses everything into one primitive: bias as the matmul bias, the activation as an
// eltwise post-op, the residual as a binary-add post-op. Weights are declared `format_tag::any`;
// when oneDNN wants a layout other than w's own, w is reordered once into the WeightCache
// (one copy per weights memory descriptor) and reused until the owner drops the cache.
// gemm takes plain (strided) operands; beta * c is a sum post-op on out (c copied to out first
// unless out is c), alpha a fixed output scale.
//
// 16-bit dtypes: the bf16 / f16 primitive is tried first (AVX512-BF16 / AVX512-FP16 machines).
// When oneDNN has no implementation (this AVX2 machine: both unimplemented in 2.6.3), inputs are
// converted to f32 (cast_cpu), the f32 primitive runs and the output is rounded once at the end,
// so the epilogue (bias, activation, residual, beta * c) is computed in f32. linear keeps the
// f32 copy of w (reordered) in the WeightCache, so a 16-bit weight is converted once.
//
// linear_i8 runs its product as u8 x s8 -> s32, oneDNN's fast int8 matmul (s8 x s8 is 3-10x
// slower here), on x + 128 as u8: acc = P - 128 colsum(w). Without VNNI, oneDNN multiplies u8 by s8
// with vpmaddubsw, whose int16 sums of two adjacent products saturate above 32767: exact only
// while |w| <= 63 (255 * 63 * 2 = 32130). A weight with larger values is split into one [2N, K]
// weight, w = 64 wh + wl with wh in [-2, 2] and wl in [-32, 31], and acc = 64 Ph + Pl - 128 colsum(w):
// exact at twice the product's work. With AVX512-VNNI (vpdpbusd adds u8 s8 products straight into
// int32) every int8 weight is exact unsplit. The split, the reordered weight and colsum are made
// once per weight in the WeightCache. Then one pass per row block, on the thread that owns it:
// the int32 combine into an L1 row, and the float epilogue (linear_i8.cc) on that row.
#include <dnnl.hpp>
#include <array>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>
#include "core/threads.h"
#include "ops/matmul.h"
#include "ops/tensor_ops.h"

namespace seqfuse {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;

dnnl::engine& cpu_engine() {
  static dnnl::engine* eng = new dnnl::engine(dnnl::engine::kind::cpu, 0);  // never destroyed: libuv threads may outlive statics
  return *eng;
}

// One stream per calling thread (the JS thread and libuv workers): a CPU stream is cheap and
// oneDNN does not promise that one stream may be used by several threads at once.
dnnl::stream& thread_stream() {
  thread_local dnnl::stream s(cpu_engine());
  return s;
}

memory::data_type dnnl_type(DType t) {
  switch (t) {
    case DType::BF16: return memory::data_type::bf16;
    case DType::F16: return memory::data_type::f16;
    default: return memory::data_type::f32;
  }
}

// --- primitive cache -----------------------------------------------------------------------

enum class Op : int64_t { Gemm = 0, Linear = 1, LinearI8 = 2 };

// Every parameter that changes the primitive: op, dtype, m, n, k, trans_a, trans_b, has_bias,
// act, has_residual, alpha bits, beta bits (0 when c is not read), threads.
using PrimKey = std::array<int64_t, 13>;

struct PrimKeyHash {
  size_t operator()(const PrimKey& k) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t v : k) h = (h ^ uint64_t(v)) * 1099511628211ull;
    return size_t(h ^ (h >> 29));
  }
};

int64_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return int64_t(u);
}

struct Prim {
  bool ok = false;  // false: oneDNN has no implementation of this dtype on this CPU
  dnnl::matmul matmul;
  memory::desc src, weights, bias, dst;
  bool plain_weights = false;  // linear: the primitive reads w [N,K] as it is (no reorder)
};
using PrimPtr = std::shared_ptr<const Prim>;

class PrimCache {
 public:
  static constexpr size_t kCapacity = 256;

  // Creation (0.2-10 ms) runs outside the lock; when two threads race, the first insert wins.
  template <class Make>
  PrimPtr get(const PrimKey& key, const Make& make) {
    if (PrimPtr p = find(key)) return p;
    PrimPtr fresh = std::make_shared<const Prim>(make());
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) return it->second->second;
    lru_.emplace_front(key, fresh);
    map_[key] = lru_.begin();
    if (map_.size() > kCapacity) {
      map_.erase(lru_.back().first);
      lru_.pop_back();
    }
    return fresh;
  }

 private:
  PrimPtr find(const PrimKey& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }

  using Entry = std::pair<PrimKey, PrimPtr>;
  std::mutex mu_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<PrimKey, std::list<Entry>::iterator, PrimKeyHash> map_;
};

PrimCache& prim_cache() {
  static PrimCache* c = new PrimCache();  // never destroyed: libuv threads may outlive statics
  return *c;
}

// Builds the primitive, or an empty Prim when a 16-bit dtype is unimplemented here.
// `user_weights`: the layout of the caller's weights, compared with the one oneDNN picked.
Prim make_prim(const dnnl::matmul::desc& d, const dnnl::primitive_attr& attr, memory::data_type t,
               const memory::desc& user_weights) {
  Prim p;
  try {
    dnnl::matmul::primitive_desc pd(d, attr, cpu_engine());
    p.ok = true;
    p.matmul = dnnl::matmul(pd);
    p.src = pd.src_desc();
    p.weights = pd.weights_desc();
    p.bias = pd.bias_desc();
    p.dst = pd.dst_desc();
    p.plain_weights = p.weights == user_weights;
  } catch (const dnnl::error& e) {
    if (e.status != dnnl_unimplemented || t == memory::data_type::f32) throw;
  }
  return p;
}

PrimPtr gemm_prim(const GemmArgs& a, DType t, bool use_c) {
  PrimKey key{int64_t(Op::Gemm), int64_t(t), a.m, a.n, a.k, a.trans_a, a.trans_b, 0, 0, 0,
              float_bits(a.alpha), use_c ? float_bits(a.beta) : 0, get_num_threads()};
  return prim_cache().get(key, [&] {
    memory::data_type dt = dnnl_type(t);
    memory::desc src({a.m, a.k}, dt, a.trans_a ? memory::dims{1, a.m} : memory::dims{a.k, 1});
    memory::desc wei({a.k, a.n}, dt, a.trans_b ? memory::dims{1, a.k} : memory::dims{a.n, 1});
    memory::desc dst({a.m, a.n}, dt, Tag::ab);
    dnnl::primitive_attr attr;
    if (a.alpha != 1.0f) attr.set_output_scales(0, {a.alpha});
    if (use_c) {
      dnnl::post_ops po;
      po.append_sum(a.beta);
      attr.set_post_ops(po);
    }
    return make_prim(dnnl::matmul::desc(src, wei, dst), attr, dt, wei);
  });
}

dnnl::algorithm eltwise_alg(Activation act) {
  switch (act) {
    case Activation::Relu: return dnnl::algorithm::eltwise_relu;
    case Activation::Gelu: return dnnl::algorithm::eltwise_gelu_erf;
    case Activation::GeluTanh: return dnnl::algorithm::eltwise_gelu_tanh;
    default: return dnnl::algorithm::eltwise_swish;  // Silu: x * sigmoid(alpha x), alpha 1
  }
}

memory::desc user_weights_desc(const LinearArgs& a, DType t) { return memory::desc({a.k, a.n}, dnnl_type(t), Tag::ba); }

PrimPtr linear_prim(const LinearArgs& a, DType t) {
  PrimKey key{int64_t(Op::Linear), int64_t(t), a.m, a.n, a.k, 0, 0, a.bias != nullptr, int64_t(a.act),
              a.residual != nullptr, 0, 0, get_num_threads()};
  return prim_cache().get(key, [&] {
    memory::data_type dt = dnnl_type(t);
    memory::desc src({a.m, a.k}, dt, Tag::ab), wei({a.k, a.n}, dt, Tag::any), dst({a.m, a.n}, dt, Tag::ab);
    dnnl::primitive_attr attr;
    dnnl::post_ops po;
    if (a.act != Activation::None) po.append_eltwise(1.0f, eltwise_alg(a.act), a.act == Activation::Silu ? 1.0f : 0.0f, 0.0f);
    if (a.residual) po.append_binary(dnnl::algorithm::binary_add, dst);
    attr.set_post_ops(po);
    memory::desc user = user_weights_desc(a, t);
    if (a.bias) return make_prim(dnnl::matmul::desc(src, wei, memory::desc({1, a.n}, dt, Tag::ab), dst), attr, dt, user);
    return make_prim(dnnl::matmul::desc(src, wei, dst), attr, dt, user);
  });
}

// u8 [M,K] x s8 [K,N] -> s32 [M,N], weights `any`, nothing fused (the epilogue is ours).
PrimPtr linear_i8_prim(int64_t m, int64_t n, int64_t k) {
  PrimKey key{int64_t(Op::LinearI8), 0, m, n, k, 0, 0, 0, 0, 0, 0, 0, get_num_threads()};
  return prim_cache().get(key, [&] {
    memory::desc src({m, k}, memory::data_type::u8, Tag::ab), wei({k, n}, memory::data_type::s8, Tag::any),
        dst({m, n}, memory::data_type::s32, Tag::ab);
    return make_prim(dnnl::matmul::desc(src, wei, dst), dnnl::primitive_attr(), memory::data_type::s32,
                     memory::desc({k, n}, memory::data_type::s8, Tag::ba));
  });
}

// --- helpers -------------------------------------------------------------------------------

memory wrap(const memory::desc& md, const void* p) { return memory(md, cpu_engine(), const_cast<void*>(p)); }

void cast_n(DType from, DType to, const void* src, void* dst, int64_t n) {
  CastArgs c;
  c.src_dtype = from;
  c.dst_dtype = to;
  c.n = n;
  c.src = src;
  c.dst = dst;
  cast_cpu(c);
}

std::unique_ptr<float[]> to_f32_copy(DType t, const void* src, int64_t n) {
  std::unique_ptr<float[]> buf(new float[size_t(n > 0 ? n : 1)]);
  cast_n(t, DType::F32, src, buf.get(), n);
  return buf;
}

// Per-thread memory wrappers of the primitives this thread ran last. Re-pointing a dnnl::memory
// at new data costs ~20 instructions, making one ~2,300 (a small matmul's execute is ~5,500).
struct Wrappers {
  PrimPtr prim;  // held, so no other primitive can take its address while it is listed
  memory src, weights, bias, dst, residual;
};

Wrappers& thread_wrappers(const PrimPtr& p) {
  constexpr int kSlots = 16;
  thread_local std::array<Wrappers, kSlots> slots;
  thread_local int next = 0;
  for (Wrappers& w : slots)
    if (w.prim == p) return w;
  Wrappers& w = slots[size_t(next)];
  next = (next + 1) % kSlots;
  w = Wrappers{p, {}, {}, {}, {}, {}};
  return w;
}

// `m` (a wrapper of layout md) pointed at p.
const memory& point(memory& m, const memory::desc& md, const void* p) {
  if (!m) m = wrap(md, p);
  else m.set_data_handle(const_cast<void*>(p));
  return m;
}

// The arguments of one execute, on the stack (the C++ API's unordered_map costs more than a
// small matmul's fixed overhead); the memories must outlive it.
struct ExecArgs {
  dnnl_exec_arg_t args[6];
  int n = 0;
  void add(int arg, const memory& m) { args[n++] = {arg, m.get()}; }
};

void execute(const dnnl::matmul& m, const ExecArgs& a) {
  dnnl::stream& s = thread_stream();
  dnnl::error::wrap_c_api(dnnl_primitive_execute(m.get(), s.get(), a.n, a.args), "could not execute a primitive");
  s.wait();
}

// gemm: out = op(a) op(b) (+ beta out) with p's plain layouts.
void execute(const PrimPtr& p, const void* a, const void* b, void* out) {
  Wrappers& w = thread_wrappers(p);
  ExecArgs args;
  args.add(DNNL_ARG_SRC, point(w.src, p->src, a));
  args.add(DNNL_ARG_WEIGHTS, point(w.weights, p->weights, b));
  args.add(DNNL_ARG_DST, point(w.dst, p->dst, out));
  execute(p->matmul, args);
}

// oneDNN errors out of a call become typed errors naming the op.
template <class F>
void onednn_call(const char* op, const F& f) {
  try {
    f();
  } catch (const dnnl::error& e) {
    fail(e.status == dnnl_out_of_memory ? ErrorCode::OOM : ErrorCode::Backend, op, ": oneDNN failed: ", e.what());
  }
}

}  // namespace

// --- weight cache ----------------------------------------------------------------------------

struct WeightCache {
  struct Entry {
    memory::desc md;
    memory mem;  // owns its buffer; handles handed out keep it alive past the cache
  };
  mutable std::mutex mu;
  const void* source = nullptr;  // the weights the entries were made from
  std::vector<Entry> entries;
  // linear_i8: the (split) s8 weights in their product layout and 128 colsum(w); n2 = N or 2N.
  struct Int8 {
    memory::desc md;
    memory mem;
    std::shared_ptr<std::vector<int32_t>> comp;
    int64_t n2 = 0;
  };
  std::vector<Int8> int8;
  int64_t bytes = 0;
};

WeightCache* weight_cache_new() { return new WeightCache(); }
void weight_cache_free(WeightCache* c) { delete c; }
int64_t weight_cache_bytes(const WeightCache* c) {
  std::lock_guard<std::mutex> lock(c->mu);
  return c->bytes;
}

namespace {

// c locked (when there is one), emptied first when it was made from other weights than w.
std::unique_lock<std::mutex> lock_cache(WeightCache* c, const void* w) {
  if (!c) return {};
  std::unique_lock<std::mutex> lock(c->mu);
  if (c->source != w) {
    c->entries.clear();
    c->int8.clear();
    c->bytes = 0;
    c->source = w;
  }
  return lock;
}

// w in the layout of p's weights (f32 or the native dtype) for a primitive of dtype `t`: w itself
// when it already is (through `wrapper`), else the cached reordered copy, else a fresh one (kept in
// the cache when there is one).
memory linear_weights(const LinearArgs& a, DType t, const Prim& p, memory& wrapper) {
  const memory::desc& want = p.weights;
  if (t == a.dtype && p.plain_weights) return point(wrapper, want, a.w);
  WeightCache* c = a.weight_cache;
  std::unique_lock<std::mutex> lock = lock_cache(c, a.w);
  if (c) {
    for (const WeightCache::Entry& e : c->entries)
      if (e.md == want) return e.mem;
  }
  std::unique_ptr<float[]> wf;
  const void* src = a.w;
  if (t != a.dtype) {  // 16-bit weights for the f32 primitive
    wf = to_f32_copy(a.dtype, a.w, a.n * a.k);
    src = wf.get();
  }
  memory out(want, cpu_engine());
  memory in = wrap(user_weights_desc(a, t), src);
  dnnl::reorder(in, out).execute(thread_stream(), in, out);
  thread_stream().wait();
  if (c) {
    c->entries.push_back({want, out});
    c->bytes += int64_t(want.get_size());
  }
  return out;
}

// Runs the primitive `pp` of dtype t on f's x, bias, residual, y (already in t); the weights come
// from the user's call `a` (w in a.dtype, and its cache). f.residual == f.y is read from a copy.
void run_linear(const LinearArgs& f, const PrimPtr& pp, DType t, const LinearArgs& a) {
  const Prim& p = *pp;
  Wrappers& w = thread_wrappers(pp);
  memory wei = linear_weights(a, t, p, w.weights);
  ExecArgs args;
  args.add(DNNL_ARG_SRC, point(w.src, p.src, f.x));
  args.add(DNNL_ARG_WEIGHTS, wei);
  args.add(DNNL_ARG_DST, point(w.dst, p.dst, f.y));
  if (f.bias) args.add(DNNL_ARG_BIAS, point(w.bias, p.bias, f.bias));
  std::unique_ptr<uint8_t[]> res_copy;
  if (f.residual) {
    const void* r = f.residual;
    if (r == f.y) {
      size_t bytes = p.dst.get_size();
      res_copy.reset(new uint8_t[bytes]);
      std::memcpy(res_copy.get(), r, bytes);
      r = res_copy.get();
    }
    int idx = f.act != Activation::None ? 1 : 0;
    args.add(DNNL_ARG_ATTR_MULTIPLE_POST_OP(idx) | DNNL_ARG_SRC_1, point(w.residual, p.dst, r));
  }
  execute(p.matmul, args);
}

}  // namespace

// --- int8 ------------------------------------------------------------------------------------

namespace cpu {
// linear_i8.cc: y row `row` from its int32 accumulators acc [N] and col_scale [N] = f32(sx sw[n]).
using LinearI8RowFn = void (*)(const LinearI8Args& a, const float* col_scale, const int32_t* acc, int64_t row);
LinearI8RowFn linear_i8_row_fn();
// linear_i8.cc: acc[m, n] for columns [n0, n1) of a product of few rows, from x16 (x as int16 [M, K]).
using LinearI8SmallFn = void (*)(const LinearI8Args& a, const int16_t* x16, int64_t n0, int64_t n1, int32_t* acc);
LinearI8SmallFn linear_i8_small_fn();
}  // namespace cpu

// Up to this many rows the int8 product runs on our own kernel (linear_i8.cc, exact with any int8
// weight, no packing); above it on oneDNN.
constexpr int64_t kLinearI8SmallM = 16;

namespace {

bool has_vnni() {
  static const bool v = (int(dnnl::get_effective_cpu_isa()) & int(dnnl_cpu_isa_avx512_core_vnni) & ~int(dnnl_cpu_isa_avx512_core)) != 0;
  return v;
}

// w [N,K] as the product's weights: [K, n2] s8 in the layout `want`, and comp[n] = 128 colsum(w).
WeightCache::Int8 make_int8_weights(const LinearI8Args& a, const memory::desc& want, int64_t n2) {
  WeightCache::Int8 e;
  e.md = want;
  e.n2 = n2;
  e.comp = std::make_shared<std::vector<int32_t>>(size_t(a.n));
  std::vector<int8_t> split;
  const int8_t* src = a.w;
  if (n2 != a.n) {  // rows [0, N): wh, rows [N, 2N): wl
    split.resize(size_t(n2 * a.k));
    for (int64_t i = 0; i < a.n * a.k; ++i) {
      const int v = a.w[i], h = (v + 32) >> 6;  // floor((v + 32) / 64)
      split[size_t(i)] = int8_t(h);
      split[size_t(a.n * a.k + i)] = int8_t(v - 64 * h);
    }
    src = split.data();
  }
  for (int64_t j = 0; j < a.n; ++j) {
    int64_t sum = 0;
    for (int64_t t = 0; t < a.k; ++t) sum += a.w[j * a.k + t];
    (*e.comp)[size_t(j)] = int32_t(128 * sum);
  }
  e.mem = memory(want, cpu_engine());
  memory in = wrap(memory::desc({a.k, n2}, memory::data_type::s8, Tag::ba), src);
  dnnl::reorder(in, e.mem).execute(thread_stream(), in, e.mem);
  thread_stream().wait();
  return e;
}

bool needs_split(const LinearI8Args& a) {
  if (has_vnni()) return false;
  for (int64_t i = 0; i < a.n * a.k; ++i)
    if (a.w[i] > 63 || a.w[i] < -63) return true;
  return false;
}

// The weights of a.w for a product of M rows: from the cache when it holds them for this layout.
WeightCache::Int8 linear_i8_weights(const LinearI8Args& a, PrimPtr& prim) {
  WeightCache* c = a.weight_cache;
  std::unique_lock<std::mutex> lock = lock_cache(c, a.w);
  int64_t n2 = c && !c->int8.empty() ? c->int8.front().n2 : 0;
  if (n2 == 0) n2 = needs_split(a) ? 2 * a.n : a.n;
  prim = linear_i8_prim(a.m, n2, a.k);
  if (c)
    for (const WeightCache::Int8& e : c->int8)
      if (e.md == prim->weights) return e;
  WeightCache::Int8 e = make_int8_weights(a, prim->weights, n2);
  if (c) {
    c->int8.push_back(e);
    c->bytes += int64_t(e.md.get_size()) + a.n * 4;
  }
  return e;
}

// Few rows (or K = 0): the exact product on our kernel straight from w, then the epilogue.
void linear_i8_small(const LinearI8Args& a, const float* col_scale, cpu::LinearI8RowFn row_fn) {
  thread_local std::vector<int16_t> x16_buf;
  thread_local std::vector<int32_t> acc_buf;
  const int64_t mk = a.m * a.k, mn = a.m * a.n;
  if (x16_buf.size() < size_t(mk)) x16_buf.resize(size_t(mk));
  if (acc_buf.size() < size_t(mn)) acc_buf.resize(size_t(mn));
  int16_t* __restrict x16 = x16_buf.data();
  const int8_t* __restrict x = a.x;
  for (int64_t i = 0; i < mk; ++i) x16[i] = x[i];
  int32_t* acc = a.out == DType::I32 ? static_cast<int32_t*>(a.y) : acc_buf.data();
  const cpu::LinearI8SmallFn fn = cpu::linear_i8_small_fn();
  parallel_for(a.n, a.m * a.k, [&](int64_t n0, int64_t n1) { fn(a, x16, n0, n1, acc); });
  if (a.out == DType::I32) return;
  parallel_for(a.m, 4 * a.n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) row_fn(a, col_scale, acc + r * a.n, r);
  });
}

}  // namespace

void linear_i8_cpu(const LinearI8Args& a) {
  if (a.m == 0 || a.n == 0) return;
  const char* op = "linearInt8";
  auto finite_pos = [](float v) { return v > 0.0f && v <= 3.4028234663852886e38f; };
  std::vector<float> col_scale;
  if (a.out != DType::I32) {
    if (!finite_pos(a.x_clip)) fail(ErrorCode::Arg, op, ": expected xClip to be finite and > 0 but received ", a.x_clip);
    if ((a.out == DType::I8 || a.out_clip != 0.0f) && !finite_pos(a.out_clip))
      fail(ErrorCode::Arg, op, ": expected outClip to be finite and > 0 but received ", a.out_clip);
    const float sx = a.x_clip / 127.0f;
    col_scale.resize(size_t(a.n));
    for (int64_t j = 0; j < a.n; ++j) {
      const float wc = a.w_clip ? a.w_clip[j] : a.w_clip_value;
      if (!finite_pos(wc)) {
        if (a.w_clip) fail(ErrorCode::Arg, op, ": expected wClip[", j, "] to be finite and > 0 but received ", wc);
        fail(ErrorCode::Arg, op, ": expected wClip to be finite and > 0 but received ", wc);
      }
      col_scale[size_t(j)] = sx * (wc / 127.0f);
    }
  }
  const cpu::LinearI8RowFn row_fn = cpu::linear_i8_row_fn();
  // K = 0 too: our kernel sums nothing (oneDNN 2.6 mishandles K = 0)
  if (a.m <= kLinearI8SmallM || a.k == 0) return linear_i8_small(a, col_scale.data(), row_fn);
  onednn_call(op, [&] {
    PrimPtr prim;
    WeightCache::Int8 w = linear_i8_weights(a, prim);
    // the calling thread's scratch, kept between calls: a fresh 10 MB buffer per call costs its
    // page faults (~2 ms) again every time
    thread_local std::vector<uint8_t> xu_buf;
    thread_local std::vector<int32_t> p_buf;
    const int64_t mk = a.m * a.k;
    if (xu_buf.size() < size_t(mk)) xu_buf.resize(size_t(mk));
    if (p_buf.size() < size_t(a.m * w.n2)) p_buf.resize(size_t(a.m * w.n2));
    uint8_t* xu = xu_buf.data();
    // restrict locals: a uint8_t store may alias anything, so without them the compiler reloads
    // a.x every element and does not vectorize (this loop was 5% of an int8 layer's time)
    parallel_for(mk, 1, [xs = a.x, xu](int64_t i0, int64_t i1) {
      const int8_t* __restrict src = xs;
      uint8_t* __restrict dst = xu;
      for (int64_t i = i0; i < i1; ++i) dst[i] = uint8_t(src[i] ^ int8_t(-128));  // x + 128, as u8
    });
    int32_t* p = p_buf.data();
    Wrappers& wr = thread_wrappers(prim);
    ExecArgs args;
    args.add(DNNL_ARG_SRC, point(wr.src, prim->src, xu));
    args.add(DNNL_ARG_WEIGHTS, w.mem);
    args.add(DNNL_ARG_DST, point(wr.dst, prim->dst, p));
    execute(prim->matmul, args);
    const int32_t* comp = w.comp->data();
    const bool split = w.n2 != a.n;
    parallel_for(a.m, 4 * a.n, [&](int64_t r0, int64_t r1) {
      std::unique_ptr<int32_t[]> acc(new int32_t[size_t(a.n)]);
      const int64_t n = a.n;
      for (int64_t r = r0; r < r1; ++r) {
        const int32_t* __restrict pr = p + r * w.n2;
        const int32_t* __restrict cp = comp;
        int32_t* __restrict out = a.out == DType::I32 ? static_cast<int32_t*>(a.y) + r * n : acc.get();
        if (split)
          for (int64_t j = 0; j < n; ++j) out[j] = 64 * pr[j] + pr[n + j] - cp[j];
        else
          for (int64_t j = 0; j < n; ++j) out[j] = pr[j] - cp[j];
        if (a.out != DType::I32) row_fn(a, col_scale.data(), out, r);
      }
    });
  });
}

// --- entries -------------------------------------------------------------------------------

// oneDNN 2.6 mishandles K = 0 (its weights reorder faults; gemm:jit with `ab` weights adds the
// bias twice), so an empty product runs as K = 1 on zeros: the epilogue stays oneDNN's.
static std::vector<uint8_t> zeros_for_k0(DType t, int64_t m, int64_t n) {
  return std::vector<uint8_t>(size_t((m + n) * dtype_size(t)), 0);
}

void linear_fwd_cpu(const LinearArgs& a) {
  if (a.m == 0 || a.n == 0) return;
  if (a.k == 0) {
    std::vector<uint8_t> z = zeros_for_k0(a.dtype, a.m, a.n);
    LinearArgs one = a;
    one.k = 1;
    one.x = z.data();
    one.w = z.data() + a.m * dtype_size(a.dtype);
    one.weight_cache = nullptr;
    return linear_fwd_cpu(one);
  }
  onednn_call("linear", [&] {
    PrimPtr p = linear_prim(a, a.dtype);
    if (p->ok) return run_linear(a, p, a.dtype, a);
    // 16-bit fallback: f32 copies in, one rounding out
    PrimPtr pf = linear_prim(a, DType::F32);
    std::unique_ptr<float[]> xf = to_f32_copy(a.dtype, a.x, a.m * a.k), yf(new float[size_t(a.m * a.n)]), bf, rf;
    LinearArgs f = a;
    f.dtype = DType::F32;
    f.x = xf.get();
    f.y = yf.get();
    if (a.bias) f.bias = (bf = to_f32_copy(a.dtype, a.bias, a.n)).get();
    if (a.residual) f.residual = (rf = to_f32_copy(a.dtype, a.residual, a.m * a.n)).get();
    run_linear(f, pf, DType::F32, a);
    cast_n(DType::F32, a.dtype, yf.get(), a.y, a.m * a.n);
  });
}

void gemm_cpu(const GemmArgs& a) {
  if (a.m == 0 || a.n == 0) return;
  if (a.k == 0) {
    std::vector<uint8_t> z = zeros_for_k0(a.dtype, a.m, a.n);
    GemmArgs one = a;
    one.k = 1;
    one.a = z.data();
    one.b = z.data() + a.m * dtype_size(a.dtype);
    return gemm_cpu(one);
  }
  const bool use_c = a.c != nullptr && a.beta != 0.0f;
  onednn_call("gemm", [&] {
    PrimPtr p = gemm_prim(a, a.dtype, use_c);
    const int64_t mn = a.m * a.n;
    if (p->ok) {
      if (use_c && a.c != a.out) std::memcpy(a.out, a.c, size_t(mn * dtype_size(a.dtype)));
      return execute(p, a.a, a.b, a.out);
    }
    // 16-bit fallback: f32 copies in (out starts as c), one rounding out
    PrimPtr pf = gemm_prim(a, DType::F32, use_c);
    std::unique_ptr<float[]> af = to_f32_copy(a.dtype, a.a, a.m * a.k), bf = to_f32_copy(a.dtype, a.b, a.k * a.n);
    std::unique_ptr<float[]> of = use_c ? to_f32_copy(a.dtype, a.c, mn) : std::unique_ptr<float[]>(new float[size_t(mn)]);
    execute(pf, af.get(), bf.get(), of.get());
    cast_n(DType::F32, a.dtype, of.get(), a.out, mn);
  });
}

}  // namespace seqfuse
