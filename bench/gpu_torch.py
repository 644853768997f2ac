# PyTorch CUDA peer of bench/gpu.mjs: reads the JSON lines bench/gpu/kernels.cu printed (one
# case each) from the file named on the command line, times PyTorch doing the same work on the
# same GPU, and prints one JSON line per case: {"op", "dtype", "shape", "params", "ms", "min_ms", "how"}.
# Timing as kernels.cu: CUDA events around a loop of about 20 ms, median of 7 repeats after a
# warm-up. f32 products run in true f32 (TF32 off), as ours. The peer is eager PyTorch, the
# fused kernels it has: matmul (cuBLAS), F.linear + F.gelu, torch._int_mm, scaled_dot_product_attention
# (flash / memory-efficient backends), F.layer_norm, softmax, cross_entropy, AdamW(fused=True).
import json
import sys

import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DT = {'f32': torch.float32, 'f16': torch.float16, 'bf16': torch.bfloat16}
dev = 'cuda'


def time_ms(fn):
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    iters = max(1, min(1000, int(20.0 / max(a.elapsed_time(b), 1e-3))))
    t = []
    for _ in range(7):
        a.record()
        for _ in range(iters):
            fn()
        b.record()
        b.synchronize()
        t.append(a.elapsed_time(b) / iters)
    t.sort()
    return t[len(t) // 2], t[0]


def rnd(shape, dt, lo=-1.0, hi=1.0):
    return torch.empty(shape, device=dev, dtype=dt).uniform_(lo, hi)


def case_fn(c):
    op, s, p = c['op'], c['shape'], c.get('params', {})
    dt = DT.get(c['dtype'])
    if op == 'gemm':
        m, n, k = s
        a, b = rnd((m, k), dt), rnd((k, n), dt)
        out = torch.empty(m, n, device=dev, dtype=dt)
        return (lambda: torch.matmul(a, b, out=out)), 'torch.matmul (cuBLAS)'
    if op == 'linear':
        m, n, k = s
        x, w, bias = rnd((m, k), dt), rnd((n, k), dt, -0.05, 0.05), rnd((n,), dt)
        if p.get('activation') == 'gelu':
            return (lambda: F.gelu(F.linear(x, w, bias))), 'F.gelu(F.linear) (cuBLAS + elementwise)'
        return (lambda: F.linear(x, w, bias)), 'F.linear (cuBLAS)'
    if op == 'linear_i8':
        m, n, k = s
        x = torch.randint(-127, 128, (m, k), device=dev, dtype=torch.int8)
        w = torch.randint(-127, 128, (n, k), device=dev, dtype=torch.int8)
        return (lambda: torch._int_mm(x, w.t())), 'torch._int_mm (cuBLASLt int8)'
    if op in ('attention_fwd', 'attention_bwd'):
        B, H, S, D = s
        q, k, v = (rnd((B, H, S, D), dt) for _ in range(3))
        causal = p['causal']
        if op == 'attention_fwd':
            return (lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)), 'F.scaled_dot_product_attention'
        q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        dout = rnd(out.shape, dt)
        return (lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)), 'SDPA backward (autograd)'
    if op in ('layernorm_fwd', 'layernorm_bwd'):
        rows, cols = s
        x, g, b = rnd((rows, cols), dt), rnd((cols,), dt), rnd((cols,), dt)
        if op == 'layernorm_fwd':
            return (lambda: F.layer_norm(x, (cols,), g, b)), 'F.layer_norm'
        x.requires_grad_(), g.requires_grad_(), b.requires_grad_()
        y = F.layer_norm(x, (cols,), g, b)
        dy = rnd(y.shape, dt)
        return (lambda: torch.autograd.grad(y, (x, g, b), dy, retain_graph=True)), 'F.layer_norm backward (autograd)'
    if op == 'softmax_fwd':
        x = rnd(tuple(s), dt, -4, 4)
        return (lambda: torch.softmax(x, -1)), 'torch.softmax'
    if op == 'bias_gelu_fwd':
        rows, cols = s
        x, b = rnd((rows, cols), dt), rnd((cols,), dt)
        return (lambda: F.gelu(x + b)), 'F.gelu(x + b) (two kernels)'
    if op == 'bias_dropout_residual_fwd':
        rows, cols = s
        x, b, r = rnd((rows, cols), dt), rnd((cols,), dt), rnd((rows, cols), dt)
        return (lambda: r + F.dropout(x + b, p['p'])), 'r + F.dropout(x + b) (three kernels)'
    if op == 'crossent_fwd_bwd':
        rows, vocab = s
        x = rnd((rows, vocab), dt, -4, 4).requires_grad_()
        t = torch.randint(0, vocab, (rows,), device=dev)

        def run():
            loss = F.cross_entropy(x, t)
            return torch.autograd.grad(loss, x)
        return run, 'F.cross_entropy forward + backward'
    if op == 'adamw':
        count, numel = s
        params = [torch.nn.Parameter(rnd((numel,), torch.float32)) for _ in range(count)]
        for q in params:
            q.grad = rnd((numel,), torch.float32)
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, fused=True)
        return opt.step, 'torch.optim.AdamW(fused=True).step'
    return None, None


def main():
    print(json.dumps({'torch': torch.__version__, 'device': torch.cuda.get_device_name()}), flush=True)
    with open(sys.argv[1]) as f:
        cases = [json.loads(line) for line in f if line.startswith('{')]
    for c in cases:
        fn, how = case_fn(c)
        if fn is None:
            continue
        ms, min_ms = time_ms(fn)
        print(json.dumps({'op': c['op'], 'dtype': c['dtype'], 'shape': c['shape'], 'params': c.get('params', {}), 'ms': ms,
                          'min_ms': min_ms, 'how': how}), flush=True)
        del fn
        torch.cuda.empty_cache()


if __name__ == '__main__':
    main()
