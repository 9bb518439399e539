"""Few-shot class-incremental learning (issue #10): gradient-free heads against fine-tuning and a
jointly trained linear upper bound, on the same base backbone, and Omniglot's 600-class stream.

FSCIL streams (``--stream fscil``, TOPIC's protocol, ``edgelll/fscil.py``):

- ``mnist``, ``fashion-mnist``: 5 base classes (natural order: 0-4) with all their training
  data, then five 1-way 5-shot sessions (classes 5..9); default MLP 784-400-400, 3 epochs;
- ``omniglot``: 200 background characters as the base (``--class-order random``), then 8
  sessions of 5-way 5-shot evaluation characters (alphabets the base never saw); ``convnet``,
  10 epochs. The test set of a character is its last 5 drawings (edgelll's Omniglot split);
- ``mnist-convnet``, ``fashion-mnist-convnet``: the MNIST and Fashion-MNIST streams on the
  ``convnet`` backbone (3 epochs), added after the MLP's results were in, once they showed that
  the MLP's features cap every head below the margin over fine-tuning on MNIST.

Training (every ``edgelll.learn`` run here): Adam, lr 1e-3, batch 128, the set's epochs per
experience, ``--optimizer-state auto``, CPU, seed s for seed s. Per seed and set, one run of
``-s naive`` over the whole stream is the fine-tuning row: every session trains the whole network
for the same epochs as the base on its 5 or 25 shots alone, i.e. ``epochs`` steps of one batch
(3 steps a session on MNIST/Fashion-MNIST, 10 on Omniglot). Its checkpoint after session 0 is the
base backbone every other row of that seed uses (bit for bit the backbone that ``-s ncm
--freeze-backbone-after 1`` trains: checked below). Its features (``forward_features`` in eval
mode) are extracted once, and the rows are learned on the feature arrays by the numpy heads of
``edgelll.runtime``, with the strategies' default settings:

- base session: as ``edgelll learn -s HEAD --freeze-backbone-after 1`` does after the base
  (``refit``): the base data in the stream's order, in chunks of 256; a class's first chunk adds
  it (``add_class`` of its rows there), then the chunk is learned (``learn``);
- each later session: one ``add_class`` per new class from its K shots (``learn_class`` on a
  device); nothing else. (The end-to-end strategies see the shots once per epoch; for NCM that
  changes nothing, which the check uses.)

Rows: ``ncm``; ``hebbian``; ``hebbian, Oja`` (lr 0.01); ``competitive`` (3 prototypes a class, lr
0.1); ``competitive, LVQ``; ``neural-gas`` (5 nodes a class, eps 0.05, lam 1, tau 100, max_age 50);
and ``joint linear``: the upper bound, a softmax linear classifier (with bias) trained after every
session from scratch on the same frozen features of all the data the sessions so far saw (the base
data and the same K shots), with class-balanced loss weighting (each sample weighted 1/n_c, so
every class has the same total weight and the shot classes are not swamped by the base),
full-batch L-BFGS from zero (strong Wolfe, at most 300 iterations) on features divided by their
mean norm, with an L2 penalty on the weights chosen from 1e-6, 1e-5, ..., 1e-1 by the
class-balanced accuracy on a stratified, seeded fifth of the training rows held out (one shot of
each 5-shot class), then refitted on all of them; no test sample chooses anything. Reported per row: accuracy on all seen classes after the last session (mean ±
std over seeds), on the base and the new classes, and the session table (first, last, average,
drop = first - last), all weighted by test samples as ``metrics.json``'s ``fscil`` is.

``slda`` (added after the whitened rows): streaming LDA, ``edgelll.runtime.slda``, class means and
one within-class scatter that every sample, base and shots alike, updates; the metric is
``--whiten``'s map of the running scatter, its shrinkage ``--whiten auto``'s choice on the base
(what ``-s slda``'s ``shrink=auto`` picks). On the long stream its scatter is seeded with the
background characters' within-class scatter (``seed_scatter``, the data the map is fitted on),
and each new character's 15 drawings add to it.

Whitened rows (``<head>, whitened``): the same heads on the features after ``--whiten auto``'s map
(``edgelll.runtime.whiten.fit_whitening`` on the base session's features and labels alone, its
shrinkage chosen on base-class folds posing as K-shot classes); ``joint linear, whitened
features`` is the upper bound trained on those features (an affine map of the raw ones: the same
classifiers, under another penalty). The targets take the best of every head row against the
better of the two bounds.

Check: for seed 0 of every FSCIL set, ``edgelll.learn`` with ``-s ncm --freeze-backbone-after 1``
end to end must give the numpy NCM row's accuracies after every session (within 1e-9), with
``--whiten auto`` the ``ncm, whitened`` row's, and ``-s slda`` the ``slda`` row's (within 3e-4:
the run applies the map in float32 torch, so a sample on a boundary may fall the other way).

``omniglot-long`` (OML, Javed & White 2019; ANML, Beaulieu et al. 2020): a backbone trained by
``edgelll.learn`` on the 964 background characters (15 drawings each, one experience, ``convnet``,
10 epochs); then 600 of the 659 evaluation characters (a seeded permutation, the first 600) are
learned one class at a time from their 15 training drawings (one ``add_class`` each) by every head,
starting empty, and tested on the other 5 drawings of every class learned so far; accuracy after
10, 50, 100, 200 and 600 classes. ``joint linear`` is trained on the same frozen features of every
class so far (15 drawings each: balanced by construction) at each of those points. Its whitening
is fitted on the background characters' training features (the backbone's own data; 15 shots).

Targets (issue #10): on every FSCIL set the best head's last-session accuracy within 3 points of
``joint linear`` and at least 30 points above fine-tuning; on the 600-class stream within 3
points of ``joint linear`` after 600 classes. The MLP, Omniglot and long-stream protocols were
fixed before their results; the whitened rows and the convnet sets came after (said where they
are reported).

    python benchmarks/fscil.py --data-dir FOLDER [--seeds 5] [--sets mnist,fashion-mnist,omniglot,
           omniglot-long,mnist-convnet,fashion-mnist-convnet] [--json benchmarks/results/fscil.json]
           [--md benchmarks/results/fscil.md]

FOLDER (or ``EDGELLL_DATA``) holds ``mnist.npz``, ``fashion_mnist.npz`` and ``omniglot28.npz``
(the sets asked for). ``--epochs N`` replaces every set's epochs, for a quick look only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FILES = {"mnist": "mnist.npz", "fashion-mnist": "fashion_mnist.npz", "omniglot": "omniglot28.npz",
         "omniglot-long": "omniglot28.npz", "mnist-convnet": "mnist.npz",
         "fashion-mnist-convnet": "fashion_mnist.npz"}
TRAIN = {"batch_size": 128, "lr": 1e-3, "optimizer": "adam", "device": "cpu"}
SETS = {  # the stream and model of every FSCIL set
    "mnist": {"data": "mnist", "base_classes": 5, "ways": 1, "shots": 5, "sessions": 5,
              "class_order": "natural", "model": "mlp", "epochs": 3},
    "fashion-mnist": {"data": "fashion-mnist", "base_classes": 5, "ways": 1, "shots": 5,
                      "sessions": 5, "class_order": "natural", "model": "mlp", "epochs": 3},
    "omniglot": {"data": "omniglot", "base_classes": 200, "ways": 5, "shots": 5, "sessions": 8,
                 "class_order": "random", "model": "convnet", "epochs": 10},
}
# The same MNIST and Fashion-MNIST streams on the convnet backbone (Omniglot's), added after the
# MLP's tables were in: the backbone decides how far above fine-tuning the heads can be.
for _name in ("mnist", "fashion-mnist"):
    SETS[f"{_name}-convnet"] = {**SETS[_name], "model": "convnet"}
LONG = {"model": "convnet", "epochs": 10, "classes": 600, "report": (10, 50, 100, 200, 600)}
HEADS = {  # row -> (runtime kind, the strategy's default settings)
    "ncm": ("ncm", {}),
    "hebbian": ("hebbian", {"oja": False, "lr": 0.01, "balanced": True}),
    "hebbian, Oja": ("hebbian", {"oja": True, "lr": 0.01, "balanced": True}),
    "competitive": ("competitive", {"per_class": 3, "lr": 0.1, "decay": 0.0, "by": "distance",
                                    "lvq": False}),
    "competitive, LVQ": ("competitive", {"per_class": 3, "lr": 0.1, "decay": 0.0,
                                         "by": "distance", "lvq": True}),
    "neural-gas": ("neural-gas", {"per_class": 5, "eps": 0.05, "lam": 1.0, "tau": 100.0,
                                  "max_age": 50.0, "max_nodes": 0}),
    # added after the whitened rows: the shrinkage is --whiten auto's choice (slda.shrink auto)
    "slda": ("slda", {"shrink": "auto"}),
}
NAIVE, JOINT = "fine-tuning (naive)", "joint linear (upper bound)"
JOINT_W = "joint linear, whitened features"
# the same heads after --whiten (slda fits its own such map, from its running scatter)
WHITENED = {f"{row}, whitened": spec for row, spec in HEADS.items() if spec[0] != "slda"}
ALL_HEADS = {**HEADS, **WHITENED}
JOINT_L2, JOINT_ITERS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1), 300  # the L2 grid, L-BFGS iterations
CHUNK = 256  # the base session's learning chunks, as the strategies' refit
# (strategy, --whiten, the numpy row the whole run must reproduce, tolerance). The whitened and
# slda routes' runs apply a map in torch (float32 matmul), the numpy rows in numpy: rounding may
# move a sample that sits on a boundary, so their accuracies may differ by a sample or two of a
# session's test set (the raw NCM route must agree exactly).
CHECKS = [("ncm", None, "ncm", 1e-9), ("ncm", "auto", "ncm, whitened", 3e-4),
          ("slda", None, "slda", 3e-4)]


# -- heads on feature arrays ---------------------------------------------------------------------
def empty_head(kind: str, dim: int, params: dict):
    from edgelll.runtime import NCMHead
    from edgelll.runtime.gradient_free import empty_head as empty

    if kind == "ncm":
        return NCMHead(np.zeros((0, dim), np.float32), np.zeros(0, np.float32),
                       np.zeros(0, np.int64), np.zeros(0, np.int64))
    return empty(kind, dim, **params)


def resolved(params: dict, white) -> dict:
    """A row's settings with ``shrink="auto"`` replaced by the strategy's choice, which is
    ``--whiten auto``'s (``choose_shrink`` on the same data)."""
    return {**params, "shrink": white.shrink} if params.get("shrink") == "auto" else params


