#!/usr/bin/env python3
"""PyTorch (CPU) peer of bench/workloads.ts: the same eight workloads, timed the same way.

A step is forward, backward, optimizer update and reading the loss back as a Python float.
Prints one JSON object on the last line of stdout:
  {"torch_version", "default_threads", "runs": {"<threads>": {"W1": ms, ..., "W6_ensemble": ms}}}
("sgemm1024", when asked for, is one 1024 x 1024 x 1024 torch.mm: the machine's matrix-product speed.)

  python3 bench/torch_bench.py [--threads 1,default] [--only W1,W3] [--budget-ms 250] [--reps 5]

  python3 bench/torch_bench.py --check < state.json
reads the starting state of W7 or W8 that bench/workloads.ts's initialState() writes (parameters,
images, labels), starts the same architecture from it and prints the losses of its first steps as
{"losses": [...]}, so the two frameworks can be compared number for number.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LR = 1e-3


def mlp(*sizes, final_act=False):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_act:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def two_head(width, batch):
    trunk = mlp(32, width, width, final_act=True)
    cls = nn.Linear(width, 2)
    reg = nn.Linear(width, 1)
    params = [*trunk.parameters(), *cls.parameters(), *reg.parameters()]
    opt = torch.optim.Adam(params, lr=LR)
    x = torch.randn(batch, 32)
    labels = torch.randint(0, 2, (batch,))
    y = torch.randn(batch, 1)

    def step():
        opt.zero_grad(set_to_none=True)
        h = trunk(x)
        loss = 0.7 * F.cross_entropy(cls(h), labels) + 0.3 * F.mse_loss(reg(h), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def shared_embeddings(batch=1024):
    users = nn.Embedding(10000, 64)
    items = nn.Embedding(5000, 64)
    a = mlp(128, 64, 1)
    b = mlp(128 + 16, 64, 1)
    params = [*users.parameters(), *items.parameters(), *a.parameters(), *b.parameters()]
    opt = torch.optim.Adam(params, lr=LR)
    uid = torch.randint(0, 10000, (batch,))
    iid = torch.randint(0, 5000, (batch,))
    ctx = torch.randn(batch, 16)
    ya = torch.randint(0, 2, (batch, 1)).float()
    yb = torch.randint(0, 2, (batch, 1)).float()

    def step():
        opt.zero_grad(set_to_none=True)
        u, i = users(uid), items(iid)
        la = F.binary_cross_entropy_with_logits(a(torch.cat([u, i], 1)), ya)
        lb = F.binary_cross_entropy_with_logits(b(torch.cat([u, i, ctx], 1)), yb)
        loss = la + lb
        loss.backward()
        opt.step()
        return loss.item()

    return step


def alternating(batch=512):
    net_a = mlp(32, 64, 16)
    net_b = mlp(16, 64, 1)
    pa, pb = list(net_a.parameters()), list(net_b.parameters())
    opt_a = torch.optim.Adam(pa, lr=LR)
    opt_b = torch.optim.Adam(pb, lr=LR)
    x = torch.randn(batch, 32)
    y = torch.randn(batch, 1)

    def step():
        # A through B, B frozen: gradients only for A's parameters.
        opt_a.zero_grad(set_to_none=True)
        loss_a = F.mse_loss(net_b(net_a(x)), y)
        loss_a.backward(inputs=pa)
        opt_a.step()
        # A fresh forward pass of the updated A, held constant; only B is updated.
        opt_b.zero_grad(set_to_none=True)
        with torch.no_grad():
            z = net_a(x)
        loss_b = F.mse_loss(net_b(z), y)
        loss_b.backward(inputs=pb)
        opt_b.step()
        return loss_a.item(), loss_b.item()

    return step


def gradnorm(batch=512, alpha=1.5):
    l1, l2 = nn.Linear(32, 256), nn.Linear(256, 256)
    heads = nn.ModuleList([nn.Linear(256, 1) for _ in range(3)])
    params = [*l1.parameters(), *l2.parameters(), *heads.parameters()]
    opt = torch.optim.Adam(params, lr=LR)
    w = torch.zeros(3, requires_grad=True)
    opt_w = torch.optim.Adam([w], lr=1e-2)
    x = torch.randn(batch, 32)
    ys = [torch.randn(batch, 1) for _ in range(3)]
    state = {"l0": None}

    def step():
        opt.zero_grad(set_to_none=True)
        opt_w.zero_grad(set_to_none=True)
        h2 = F.relu(l2(F.relu(l1(x))))
        losses = torch.stack([F.mse_loss(hd(h2), y) for hd, y in zip(heads, ys)])
        wt = 3 * torch.softmax(w, 0)
        # ||dL_i/dW|| on the trunk's last kernel, before the update.
        g = torch.stack([torch.autograd.grad(losses[i], l2.weight, retain_graph=True)[0].norm() for i in range(3)])
        total = (wt.detach() * losses).sum()
        total.backward()
        with torch.no_grad():
            if state["l0"] is None:
                state["l0"] = losses.detach().clone()
            ratio = losses.detach() / state["l0"]
            rel = ratio / ratio.mean()
            target = (wt.detach() * g).mean() * rel.pow(alpha)
        gn_loss = (wt * g - target).abs().sum()
        w.grad = torch.autograd.grad(gn_loss, w)[0]
        opt.step()
        opt_w.step()
        return total.item()

    return step


# ---------------------------------------------------------------------------------------------
# W7 / W8: conv nets, NCHW (PyTorch's native layout; the same FLOPs as tfjs's NHWC).

# tfjs-layers' batch-norm defaults, which the tfjs forms use (its momentum 0.99 is PyTorch's 0.01).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


class LeNetMTL(nn.Module):
    """W7: MultiMNIST LeNet, conv -> max pool -> relu twice, dense 50, two digit heads 50-50-10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.fc = nn.Linear(320, 50)
        self.heads = nn.ModuleList([nn.Sequential(nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 10)) for _ in range(2)])

    def forward(self, x):
        h = F.relu(F.max_pool2d(self.conv1(x), 2))
        h = F.relu(F.max_pool2d(self.conv2(h), 2))
        z = F.relu(self.fc(h.flatten(1)))
        return [head(z) for head in self.heads]


