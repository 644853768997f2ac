// cuda/optim.cu against the CPU backend (native/cpu/optim.cc, its portable pass, linked in).
// adamw: the same f32 operations in the same order (no contraction), so param, m, v and the
// 16-bit copies must be the CPU's bit for bit — every grad dtype, copy none/f16/bf16, decay per
// tensor, weight decay, grad scale, several steps, lists longer than one launch's batch (kBatch)
// and, with SF_OPTIM_MAX_BLOCKS lowered to 3, tensors longer than one grid stride; the new param
// is also checked against a float64 AdamW (relative L2 <= 1e-5).
// norm_sumsq: a different but fixed summation order, so the double sum is compared with the
// CPU's (relative error <= 1e-12) and with a long double reference, run twice (bit-identical),
// with NaN and Inf propagation and an empty list.
// emu-link: native/cpu/optim.cc native/core/threads.cc
#define SF_OPTIM_MAX_BLOCKS 3
#include "../optim.cu"
#include "compare.h"

namespace {

using namespace cmp;

// One parameter's buffers on both backends (identical before the step).
struct Param {
  int64_t n;
  DType gt, ct;
  bool has_copy, decay;
  float *p[2], *m[2], *v[2];
  void* grad;
  void* copy[2];
};

int adamw_cases(std::mt19937& g) {
  const int64_t sizes[] = {1, 3, 17, 33, 130, 255, 1023, 1024, 1025, 4099, 13000};
  const DType gts[] = {DType::F32, DType::F16, DType::BF16};
  int cases = 0;
  // list shapes: a few tensors of every size; one list longer than a launch's batch
  for (int list = 0; list < 4; ++list) {
    const int count = list == 3 ? 2 * seqfuse::kBatch + 5 : 6 + list * 5;
    std::vector<Param> ps(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) {
      Param& q = ps[size_t(i)];
      q.n = list == 3 ? int64_t(1 + i % 37) : sizes[size_t(i + list) % (sizeof sizes / sizeof sizes[0])];
      if (i == 2) q.n = 0;  // an empty tensor in the list
      q.gt = gts[size_t(i) % 3];
      q.has_copy = i % 4 != 3;
      q.ct = i % 2 ? DType::F16 : DType::BF16;
      q.decay = i % 5 != 1;
      const int64_t n1 = q.n > 0 ? q.n : 1;
      for (int b = 0; b < 2; ++b) {
        q.p[b] = managed<float>(size_t(n1));
        q.m[b] = managed<float>(size_t(n1));
        q.v[b] = managed<float>(size_t(n1));
        q.copy[b] = poisoned_buf(q.ct, q.n);
      }
      fill(q.p[0], DType::F32, q.n, g, -1.0f, 1.0f);
      fill(q.m[0], DType::F32, q.n, g, -0.1f, 0.1f);
      fill(q.v[0], DType::F32, q.n, g, 0.0f, 0.01f);
      if (q.n > 0) q.v[0][0] = 0.0f;  // v = 0 with g = 0 below: the eps-only denominator
      std::memcpy(q.p[1], q.p[0], size_t(q.n) * 4);
      std::memcpy(q.m[1], q.m[0], size_t(q.n) * 4);
      std::memcpy(q.v[1], q.v[0], size_t(q.n) * 4);
      q.grad = random_buf(q.gt, q.n, g, -3.0f, 3.0f);
      if (q.n > 0) std::memset(q.grad, 0, esize(q.gt));
    }
    struct Opt { double lr, wd, gs; int64_t step; double beta1, beta2, eps; };
    const Opt opts[] = {{1e-3, 0.0, 1.0, 1, 0.9, 0.999, 1e-8}, {3e-4, 0.1, 0.5, 10, 0.9, 0.95, 1e-6},
                        {1e-2, 0.01, 1.0 / 1024, 1000, 0.8, 0.999, 1e-8}};
    for (const Opt& o : opts) {
      std::vector<double> want_p;  // float64 AdamW of the f32 param (from the state before the step)
      for (const Param& q : ps)
        for (int64_t j = 0; j < q.n; ++j) {
          const double gr = get(q.grad, q.gt, j) * double(float(o.gs));
          const double p = q.p[0][j] * (q.decay ? 1.0 - o.lr * o.wd : 1.0);
          const double m = o.beta1 * q.m[0][j] + (1 - o.beta1) * gr;
          const double v = o.beta2 * q.v[0][j] + (1 - o.beta2) * gr * gr;
          const double bc1 = 1 - std::pow(o.beta1, double(o.step)), bc2 = 1 - std::pow(o.beta2, double(o.step));
          want_p.push_back(p - o.lr / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + o.eps));
        }
      for (int b = 0; b < 2; ++b) {
        std::vector<seqfuse::AdamWTensor> ts;
        for (const Param& q : ps) {
          seqfuse::AdamWTensor t;
          t.param = q.p[b]; t.grad = q.grad; t.m = q.m[b]; t.v = q.v[b];
          t.copy = q.has_copy ? q.copy[b] : nullptr; t.numel = q.n; t.grad_dtype = q.gt; t.copy_dtype = q.ct;
          t.decay = q.decay;
          ts.push_back(t);
        }
        seqfuse::AdamWArgs a;
        a.tensors = ts.data(); a.count = int64_t(ts.size());
        a.lr = o.lr; a.weight_decay = o.wd; a.grad_scale = o.gs; a.step = o.step;
        a.beta1 = o.beta1; a.beta2 = o.beta2; a.eps = o.eps;
        if (b == 0) {
          seqfuse::adamw_cpu(a);
        } else {
          a.device = seqfuse::Device::CUDA;
          seqfuse::adamw_cuda(a, seqfuse::Stream{});
          device_sync("adamw");
        }
      }
      RelL2 err(NonFinite::GotNaNFails);  // the new param against float64
      size_t k = 0;
      for (const Param& q : ps) {
        CHECK(same_bits(q.p[0], q.p[1], q.n, DType::F32), "adamw param: list %d n %ld grad %d lr %g", list, long(q.n), int(q.gt), o.lr);
        CHECK(same_bits(q.m[0], q.m[1], q.n, DType::F32), "adamw m: list %d n %ld grad %d", list, long(q.n), int(q.gt));
        CHECK(same_bits(q.v[0], q.v[1], q.n, DType::F32), "adamw v: list %d n %ld grad %d", list, long(q.n), int(q.gt));
        if (q.has_copy) CHECK(same_bits(q.copy[0], q.copy[1], q.n, q.ct), "adamw copy: list %d n %ld copy %d", list, long(q.n), int(q.ct));
        else CHECK(static_cast<unsigned char*>(q.copy[1])[0] == 0x7f, "adamw wrote a copy that is not there: list %d", list);
        for (int64_t j = 0; j < q.n; ++j, ++k) {
          CHECK(std::isfinite(q.p[1][j]), "adamw param not finite: list %d n %ld", list, long(q.n));
          err.add(q.p[1][j], want_p[k]);
        }
      }
      CHECK(err.value() <= 1e-5, "adamw against float64: list %d lr %g: rel L2 %g", list, o.lr, err.value());
      ++cases;
    }
    for (Param& q : ps) {
      for (int b = 0; b < 2; ++b) { cudaFree(q.p[b]); cudaFree(q.m[b]); cudaFree(q.v[b]); cudaFree(q.copy[b]); }
      cudaFree(q.grad);
    }
  }
  return cases;
}