def learn_base(head, kind: str, params: dict, feats: np.ndarray, y: np.ndarray) -> None:
    """The base session as the strategies' refit learns it: chunks of 256 in the data's order, a
    class added from its rows in its first chunk, then the chunk learned (the running-mean heads,
    whose add_class already learned those rows, learn the rest of the chunk)."""
    adds_learn = kind in ("ncm", "slda") or (kind == "hebbian" and not params["oja"])
    known: set[int] = set()
    for start in range(0, len(y), CHUNK):
        f, c = feats[start:start + CHUNK], y[start:start + CHUNK]
        new = [int(k) for k in np.unique(c) if int(k) not in known]
        for k in new:
            head.add_class(f[c == k], k)
            known.add(k)
        rest = ~np.isin(c, new) if adds_learn else np.ones(len(c), bool)
        if rest.any():
            head.learn(f[rest], c[rest])


def predict(head, feats: np.ndarray) -> np.ndarray:
    return head.labels[np.argmax(head.scores(feats), axis=1)]


def fit_linear(x, t, n_classes: int, l2: float, iters: int = JOINT_ITERS):
    """``(weight, bias)`` of the class-balanced softmax regression on ``x`` (torch tensors): each
    sample weighted 1/(C n_c), so every class has the same total weight; L2 ``l2`` on the weights;
    full-batch L-BFGS from zero (deterministic)."""
    import torch
    import torch.nn.functional as F

    counts = torch.bincount(t, minlength=n_classes).float()
    w = 1.0 / (counts[t] * (counts > 0).sum())
    weight = torch.zeros(n_classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iters, history_size=20,
                            tolerance_grad=1e-7, tolerance_change=1e-10,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (F.cross_entropy(x @ weight.T + bias, t, reduction="none") * w).sum()
        loss = loss + 0.5 * l2 * (weight * weight).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach(), bias.detach()


def held_out_fold(t, n_classes: int, seed: int):
    """A stratified fifth of every class's rows (at least one where a class has two or more; a
    class of one sample stays in training), seeded."""
    rng = np.random.default_rng([seed, 0x501D])
    t = t.numpy()
    fold = np.zeros(len(t), bool)
    for c in range(n_classes):
        rows = np.flatnonzero(t == c)
        k = max(1, round(len(rows) / 5)) if len(rows) > 1 else 0
        fold[rng.choice(rows, k, replace=False)] = True
    return fold


def joint_linear(feats: np.ndarray, y: np.ndarray, seed: int):
    """The upper bound: a softmax linear classifier on frozen features (features divided by their
    mean norm), class-balanced by loss weighting, its L2 chosen from ``JOINT_L2`` by the
    class-balanced accuracy on a stratified held-out fifth of the training rows, then refitted on
    all of them; returns ``(predict(feats), the L2 chosen)``."""
    import torch

    classes, yi = np.unique(y, return_inverse=True)
    n = len(classes)
    x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
    scale = x.norm(dim=1).mean().clamp_min(1e-12)
    x = x / scale
    t = torch.from_numpy(yi.astype(np.int64))
    fold = torch.from_numpy(held_out_fold(t, n, seed))
    scores = []
    for l2 in JOINT_L2:
        weight, bias = fit_linear(x[~fold], t[~fold], n, l2)
        right = ((x[fold] @ weight.T + bias).argmax(1) == t[fold]).float()
        per_class = torch.zeros(n).index_add_(0, t[fold], right)
        seen = torch.bincount(t[fold], minlength=n)
        scores.append(float((per_class[seen > 0] / seen[seen > 0]).mean()))
    l2 = JOINT_L2[int(np.argmax(scores))]  # the first best: the weakest penalty among ties
    weight, bias = fit_linear(x, t, n, l2)

    def predict_fn(f: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)) / scale
        return classes[(z @ weight.T + bias).argmax(1).numpy()]
    return predict_fn, l2