class AttributeNet(nn.Module):
    """W8: three conv 3x3 blocks (32, 64, 128) with batch norm, global average pool, eight one-unit heads.

    The convs have no bias (the batch norm after each has its own offset), as in bench/workloads.ts.
    """

    def __init__(self, attributes=8):
        super().__init__()
        chans = [3, 32, 64, 128]
        self.convs = nn.ModuleList([nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False) for i in range(3)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM) for c in chans[1:]])
        self.heads = nn.ModuleList([nn.Linear(128, 1) for _ in range(attributes)])

    def forward(self, x):
        h = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            h = F.relu(bn(conv(h)))
            if i < 2:
                h = F.max_pool2d(h, 2)
        pooled = h.mean(dim=(2, 3))
        return [head(pooled) for head in self.heads]


def _tensor(p):
    return torch.tensor(p["values"], dtype=torch.float32).reshape(p["shape"])


def _conv_kernel(p):
    # tfjs [kh, kw, in, out] -> PyTorch [out, in, kh, kw]
    return _tensor(p).permute(3, 2, 0, 1).contiguous()


def _dense(linear, params, stem, kernel=None):
    # tfjs [in, out] -> PyTorch [out, in]
    linear.weight.copy_((kernel if kernel is not None else _tensor(params[stem + ".kernel"])).t())
    linear.bias.copy_(_tensor(params[stem + ".bias"]))


@torch.no_grad()
def _load_w7(model, params):
    for name in ("conv1", "conv2"):
        conv = getattr(model, name)
        conv.weight.copy_(_conv_kernel(params[name + ".kernel"]))
        conv.bias.copy_(_tensor(params[name + ".bias"]))
    # tfjs flattens the 4x4x20 maps channels last (h, w, c); PyTorch flattens (c, h, w): reorder the rows.
    fc = _tensor(params["fc.kernel"]).reshape(4, 4, 20, 50).permute(2, 0, 1, 3).reshape(320, 50)
    _dense(model.fc, params, "fc", kernel=fc)
    for t, head in enumerate(model.heads):
        _dense(head[0], params, f"head{t}.hidden")
        _dense(head[2], params, f"head{t}.out")


@torch.no_grad()
def _load_w8(model, params):
    for k, conv in enumerate(model.convs):
        conv.weight.copy_(_conv_kernel(params[f"conv{k + 1}.kernel"]))
    for t, head in enumerate(model.heads):
        _dense(head, params, f"head{t}")


def _conv_data(state, batch, image, make_labels):
    """Images (NCHW) and labels: from a tfjs starting state when given, else random."""
    if state is None:
        return torch.rand(batch, *image), make_labels()
    x = _tensor(state["x"]).permute(0, 3, 1, 2).contiguous()
    return x, [torch.tensor(l) for l in state["labels"]]


def multimnist_lenet(batch=256, state=None, adam_eps=1e-8):
    model = LeNetMTL()
    if state is not None:
        batch = state["batch"]
        _load_w7(model, state["params"])
    x, labels = _conv_data(state, batch, (1, 28, 28), lambda: [torch.randint(0, 10, (batch,)) for _ in range(2)])
    labels = [l.long() for l in labels]
    opt = torch.optim.Adam(model.parameters(), lr=LR, eps=adam_eps)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = sum(F.cross_entropy(out, y) for out, y in zip(model(x), labels))
        loss.backward()
        opt.step()
        return loss.item()

    return step


