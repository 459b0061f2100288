"""Nyström-preconditioned CG (natgrad) against scipy.sparse.linalg.cg, same run (issue #3).

Problems: dense RBF kernel systems ``(K + μI) x = b``, ``K_ij = exp(−|x_i − x_j|²/(2ℓ²))``
on n = 4000 points from a 3-D standard normal, μ = 1e-2, rtol 1e-8:

(a) length-scale ℓ = 1 (plain CG needs ~670 iterations);
(b) length-scale ℓ = 0.5: slower spectral decay, a larger effective dimension,
    so the preconditioner needs a larger rank.

natgrad: ``nystrom_pcg(K, b, rank, damping=μ)`` for ranks 100–500, timed from
scratch (sketch ``KΩ``, factorisation, preconditioned CG).  Peer: SciPy's CG on
the dense ``K + μI``.  Goal: at the best rank ≥ 10× fewer iterations and ≥ 3×
less wall time.  Also ``rank="auto"`` and the SVD-free ``method="cholesky"``
variant at the best rank, and natgrad's own unpreconditioned CG for reference.

Run: ``python benchmarks/bench_nystrom.py`` (``--quick`` for a small version).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as spla

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, median_time, parse_args, write_result  # noqa: E402

from natgrad.linalg import cg  # noqa: E402
from natgrad.linalg.nystrom import nystrom_pcg  # noqa: E402

MU, RTOL = 1e-2, 1e-8


def rbf_system(n: int, length: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    sq = np.sum(X**2, axis=1)
    D = np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0)
    K = np.exp(-D / (2.0 * length**2))
    return K, rng.standard_normal(n)


def scipy_cg(A, b):
    count = [0]

    def cb(_):
        count[0] += 1

    x, info = spla.cg(A, b, rtol=RTOL, atol=0.0, maxiter=20 * len(b), callback=cb)
    return x, count[0], info


def compare(name, n, length, ranks, repeats):
    K, b = rbf_system(n, length)
    Kmu = K + MU * np.eye(n)
    norm_b = np.linalg.norm(b)

    def rel(x):
        return np.linalg.norm(Kmu @ x - b) / norm_b

    t_sp, (x_sp, it_sp, info) = median_time(lambda: scipy_cg(Kmu, b), repeats)
    rows = [["scipy cg (no preconditioner)", "-", it_sp, f"{rel(x_sp):.1e}", f"{t_sp * 1e3:.0f}", "1", "1"]]
    t_pl, res_pl = median_time(lambda: cg(Kmu, b, rtol=RTOL, maxiter=20 * n), repeats)
    rows.append(["natgrad cg (no preconditioner)", "-", res_pl.iterations, f"{rel(res_pl.x):.1e}",
                 f"{t_pl * 1e3:.0f}", f"{it_sp / res_pl.iterations:.2f}", f"{t_sp / t_pl:.2f}"])
    best = None
    for rank in ranks:
        t, res = median_time(lambda: nystrom_pcg(K, b, rank, damping=MU, seed=0, rtol=RTOL), repeats)
        rows.append(["natgrad nystrom_pcg", rank, res.iterations, f"{rel(res.x):.1e}", f"{t * 1e3:.0f}",
                     f"{it_sp / res.iterations:.1f}", f"{t_sp / t:.2f}"])
        if res.converged and (best is None or t < best[0]):
            best = (t, rank, res.iterations)
    t_auto, res_auto = median_time(lambda: nystrom_pcg(K, b, "auto", damping=MU, seed=0, rtol=RTOL,
                                                        max_rank=max(ranks)), repeats)
    rank_auto = res_auto.stats["rank"]
    rows.append(["natgrad nystrom_pcg, rank='auto'", rank_auto, res_auto.iterations, f"{rel(res_auto.x):.1e}",
                 f"{t_auto * 1e3:.0f}", f"{it_sp / res_auto.iterations:.1f}", f"{t_sp / t_auto:.2f}"])
    if best is not None:
        t_ch, res_ch = median_time(lambda: nystrom_pcg(K, b, best[1], damping=MU, seed=0, rtol=RTOL,
                                                        method="cholesky"), repeats)
        rows.append(["natgrad nystrom_pcg, method='cholesky'", best[1], res_ch.iterations, f"{rel(res_ch.x):.1e}",
                     f"{t_ch * 1e3:.0f}", f"{it_sp / res_ch.iterations:.1f}", f"{t_sp / t_ch:.2f}"])
    header = ["solver", "rank", "iterations", "rel. residual", "median ms", "scipy iters / these", "scipy time / this"]
    text = f"### ({name}) n = {n}, length-scale {length}, μ = {MU}, rtol = {RTOL}\n\n" + markdown_table(header, rows)
    if best is not None:
        t, rank, iters = best
        met = it_sp / iters >= 10 and t_sp / t >= 3
        text += (f"\n\nBest rank {rank}: {it_sp / iters:.1f}× fewer iterations, {t_sp / t:.1f}× less wall time "
                 f"(goal ≥ 10× and ≥ 3×: {'yes' if met else 'NO'}).")
    return text


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    if args.quick:
        n, ranks, repeats = 1000, (50, 100, 200), args.repeats or 2
    else:
        n, ranks, repeats = 4000, (100, 200, 300, 400, 500), args.repeats or 3
    body = compare("a", n, 1.0, ranks, repeats) + "\n\n" + compare("b", n, 0.5, ranks, repeats)
    write_result("nystrom", "Nyström-preconditioned CG: natgrad vs scipy.sparse.linalg.cg", body, args.quick)


if __name__ == "__main__":
    main()
