"""A small solver for the non-negative quadratic programme of gradient projection (GEM).

    minimise 1/2 v^T Q v + p^T v   subject to   v >= 0,      Q symmetric positive semi-definite,

for the few dozen variables GEM has (one per past experience). The method is the active-set
algorithm of Lawson & Hanson's NNLS (1974, ch. 23) written on the KKT conditions instead of on a
design matrix: with w = -(Q v + p) the optimum satisfies v >= 0, w <= 0 and v_i w_i = 0. Variables
enter the free set one at a time (the one whose w_i is most positive), the free block is solved
exactly (Q_FF z = -p_F) and any variable the step would drive negative leaves again. A variable
only enters while its w_i > tol, which keeps Q_FF non-singular even when Q itself is singular
(GEM's Q = G G^T has rank below its size when two memories' gradients are parallel): a column in
the span of the free ones has w_i = 0 at the free optimum. Computations are in float64.
"""

from __future__ import annotations

import torch


def nonneg_qp(Q: torch.Tensor, p: torch.Tensor, tol: float = 1e-10,
              max_iter: int | None = None) -> torch.Tensor:
    """argmin_{v >= 0} 1/2 v^T Q v + p^T v, as a float64 tensor on the CPU.

    ``tol`` is relative to the problem's scale (the largest |Q_ij| or |p_i|); ``max_iter`` caps the
    linear solves (default 3 n + 10; the exact answer takes n or a few more). Every iterate is
    feasible, so the answer after the cap is too, only less exact.
    """
    Q = Q.detach().to("cpu", torch.float64)
    p = p.detach().to("cpu", torch.float64).reshape(-1)
    n = p.shape[0]
    if Q.shape != (n, n):
        raise ValueError(f"Q must be {n}x{n} to match p, got {tuple(Q.shape)}")
    Q = 0.5 * (Q + Q.T)
    v = torch.zeros(n, dtype=torch.float64)
    if n == 0:
        return v
    scale = max(float(Q.abs().max()), float(p.abs().max()), torch.finfo(torch.float64).tiny)
    eps = tol * scale
    free = torch.zeros(n, dtype=torch.bool)
    solves, cap = 0, max_iter if max_iter is not None else 3 * n + 10
    while solves < cap:
        w = -(Q @ v + p)
        candidates = torch.where(free, torch.full_like(w, -torch.inf), w)
        j = int(torch.argmax(candidates))
        if candidates[j] <= eps:
            break  # KKT holds: every fixed variable has a non-negative gradient
        free[j] = True
        while solves < cap:  # each pass fixes at least one variable, so at most n of them
            solves += 1
            z = _solve_free(Q, p, free)
            bad = free & (z <= 0)
            if not bool(bad.any()):
                v = z
                break
            # Step from v toward z as far as feasibility allows; whoever hits zero leaves.
            ratio = torch.where(bad, v / (v - z).clamp_min(torch.finfo(torch.float64).tiny),
                                torch.full_like(v, torch.inf))
            alpha = float(ratio.min().clamp(0.0, 1.0))
            v = v + alpha * (z - v)
            leave = free & ((v <= eps * 1e-3) | (bad & (ratio <= alpha)))
            free &= ~leave
            v = torch.where(free, v, torch.zeros_like(v))
            if not bool(free.any()):
                break
    return v


def _solve_free(Q: torch.Tensor, p: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """The unconstrained optimum over the free variables, the others held at zero."""
    idx = torch.nonzero(free).flatten()
    z = torch.zeros_like(p)
    if idx.numel():
        Qff = Q[idx][:, idx]
        sol = torch.linalg.lstsq(Qff, -p[idx].unsqueeze(1), driver="gelsd").solution.flatten()
        z[idx] = sol
    return z


def kkt_residual(Q: torch.Tensor, p: torch.Tensor, v: torch.Tensor) -> float:
    """The largest violation of the KKT conditions at ``v`` (0 at the exact optimum)."""
    Q, p, v = (t.to(torch.float64) for t in (Q, p, v))
    g = Q @ v + p  # the gradient: >= 0 everywhere, 0 where v > 0
    return max(float((-v).clamp_min(0).max()), float((-g).clamp_min(0).max()),
               float((v * g).abs().max()))
