// cuda/matmul.cu's kernels: gemm, linear and linear_i8 on random inputs.
// gemm / linear: the CPU backend's products need oneDNN (not linkable in the portable pass), so the
// reference is a float64 product of the stored (16-bit-rounded) inputs with a float64 epilogue
// (exact erf / tanh / exp): relative L2 <= 1e-5 (f32) / 1e-2 (f16, bf16); NaN fails. Integer-valued
// inputs must give the exactly rounded product bit for bit (every dtype).
// linear_i8: I32 bit for bit against an int64 product; F32 / fake-quant F32 / I8 outputs bit for bit
// against the CPU backend's epilogue (native/cpu/linear_i8.cc, its portable pass, linked in) run on
// the exact accumulators.
// Every case: both tile sizes (BM = 64 through the public entry, BM = 128 forced), all four
// transposes, odd shapes (1, 3, 5, 17, 33, 65, 129, 130: tails of the 64/128 tiles and of BK),
// K = 0, alpha / beta / c (c separate, c == out in place, c given with beta = 0 holding NaN: not
// read), every activation, bias, residual separate and aliased with y; outputs poisoned before
// each call; one call per case repeated and compared bit for bit (determinism). The forms (alpha /
// beta / c, bias / residual, activations of the quantizing outputs) rotate over the transposes and
// shapes, so each dtype and tile meets every form while one run stays well under a minute.
// emu-link: native/cpu/linear_i8.cc
#include "../matmul.cu"
#include "compare.h"

namespace seqfuse::cpu {
using LinearI8RowFn = void (*)(const LinearI8Args& a, const float* col_scale, const int32_t* acc, int64_t row);
LinearI8RowFn linear_i8_row_fn();
}  // namespace seqfuse::cpu

