#!/usr/bin/env python3
"""PyTorch (CPU) peer of bench/conv-kernels.ts: the same convolution layers, each timed as its
forward pass, its input gradient and its filter gradient (aten.convolution_backward with one
output at a time), on one thread unless told otherwise.

Reads the layers as JSON on stdin: [{"name", "x": [n, h, w, c], "f": [kh, kw, cin, cout],
"stride", "pad": "same" | "valid", "groups"}] (groups = cin for a depthwise layer, whose f is
[kh, kw, cin, multiplier]), and prints one JSON object on the last line of stdout:
{"torch_version", "threads", "layers": {name: {"forward": ms, "backpropInput": ms, "backpropFilter": ms}}}.

  python3 bench/conv_kernels_torch.py [--threads 1] [--reps 5] < layers.json
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F


def best_ms(fn, reps):
    """The fastest of `reps` timed calls after one warm-up call, in milliseconds."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layers = json.load(sys.stdin)
    out = {}
    with torch.no_grad():
        for layer in layers:
            n, h, w, c = layer["x"]
            kh, kw, cin, cout = layer["f"]
            groups = layer.get("groups", 1)
            if groups > 1:
                # Depthwise: cin groups of one input channel, `cout` (the multiplier) outputs each.
                cout, cin = cin * cout, 1
            s = layer["stride"]
            x = torch.randn(n, c, h, w)
            pad = (0, 0)
            if layer["pad"] == "same":
                # tfjs's "same": total pad max((out - 1)·s + k - in, 0), the smaller half first;
                # torch pads both sides alike, so an odd total is made even on the far side with F.pad.
                tot = [max((-(-d // s) - 1) * s + k - d, 0) for d, k in ((h, kh), (w, kw))]
                if tot[0] % 2 or tot[1] % 2:
                    x = F.pad(x, (0, tot[1] % 2, 0, tot[0] % 2))
                pad = (tot[0] // 2, tot[1] // 2)
            wt = torch.randn(cout, cin, kh, kw)
            y = F.conv2d(x, wt, stride=s, padding=pad, groups=groups)
            dy = torch.randn_like(y)

            def backward(mask):
                return lambda: torch.ops.aten.convolution_backward(dy, x, wt, None, [s, s], list(pad), [1, 1], False, [0, 0], groups, mask)

            out[layer["name"]] = {
                "forward": best_ms(lambda: F.conv2d(x, wt, stride=s, padding=pad, groups=groups), args.reps),
                "backpropInput": best_ms(backward([True, False, False]), args.reps),
                "backpropFilter": best_ms(backward([False, True, False]), args.reps),
            }
    print(json.dumps({"torch_version": torch.__version__, "threads": torch.get_num_threads(), "layers": out}))


if __name__ == "__main__":
    main()