int norm_cases(std::mt19937& g) {
  int cases = 0;
  for (int list = 0; list < 5; ++list) {
    // list 0: one long tensor (chunks and a tail); 1: mixed sizes; 2: more than a batch;
    // 3: a NaN in one tensor; 4: an Inf (and no NaN)
    std::vector<int64_t> sizes;
    if (list == 0) sizes = {3 * 16384 + 77};
    else if (list == 2) for (int i = 0; i < seqfuse::kBatch + 13; ++i) sizes.push_back(1 + (i * 37) % 300);
    else sizes = {1, 17, 0, 16384, 16385, 130, 33, 40000};
    std::vector<seqfuse::NormTensor> ts;
    long double want = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      seqfuse::NormTensor t;
      t.numel = sizes[i];
      t.dtype = i % 3 == 0 ? DType::F32 : i % 3 == 1 ? DType::BF16 : DType::F16;
      void* p = random_buf(t.dtype, t.numel, g, -4.0f, 4.0f);
      if (list >= 3 && i == 5) {
        const float bad = list == 3 ? NAN : INFINITY;
        put(p, t.dtype, 7, bad);
      }
      for (int64_t j = 0; j < t.numel; ++j) want += (long double)get(p, t.dtype, j) * get(p, t.dtype, j);
      t.data = p;
      ts.push_back(t);
    }
    double* out = managed<double>(2);
    double cpu = -1;
    seqfuse::SumSqArgs a;
    a.tensors = ts.data(); a.count = int64_t(ts.size()); a.sumsq = &cpu;
    seqfuse::norm_sumsq_cpu(a);
    a.device = seqfuse::Device::CUDA;
    for (int r = 0; r < 2; ++r) {
      out[r] = -1;
      a.sumsq = out + r;
      seqfuse::norm_sumsq_cuda(a, seqfuse::Stream{});
      device_sync("norm_sumsq");
    }
    double host = -1;  // a host (not managed) destination, as the binding's Float64Array
    a.sumsq = &host;
    seqfuse::norm_sumsq_cuda(a, seqfuse::Stream{});
    device_sync("norm_sumsq to host memory");
    CHECK(same_bytes(&out[0], &out[1], sizeof(double)) && same_bytes(&out[0], &host, sizeof(double)), "norm_sumsq list %d not deterministic: %.17g %.17g %.17g", list,
          out[0], out[1], host);
    if (list == 3) {
      CHECK(std::isnan(out[0]) && std::isnan(cpu), "norm_sumsq NaN: gpu %g cpu %g", out[0], cpu);
    } else if (list == 4) {
      CHECK(std::isinf(out[0]) && out[0] > 0 && std::isinf(cpu), "norm_sumsq Inf: gpu %g cpu %g", out[0], cpu);
    } else {
      CHECK(std::fabs(out[0] - cpu) <= 1e-12 * cpu, "norm_sumsq list %d: gpu %.17g cpu %.17g", list, out[0], cpu);
      CHECK(std::fabs((long double)out[0] - want) <= 1e-12L * want, "norm_sumsq list %d: gpu %.17g want %.17Lg", list, out[0], want);
      CHECK(out[0] > 0, "norm_sumsq list %d: %g", list, out[0]);
    }
    for (auto& t : ts) cudaFree(const_cast<void*>(t.data));
    cudaFree(out);
    ++cases;
  }
  // an empty list and a list of empty tensors: +0.0
  seqfuse::NormTensor empty;
  for (int64_t count : {0, 1}) {
    double* out = managed<double>(1);
    *out = -1;
    seqfuse::SumSqArgs a;
    a.device = seqfuse::Device::CUDA; a.tensors = &empty; a.count = count; a.sumsq = out;
    seqfuse::norm_sumsq_cuda(a, seqfuse::Stream{});
    device_sync("norm_sumsq empty");
    CHECK(*out == 0.0 && !std::signbit(*out), "norm_sumsq of nothing: %g", *out);
    cudaFree(out);
    ++cases;
  }
  return cases;
}

}  // namespace

int main() {
  std::mt19937 g(20261124);
  const int ac = adamw_cases(g);
  const int nc = norm_cases(g);
  std::printf("optim: %d adamw cases (bit-identical to the CPU), %d norm_sumsq cases\n", ac, nc);
  return finish("optim");
}
