# PyTorch CPU peer of bench/attention.mjs, which starts it with the system python3 (Debian's
# python3-torch) and talks to it one JSON line per command, so its timings interleave with the
# other peers' rounds. torch 1.13 has no scaled_dot_product_attention: this is the
# matmul -> softmax -> matmul a user writes, in its fastest form measured here (scores and output
# in preallocated tensors, scale, mask and softmax in place: a fresh scores tensor per call costs
# ~30% at S = 512 in page faults).
#   {"case": {B, H, Hkv, Sq, Sk, D, causal, copies}} -> {"sum", "sumsq"} of the output (a check)
#   {"time": reps, "threads": n}                      -> {"ns": [per-call ns]}
import json
import sys
import time

import numpy as np
import torch

from torch_peer import blas


def values(n, seed):
    # bench/attention.mjs values(): the same f32 numbers, bit for bit
    i = np.arange(n, dtype=np.uint64)
    u = (i * np.uint64(2654435761) + np.uint64(seed * 40503)) & np.uint64(0xFFFFFFFF)
    return torch.from_numpy((u.astype(np.float64) / 2**32 - 0.5).astype(np.float32))


class Case:
    def __init__(self, c):
        B, H, Hkv, Sq, Sk, D = (c[k] for k in ('B', 'H', 'Hkv', 'Sq', 'Sk', 'D'))
        g = H // Hkv
        # query heads of one key/value head side by side: [B, Hkv, g * Sq, D], no K/V repeat
        self.q = values(B * H * Sq * D, 1).view(B, Hkv, g * Sq, D)
        # decode rotates over copies of K/V so they come from DRAM, as in a real model
        self.kv = [(values(B * Hkv * Sk * D, 2 + 2 * i).view(B, Hkv, Sk, D),
                    values(B * Hkv * Sk * D, 3 + 2 * i).view(B, Hkv, Sk, D)) for i in range(c['copies'])]
        self.scale = D ** -0.5
        self.mask = None
        if c['causal']:
            # bottom-right causal: row r is query i = r % Sq, which sees keys j <= i + Sk - Sq
            i = torch.arange(g * Sq).remainder(Sq).unsqueeze(1)
            j = torch.arange(Sk).unsqueeze(0)
            self.mask = torch.zeros(g * Sq, Sk).masked_fill_(j > i + Sk - Sq, float('-inf'))
        self.scores = torch.empty(B, Hkv, g * Sq, Sk)
        self.out = torch.empty(B, Hkv, g * Sq, D)
        self.calls = 0

    def run(self):
        k, v = self.kv[self.calls % len(self.kv)]
        self.calls += 1
        s = torch.matmul(self.q, k.transpose(-1, -2), out=self.scores)
        s.mul_(self.scale)
        if self.mask is not None:
            s.add_(self.mask)
        torch.softmax(s, -1, out=s)
        torch.matmul(s, v, out=self.out)


def main():
    print(json.dumps({'torch': torch.__version__, 'blas': blas()}), flush=True)
    case = None
    with torch.inference_mode():
        for line in sys.stdin:
            cmd = json.loads(line)
            if 'case' in cmd:
                case = None  # free the previous case's tensors first
                case = Case(cmd['case'])
                case.run()
                o = case.out.double()
                reply = {'sum': o.sum().item(), 'sumsq': (o * o).sum().item()}
            else:
                if torch.get_num_threads() != cmd['threads']:
                    torch.set_num_threads(cmd['threads'])
                ns = []
                for _ in range(cmd['time']):
                    t0 = time.perf_counter_ns()
                    case.run()
                    ns.append(time.perf_counter_ns() - t0)
                reply = {'ns': ns}
            print(json.dumps(reply), flush=True)


main()