# -- FSCIL ---------------------------------------------------------------------------------------
def session_scores(correct_per_session: list[np.ndarray], base_n: int) -> dict:
    """``correct_per_session[s]``: per test sample of the classes seen after session s, in the
    stream's order (session 0's first), whether it was right. The ``fscil`` figures of
    metrics.json from it."""
    all_, base, new = [], [], []
    for s, ok in enumerate(correct_per_session):
        all_.append(float(ok.mean()))
        base.append(float(ok[:base_n].mean()))
        new.append(float(ok[base_n:].mean()) if s > 0 else None)
    arr = np.asarray(all_)
    return {"all": all_, "base": base, "new": new, "first": all_[0], "last": all_[-1],
            "average": float(arr.mean()), "drop": all_[0] - all_[-1]}


def fscil_seed(name: str, data, seed: int, epochs: int | None, threads: int, check: bool) -> dict:
    import torch

    import edgelll
    from edgelll.fscil import fscil_spec
    from edgelll.runtime.whiten import fit_whitening
    from edgelll.strategies.replay import embed
    from edgelll.streams import make_stream

    s = {k: v for k, v in SETS[name].items() if k != "data"}
    if epochs is not None:
        s["epochs"] = epochs
    cfg = {"stream": "fscil", **s, **TRAIN, "seed": seed, "threads": threads}
    out: dict = {"seconds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        naive = edgelll.learn(edgelll.resolve({**cfg, "strategies": ["naive"]}), data=data,
                              run_dir=Path(tmp) / "naive", plot="none")
        out["seconds"]["naive"] = time.perf_counter() - t0
        f = naive.metrics["fscil"]
        out[NAIVE] = {"all": f["sessions"]["all"], "base": f["sessions"]["base"],
                      "new": f["sessions"]["new"], "first": f["first"], "last": f["last"],
                      "average": f["average"], "drop": f["drop"]}
        backbone = edgelll.load_model(Path(tmp) / "naive" / "checkpoints" / "exp000.pt")
    rcfg = edgelll.resolve({**cfg, "strategies": ["naive"]})
    stream = make_stream(data, "fscil", "class", rcfg.tasks, rcfg.class_order, seed, "cpu",
                         fscil_spec(rcfg))
    exps = stream.experiences
    t0 = time.perf_counter()
    train = [e.train_data() for e in exps]
    with torch.no_grad():
        f_tr = [embed(backbone, b.x).numpy() for b in train]
        f_te = [embed(backbone, e.x_test).numpy() for e in exps]
    y_tr = [b.y.numpy() for b in train]
    y_te = [e.y_test.numpy() for e in exps]
    out["seconds"]["features"] = time.perf_counter() - t0
    base_n = len(y_te[0])

    def seen(parts: list) -> list:  # session i's test set: the test rows of sessions 0..i
        return [np.concatenate(parts[:i + 1]) for i in range(len(parts))]

    seen_y = seen(y_te)
    t0 = time.perf_counter()
    white = fit_whitening(f_tr[0], y_tr[0], "auto", shots=s["shots"], seed=seed)
    out["whiten"] = {"shrink": white.shrink, "scores": white.scores,
                     "seconds": time.perf_counter() - t0}
    spaces = {"raw": (f_tr, seen(f_te)), "whitened": ([white(f) for f in f_tr],
                                                      seen([white(f) for f in f_te]))}
    for row, (kind, params) in ALL_HEADS.items():
        t0 = time.perf_counter()
        tr, te = spaces["whitened" if row in WHITENED else "raw"]
        params = resolved(params, white)
        head = empty_head(kind, tr[0].shape[1], params)
        learn_base(head, kind, params, tr[0], y_tr[0])
        correct = [predict(head, te[0]) == seen_y[0]]
        for i in range(1, len(exps)):
            for c in np.unique(y_tr[i]):
                head.add_class(tr[i][y_tr[i] == c], int(c))
            correct.append(predict(head, te[i]) == seen_y[i])
        out[row] = session_scores(correct, base_n)
        out["seconds"][row] = time.perf_counter() - t0
    for row, space in ((JOINT, "raw"), (JOINT_W, "whitened")):
        t0 = time.perf_counter()
        tr, te = spaces[space]
        correct, chosen = [], []
        for i in range(len(exps)):
            fn, l2 = joint_linear(np.concatenate(tr[:i + 1]), np.concatenate(y_tr[:i + 1]), seed)
            correct.append(fn(te[i]) == seen_y[i])
            chosen.append(l2)
        out[row] = {**session_scores(correct, base_n), "l2": chosen}
        out["seconds"][row] = time.perf_counter() - t0
    if check:
        t0 = time.perf_counter()
        out["check"] = []
        for strategy, whiten, row, tol in CHECKS:
            e2e = edgelll.learn(edgelll.resolve({**cfg, "strategies": [strategy],
                                                 "whiten": whiten, "freeze_backbone_after": 1,
                                                 "checkpoints": False}), data=data, plot="none")
            got, want = e2e.metrics["fscil"]["sessions"]["all"], out[row]["all"]
            run = (f"edgelll learn -s {strategy} --freeze-backbone-after 1"
                   + (f" --whiten {whiten}" if whiten else ""))
            out["check"].append({"run": run, "row": row, "tol": tol,
                                 "run_acc": got,
                                 "numpy_acc": want,
                                 "max_abs_diff": float(np.max(np.abs(np.subtract(got, want))))})
        out["seconds"]["check"] = time.perf_counter() - t0
    return out


