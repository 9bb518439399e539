"""The plain reference: naive fine-tuning on Split MNIST in bare PyTorch, no framework.

Tensors in memory, one 784-400-400-10 MLP, Adam lr 1e-3, batch 128, one epoch per task, then the
test accuracy on every task. This is what `edgelll learn --strategy naive` is timed against.
``python benchmarks/bare_loop.py MNIST.npz [cpu|cuda]``: on CUDA the data sits on the GPU, as it
does for edgelll, and reading the accuracies back synchronises before the time is taken.
"""

import sys
import time

import numpy as np
import torch
from torch import nn

t0 = time.perf_counter()
path = sys.argv[1]
device = torch.device(sys.argv[2] if len(sys.argv) > 2 else "cpu")
torch.manual_seed(0)
d = np.load(path)
x_tr = torch.from_numpy(d["x_train"]).reshape(-1, 784).to(device)
y_tr = torch.from_numpy(d["y_train"]).long().to(device)
x_te = torch.from_numpy(d["x_test"]).reshape(-1, 784).to(device)
y_te = torch.from_numpy(d["y_test"]).long().to(device)
mean, std = x_tr.float().mean(), x_tr.float().std()
model = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                      nn.Linear(400, 10)).to(device)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
tasks = [(2 * t, 2 * t + 1) for t in range(5)]
for a, b in tasks:
    idx = torch.nonzero((y_tr == a) | (y_tr == b)).flatten()
    perm = idx[torch.randperm(len(idx)).to(device)]
    for s in range(0, len(perm), 128):
        i = perm[s:s + 128]
        loss = nn.functional.cross_entropy(model((x_tr[i].float() - mean) / std), y_tr[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
with torch.no_grad():
    accs = []
    for a, b in tasks:
        m = (y_te == a) | (y_te == b)
        pred = model((x_te[m].float() - mean) / std).argmax(1)
        accs.append((pred == y_te[m]).float().mean().item())
print(f"bare loop: accuracy per task {[round(v, 3) for v in accs]}, {time.perf_counter() - t0:.1f} s")