def attribute_net(batch=64, state=None, adam_eps=1e-8):
    model = AttributeNet()  # in training mode: batch norm uses batch statistics and updates its running ones
    if state is not None:
        batch = state["batch"]
        _load_w8(model, state["params"])
    x, labels = _conv_data(state, batch, (3, 64, 64), lambda: [torch.randint(0, 2, (batch,)) for _ in range(8)])
    labels = [l.float().reshape(batch, 1) for l in labels]
    opt = torch.optim.Adam(model.parameters(), lr=LR, eps=adam_eps)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = sum(F.binary_cross_entropy_with_logits(out, y) for out, y in zip(model(x), labels))
        loss.backward()
        opt.step()
        return loss.item()

    return step


def sgemm(n=1024):
    a, b = torch.randn(n, n), torch.randn(n, n)

    def step():
        return torch.mm(a, b)[0, 0].item()

    return step


FLEET = 64


def fleet(batch=256):
    models = [mlp(32, 64, 1) for _ in range(FLEET)]
    opts = [torch.optim.Adam(m.parameters(), lr=LR) for m in models]
    xs = [torch.randn(batch, 32) for _ in range(FLEET)]
    ys = [torch.randn(batch, 1) for _ in range(FLEET)]

    def step():
        out = []
        for m, o, x, y in zip(models, opts, xs, ys):
            o.zero_grad(set_to_none=True)
            loss = F.mse_loss(m(x), y)
            loss.backward()
            o.step()
            out.append(loss.item())
        return out

    return step


def fleet_ensemble(batch=256):
    k1 = nn.Parameter(torch.randn(FLEET, 32, 64) * math.sqrt(2 / (32 + 64)))
    b1 = nn.Parameter(torch.zeros(FLEET, 1, 64))
    k2 = nn.Parameter(torch.randn(FLEET, 64, 1) * math.sqrt(2 / 65))
    b2 = nn.Parameter(torch.zeros(FLEET, 1, 1))
    opt = torch.optim.Adam([k1, b1, k2, b2], lr=LR)
    x = torch.randn(FLEET, batch, 32)
    y = torch.randn(FLEET, batch, 1)

    def step():
        opt.zero_grad(set_to_none=True)
        p = torch.baddbmm(b2, torch.relu(torch.baddbmm(b1, x, k1)), k2)
        per_model = ((p - y) ** 2).mean(dim=(1, 2))
        per_model.sum().backward()
        opt.step()
        return per_model.tolist()

    return step


WORKLOADS = {
    "W1": lambda: two_head(64, 256),
    "W2": lambda: two_head(512, 1024),
    "W3": shared_embeddings,
    "W4": alternating,
    "W5": gradnorm,
    "W6": fleet,
    "W6_ensemble": fleet_ensemble,
    "W7": multimnist_lenet,
    "W8": attribute_net,
    "sgemm1024": sgemm,
}
CHECKABLE = {"W7": multimnist_lenet, "W8": attribute_net}


def check(state, steps):
    """Losses of the first `steps` steps from a tfjs starting state (Adam's eps as tfjs's default, 1e-7)."""
    if state.get("id") not in CHECKABLE:
        raise SystemExit(f"--check: the state's id must be one of {', '.join(CHECKABLE)}, but got {state.get('id')!r}")
    torch.set_num_threads(1)
    step = CHECKABLE[state["id"]](state=state, adam_eps=1e-7)
    return [step() for _ in range(steps)]


def time_workload(make, budget_ms, reps):
    torch.manual_seed(0)
    step = make()
    t0 = time.perf_counter()
    for _ in range(3):
        step()
    est = (time.perf_counter() - t0) * 1000 / 3
    per_rep = max(1, min(100, round(budget_ms / max(est, 1e-3))))
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(per_rep):
            step()
        samples.append((time.perf_counter() - t0) * 1000 / per_rep)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,default", help="comma list: numbers or 'default'")
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma list of workloads")
    ap.add_argument("--budget-ms", type=float, default=250.0, help="time per repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--check", action="store_true", help="read a W7/W8 starting state (JSON) on stdin, print its first losses")
    ap.add_argument("--steps", type=int, default=3, help="with --check: how many steps")
    args = ap.parse_args()
    if args.check:
        print(json.dumps({"losses": check(json.load(sys.stdin), args.steps)}))
        return
    default_threads = torch.get_num_threads()
    runs = {}
    for spec in args.threads.split(","):
        n = default_threads if spec == "default" else int(spec)
        key = str(n)
        if key in runs:
            continue
        torch.set_num_threads(n)
        runs[key] = {}
        for name in args.only.split(","):
            ms = time_workload(WORKLOADS[name], args.budget_ms, args.reps)
            runs[key][name] = ms
            print(f"torch {name} threads={n}: {ms:.2f} ms/step", file=sys.stderr, flush=True)
    print(json.dumps({
        "torch_version": torch.__version__,
        "default_threads": default_threads,
        "cpu_count": os.cpu_count(),
        "runs": runs,
    }))


if __name__ == "__main__":
    main()
