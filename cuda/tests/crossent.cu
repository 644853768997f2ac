// cuda/crossent.cu against the CPU backend (native/cpu/crossent.cc, its portable pass, linked in)
// and a float64 reference. The CPU's exp is its own polynomial and its sums run in another order,
// so lse, losses, MiLe weights, stats and dlogits are compared by relative L2: <= 1e-5 for f32
// values (everything the forward writes is f32 or f64), dlogits <= 1e-5 in f32 and <= 1e-2 in
// f16/bf16 (against both the CPU and float64). Random logits, odd and vector-aligned vocabularies
// (1 .. 20000 classes: every block size of the row kernel, scalar and 16-byte paths, several
// backward column chunks), every dtype, smoothing 0 / 0.1, MiLe off / on (one row per shape with
// probabilities below MiLe's clamp: its second pass), Mean / Sum / None, ignored rows, losses
// given or not; the forward runs twice (bit-identical), the backward also in place (bit-identical
// to out of place). Special rows (-Inf logit, NaN, all -Inf) and an all-ignored batch are checked
// value by value.
// emu-link: native/cpu/crossent.cc native/core/threads.cc
#include "../crossent.cu"
#include "compare.h"

namespace {

using namespace cmp;
using seqfuse::CrossEntropyArgs;
using seqfuse::Reduction;

struct Outputs {
  float *lse, *losses, *weights, *dx;
  double stats[2];
};

// The float64 reference of the forward and backward (ops/crossent.h).
struct Reference {
  std::vector<double> lse, losses, eff, dx;
  double stats[2];
};

Reference reference(const CrossEntropyArgs& a) {
  const int64_t n = a.cols;
  Reference r;
  r.lse.assign(size_t(a.rows), 0.0);
  r.losses.assign(size_t(a.rows), 0.0);
  r.eff.assign(size_t(a.rows), 0.0);
  r.dx.assign(size_t(a.rows * n), 0.0);
  std::vector<double> ce(size_t(a.rows), 0.0), w(size_t(a.rows), 0.0);
  double wsum = 0;
  for (int64_t i = 0; i < a.rows; ++i) {
    if (a.targets[i] == a.ignore_index) continue;
    double mx = -INFINITY, sx = 0, s = 0;
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, get(a.logits, a.dtype, i * n + j)), sx += get(a.logits, a.dtype, i * n + j);
    for (int64_t j = 0; j < n; ++j) s += std::exp(get(a.logits, a.dtype, i * n + j) - mx);
    const double lse = mx + std::log(s), eps = a.smoothing;
    r.lse[size_t(i)] = lse;
    const double nll = lse - get(a.logits, a.dtype, i * n + a.targets[i]);
    ce[size_t(i)] = eps > 0 ? (1 - eps) * nll + eps * (lse - sx / double(n)) : nll;
    double h = 0;
    for (int64_t j = 0; j < n; ++j) {
      const double q = std::max(std::exp(get(a.logits, a.dtype, i * n + j) - lse), 1e-8);
      h -= q * std::log(q);
    }
    w[size_t(i)] = a.mile ? std::pow(a.sigma + h, a.gamma) : 1.0;
    wsum += w[size_t(i)];
  }
  const double alpha = a.mile && a.count > 0 ? double(a.count) / wsum : 1.0;
  double loss = 0;
  for (int64_t i = 0; i < a.rows; ++i) {
    if (a.targets[i] == a.ignore_index) continue;
    r.eff[size_t(i)] = alpha * w[size_t(i)];
    r.losses[size_t(i)] = r.eff[size_t(i)] * ce[size_t(i)];
    loss += r.losses[size_t(i)];
  }
  r.stats[0] = a.reduction == Reduction::Sum ? loss : a.count > 0 ? loss / double(a.count) : 0.0;
  r.stats[1] = double(a.count);
  const double scale = a.dloss * (a.reduction != Reduction::Mean ? 1.0 : a.count > 0 ? 1.0 / double(a.count) : 0.0);
  for (int64_t i = 0; i < a.rows; ++i) {
    if (a.targets[i] == a.ignore_index) continue;
    const double c = scale * r.eff[size_t(i)];
    for (int64_t j = 0; j < n; ++j)
      r.dx[size_t(i * n + j)] = c * (std::exp(get(a.logits, a.dtype, i * n + j) - r.lse[size_t(i)]) -
                                     (j == a.targets[i] ? 1 - double(a.smoothing) : 0.0) - double(a.smoothing) / double(n));
  }
  return r;
}