namespace {

using namespace seqfuse;
using namespace cmp;

// n values of dtype t, freed with B: uniform in [-1, 1), or integers in [-2, 2] (`integer`)
void* operand(Buffers& B, DType t, int64_t n, std::mt19937& g, bool integer = false) {
  return B.own(integer ? random_buf(t, n, g, std::uniform_int_distribution<int>(-2, 2)) : random_buf(t, n, g, -1.0f, 1.0f));
}


// ref rounded once to t equals out bit for bit (integer-valued products: exact in f32)
bool same_as_rounded(DType t, const void* out, const std::vector<double>& ref) {
  for (size_t i = 0; i < ref.size(); ++i) {
    unsigned char want[4];
    put(want, t, 0, float(ref[i]));
    if (!same_bytes(static_cast<const unsigned char*>(out) + i * esize(t), want, esize(t))) return false;
  }
  return true;
}

const char* dname(DType t) { return t == DType::F32 ? "f32" : t == DType::F16 ? "f16" : "bf16"; }

struct Stats {
  int cases = 0;
  double worst[3] = {0, 0, 0};  // by dtype F32, F16, BF16
  void note(DType t, double e) {
    double& w = worst[int(t)];
    if (e > w) w = e;
  }
};

const int64_t kShapes[][3] = {{1, 1, 1}, {17, 33, 5}, {130, 3, 64}, {64, 128, 96}, {65, 129, 33},
                              {129, 65, 40}, {3, 130, 17}, {5, 7, 0}};
constexpr int kNumShapes = 8;
const DType kTypes[] = {DType::F32, DType::F16, DType::BF16};
const int kTiles[] = {0, 128};  // 0: the public entry (BM = 64 at these sizes), 128 forced

void check_tol(DType t, double err, Stats& st, const char* what, int64_t m, int64_t n, int64_t k, int extra) {
  const double tol = t == DType::F32 ? 1e-5 : 1e-2;
  st.note(t, err);
  CHECK(err <= tol, "%s %s %lldx%lldx%lld case %d: rel L2 %.3g", what, dname(t), (long long)m, (long long)n, (long long)k, extra, err);
}

void gemm_cases(std::mt19937& g, Stats& st) {
  for (DType t : kTypes)
    for (int si = 0; si < kNumShapes; ++si)
      for (int tile : kTiles)
        for (int tr = 0; tr < 4; ++tr)
          for (int form : {(tr + si) % 4, 4}) {  // 0 plain, 1 alpha beta c, 2 in place, 3 unread c, 4 integer
            const int64_t M = kShapes[si][0], N = kShapes[si][1], K = kShapes[si][2];
            const bool ta = tr & 1, tb = tr & 2, integer = form == 4;
            Buffers B;
            GemmArgs a;
            a.device = Device::CUDA;
            a.dtype = t; a.m = M; a.n = N; a.k = K; a.trans_a = ta; a.trans_b = tb;
            a.a = operand(B, t, M * K, g, integer);
            a.b = operand(B, t, K * N, g, integer);
            void* out = B.own(poisoned_buf(t, M * N, 0x7f));
            a.out = out;
            if (form == 1) { a.alpha = 0.5f; a.beta = 1.5f; a.c = operand(B, t, M * N, g); }
            if (form == 2) {
              a.alpha = -1.0f; a.beta = 2.0f;
              const void* c = operand(B, t, M * N, g);
              std::memcpy(out, c, size_t(M * N) * esize(t));
              a.c = out;
            }
            if (form == 3) { a.alpha = 2.0f; a.beta = 0.0f; a.c = B.own(poisoned_buf(t, M * N, 0xff)); }  // NaN: must not be read
            std::vector<double> ref(size_t(M * N));
            for (int64_t i = 0; i < M; ++i)
              for (int64_t j = 0; j < N; ++j) {
                double s = 0;
                for (int64_t p = 0; p < K; ++p)
                  s += get(a.a, t, ta ? p * M + i : i * K + p) * get(a.b, t, tb ? j * K + p : p * N + j);
                double v = a.alpha * s;
                if (form == 1 || form == 2) v += double(a.beta) * get(form == 1 ? a.c : out, t, i * N + j);
                ref[size_t(i * N + j)] = v;
              }
            if (tile == 0) gemm_cuda(a, Stream{});
            else gemm_tile(a, tile, nullptr);
            device_sync("gemm");
            if (integer) {
              CHECK(same_as_rounded(t, out, ref), "gemm integer %s %lldx%lldx%lld tr %d tile %d: not exact", dname(t),
                    (long long)M, (long long)N, (long long)K, tr, tile);
            } else {
              check_tol(t, rel_l2(out, t, ref, 0, NonFinite::GotNaNFails), st, "gemm", M, N, K, form * 10 + tr);
            }
            if (form == 1) {  // determinism: again into a fresh poisoned buffer
              void* again = B.own(poisoned_buf(t, M * N, 0x7f));
              a.out = again;
              if (tile == 0) gemm_cuda(a, Stream{});
              else gemm_tile(a, tile, nullptr);
              device_sync("gemm again");
              CHECK(same_bits(out, again, M * N, t), "gemm %s: two runs differ", dname(t));
            }
            ++st.cases;
          }
}

void linear_cases(std::mt19937& g, Stats& st) {
  const Activation acts[] = {Activation::None, Activation::Relu, Activation::Gelu, Activation::GeluTanh, Activation::Silu};
  for (DType t : kTypes)
    for (int si = 0; si < kNumShapes; ++si)
      for (int tile : kTiles)
        for (Activation act : acts) {
            const int form = (int(act) + si + tile) % 3;  // 0 bias + residual, 1 residual == y, 2 bias only
            const int64_t M = kShapes[si][0], N = kShapes[si][1], K = kShapes[si][2];
            Buffers B;
            LinearArgs a;
            a.device = Device::CUDA;
            a.dtype = t; a.m = M; a.n = N; a.k = K; a.act = act;
            a.x = operand(B, t, M * K, g);
            a.w = operand(B, t, N * K, g);
            void* y = B.own(poisoned_buf(t, M * N, 0x7f));
            a.y = y;
            if (form != 1) a.bias = operand(B, t, N, g);
            if (form == 0) a.residual = operand(B, t, M * N, g);
            if (form == 1) {
              const void* r = operand(B, t, M * N, g);
              std::memcpy(y, r, size_t(M * N) * esize(t));
              a.residual = y;
            }
            std::vector<double> ref(size_t(M * N));
            for (int64_t i = 0; i < M; ++i)
              for (int64_t j = 0; j < N; ++j) {
                double s = 0;
                for (int64_t p = 0; p < K; ++p) s += get(a.x, t, i * K + p) * get(a.w, t, j * K + p);
                if (a.bias) s += get(a.bias, t, j);
                s = act_ref(act, s);
                if (a.residual) s += get(a.residual, t, i * N + j);
                ref[size_t(i * N + j)] = s;
              }
            if (tile == 0) linear_fwd_cuda(a, Stream{});
            else linear_tile(a, tile, nullptr);
            device_sync("linear");
            check_tol(t, rel_l2(y, t, ref, 0, NonFinite::GotNaNFails), st, "linear", M, N, K, int(act) * 10 + form);
            if (form == 0) {
              void* again = B.own(poisoned_buf(t, M * N, 0x7f));
              a.y = again;
              if (tile == 0) linear_fwd_cuda(a, Stream{});
              else linear_tile(a, tile, nullptr);
              device_sync("linear again");
              CHECK(same_bits(y, again, M * N, t), "linear %s: two runs differ", dname(t));
            }
            ++st.cases;
          }
}

void int8_cases(std::mt19937& g, int& cases) {
  const Activation acts[] = {Activation::None, Activation::Relu, Activation::Gelu, Activation::GeluTanh, Activation::Silu};
  const int64_t shapes[][3] = {{1, 1, 1}, {17, 33, 5}, {130, 3, 64}, {64, 128, 96}, {65, 129, 33},
                               {3, 130, 80}, {129, 17, 200}, {5, 7, 0}};
  const seqfuse::cpu::LinearI8RowFn row_fn = seqfuse::cpu::linear_i8_row_fn();
  std::uniform_int_distribution<int> ub(-128, 127);
  std::uniform_real_distribution<float> uf(-1.0f, 1.0f), uc(0.5f, 1.5f);
  int variant = 0;
  for (auto& sh : shapes)
    for (int tile : kTiles)
      for (DType out : {DType::I32, DType::F32, DType::I8})
        for (int fq = 0; fq < (out == DType::F32 ? 2 : 1); ++fq)
          for (Activation act : out == DType::I32 ? std::vector<Activation>{Activation::None}
                : out == DType::F32 && !fq ? std::vector<Activation>(std::begin(acts), std::end(acts))
                                           : std::vector<Activation>{acts[variant % 5]}) {
            const int64_t M = sh[0], N = sh[1], K = sh[2];
            ++variant;
            LinearI8Args a;
            a.device = Device::CUDA;
            a.out = out; a.m = M; a.n = N; a.k = K; a.act = act;
            int8_t* x = managed<int8_t>(size_t(M * K));
            int8_t* w = managed<int8_t>(size_t(N * K));
            for (int64_t i = 0; i < M * K; ++i) x[i] = int8_t(ub(g));
            for (int64_t i = 0; i < N * K; ++i) w[i] = int8_t(ub(g));
            a.x = x; a.w = w;
            a.x_clip = 2.0f * uc(g);
            float* wclip = managed<float>(size_t(N));
            for (int64_t j = 0; j < N; ++j) wclip[j] = uc(g);
            if (variant % 2) a.w_clip = wclip;
            else a.w_clip_value = uc(g);
            float* bias = managed<float>(size_t(N));
            for (int64_t j = 0; j < N; ++j) bias[j] = uf(g);
            float* res = managed<float>(size_t(M * N));
            for (int64_t i = 0; i < M * N; ++i) res[i] = uf(g);
            const int form = variant % 3;  // 0 bias + residual, 1 residual == y (F32), 2 bias only
            if (out != DType::I32) {
              if (form != 1) a.bias = bias;
              if (form == 0 || (form == 1 && out == DType::I8)) a.residual = res;
              if (out == DType::I8 || fq) a.out_clip = 1.0f + 2.0f * uc(g);
            }
            void* y = managed<unsigned char>(size_t(M * N) * esize(out));
            std::memset(y, 0x7f, size_t(M * N) * esize(out));
            const bool alias = out == DType::F32 && form == 1;
            if (alias) {
              std::memcpy(y, res, size_t(M * N) * 4);
              a.residual = static_cast<const float*>(y);
            }
            a.y = y;
            // references: exact accumulators, then the CPU's epilogue row by row
            std::vector<int32_t> acc(size_t(M * N));
            for (int64_t i = 0; i < M; ++i)
              for (int64_t j = 0; j < N; ++j) {
                int64_t s = 0;
                for (int64_t p = 0; p < K; ++p) s += int64_t(x[i * K + p]) * int64_t(w[j * K + p]);
                acc[size_t(i * N + j)] = int32_t(s);
              }
            std::vector<unsigned char> want(size_t(M * N) * esize(out) + 1);
            if (out == DType::I32) {
              std::memcpy(want.data(), acc.data(), size_t(M * N) * 4);
            } else {
              std::vector<float> cs(static_cast<size_t>(N));
              const float sx = a.x_clip / 127.0f;
              for (int64_t j = 0; j < N; ++j) cs[size_t(j)] = sx * ((a.w_clip ? a.w_clip[j] : a.w_clip_value) / 127.0f);
              LinearI8Args c = a;
              c.device = Device::CPU;
              c.y = want.data();
              if (alias) c.residual = res;
              for (int64_t r = 0; r < M; ++r) row_fn(c, cs.data(), acc.data() + r * N, r);
            }
            if (tile == 0) linear_i8_cuda(a, Stream{});
            else linear_i8_tile(a, tile, nullptr);
            device_sync("linear_i8");
            CHECK(same_bits(y, want.data(), M * N, out),
                  "linear_i8 out %d fq %d act %d form %d %lldx%lldx%lld tile %d: not the CPU's bits", int(out), fq, int(act), form,
                  (long long)M, (long long)N, (long long)K, tile);
            ++cases;
            cudaFree(x); cudaFree(w); cudaFree(wclip); cudaFree(bias); cudaFree(res); cudaFree(y);
          }
}

}  // namespace

int main() {
  std::mt19937 g(20261124);
  Stats st;
  gemm_cases(g, st);
  const int gemm_n = st.cases;
  linear_cases(g, st);
  int i8 = 0;
  int8_cases(g, i8);
  std::printf("matmul: %d gemm + %d linear cases (rel L2 max: f32 %.2e, f16 %.2e, bf16 %.2e), %d linear_i8 cases%s\n",
              gemm_n, st.cases - gemm_n, st.worst[0], st.worst[1], st.worst[2], i8,
              g_failures ? "" : "; integer-valued products exact, int8 outputs bit-identical, reruns identical");
  return finish("matmul");
}
