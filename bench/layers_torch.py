# PyTorch CPU peer of bench/layers.mjs, which starts it with the system python3 (Debian's
# python3-torch) under the thread environment it is trying, and talks to it one JSON line per
# command, so its timings interleave with the other peers' rounds. Tensors come and go as raw
# little-endian f32 files in a directory the bench owns (a BERT-base layer's weights are 28 MiB).
# Implementations of one encoder layer with the bench's weights:
#   nn      nn.TransformerEncoderLayer(batch_first=True, norm_first=False), eval; under no_grad
#           torch 1.13 runs it through its fused fast path (_transformer_encoder_layer_fwd)
#   nn_pre  the same with norm_first=True (pre-LN)
#   hand    the post-LN layer written out: addmm, matmul, softmax, layer_norm, gelu (autograd)
# Commands:
#   {"setup": {dir, B, S, H, heads, F, eps, shapes}} -> {"fastPath": {impl: bool}}: loads x.f32, dy.f32
#       and the state_dict <name>.f32 (nn.TransformerEncoderLayer names, shapes[name]) from dir
#   {"check": {impl, prefix}} -> {}: writes prefix + "y.f32" (forward), prefix + "dx.f32" and
#       prefix + <name>.f32 (parameter gradients of one forward+backward from zero)
#   {"time": {impl, pass: "fwd" | "fwdbwd", reps, threads}} -> {"ns": [per-call ns]}
import json
import os
import sys
import time

import numpy as np
import torch

from torch_peer import blas
import torch.nn.functional as F

NAMES = ['self_attn.in_proj_weight', 'self_attn.in_proj_bias', 'self_attn.out_proj.weight', 'self_attn.out_proj.bias',
         'linear1.weight', 'linear1.bias', 'linear2.weight', 'linear2.bias',
         'norm1.weight', 'norm1.bias', 'norm2.weight', 'norm2.bias']


def load(path, shape):
    return torch.from_numpy(np.fromfile(path, dtype='<f4')).view(*shape)


def save(path, t):
    t.detach().contiguous().numpy().astype('<f4').tofile(path)


class Hand(torch.nn.Module):
    """The post-LN encoder layer as explicit products: what a user writes without nn.TransformerEncoderLayer."""

    def __init__(self, state, heads, eps):
        super().__init__()
        self.p = torch.nn.ParameterDict({n.replace('.', '_'): torch.nn.Parameter(state[n].clone()) for n in NAMES})
        self.heads = heads
        self.eps = eps

    def named_grads(self):
        return {n: self.p[n.replace('.', '_')].grad for n in NAMES}

    def forward(self, x):
        p = self.p
        B, S, H = x.shape
        h, d = self.heads, H // self.heads
        x2 = x.reshape(B * S, H)
        qkv = torch.addmm(p['self_attn_in_proj_bias'], x2, p['self_attn_in_proj_weight'].t())
        q, k, v = qkv.view(B, S, 3, h, d).permute(2, 0, 3, 1, 4)            # each [B, h, S, d]
        scores = torch.matmul(q * d ** -0.5, k.transpose(-1, -2))
        ctx = torch.matmul(torch.softmax(scores, -1), v).transpose(1, 2).reshape(B * S, H)
        a = torch.addmm(p['self_attn_out_proj_bias'], ctx, p['self_attn_out_proj_weight'].t())
        y1 = F.layer_norm(x2 + a, (H,), p['norm1_weight'], p['norm1_bias'], self.eps)
        f = F.gelu(torch.addmm(p['linear1_bias'], y1, p['linear1_weight'].t()))
        f = torch.addmm(p['linear2_bias'], f, p['linear2_weight'].t())
        return F.layer_norm(y1 + f, (H,), p['norm2_weight'], p['norm2_bias'], self.eps).view(B, S, H)


def nn_layer(state, c, norm_first):
    m = torch.nn.TransformerEncoderLayer(c['H'], c['heads'], c['F'], dropout=0.0, activation='gelu', layer_norm_eps=c['eps'],
                                         batch_first=True, norm_first=norm_first)
    m.load_state_dict(state)
    m.eval()
    m.named_grads = lambda: {n: p.grad for n, p in m.named_parameters()}
    return m


def uses_fast_path(m, x):
    with torch.no_grad(), torch.autograd.profiler.profile() as prof:
        m(x)
    return any('_transformer_encoder_layer_fwd' in e.key for e in prof.key_averages())


class Setup:
    def __init__(self, c):
        shape = (c['B'], c['S'], c['H'])
        state = {n: load(os.path.join(c['dir'], n + '.f32'), c['shapes'][n]) for n in NAMES}
        self.x = load(os.path.join(c['dir'], 'x.f32'), shape)
        self.xg = self.x.clone().requires_grad_()
        self.dy = load(os.path.join(c['dir'], 'dy.f32'), shape)
        self.impls = {'nn': nn_layer(state, c, False), 'nn_pre': nn_layer(state, c, True), 'hand': Hand(state, c['heads'], c['eps'])}

    def fwd(self, m):
        with torch.no_grad():
            return m(self.x)

    def fwdbwd(self, m):
        self.xg.grad = None
        m(self.xg).backward(self.dy)

    def check(self, impl, prefix):
        m = self.impls[impl]
        save(prefix + 'y.f32', self.fwd(m))
        m.zero_grad(set_to_none=True)
        self.fwdbwd(m)
        save(prefix + 'dx.f32', self.xg.grad)
        for n, g in m.named_grads().items():
            save(prefix + n + '.f32', g)


def main():
    print(json.dumps({'torch': torch.__version__, 'blas': blas()}), flush=True)
    setup = None
    for line in sys.stdin:
        cmd = json.loads(line)
        if 'setup' in cmd:
            setup = None  # free the previous tensors first
            setup = Setup(cmd['setup'])
            reply = {'fastPath': {k: uses_fast_path(m, setup.x) for k, m in setup.impls.items() if k != 'hand'}}
        elif 'check' in cmd:
            setup.check(cmd['check']['impl'], cmd['check']['prefix'])
            reply = {}
        else:
            t = cmd['time']
            if torch.get_num_threads() != t['threads']:
                torch.set_num_threads(t['threads'])
            m = setup.impls[t['impl']]
            run = setup.fwd if t['pass'] == 'fwd' else setup.fwdbwd
            ns = []
            for _ in range(t['reps']):
                t0 = time.perf_counter_ns()
                run(m)
                ns.append(time.perf_counter_ns() - t0)
            reply = {'ns': ns}
        print(json.dumps(reply), flush=True)


main()
