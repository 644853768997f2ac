// cuda/attention.cu against the CPU backend (native/cpu/attention.cc and attention_bwd.cc, their
// portable pass, linked in) and, for f32, against a float64 reference written here (the
// contract of ops/attention.h evaluated directly, dropout masks from core/philox.h's philox_h16_at).
// Random inputs; GQA (H / Hkv = 2, 4), MQA, Sq != Sk, decode (Sq = 1), Sq > Sk with causal (rows
// that see nothing), sizes off every tile (1, 3, 17, 33, 70), D in {8, 24, 64, 72, 136} (136 > 128
// takes the dK/dV kernel's narrow tiles), causal on/off, kv_lengths with zeros, bias full / broadcast
// / with -inf entries and a fully hidden row, dropout 0 / 0.1, every dtype; forward out + lse and
// backward dq/dk/dv (the backward's out and lse are the CPU forward's). Outputs are poisoned (NaN)
// before each call. Bounds (relative L2): f32 1e-5 against the CPU and the float64 reference,
// f16/bf16 1e-2 against the CPU. Also degenerate sizes (Sk = 0, Sq = 0) and NaN propagation.
// emu-link: native/cpu/attention.cc native/cpu/attention_bwd.cc native/core/threads.cc
#include "../attention.cu"
#include "compare.h"

namespace {

using namespace cmp;
using seqfuse::AttentionArgs;

// The denominator has a floor, an RMS of `floor` per element: outputs that are zero in exact
// arithmetic (one visible key: dS = P (dP - delta) = 0, so dq = dk = 0) are rounding noise on both
// sides. dq and dk use 0.1 x the RMS of the CPU's dv (the size of the terms they are made of),
// everything else 1e-3.
double rms(const void* a, DType t, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += get(a, t, i) * get(a, t, i);
  return n > 0 ? std::sqrt(s / double(n)) : 0.0;
}

// Relative L2 distance of got from want with that floor (positions where both are NaN, or both
// -inf, are skipped; any other NaN / inf mismatch gives +inf).
double rel_err(const void* got, DType t, const std::vector<double>& want, double floor = 1e-3) {
  return rel_l2_sums(got, t, want, NonFinite::Agree).value_rms(floor);
}

// The contract in float64: out, lse, and (given dout) dq, dk, dv.
struct Ref {
  std::vector<double> out, lse, dq, dk, dv;
};

Ref reference(const AttentionArgs& a, const float* dout) {
  const int64_t B = a.B, H = a.H, Hkv = a.Hkv, Sq = a.Sq, Sk = a.Sk, D = a.D, G = H / Hkv;
  Ref r;
  r.out.assign(size_t(B * H * Sq * D), 0.0);
  r.lse.assign(size_t(B * H * Sq), -INFINITY);
  r.dq.assign(size_t(B * H * Sq * D), 0.0);
  r.dk.assign(size_t(B * Hkv * Sk * D), 0.0);
  r.dv.assign(size_t(B * Hkv * Sk * D), 0.0);
  const uint32_t t = seqfuse::dropout_threshold(a.dropout);
  const double ks = seqfuse::dropout_scale(t);
  const float* q = static_cast<const float*>(a.q);
  const float* k = static_cast<const float*>(a.k);
  const float* v = static_cast<const float*>(a.v);
  std::vector<double> s(static_cast<size_t>(Sk)), pr(static_cast<size_t>(Sk)), kp(static_cast<size_t>(Sk));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Sq; ++i) {
        const int64_t hk = h / G, row = (b * H + h) * Sq + i;
        const float* qi = q + row * D;
        int64_t end = a.kv_lengths ? a.kv_lengths[b] : Sk;
        if (a.causal && i + Sk - Sq + 1 < end) end = i + Sk - Sq + 1;
        double mx = -INFINITY;
        for (int64_t j = 0; j < std::max<int64_t>(end, 0); ++j) {
          const float* kj = k + ((b * Hkv + hk) * Sk + j) * D;
          double d = 0;
          for (int64_t c = 0; c < D; ++c) d += double(qi[c]) * kj[c];
          d *= a.scale;
          if (a.bias) d += a.bias[b * a.bias_stride[0] + h * a.bias_stride[1] + i * a.bias_stride[2] + j * a.bias_stride[3]];
          s[size_t(j)] = d;
          mx = std::max(mx, d);
        }
        if (end <= 0 || mx == -INFINITY) continue;  // no key visible: out 0, lse -inf, no gradient
        double l = 0;
        for (int64_t j = 0; j < end; ++j) l += std::exp(s[size_t(j)] - mx);
        const double lse = mx + std::log(l);
        r.lse[size_t(row)] = lse;
        for (int64_t j = 0; j < end; ++j) {
          pr[size_t(j)] = std::exp(s[size_t(j)] - lse);
          const bool keep = t == 0 || seqfuse::philox_h16_at(uint64_t(row) * uint64_t(Sk) + uint64_t(j), a.seed) >= t;
          kp[size_t(j)] = keep ? ks : 0.0;
        }
        double* o = r.out.data() + row * D;
        for (int64_t j = 0; j < end; ++j) {
          const float* vj = v + ((b * Hkv + hk) * Sk + j) * D;
          for (int64_t c = 0; c < D; ++c) o[c] += kp[size_t(j)] * pr[size_t(j)] * vj[c];
        }
        if (!dout) continue;
        const float* g = dout + row * D;
        double delta = 0;
        for (int64_t c = 0; c < D; ++c) delta += double(g[c]) * o[c];
        for (int64_t j = 0; j < end; ++j) {
          const float* kj = k + ((b * Hkv + hk) * Sk + j) * D;
          const float* vj = v + ((b * Hkv + hk) * Sk + j) * D;
          double d = 0;
          for (int64_t c = 0; c < D; ++c) d += double(g[c]) * vj[c];
          const double dpv = kp[size_t(j)] * d, ds = pr[size_t(j)] * (dpv - delta);
          double* dkj = r.dk.data() + ((b * Hkv + hk) * Sk + j) * D;
          double* dvj = r.dv.data() + ((b * Hkv + hk) * Sk + j) * D;
          for (int64_t c = 0; c < D; ++c) {
            r.dq[size_t(row * D + c)] += a.scale * ds * kj[c];
            dkj[c] += a.scale * ds * qi[c];
            dvj[c] += kp[size_t(j)] * pr[size_t(j)] * g[c];
          }
        }
      }
  return r;
}