// Forward (twice on CUDA: the same bits) and backward (out of place and in place on CUDA).
void run(CrossEntropyArgs a, Outputs& o, bool cuda, void* dx) {
  o.lse = static_cast<float*>(poisoned_buf(DType::F32, a.rows));
  o.losses = a.losses ? static_cast<float*>(poisoned_buf(DType::F32, a.rows)) : nullptr;
  o.weights = a.mile ? static_cast<float*>(poisoned_buf(DType::F32, a.rows)) : nullptr;
  a.lse = o.lse; a.losses = o.losses; a.weights = o.weights; a.stats = o.stats;
  o.stats[0] = o.stats[1] = -7;
  a.lse_in = o.lse; a.weights_in = o.weights; a.dlogits = dx;
  if (!cuda) {
    seqfuse::crossent_fwd_cpu(a);
    seqfuse::crossent_bwd_cpu(a);
    return;
  }
  a.device = seqfuse::Device::CUDA;
  seqfuse::crossent_fwd_cuda(a, seqfuse::Stream{});
  device_sync("crossent forward");
  std::vector<float> lse1(o.lse, o.lse + a.rows), w1(a.mile ? o.weights : o.lse, (a.mile ? o.weights : o.lse) + a.rows);
  const double s1[2] = {o.stats[0], o.stats[1]};
  seqfuse::crossent_fwd_cuda(a, seqfuse::Stream{});
  device_sync("crossent forward again");
  CHECK(same_bits(lse1.data(), o.lse, a.rows, DType::F32) && same_bytes(s1, o.stats, sizeof s1) &&
            same_bits(w1.data(), a.mile ? o.weights : o.lse, a.rows, DType::F32),
        "forward twice: different bits (rows %ld cols %ld)", long(a.rows), long(a.cols));
  seqfuse::crossent_bwd_cuda(a, seqfuse::Stream{});
  device_sync("crossent backward");
}

void free_outputs(Outputs& o) {
  for (void* p : {static_cast<void*>(o.lse), static_cast<void*>(o.losses), static_cast<void*>(o.weights)})
    if (p) cudaFree(p);
}

}  // namespace

