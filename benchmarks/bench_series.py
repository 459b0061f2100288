"""Saddle-free Newton from Hessian-vector products: error against the number of
products for the Neumann series, the saddle-free series (plain and Wynn-ε
accelerated) and the Lanczos method.

Problems
--------
(a) a synthetic indefinite H (n = 1000; 300 with --quick), |eigenvalues|
    log-spaced in [1e-3, 1] with random signs, damping 1e-2, g standard normal;
(b) the Hessian of a small tanh MLP regression loss (formed explicitly with
    torch.autograd.functional.hessian; PyTorch only, no natgrad adapter), g its
    gradient, damping 1e-2·‖H‖₂;
(c) as (a) with |eigenvalues| in [0.1, 1]: a problem on which the plain series
    reaches 1e-3, so that the acceleration can be measured.

The target is ``x* = (|H| + λI)⁻¹ g`` from an eigendecomposition; the error is
``‖x − x*‖/‖x*‖``.  Every count includes the products spent on estimating the
scale / step (16 Lanczos steps).  "Neumann on |H|" applies the Neumann series
to the positive semidefinite |H| (formed from the eigendecomposition): the cost
of the same solve when the curvature is PSD (e.g. a Gauss-Newton matrix) — the
Neumann series on the indefinite H itself diverges, which natgrad reports.
"Krylov optimum" is the best vector of span{g, Hg, …, H^k g}: no method that
uses k products with H can do better.

Run:  python benchmarks/bench_series.py [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, markdown_table, parse_args, write_result  # noqa: E402

from natgrad.linalg.series import neumann_solve, saddle_free_solve  # noqa: E402

THRESHOLDS = (1e-1, 1e-2, 1e-3, 1e-6)


# ---------------------------------------------------------------------------
# problems
# ---------------------------------------------------------------------------


def synthetic(n: int, seed: int = 0, lo: float = 1e-3):
    rng = np.random.default_rng(seed)
    eigs = np.logspace(np.log10(lo), 0, n) * rng.choice([-1.0, 1.0], n)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    H = (Q * eigs) @ Q.T
    H = 0.5 * (H + H.T)
    g = rng.standard_normal(n)
    return H, g, 1e-2


def mlp_hessian(hidden: int, samples: int, seed: int = 0):
    """Hessian and gradient of ½·mean (f(x) − y)² for a 2-hidden-layer tanh MLP."""
    import torch

    torch.manual_seed(seed)
    gen = np.random.default_rng(seed)
    d_in = 3
    X = torch.tensor(gen.standard_normal((samples, d_in)))
    y = torch.sin(X.sum(dim=1, keepdim=True)) + 0.1 * torch.tensor(gen.standard_normal((samples, 1)))
    shapes = [(hidden, d_in), (hidden,), (hidden, hidden), (hidden,), (1, hidden), (1,)]
    sizes = [int(np.prod(s)) for s in shapes]

    def unflatten(theta):
        out, i = [], 0
        for s, k in zip(shapes, sizes):
            out.append(theta[i:i + k].reshape(s))
            i += k
        return out

    def loss(theta):
        W1, b1, W2, b2, W3, b3 = unflatten(theta)
        h = torch.tanh(X @ W1.T + b1)
        h = torch.tanh(h @ W2.T + b2)
        return 0.5 * ((h @ W3.T + b3 - y) ** 2).mean()

    theta = torch.tensor(gen.standard_normal(sum(sizes)) * 0.5, dtype=torch.float64)
    # A few gradient steps away from the initialisation: a typical mid-training
    # Hessian with both signs of curvature.
    for _ in range(50):
        t = theta.clone().requires_grad_(True)
        (gr,) = torch.autograd.grad(loss(t), t)
        theta = theta - 0.1 * gr
    t = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(t), t)
    H = torch.autograd.functional.hessian(loss, theta).numpy()
    H = 0.5 * (H + H.T)
    lam = 1e-2 * np.max(np.abs(np.linalg.eigvalsh(H)))
    return H, grad.numpy(), lam


# ---------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------


def krylov_optimum(H, g, ref, ks):
    """Best relative error over span{g, …, H^k g} for each k in ks."""
    kmax = min(max(ks), len(g) - 1)
    Q = np.zeros((len(g), kmax + 1))
    q = g / np.linalg.norm(g)
    for j in range(kmax + 1):
        Q[:, j] = q
        w = H @ q
        for _ in range(2):
            w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        nw = np.linalg.norm(w)
        if nw < 1e-14:
            Q = Q[:, : j + 1]
            break
        q = w / nw
    out = []
    for k in ks:
        Qk = Q[:, : k + 1]
        out.append((k, float(np.linalg.norm(Qk @ (Qk.T @ ref) - ref) / np.linalg.norm(ref))))
    return out


def curves(H, g, lam, budget):
    w, U = np.linalg.eigh(H)
    ref = U @ ((U.T @ g) / (np.abs(w) + lam))
    absH = (U * np.abs(w)) @ U.T
    n = len(g)

    def err(x):
        return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))

    def counted(M):
        calls = [0]

        def hvp(v):
            calls[0] += 1
            return M @ v

        return hvp, calls

    grid = sorted({int(round(v)) for v in np.geomspace(2, budget, 24)})
    out = {}
    # saddle-free series, plain and accelerated (scale=None: the estimate's
    # products are counted)
    for name, acc in (("SFN series (plain)", False), ("SFN series + Wynn ε", True)):
        pts = []
        for h in grid:
            K = max(1, (h - 16) // 2 + 1)
            if K < 2:
                continue
            hvp, calls = counted(H)
            res = saddle_free_solve(hvp, g, damping=lam, terms=K, accelerate=acc)
            pts.append((calls[0], err(res.x) if res.converged else np.nan))
        out[name] = pts
    pts = []
    for h in grid:
        k = min(h - 1, n)
        if k < 1:
            continue
        hvp, calls = counted(H)
        res = saddle_free_solve(hvp, g, damping=lam, terms=k, method="lanczos")
        pts.append((calls[0], err(res.x) if res.converged else np.nan))
    out["Lanczos (natgrad)"] = pts
    pts = []
    for h in grid:
        K = h - 16
        if K < 1:
            continue
        hvp, calls = counted(absH)
        res = neumann_solve(hvp, g, alpha="auto", damping=lam, terms=K)
        pts.append((calls[0], err(res.x) if res.converged else np.nan))
    out["Neumann on |H| (PSD, for scale)"] = pts
    out["Krylov optimum (lower bound)"] = krylov_optimum(H, g, ref, [h for h in grid if h < n])
    # the Neumann series on the indefinite H: natgrad must report, not return garbage
    hvp, _ = counted(H)
    neg = neumann_solve(hvp, g, alpha="auto", damping=lam, terms=200)
    return out, neg


def first_reach(pts, tol):
    for h, e in pts:
        if np.isfinite(e) and e <= tol:
            return h
    return None


def table(name, data):
    rows = []
    for method, pts in data.items():
        reach = [first_reach(pts, t) for t in THRESHOLDS]
        best = min((e for _, e in pts if np.isfinite(e)), default=np.nan)
        rows.append([method] + [r if r is not None else "—" for r in reach] + [f"{best:.2e}", pts[-1][0]])
    header = ["method"] + [f"HVPs to {t:g}" for t in THRESHOLDS] + ["best error", "max HVPs"]
    return f"### {name}\n\n" + markdown_table(header, rows)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.5))
    for ax, (title, data) in zip(np.atleast_1d(axes), results.items()):
        for method, pts in data.items():
            h = [p[0] for p in pts]
            e = [max(p[1], 1e-17) for p in pts]
            style = "k:" if "optimum" in method else "-o"
            ax.loglog(h, e, style, ms=3, label=method)
        ax.axhline(1e-3, color="grey", lw=0.5)
        ax.axhline(1e-6, color="grey", lw=0.5)
        ax.set_xlabel("Hessian-vector products")
        ax.set_ylabel("relative error ‖x − x*‖/‖x*‖")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    quick = args.quick
    t0 = time.perf_counter()
    n_a, budget_a = (300, 400) if quick else (1000, 1200)
    hidden, samples = (6, 32) if quick else (16, 128)

    H, g, lam = synthetic(n_a)
    data_a, neg_a = curves(H, g, lam, budget_a)
    Hb, gb, lamb = mlp_hessian(hidden, samples)
    wb = np.linalg.eigvalsh(Hb)
    data_b, _ = curves(Hb, gb, lamb, min(budget_a, 2 * len(gb)))
    Hc, gc, lamc = synthetic(n_a, lo=0.1)
    data_c, _ = curves(Hc, gc, lamc, budget_a)
    title_c = f"(c) as (a) but |λ| in [0.1, 1] (a problem the series can solve), n={n_a}"
    title_a = f"(a) synthetic H, n={n_a}, |λ| log-spaced in [1e-3, 1], random signs, damping 1e-2"
    title_b = (
        f"(b) tanh MLP Hessian, P={len(gb)}, eigenvalues in [{wb[0]:.2e}, {wb[-1]:.2e}] "
        f"({np.sum(wb < 0)} negative), damping {lamb:.2e}"
    )
    png = RESULTS / ("series-quick.png" if quick else "series.png")
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot({
        title_a.split(",")[0] + f", n={n_a}": data_a,
        title_b.split(",")[0] + f", P={len(gb)}": data_b,
        f"(c) as (a), |λ| in [0.1, 1], n={n_a}": data_c,
    }, png)
    plain_c = first_reach(data_c["SFN series (plain)"], 1e-3)
    acc_c = first_reach(data_c["SFN series + Wynn ε"], 1e-3)

    plain = first_reach(data_a["SFN series (plain)"], 1e-3)
    acc = first_reach(data_a["SFN series + Wynn ε"], 1e-3)
    lan6 = first_reach(data_a["Lanczos (natgrad)"], 1e-6)
    opt100 = [e for h, e in data_a["Krylov optimum (lower bound)"] if h <= 100]
    opt6 = first_reach(data_a["Krylov optimum (lower bound)"], 1e-6)
    goal1 = (
        f"met ({acc} vs {plain} HVPs)" if plain and acc and acc <= plain / 2
        else f"NOT met: accelerated reaches 1e-3 at {acc or '—'} HVPs, plain at {plain or '—'} "
             f"(within {budget_a} HVPs)"
    )
    goal2 = (
        f"met ({lan6} HVPs)" if lan6 and lan6 <= 100
        else f"NOT met: Lanczos reaches 1e-6 at {lan6 or '—'} HVPs"
    )
    body = "\n\n".join([
        "Relative error ‖x − x*‖/‖x*‖ of (|H| + λI)⁻¹ g against Hessian-vector products "
        f"(HVPs, including the 16 spent on scale estimation). Plot: `{png.name}`.",
        f"{title_a}\n\n" + table("(a)", data_a),
        f"{title_b}\n\n" + table("(b)", data_b),
        f"{title_c}\n\n" + table("(c)", data_c),
        "### Goals (case a)\n\n"
        f"- accelerated series reaches 1e-3 in ≤ half the HVPs of the plain series: {goal1}\n"
        f"- Lanczos reaches 1e-6 in ≤ 100 HVPs: {goal2}\n"
        f"- lower bound: the best vector of the Krylov space after 100 HVPs has relative error "
        f"{opt100[-1] if opt100 else float('nan'):.2e}; 1e-6 needs ≥ {opt6 or '>' + str(budget_a)} HVPs "
        "for ANY method built on products with H from g, so the second goal is unreachable on "
        "this problem; the plain series converges like K^(-1/2) on the eigenvalues below the "
        "damping, so it cannot reach 1e-3 within any practical budget either.\n"
        f"- the same comparison on (c), where the plain series does converge: accelerated "
        f"reaches 1e-3 at {acc_c or '—'} HVPs, plain at {plain_c or '—'} (ratio "
        f"{(acc_c / plain_c) if acc_c and plain_c else float('nan'):.2f}; both counts include "
        "the 16 estimation products)\n"
        f"- Neumann series on the indefinite H (damping 1e-2): converged={neg_a.converged}; "
        f"info: {neg_a.info}",
        f"total benchmark time {time.perf_counter() - t0:.1f} s",
    ])
    write_result("series", "HVP-only saddle-free Newton solvers", body, quick=quick)


if __name__ == "__main__":
    main()