struct Shape {
  int64_t B, H, Hkv, Sq, Sk, D;
  int bias;    // 0 none, 1 full [B, H, Sq, Sk] with -inf entries, 2 broadcast [1, H, 1, Sk], 3 [B, 1, Sq, 1]
  bool kvlen;  // random lengths, batch row 0 has 0
};

// The forward on both backends: the CPU into out_c / lse_c, CUDA into out_g / lse_g.
void forward_both(AttentionArgs& a, void* out_c, float* lse_c, void* out_g, float* lse_g) {
  a.device = seqfuse::Device::CPU;
  a.out = out_c; a.lse = lse_c;
  seqfuse::attention_fwd_cpu(a);
  a.device = seqfuse::Device::CUDA;
  a.out = out_g; a.lse = lse_g;
  seqfuse::attention_fwd_cuda(a, seqfuse::Stream{});
  device_sync("attention forward");
}

double g_max_err[2][3] = {};  // [fwd, bwd][dtype] worst relative L2 against the CPU
double g_max_ref[2] = {};     // f32 against the float64 reference

void check_err(const char* what, double e, double tol, const char* desc) {
  CHECK(e <= tol, "%s: rel L2 %.3g > %.3g (%s)", what, e, tol, desc);
}

void run_case(const Shape& sh, DType t, bool causal, float drop, std::mt19937& g, int& cases) {
  const int64_t B = sh.B, H = sh.H, Hkv = sh.Hkv, Sq = sh.Sq, Sk = sh.Sk, D = sh.D;
  const int64_t nq = B * H * Sq * D, nk = B * Hkv * Sk * D, nl = B * H * Sq;
  char desc[256];
  std::snprintf(desc, sizeof desc, "dtype %d B %ld H %ld Hkv %ld Sq %ld Sk %ld D %ld causal %d bias %d kvlen %d p %g", int(t),
                long(B), long(H), long(Hkv), long(Sq), long(Sk), long(D), int(causal), sh.bias, int(sh.kvlen), double(drop));
  AttentionArgs a;
  a.dtype = t; a.B = B; a.H = H; a.Hkv = Hkv; a.Sq = Sq; a.Sk = Sk; a.D = D;
  a.q = random_buf(t, nq, g, -2.0f, 2.0f);
  a.k = random_buf(t, nk, g, -2.0f, 2.0f);
  a.v = random_buf(t, nk, g, -2.0f, 2.0f);
  a.scale = 1.0f / std::sqrt(float(D));
  a.causal = causal;
  a.dropout = drop;
  a.seed = 0x9e3779b97f4a7c15ull + uint64_t(cases);
  int32_t* len = nullptr;
  if (sh.kvlen) {
    len = managed<int32_t>(size_t(B));
    std::uniform_int_distribution<int> u(0, int(Sk));
    for (int64_t b = 0; b < B; ++b) len[b] = b == 0 ? 0 : u(g);
    if (B > 1) len[B - 1] = int32_t(Sk);
    a.kv_lengths = len;
  }
  float* bias = nullptr;
  if (sh.bias) {
    const int64_t dims[4][4] = {{0, 0, 0, 0}, {B, H, Sq, Sk}, {1, H, 1, Sk}, {B, 1, Sq, 1}};
    const int64_t* d = dims[sh.bias];
    const int64_t n = d[0] * d[1] * d[2] * d[3];
    bias = static_cast<float*>(random_buf(DType::F32, n, g, -1.0f, 1.0f));
    if (sh.bias == 1) {
      for (int64_t i = 0; i < n; i += 7) bias[i] = -INFINITY;  // hidden keys
      for (int64_t j = 0; j < Sk && Sq > 1; ++j) bias[Sk + j] = -INFINITY;  // row (0, 0, 1) sees nothing
    }
    int64_t st = 1;
    for (int k = 3; k >= 0; --k) {
      a.bias_stride[k] = d[k] == 1 ? 0 : st;
      st *= d[k];
    }
    a.bias = bias;
  }
  // forward
  void* out_c = poisoned_buf(t, nq, 0xff);
  float* lse_c = static_cast<float*>(poisoned_buf(DType::F32, nl, 0xff));
  void* out_g = poisoned_buf(t, nq, 0xff);
  float* lse_g = static_cast<float*>(poisoned_buf(DType::F32, nl, 0xff));
  forward_both(a, out_c, lse_c, out_g, lse_g);
  const double tol = t == DType::F32 ? 1e-5 : 1e-2;
  const int ti = t == DType::F32 ? 0 : t == DType::F16 ? 1 : 2;
  const double eo = rel_err(out_g, t, values(out_c, t, nq)), el2 = rel_err(lse_g, DType::F32, values(lse_c, DType::F32, nl));
  check_err("forward out", eo, tol, desc);
  check_err("forward lse", el2, t == DType::F32 ? 1e-5 : 1e-3, desc);
  g_max_err[0][ti] = std::max({g_max_err[0][ti], eo, el2});
  // backward, from the CPU's out and lse
  void* dout = random_buf(t, nq, g, -2.0f, 2.0f);
  void* dq_c = poisoned_buf(t, nq, 0xff);
  void* dk_c = poisoned_buf(t, nk, 0xff);
  void* dv_c = poisoned_buf(t, nk, 0xff);
  void* dq_g = poisoned_buf(t, nq, 0xff);
  void* dk_g = poisoned_buf(t, nk, 0xff);
  void* dv_g = poisoned_buf(t, nk, 0xff);
  a.out = out_c; a.lse = lse_c; a.dout = dout;
  a.device = seqfuse::Device::CPU;
  a.dq = dq_c; a.dk = dk_c; a.dv = dv_c;
  seqfuse::attention_bwd_cpu(a);
  a.device = seqfuse::Device::CUDA;
  a.dq = dq_g; a.dk = dk_g; a.dv = dv_g;
  seqfuse::attention_bwd_cuda(a, seqfuse::Stream{});
  device_sync("attention backward");
  const double btol = t == DType::F32 ? 1e-5 : 1e-2;
  const double fl = std::max(1e-3, 0.1 * rms(dv_c, t, nk));
  const double eq = rel_err(dq_g, t, values(dq_c, t, nq), fl), ek = rel_err(dk_g, t, values(dk_c, t, nk), fl),
               ev = rel_err(dv_g, t, values(dv_c, t, nk));
  check_err("backward dq", eq, btol, desc);
  check_err("backward dk", ek, btol, desc);
  check_err("backward dv", ev, btol, desc);
  g_max_err[1][ti] = std::max({g_max_err[1][ti], eq, ek, ev});
  if (t == DType::F32) {
    const Ref r = reference(a, static_cast<const float*>(dout));
    const double ro = rel_err(out_g, t, r.out), rl = rel_err(lse_g, DType::F32, r.lse);
    const double rq = rel_err(dq_g, t, r.dq, fl), rk = rel_err(dk_g, t, r.dk, fl), rv = rel_err(dv_g, t, r.dv);
    check_err("forward out vs float64", ro, 1e-5, desc);
    check_err("forward lse vs float64", rl, 1e-5, desc);
    check_err("backward dq vs float64", rq, 1e-5, desc);
    check_err("backward dk vs float64", rk, 1e-5, desc);
    check_err("backward dv vs float64", rv, 1e-5, desc);
    g_max_ref[0] = std::max({g_max_ref[0], ro, rl});
    g_max_ref[1] = std::max({g_max_ref[1], rq, rk, rv});
  }
  for (const void* p : {a.q, a.k, a.v, static_cast<const void*>(len), static_cast<const void*>(bias), static_cast<const void*>(out_c),
                        static_cast<const void*>(lse_c), static_cast<const void*>(out_g), static_cast<const void*>(lse_g),
                        static_cast<const void*>(dout), static_cast<const void*>(dq_c), static_cast<const void*>(dk_c),
                        static_cast<const void*>(dv_c), static_cast<const void*>(dq_g), static_cast<const void*>(dk_g),
                        static_cast<const void*>(dv_g)})
    if (p) cudaFree(const_cast<void*>(p));
  ++cases;
}