int main() {
  std::mt19937 g(20261124);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {17, 33}, {5, 130}, {4, 1000}, {3, 4096}, {2, 2056}, {2, 20000}};
  int cases = 0;
  double worst[3] = {0, 0, 0};  // forward values, f32 dlogits, 16-bit dlogits (max rel L2 seen, against float64)
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (auto& sh : shapes)
      for (float eps : {0.0f, 0.1f})
        for (int mile = 0; mile < 2; ++mile) {
          const int64_t rows = sh[0], cols = sh[1], n = rows * cols;
          CrossEntropyArgs a;
          a.dtype = t; a.rows = rows; a.cols = cols; a.smoothing = eps; a.mile = mile;
          a.gamma = mile ? 1.5 : 1.0; a.sigma = 0.5;
          a.reduction = Reduction(cases % 3);
          a.dloss = 0.75;
          void* x = managed<unsigned char>(size_t(n) * esize(t));
          for (int64_t i = 0; i < n; ++i) put(x, t, i, i / cols == 2 ? 15.0f * u(g) : u(g));  // row 2: p below 1e-8
          int32_t* y = managed<int32_t>(size_t(rows));
          a.count = 0;
          for (int64_t i = 0; i < rows; ++i) {
            y[i] = rows > 1 && i % 3 == 1 ? a.ignore_index : int32_t(g() % uint32_t(cols));
            a.count += y[i] != a.ignore_index;
          }
          a.logits = x; a.targets = y;
          float* keep_losses = reinterpret_cast<float*>(1);  // any non-null: the run gives its own buffer
          a.losses = cases % 4 == 3 ? nullptr : keep_losses;
          void* dx_cpu = poisoned_buf(t, n);
          void* dx_gpu = poisoned_buf(t, n);
          Outputs oc{}, og{};
          run(a, oc, false, dx_cpu);
          run(a, og, true, dx_gpu);
          const Reference ref = reference(a);
          // per quantity: GPU vs CPU (c), GPU vs float64 (r), CPU vs float64 (o)
          // (a NaN in the first of the two gives +Inf)
          const NonFinite nf = NonFinite::GotNaNFails;
          RelL2 lse_c(nf), lse_r(nf), lse_o(nf), loss_c(nf), loss_r(nf), loss_o(nf), w_c(nf), w_r(nf), w_o(nf), dx_c(nf), dx_r(nf),
              dx_o(nf);
          for (int64_t i = 0; i < rows; ++i) {
            lse_c.add(og.lse[i], oc.lse[i]), lse_r.add(og.lse[i], ref.lse[size_t(i)]), lse_o.add(oc.lse[i], ref.lse[size_t(i)]);
            if (a.losses)
              loss_c.add(og.losses[i], oc.losses[i]), loss_r.add(og.losses[i], ref.losses[size_t(i)]),
                  loss_o.add(oc.losses[i], ref.losses[size_t(i)]);
            if (a.mile)
              w_c.add(og.weights[i], oc.weights[i]), w_r.add(og.weights[i], ref.eff[size_t(i)]), w_o.add(oc.weights[i], ref.eff[size_t(i)]);
          }
          for (int64_t i = 0; i < n; ++i) {
            const double gv = get(dx_gpu, t, i), cv = get(dx_cpu, t, i);
            dx_c.add(gv, cv), dx_r.add(gv, ref.dx[size_t(i)]), dx_o.add(cv, ref.dx[size_t(i)]);
          }
          const double tol = t == DType::F32 ? 1e-5 : 1e-2;
          // against float64: the tolerance; against the CPU: the tolerance plus the CPU's own error (its MiLe
          // entropy sums 4096 f32 terms in a row and is off by up to ~2e-5 itself)
          const RelL2* q[4][3] = {{&lse_c, &lse_r, &lse_o}, {&loss_c, &loss_r, &loss_o}, {&w_c, &w_r, &w_o}, {&dx_c, &dx_r, &dx_o}};
          const char* names[4] = {"lse", "losses", "weights", "dlogits"};
          for (int k = 0; k < 4; ++k) {
            const double tk = k == 3 ? tol : 1e-5;
            CHECK(q[k][1]->value() <= tk && q[k][0]->value() <= tk + q[k][2]->value(),
                  "%s: dtype %d [%ld, %ld] eps %g mile %d: vs float64 %g, vs CPU %g (CPU vs float64 %g)", names[k], int(t), long(rows),
                  long(cols), eps, mile, q[k][1]->value(), q[k][0]->value(), q[k][2]->value());
          }
          CHECK(std::fabs(og.stats[0] - ref.stats[0]) <= 1e-5 * std::fabs(ref.stats[0]) && og.stats[1] == double(a.count),
                "stats: dtype %d [%ld, %ld] reduction %d: %.9g %g, want %.9g %ld", int(t), long(rows), long(cols), int(a.reduction),
                og.stats[0], og.stats[1], ref.stats[0], long(a.count));
          const double fwd_err = std::max(std::max(lse_r.value(), loss_r.value()), w_r.value());
          worst[0] = std::max(worst[0], fwd_err);
          worst[t == DType::F32 ? 1 : 2] = std::max(worst[t == DType::F32 ? 1 : 2], dx_r.value());
          for (int64_t i = 0; i < rows; ++i)
            if (y[i] == a.ignore_index)
              CHECK(og.lse[i] == 0.0f && (!a.losses || og.losses[i] == 0.0f) && (!a.mile || og.weights[i] == 0.0f),
                    "ignored row %ld not zero", long(i));
          // in place: dlogits = logits
          CrossEntropyArgs b = a;
          b.device = seqfuse::Device::CUDA;
          b.lse_in = og.lse; b.weights_in = og.weights; b.dlogits = x;
          seqfuse::crossent_bwd_cuda(b, seqfuse::Stream{});
          device_sync("crossent backward in place");
          CHECK(same_bits(x, dx_gpu, n, t), "in place backward differs: dtype %d [%ld, %ld]", int(t),
                long(rows), long(cols));
          free_outputs(oc);
          free_outputs(og);
          for (void* p : {x, static_cast<void*>(y), dx_cpu, dx_gpu}) cudaFree(p);
          ++cases;
        }
  // special rows, value by value: 0 normal, 1 ignored, 2 one -Inf logit, 3 a NaN, 4 all -Inf, 5 +Inf
  int specials = 0;
  for (DType t : {DType::F32, DType::BF16})
    for (int64_t cols : {int64_t(130), int64_t(128)})
      for (float eps : {0.0f, 0.1f})
      for (bool mile : {false, true}) {
        const int64_t rows = 6, n = rows * cols;
        CrossEntropyArgs a;
        a.dtype = t; a.rows = rows; a.cols = cols; a.smoothing = eps; a.mile = mile; a.gamma = 1.0; a.sigma = 1.0;
        void* x = managed<unsigned char>(size_t(n) * esize(t));
        for (int64_t i = 0; i < n; ++i) put(x, t, i, u(g));
        put(x, t, 2 * cols + 5, -INFINITY);
        put(x, t, 3 * cols + 9, NAN);
        for (int64_t j = 0; j < cols; ++j) put(x, t, 4 * cols + j, -INFINITY);
        put(x, t, 5 * cols + 1, INFINITY);
        int32_t* y = managed<int32_t>(size_t(rows));
        for (int64_t i = 0; i < rows; ++i) y[i] = i == 1 ? a.ignore_index : int32_t(i * 3);
        a.count = rows - 1;
        a.logits = x; a.targets = y; a.losses = reinterpret_cast<float*>(1);
        void* dx_cpu = poisoned_buf(t, n);
        void* dx_gpu = poisoned_buf(t, n);
        Outputs oc{}, og{};
        run(a, oc, false, dx_cpu);
        run(a, og, true, dx_gpu);
        auto agree = [](double gpu, double cpu) {
          return (gpu != gpu && cpu != cpu) || gpu == cpu || std::fabs(gpu - cpu) <= 1e-5 * std::fabs(cpu) + 1e-30;
        };
        for (int64_t i = 0; i < rows; ++i) {
          CHECK(agree(og.lse[i], oc.lse[i]) && agree(og.losses[i], oc.losses[i]) && (!mile || agree(og.weights[i], oc.weights[i])),
                "special row %ld (dtype %d cols %ld eps %g mile %d): lse %g/%g loss %g/%g w %g/%g", long(i), int(t), long(cols), eps,
                int(mile), og.lse[i], oc.lse[i], og.losses[i], oc.losses[i], mile ? og.weights[i] : 0.0f, mile ? oc.weights[i] : 0.0f);
          for (int64_t j = 0; j < cols; ++j)
            CHECK(agree(get(dx_gpu, t, i * cols + j), get(dx_cpu, t, i * cols + j)) ||
                      std::fabs(get(dx_gpu, t, i * cols + j) - get(dx_cpu, t, i * cols + j)) <= 2e-9,
                  "special row %ld dx[%ld] (dtype %d eps %g): %g, cpu %g", long(i), long(j), int(t), eps, get(dx_gpu, t, i * cols + j),
                  get(dx_cpu, t, i * cols + j));
        }
        CHECK(std::isnan(og.lse[3]) && std::isnan(og.lse[4]) && std::isnan(og.lse[5]) && std::isfinite(og.lse[2]),
              "special rows: NaN where the contract says");
        // without MiLe the -Inf logit's row stands alone (with it, alpha is NaN through the NaN rows' weights)
        if (!mile)
          CHECK(eps > 0 ? std::isinf(og.losses[2]) : std::isfinite(og.losses[2]), "the -Inf logit row's loss: %g (eps %g)", og.losses[2], eps);
        CHECK(std::isnan(og.stats[0]) && std::isnan(oc.stats[0]), "stats over NaN rows: %g / %g", og.stats[0], oc.stats[0]);
        free_outputs(oc);
        free_outputs(og);
        for (void* p : {x, static_cast<void*>(y), dx_cpu, dx_gpu}) cudaFree(p);
        ++specials;
      }
  // every row ignored, and no rows at all: loss 0, count 0, dlogits 0
  for (int64_t rows : {int64_t(3), int64_t(0)}) {
    CrossEntropyArgs a;
    a.device = seqfuse::Device::CUDA; a.rows = rows; a.cols = 5; a.count = 0; a.mile = true;
    float* x = managed<float>(size_t(rows * 5 + 1));
    int32_t* y = managed<int32_t>(size_t(rows + 1));
    for (int64_t i = 0; i < rows; ++i) y[i] = a.ignore_index;
    for (int64_t i = 0; i < rows * 5; ++i) x[i] = 1.0f;
    a.logits = x; a.targets = y;
    Outputs og{};
    float* dx = static_cast<float*>(poisoned_buf(DType::F32, rows * 5));
    a.losses = reinterpret_cast<float*>(1);
    run(a, og, true, dx);
    CHECK(og.stats[0] == 0.0 && og.stats[1] == 0.0, "all ignored (%ld rows): stats %g %g", long(rows), og.stats[0], og.stats[1]);
    for (int64_t i = 0; i < rows * 5; ++i) CHECK(dx[i] == 0.0f, "all ignored: dx[%ld] = %g", long(i), dx[i]);
    free_outputs(og);
    for (void* p : {static_cast<void*>(x), static_cast<void*>(y), static_cast<void*>(dx)}) cudaFree(p);
    ++specials;
  }
  std::printf("crossent: %d cases against the CPU and float64 (max rel L2 vs float64: forward %.2g, dlogits f32 %.2g, 16-bit %.2g), "
              "%d special-value cases\n", cases, worst[0], worst[1], worst[2], specials);
  return finish("crossent");
}