# -- Omniglot, the long stream ---------------------------------------------------------------------
def long_seed(data, seed: int, epochs: int | None, threads: int) -> dict:
    import torch

    import edgelll
    from edgelll.runtime.whiten import fit_whitening
    from edgelll.strategies.replay import embed

    pool = np.asarray(data.base_pool)
    bg_tr, bg_te = np.isin(data.y_train, pool), np.isin(data.y_test, pool)
    cfg = {"stream": "split", "tasks": 1, "model": LONG["model"],
           "epochs": LONG["epochs"] if epochs is None else epochs, **TRAIN, "seed": seed,
           "threads": threads, "strategies": ["naive"], "checkpoints": False}
    out: dict = {"seconds": {}}
    t0 = time.perf_counter()
    run = edgelll.learn(edgelll.resolve(cfg), data=(data.x_train[bg_tr], data.y_train[bg_tr],
                                                   data.x_test[bg_te], data.y_test[bg_te]),
                        plot="none")
    out["seconds"]["backbone"] = time.perf_counter() - t0
    out["backbone_acc"] = run.metrics["acc"]  # held-out drawings of the 964 background characters
    evaluation = np.setdiff1d(np.unique(data.y_train), pool)
    order = np.random.default_rng([seed, 600]).permutation(evaluation)[:LONG["classes"]]
    ev_tr, ev_te = np.isin(data.y_train, order), np.isin(data.y_test, order)
    t0 = time.perf_counter()
    with torch.no_grad():
        f_tr = embed(run.model, torch.as_tensor(data.x_train[ev_tr])).numpy()
        f_te = embed(run.model, torch.as_tensor(data.x_test[ev_te])).numpy()
        f_bg = embed(run.model, torch.as_tensor(data.x_train[bg_tr])).numpy()
    y_tr, y_te = data.y_train[ev_tr], data.y_test[ev_te]
    out["seconds"]["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()  # the map from the backbone's own training data (background)
    white = fit_whitening(f_bg, data.y_train[bg_tr], "auto", shots=15, seed=seed)
    out["whiten"] = {"shrink": white.shrink, "scores": white.scores,
                     "seconds": time.perf_counter() - t0}
    spaces = {"raw": (f_tr, f_te), "whitened": (white(f_tr), white(f_te))}
    rank = np.empty(int(data.y_train.max()) + 1, np.int64)
    rank[order] = np.arange(len(order))  # when each class is learned
    r_tr, r_te = rank[y_tr], rank[y_te]
    by_class = [np.flatnonzero(r_tr == i) for i in range(len(order))]
    points = [n for n in LONG["report"] if n <= len(order)]
    for row, (kind, params) in ALL_HEADS.items():
        t0 = time.perf_counter()
        tr, te = spaces["whitened" if row in WHITENED else "raw"]
        params = resolved(params, white)
        head = empty_head(kind, tr.shape[1], params)
        if kind == "slda":  # its metric starts from the backbone's own data, as the map does
            head.seed_scatter(f_bg, data.y_train[bg_tr])
        accs = {}
        for i, c in enumerate(order):
            head.add_class(tr[by_class[i]], int(c))
            if i + 1 in points:
                test = r_te <= i
                accs[str(i + 1)] = float((predict(head, te[test]) == y_te[test]).mean())
        out[row] = accs
        out["seconds"][row] = time.perf_counter() - t0
    for row, space in ((JOINT, "raw"), (JOINT_W, "whitened")):
        t0 = time.perf_counter()
        tr, te = spaces[space]
        accs, chosen = {}, []
        for n in points:
            fn, l2 = joint_linear(tr[r_tr < n], y_tr[r_tr < n], seed)
            accs[str(n)] = float((fn(te[r_te < n]) == y_te[r_te < n]).mean())
            chosen.append(l2)
        out[row] = accs
        out[f"{row} l2"] = chosen
        out["seconds"][row] = time.perf_counter() - t0
    return out


# -- tables ----------------------------------------------------------------------------------------
def ms(values) -> str:
    v = 100 * np.asarray([x for x in values if x is not None], dtype=float)
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{v.mean():.1f} ± {sd:.1f}"


def rows_of(seeds: list[dict]) -> list[str]:
    return [r for r in (NAIVE, *ALL_HEADS, JOINT, JOINT_W) if r in seeds[0]]


def fscil_table(name: str, seeds: list[dict]) -> str:
    s = SETS[name]
    out = [f"#### {name}: {s['base_classes']} base classes, then {s['sessions']} sessions of "
           f"{s['ways']}-way {s['shots']}-shot, {s['model']} ({len(seeds)} seeds)", "",
           "| row | all seen, last (%) | base, last | new, last | first / last / average / drop "
           "| sessions 0..S (mean %) |", "|---|---|---|---|---|---|"]
    for row in rows_of(seeds):
        runs = [x[row] for x in seeds]
        table = " / ".join(f"{100 * np.mean([r[k] for r in runs]):.1f}"
                           for k in ("first", "last", "average", "drop"))
        curve = " ".join(f"{100 * np.mean([r['all'][i] for r in runs]):.1f}"
                         for i in range(len(runs[0]["all"])))
        out.append(f"| {row} | {ms(r['last'] for r in runs)} | {ms(r['base'][-1] for r in runs)} "
                   f"| {ms(r['new'][-1] for r in runs)} | {table} | {curve} |")
    return "\n".join(out)


def long_table(seeds: list[dict]) -> str:
    points = list(seeds[0]["ncm"])
    acc = ms(x["backbone_acc"] for x in seeds)
    out = [f"#### omniglot-long: 600 evaluation characters one at a time, 15 drawings each "
           f"({len(seeds)} seeds; backbone on the 964 background characters, {acc}% on their "
           f"held-out drawings)", "",
           "| row | " + " | ".join(f"after {n} (%)" for n in points) + " |",
           "|---|" + "---|" * len(points)]
    for row in rows_of(seeds):
        if row == NAIVE:
            continue
        out.append(f"| {row} | " + " | ".join(ms(x[row][n] for x in seeds) for n in points) + " |")
    return "\n".join(out)


def targets(results: dict) -> tuple[str, list[dict]]:
    out = ["| data set | best head | its accuracy (%) | upper bound (%) | gap (target <= 3) "
           "| fine-tuning (%) | margin (target >= 30) | met |", "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for name, seeds in results.items():
        last = (lambda r: np.mean([x[r]["last"] for x in seeds])) if name != "omniglot-long" else (
            lambda r: np.mean([x[r][list(x[r])[-1]] for x in seeds]))
        best = max((r for r in ALL_HEADS if r in seeds[0]), key=last)
        bound = max((r for r in (JOINT, JOINT_W) if r in seeds[0]), key=last)
        gap = 100 * (last(bound) - last(best))
        v = {"set": name, "best": best, "best_acc": last(best), "joint": last(bound),
             "bound": bound, "gap": gap, "gap_met": bool(gap <= 3)}
        fine, margin = "-", "-"
        if name != "omniglot-long":
            v["naive"] = last(NAIVE)
            v["margin"] = 100 * (last(best) - last(NAIVE))
            v["margin_met"] = bool(v["margin"] >= 30)
            fine, margin = f"{100 * v['naive']:.1f}", f"{v['margin']:+.1f}"
        met = v["gap_met"] and v.get("margin_met", True)
        verdicts.append(v)
        out.append(f"| {name} | {best} | {100 * v['best_acc']:.1f} | {100 * v['joint']:.1f} "
                   f"({'whitened' if bound == JOINT_W else 'raw'}) | "
                   f"{gap:+.1f} | {fine} | {margin} | {'yes' if met else 'no'} |")
    return "\n".join(out), verdicts


def markdown(results: dict, meta: dict) -> str:
    parts = [f"### Few-shot class-incremental benchmarks (issue #10)", "",
             "```sh", meta["command"], "```", "",
             "Protocol (`benchmarks/fscil.py`'s docstring has it in full): every row of a seed "
             "uses the same base backbone, the checkpoint after the base session of that seed's "
             "`-s naive` run (Adam, lr 1e-3, batch 128; MNIST and Fashion-MNIST: MLP 784-400-400, "
             "3 epochs, and on the `-convnet` sets the `convnet` (16-32 channels, 128 features), "
             "3 epochs; Omniglot: `convnet`, 10 epochs). Fine-tuning trains the whole network on "
             "each session's shots alone for the base's epochs (one batch: 3 steps a session on "
             "MNIST/Fashion-MNIST, 10 on Omniglot). The heads (strategy defaults) learn on the "
             "frozen features with the numpy heads of `edgelll.runtime`: the base as "
             "`--freeze-backbone-after 1`'s refit does, then one `add_class` per new class from "
             "its K shots. `joint linear` is the upper bound: a softmax linear classifier "
             "retrained after every session on the frozen features of all the data seen so far "
             "(base data and the same shots), class-balanced by loss weighting (1/n_c a sample), "
             "L-BFGS, its L2 penalty chosen from 1e-6..1e-1 on a held-out fifth of the training "
             "rows (never the test set). `, whitened` rows: the same heads after `--whiten auto`, "
             "the within-class whitening of `edgelll.runtime.whiten` fitted on the base "
             "session's features alone (on the long stream: the backbone's own training data, "
             "the background characters), its shrinkage chosen on base-class folds posing as "
             "K-shot classes; `joint linear, whitened features` is the same upper bound on the "
             "whitened features (an affine map of the raw ones, so the same family of "
             "classifiers, trained with another penalty), and the targets take the better of the "
             "two bounds. `slda`: streaming LDA (`-s slda`), class means and one within-class "
             "scatter updated by every sample, the metric `--whiten`'s map of the running "
             "scatter (shrinkage: `auto`'s choice on the base; on the long stream the scatter "
             "starts from the background characters'). Accuracies are on the test samples of "
             "every class seen, weighted "
             "by samples; `first / last / average / drop` is the FSCIL session table. "
             "Omniglot's test samples are the last 5 drawings of each character; the long stream "
             "learns 600 of the 659 evaluation characters (a seeded order) one at a time from "
             "their 15 other drawings on a backbone trained on the 964 background characters "
             "(10 epochs), the OML/ANML protocol, and tests on the classes learned so far only.",
             ""]
    for name, seeds in results.items():
        parts += [long_table(seeds) if name == "omniglot-long" else fscil_table(name, seeds), ""]
    table, _ = targets(results)
    parts += ["#### Targets", "", table, ""]
    checks: dict = {}  # (run, row) -> {set: the largest difference in a session's accuracy}
    for n, seeds in results.items():
        for c in (c for x in seeds for c in x.get("check", [])):
            checks.setdefault((c["run"], c["row"]), {})[n] = c["max_abs_diff"]
    if checks:
        parts += ["Check, numpy route against the whole run (seed 0 of every FSCIL set): "
                  + "; ".join(f"`{run}` and the numpy row `{row}` differ by at most "
                              f"{max(by_set.values()):.1e} in any session's accuracy "
                              f"({', '.join(by_set)})" for (run, row), by_set in checks.items())
                  + ".", ""]
    shrinks = {n: [x["whiten"]["shrink"] for x in seeds] for n, seeds in results.items()
               if "whiten" in seeds[0]}
    if shrinks:
        parts += ["Whitening shrinkage chosen by `auto` per seed: " + "; ".join(
            f"{n} {', '.join(f'{v:g}' for v in vals)}" for n, vals in shrinks.items()) + ".", ""]
    parts += [f"Wall time {meta['seconds'] / 60:.1f} min on {meta['threads']} thread(s) "
              f"({meta['host']}).", ""]
    return "\n".join(parts)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("EDGELLL_DATA"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sets", default=",".join(FILES))
    parser.add_argument("--epochs", type=int, default=None,
                        help="replace every set's epochs (a quick look; the tables use the defaults)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).parent / "results" / "fscil.json")
    parser.add_argument("--md", type=Path, default=Path(__file__).parent / "results" / "fscil.md")
    args = parser.parse_args()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    bad = [s for s in sets if s not in FILES]

    def refuse(message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)

    if bad or not sets:
        refuse(f"unknown --sets {', '.join(bad) or repr(args.sets)}; choose from {', '.join(FILES)}")
    for flag, value in (("--seeds", args.seeds), ("--threads", args.threads),
                        ("--epochs", args.epochs)):
        if value is not None and value < 1:
            refuse(f"{flag} must be at least 1, got {value}")
    if not args.data_dir:
        refuse("give --data-dir FOLDER (with " + ", ".join(sorted({FILES[s] for s in sets}))
               + ") or set EDGELLL_DATA")
    missing = [p for p in (Path(args.data_dir).expanduser() / FILES[s] for s in sets)
               if not p.is_file()]
    if missing:
        refuse(f"{missing[0]} does not exist; give --data-dir the folder that holds it")

    import platform

    import torch

    from edgelll.data import load_dataset
    from edgelll.errors import EdgelllError

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    command = (f"python benchmarks/fscil.py --data-dir FOLDER --seeds {args.seeds} --sets "
               f"{','.join(sets)}" + (f" --epochs {args.epochs}" if args.epochs else "")
               + (f" --threads {args.threads}" if args.threads != 1 else ""))
    meta = {"command": command,
            "threads": args.threads, "host": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, numpy {np.__version__}"}
    results: dict = {}
    for name in sets:
        path = Path(args.data_dir).expanduser() / FILES[name]
        try:
            data = load_dataset(f"{SETS[name]['data'] if name in SETS else 'omniglot'}={path}")
            if name == "omniglot-long":
                seeds = [long_seed(data, seed, args.epochs, args.threads)
                         for seed in range(args.seeds)]
            else:
                seeds = [fscil_seed(name, data, seed, args.epochs, args.threads, seed == 0)
                         for seed in range(args.seeds)]
        except EdgelllError as exc:
            refuse(str(exc).splitlines()[0])
        results[name] = seeds
        meta["seconds"] = time.perf_counter() - start
        print((long_table(seeds) if name == "omniglot-long" else fscil_table(name, seeds))
              + "\n", flush=True)
        write_atomic(args.json, json.dumps({"meta": meta, "results": results,
                                            "targets": targets(results)[1]}, indent=1))
        write_atomic(args.md, markdown(results, meta))  # after every set: what ran is kept
        bad = [c for x in seeds for c in x.get("check", [])
               if c["max_abs_diff"] > c["tol"]]
        if bad:
            refuse(f"{name}: the numpy row {bad[0]['row']!r} has accuracies {bad[0]['numpy_acc']}, "
                   f"{bad[0]['run']} {bad[0]['run_acc']}")
    print(targets(results)[0])


if __name__ == "__main__":
    main()