// Degenerate sizes: Sk = 0 (out 0, lse -inf, dq 0) and Sq = 0 (dk = dv = 0), outputs poisoned.
void degenerate(int& cases) {
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (int form = 0; form < 2; ++form) {
      AttentionArgs a;
      a.device = seqfuse::Device::CUDA;
      a.dtype = t; a.B = 2; a.H = 4; a.Hkv = 2; a.D = 24; a.scale = 0.2f;
      a.Sq = form == 0 ? 5 : 0;
      a.Sk = form == 0 ? 0 : 7;
      const int64_t nq = a.B * a.H * a.Sq * a.D, nk = a.B * a.Hkv * a.Sk * a.D, nl = a.B * a.H * a.Sq;
      std::mt19937 g(5);
      a.q = random_buf(t, nq, g, -2.0f, 2.0f);
      a.k = random_buf(t, nk, g, -2.0f, 2.0f);
      a.v = random_buf(t, nk, g, -2.0f, 2.0f);
      void* out = poisoned_buf(t, nq, 0xff);
      float* lse = static_cast<float*>(poisoned_buf(DType::F32, nl, 0xff));
      a.out = out; a.lse = lse;
      seqfuse::attention_fwd_cuda(a, seqfuse::Stream{});
      device_sync("attention forward, degenerate");
      bool ok = true;
      for (int64_t i = 0; i < nq; ++i) ok = ok && get(out, t, i) == 0.0f;
      for (int64_t i = 0; i < nl; ++i) ok = ok && lse[i] == -INFINITY;
      CHECK(ok, "degenerate forward Sq %ld Sk %ld dtype %d", long(a.Sq), long(a.Sk), int(t));
      a.dout = random_buf(t, nq, g, -2.0f, 2.0f);
      void* dq = poisoned_buf(t, nq, 0xff);
      void* dk = poisoned_buf(t, nk, 0xff);
      void* dv = poisoned_buf(t, nk, 0xff);
      a.dq = dq; a.dk = dk; a.dv = dv;
      seqfuse::attention_bwd_cuda(a, seqfuse::Stream{});
      device_sync("attention backward, degenerate");
      ok = true;
      for (int64_t i = 0; i < nq; ++i) ok = ok && get(dq, t, i) == 0.0f;
      for (int64_t i = 0; i < nk; ++i) ok = ok && get(dk, t, i) == 0.0f && get(dv, t, i) == 0.0f;
      CHECK(ok, "degenerate backward Sq %ld Sk %ld dtype %d", long(a.Sq), long(a.Sk), int(t));
      for (const void* p : {a.q, a.k, a.v, a.dout, static_cast<const void*>(out), static_cast<const void*>(lse),
                            static_cast<const void*>(dq), static_cast<const void*>(dk), static_cast<const void*>(dv)})
        cudaFree(const_cast<void*>(p));
      ++cases;
    }
  }
}

// A NaN in one query row: that row's out and lse are NaN (as the CPU's), the others finite and equal.
void nan_rows(int& cases) {
  std::mt19937 g(11);
  AttentionArgs a;
  a.dtype = DType::F32; a.B = 1; a.H = 2; a.Hkv = 1; a.Sq = 9; a.Sk = 20; a.D = 16; a.scale = 0.25f;
  const int64_t nq = a.H * a.Sq * a.D, nk = a.Sk * a.D, nl = a.H * a.Sq;
  a.q = random_buf(a.dtype, nq, g, -2.0f, 2.0f);
  a.k = random_buf(a.dtype, nk, g, -2.0f, 2.0f);
  a.v = random_buf(a.dtype, nk, g, -2.0f, 2.0f);
  static_cast<float*>(const_cast<void*>(a.q))[3 * a.D + 5] = NAN;  // head 0, row 3
  float* out_c = static_cast<float*>(poisoned_buf(DType::F32, nq, 0xff));
  float* lse_c = static_cast<float*>(poisoned_buf(DType::F32, nl, 0xff));
  float* out_g = static_cast<float*>(poisoned_buf(DType::F32, nq, 0xff));
  float* lse_g = static_cast<float*>(poisoned_buf(DType::F32, nl, 0xff));
  forward_both(a, out_c, lse_c, out_g, lse_g);
  bool ok = true;
  for (int64_t r = 0; r < nl; ++r) {
    const bool want = r == 3;
    ok = ok && std::isnan(lse_g[r]) == want && std::isnan(lse_c[r]) == want;
    for (int64_t c = 0; c < a.D; ++c) ok = ok && std::isnan(out_g[r * a.D + c]) == want;
  }
  CHECK(ok, "NaN row: only row 3's out and lse are NaN");
  CHECK(rel_err(out_g, DType::F32, values(out_c, DType::F32, nq)) <= 1e-5, "NaN case: the finite rows match the CPU");
  for (const void* p : {a.q, a.k, a.v, static_cast<const void*>(out_c), static_cast<const void*>(lse_c),
                        static_cast<const void*>(out_g), static_cast<const void*>(lse_g)})
    cudaFree(const_cast<void*>(p));
  ++cases;
}

}  // namespace

int main() {
  std::mt19937 g(20261125);
  const Shape shapes[] = {
      {1, 1, 1, 1, 1, 8, 0, false},     // one query, one key
      {2, 4, 2, 17, 33, 24, 1, false},  // GQA 2, full bias with -inf
      {2, 4, 1, 1, 70, 64, 0, true},    // MQA decode, kv_lengths with 0
      {1, 2, 2, 70, 17, 8, 2, false},   // Sq > Sk (causal rows that see nothing), broadcast bias
      {2, 8, 2, 3, 3, 24, 3, true},     // GQA 4, bias broadcast over keys, kv_lengths
      {1, 2, 1, 33, 70, 72, 0, false},  // D 72: Dp 80, several key tiles
      {1, 1, 1, 17, 40, 136, 1, true},  // D 136 > 128: the dK/dV kernel's 32-key tiles
  };
  int cases = 0;
  for (const Shape& sh : shapes)
    for (DType t : {DType::F32, DType::F16, DType::BF16})
      for (bool causal : {false, true})
        for (float p : {0.0f, 0.1f}) run_case(sh, t, causal, p, g, cases);
  degenerate(cases);
  nan_rows(cases);
  std::printf("attention: %d cases; worst rel L2 vs CPU: fwd f32 %.2g f16 %.2g bf16 %.2g, bwd f32 %.2g f16 %.2g bf16 %.2g; "
              "f32 vs float64: fwd %.2g bwd %.2g\n",
              cases, g_max_err[0][0], g_max_err[0][1], g_max_err[0][2], g_max_err[1][0], g_max_err[1][1], g_max_err[1][2],
              g_max_ref[0], g_max_ref[1]);
  return finish("attention");
}
