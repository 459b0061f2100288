"""Compressing trained PINNs: error-bounded H-matrices against truncated SVD
at equal storage (the comparison of Mango & Katende, arXiv 2409.07028; issue 21).

Networks: PINNs for ``−Δu = π² Σᵢ cos(π xᵢ)`` on ``[0, 1]^d``
(:func:`natgrad.examples.poisson.make_poisson`), trained here with natgrad's
ENGD-W (``ENGD(solver="woodbury")``, line search):

- ``poisson5d``: the 5-D network of arXiv 2505.12149, MLP 5→64→64→48→48→1;
- ``wide2d``: a wider 2-D network, MLP 2→256→256→256→1, where a layer has
  65,536 weights and compression can matter.

The trained weights are cached under ``$NATGRAD_BENCH_CACHE`` (default
``/tmp/natgrad-bench-cache/compress``), keyed by the configuration, so a rerun
does not train again; they are never committed.

Every hidden-to-hidden weight matrix (the input and output layers and the
biases stay dense: 5.9 % of the parameters of ``poisson5d``, 1.2 % of
``wide2d``) is compressed, either the weights ``W`` themselves or the update
``ΔW = W − W₀`` (``W₀`` the initial weights, regenerated from the seed; the
network then uses ``W₀ + compressed ΔW`` and only the compressed ``ΔW`` is
counted as storage).  For each target storage fraction ``f`` (the same for
every compressed layer):

- **H-matrix**: :meth:`natgrad.hmatrix.HMatrix.from_dense` (spectral-embedding
  cluster trees, weak admissibility, leaf size 16) with the largest storage
  ``≤ f`` found by bisection on its error bound ``eps``;
- **truncated SVD** at the storage the H-matrix actually took (rank
  ``⌊bytes / (8 (m + n))⌋``, so the SVD never gets more bytes).

Measured, for each: (1) the PDE solution's relative L2 error
(``problem.l2_error``, on 5,000 test points), (2) the error carried
through the layers (relative Frobenius change of each hidden layer's
activations and of the output on 2,000 probe points), (3) the change of the
empirical NTK ``‖K_c − K‖_F / ‖K‖_F``, ``K = J Jᵀ`` with ``J`` the Jacobian of
the network output w.r.t. all parameters at 200 probe points (for the
compressed network: the network with the dense reconstruction of the
compressed weights, differentiated w.r.t. all its dense parameters), and (4)
inference time (NumPy forward pass applying the compressed operators, batch
of 1 and 1024 points, median of repeats) and memory (bytes of the stored
layers).  Then ``compress_matrix(method="auto")`` per layer at a few error
bounds (the library's own choice), and fine-tuning of the compressed network
(``natgrad.adapters.torch.compress(..., trainable=True)``) with a few ENGD-W
and Adam steps.  Everything after training runs on one thread (the machine
this was written on is shared).

Writes ``benchmarks/results/compress.md``, ``compress.png`` and
``compress.summary`` (``-quick`` variants with ``--quick``: one small 2-D
network, a few storage fractions) and prints ``SUMMARY|…`` lines for
``run_all.py``.

Run: ``python benchmarks/bench_compress.py``: 3–4 minutes with the trained
weights cached (measured at load 2–6 on the shared 2-core machine).  An
empty cache adds the training, measured at load 5–10: 5 min (``poisson5d``)
and 16 min (``wide2d``; ``--only poisson5d`` skips it).  ``--quick``: 11 s
on a quiet machine, 1.5 minutes at load 5–10.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# one BLAS and numba thread (set before NumPy loads OpenBLAS, and before the H-matrix's numba kernels
# load): see main(). With numba's default two threads, a one-point H-matrix product on the loaded
# machine waited for a scheduler slice: 0.1 ms alone, 2-36 ms inside the benchmark.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, markdown_table, tanh_mlp, write_result  # noqa: E402

LEAF_SIZE = 16
N_TEST = 5000
N_PROBE = 2000
N_NTK = 200
DAMPING = 1e-6
#: error bounds of the compress_matrix(method="auto") rows
AUTO_EPS = (0.01, 0.03, 0.1, 0.3)


@dataclass(frozen=True)
class Config:
    name: str
    dim: int
    hidden: tuple[int, ...]
    points: tuple[int, int]
    steps: int
    seed: int = 0
    #: fine-tuning: which of FINETUNE_CASES, and (ENGD-W steps, Adam steps); not part of the cache key
    finetune_cases: tuple[int, ...] = (0, 1, 2)
    finetune_steps: tuple[int, int] = (10, 50)

    @property
    def arch(self) -> str:
        return "→".join(map(str, (self.dim, *self.hidden, 1)))

    def key(self) -> str:
        import torch

        text = json.dumps([self.dim, self.hidden, self.points, self.steps, self.seed, DAMPING, N_TEST,
                           torch.__version__], separators=(",", ":"))
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


CONFIGS = {
    "full": [
        Config("poisson5d", 5, (64, 64, 48, 48), (400, 100), 40),
        Config("wide2d", 2, (256, 256, 256), (200, 50), 30),
    ],
    "quick": [Config("small2d", 2, (64, 64), (200, 50), 25, finetune_steps=(3, 10))],
}
FRACTIONS = {"full": (0.1, 0.2, 0.35, 0.5, 0.7, 0.9), "quick": (0.3, 0.6, 0.9)}


def cache_dir() -> Path:
    return Path(os.environ.get("NATGRAD_BENCH_CACHE", "/tmp/natgrad-bench-cache")) / "compress"


# ---------------------------------------------------------------------------
# training (cached)
# ---------------------------------------------------------------------------


def trained(cfg: Config) -> tuple[Any, Any, dict[str, Any]]:
    """The problem, its ENGD-W-trained flat parameters and the training record,
    from the cache when present."""
    import torch

    from natgrad.examples.poisson import make_poisson
    from natgrad.optim import ENGD, fit

    problem = make_poisson(dim=cfg.dim, hidden=cfg.hidden, n_interior=cfg.points[0], n_boundary=cfg.points[1],
                           n_test=N_TEST, seed=cfg.seed)
    path = cache_dir() / f"{cfg.key()}.npz"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        flat = torch.from_numpy(np.load(path)["flat"])
        meta = json.loads(meta_path.read_text())
        meta["cached"] = True
        print(f"[compress] {cfg.name}: trained weights from the cache {path}", flush=True)
        return problem, flat, meta
    print(f"[compress] {cfg.name}: training MLP {cfg.arch} (P = {problem.n_params}) with ENGD-W, "
          f"{cfg.steps} steps ...", flush=True)
    t0 = time.perf_counter()
    def report(step: int, params: Any, info: dict[str, Any]) -> None:
        if step % 10 == 0:
            print(f"[compress]   step {step}: loss {info.get('loss', math.nan):.3e} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    flat, hist = fit(ENGD(damping=DAMPING, solver="woodbury"), problem.model, problem.sample, cfg.steps,
                     progress=False, callback=report)
    seconds = time.perf_counter() - t0
    meta = {"seconds": seconds, "steps": len(hist["step"]), "l2": problem.l2_error(flat),
            "l2_initial": problem.l2_error(problem.model.params), "cached": False}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, flat=flat.detach().numpy())
    meta_path.write_text(json.dumps(meta))
    print(f"[compress] {cfg.name}: trained in {seconds:.0f} s, L2 {meta['l2']:.3e}", flush=True)
    return problem, flat, meta


# ---------------------------------------------------------------------------
# the network as a list of (W, b), and what we measure on it
# ---------------------------------------------------------------------------


def weight_keys(params: dict[str, Any]) -> list[str]:
    """The ``nn.Linear`` weights in layer order (``0.weight``, ``2.weight``, …)."""
    keys = [k for k in params if k.endswith(".weight")]
    return sorted(keys, key=lambda k: int(k.split(".")[0]))


def forward_all(params: dict[str, Any], X: Any) -> list[Any]:
    """Each hidden layer's activations and the output (torch, no grad)."""
    import torch

    keys = weight_keys(params)
    outs, a = [], X
    with torch.no_grad():
        for i, k in enumerate(keys):
            a = a @ params[k].T + params[k.replace("weight", "bias")]
            if i < len(keys) - 1:
                a = torch.tanh(a)
            outs.append(a)
    return outs


def ntk(params: dict[str, Any], X: Any) -> Any:
    """Empirical NTK ``K = J Jᵀ`` of the scalar output at the points ``X``
    (``J``: gradient w.r.t. every weight and bias, one row per point)."""
    import torch
    from torch.func import grad, vmap

    keys = weight_keys(params)

    def u(p: dict[str, Any], x: Any) -> Any:
        a = x
        for i, k in enumerate(keys):
            a = p[k] @ a + p[k.replace("weight", "bias")]
            if i < len(keys) - 1:
                a = torch.tanh(a)
        return a[0]

    g = vmap(grad(u), in_dims=(None, 0))(params, X)
    J = torch.cat([g[k].reshape(X.shape[0], -1) for k in params], dim=1)
    return J @ J.T


def rel(a: Any, b: Any) -> float:
    """‖a − b‖_F / ‖b‖_F."""
    import torch

    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


# ---------------------------------------------------------------------------
# the two representations at a storage target
# ---------------------------------------------------------------------------


@dataclass
class Compressed:
    """One compressed matrix: how to apply it, its dense reconstruction, its bytes."""

    kind: str
    bytes: int
    dense: np.ndarray
    apply: Any  # x (n,) or (n, k) -> (m,) or (m, k)
    detail: str = ""
    eps: float | None = None
    reached: bool = True
    memory: int = 0  # bytes held in memory to apply it (an H-matrix's padding and index arrays)

    def __post_init__(self) -> None:
        self.memory = self.memory or self.bytes


def hmatrix_at(M: np.ndarray, fraction: float, iters: int = 8) -> Compressed:
    """The H-matrix of ``M`` (``compress_matrix(method="hmatrix")``) with the
    largest storage ``≤ fraction`` of dense, by bisection on ``log eps`` in
    ``[1e-3, 0.99]``; the ``eps = 0.99`` one, flagged ``reached=False``, when
    even that stores more."""
    from natgrad.hmatrix import compress_matrix

    target = fraction * M.nbytes

    def build(log_eps: float) -> Any:
        return compress_matrix(M, eps=math.exp(log_eps), method="hmatrix", leaf_size=LEAF_SIZE)

    lo, hi = math.log(1e-3), math.log(0.99)
    best, best_eps = build(hi), math.exp(hi)
    reached = best.nbytes <= target
    if reached:
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            C = build(mid)
            if C.nbytes <= target:
                best, best_eps, hi = C, math.exp(mid), mid
            else:
                lo = mid
    ranks = best.ranks
    detail = (f"eps {best_eps:.3g}, {len(ranks)} low-rank blocks, ranks {min(ranks, default=0)}–"
              f"{max(ranks, default=0)}, {best.info['operator_nbytes']} B in memory")
    out = Compressed("H-matrix", best.nbytes, np.asarray(best.to_dense()), best.__matmul__, detail, best_eps,
                     reached)
    out.memory = best.info["operator_nbytes"]
    return out


def svd_at(M: np.ndarray, nbytes: int, svd: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Compressed:
    """Truncated SVD of ``M`` with at most ``nbytes`` of factors (dense when
    the rank would be full)."""
    m, n = M.shape
    U, s, Vh = svd
    k = min(nbytes // (M.itemsize * (m + n)), min(m, n))
    if k * (m + n) >= m * n:
        return Compressed("dense", M.nbytes, M, M.__matmul__, "full rank: kept dense")
    A, B = np.ascontiguousarray(U[:, :k] * s[:k]), np.ascontiguousarray(Vh[:k])
    return Compressed("SVD", M.itemsize * k * (m + n), A @ B, lambda x: A @ (B @ x), f"rank {k}")


# ---------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------


@dataclass
class Point:
    """One compressed network: a representation at a storage target."""

    network: str
    mode: str  # "W" or "ΔW"
    target: float
    kind: str
    fraction: float  # bytes of the compressed layers / their dense bytes
    nbytes: int
    memory: int  # bytes the operators hold in memory
    weight_error: float  # ‖Ŵ − W‖_F / ‖ΔW‖_F over the compressed layers (‖ΔW‖_F: ‖W‖_F in W mode)
    l2: float
    layers: list[float]  # activation change per hidden layer, then the output
    ntk: float
    t1: float = math.nan  # s per forward pass, one point
    t1024: float = math.nan  # s per forward pass, 1024 points
    t1_dense: float = math.nan  # the same for the dense network, interleaved with the above
    t1024_dense: float = math.nan
    reached: bool = True
    details: list[str] = field(default_factory=list)


def uniform_points(n: int, dim: int, seed: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, dim, generator=g, dtype=torch.float64)


def numpy_forward(applies: list[Any], biases: list[np.ndarray], X: np.ndarray) -> np.ndarray:
    """The network on the columns of ``X`` (d, batch) with each layer's operator."""
    a = X
    for i, (apply, b) in enumerate(zip(applies, biases)):
        a = apply(a) + b[:, None]
        if i < len(applies) - 1:
            a = np.tanh(a)
    return a


def time_forward(applies: list[Any], dense: list[Any], biases: list[np.ndarray], dim: int,
                 repeats: int) -> tuple[float, float, float, float]:
    """Median seconds of one forward pass on 1 point and on 1024 points, of
    the network with ``applies`` and of the dense one, the runs interleaved
    (the machine is shared: both see the same load)."""
    from _common import interleaved

    rng = np.random.default_rng(1)
    x1, x1024 = rng.random((dim, 1)), rng.random((dim, 1024))
    inner = 5
    t1c, t1d = interleaved([lambda: [numpy_forward(applies, biases, x1) for _ in range(inner)],
                            lambda: [numpy_forward(dense, biases, x1) for _ in range(inner)]], repeats=repeats)
    tbc, tbd = interleaved([lambda: numpy_forward(applies, biases, x1024),
                            lambda: numpy_forward(dense, biases, x1024)], repeats=repeats)
    return t1c / inner, tbc, t1d / inner, tbd


def sweep(cfg: Config, fractions: tuple[float, ...], repeats: int) -> dict[str, Any]:
    """Train (or load) the network, then every representation at every storage target."""
    import torch

    problem, flat, meta = trained(cfg)
    model = problem.model
    params = {k: v.detach().clone() for k, v in model.unflatten(flat).items()}
    params0 = {k: v.detach().clone() for k, v in model.unflatten(model.params).items()}
    keys = weight_keys(params)
    hidden = keys[1:-1]
    X_probe = uniform_points(N_PROBE, cfg.dim, 7)
    X_ntk = uniform_points(N_NTK, cfg.dim, 8)
    acts = forward_all(params, X_probe)
    K = ntk(params, X_ntk)
    l2_dense = problem.l2_error(flat)
    np_w = {k: params[k].numpy() for k in keys}
    np_w0 = {k: params0[k].numpy() for k in keys}
    biases = [params[k.replace("weight", "bias")].numpy() for k in keys]
    dense_applies = [np_w[k].__matmul__ for k in keys]
    dense_bytes = sum(np_w[k].nbytes for k in hidden)
    out: dict[str, Any] = {"cfg": cfg, "meta": meta, "P": problem.n_params, "l2_dense": l2_dense,
                           "dense_bytes": dense_bytes, "points": [],
                           "shapes": [tuple(np_w[k].shape) for k in hidden],
                           "hidden_share": sum(np_w[k].size for k in hidden) / problem.n_params,
                           "problem": problem, "flat": flat}

    def evaluate(mode: str, target: float, comp: dict[str, Compressed], mats: dict[str, np.ndarray],
                 whole: bool = False) -> Point:
        # ``whole``: comp holds Ŵ itself (W₀ included), else the compressed W or ΔW
        new = dict(params)
        applies = []
        for k in keys:
            if k in comp:
                c = comp[k]
                base = np_w0[k] if mode == "ΔW" and not whole else 0.0
                new[k] = torch.from_numpy(np.ascontiguousarray(base + c.dense))
                applies.append(c.apply if mode == "W" or whole else
                               (lambda x, W0=np_w0[k], c=c: W0 @ x + c.apply(x)))
            else:
                applies.append(np_w[k].__matmul__)
        flat_c = model.flatten(new)
        nbytes = sum(comp[k].bytes for k in hidden)
        memory = sum(comp[k].memory for k in hidden)
        werr = math.sqrt(sum(np.linalg.norm(new[k].numpy() - np_w[k]) ** 2 for k in hidden)
                         / sum(np.linalg.norm(mats[k]) ** 2 for k in hidden))
        acts_c = forward_all(new, X_probe)
        times = time_forward(applies, dense_applies, biases, cfg.dim, repeats)
        kinds = {comp[k].kind for k in hidden}
        return Point(cfg.name, mode, target, "/".join(sorted(kinds)), nbytes / dense_bytes, nbytes, memory, werr,
                     problem.l2_error(flat_c), [rel(a, b) for a, b in zip(acts_c, acts)],
                     rel(ntk(new, X_ntk), K), *times, all(comp[k].reached for k in hidden),
                     [f"{tuple(mats[k].shape)}: {comp[k].detail}" for k in hidden])

    for mode in ("W", "ΔW"):
        mats = {k: np_w[k] - np_w0[k] if mode == "ΔW" else np_w[k] for k in hidden}
        svds = {k: np.linalg.svd(mats[k], full_matrices=False) for k in hidden}
        seen: set[int] = set()
        for f in fractions:
            t0 = time.perf_counter()
            hm = {k: hmatrix_at(mats[k], f) for k in hidden}
            total = sum(c.bytes for c in hm.values())
            if total in seen:  # the H-matrix cannot go lower: the same point again
                continue
            seen.add(total)
            sv = {k: svd_at(mats[k], hm[k].bytes, svds[k]) for k in hidden}
            for comp in (hm, sv):
                p = evaluate(mode, f, comp, mats)
                p.kind = "H-matrix" if comp is hm else "SVD"
                out["points"].append(p)
            h, s = out["points"][-2], out["points"][-1]
            print(f"[compress] {cfg.name} {mode} f={f:g}: storage H {h.fraction:.3f} SVD {s.fraction:.3f} | "
                  f"L2 H {h.l2:.2e} SVD {s.l2:.2e} | NTK H {h.ntk:.2e} SVD {s.ntk:.2e} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    # the library's own choice per layer: compress_matrix(method="auto") at a few error bounds
    from natgrad.hmatrix import compress_matrix

    out["auto"] = []
    for mode in ("W", "ΔW"):
        mats = {k: np_w[k] - np_w0[k] if mode == "ΔW" else np_w[k] for k in hidden}
        for eps in AUTO_EPS:
            comp = {}
            for k in hidden:
                ref = {"reference": np_w0[k], "reference_stored": False} if mode == "ΔW" else {}
                C = compress_matrix(np_w[k], eps=eps, method="auto", leaf_size=LEAF_SIZE, **ref)
                comp[k] = Compressed(C.kind, C.nbytes, np.asarray(C.to_dense()), C.__matmul__,
                                     f"{C.kind} {C.ranks if C.kind != 'hmatrix' else ''}".strip(),
                                     memory=C.info["operator_nbytes"])
            p = evaluate(mode, eps, comp, mats, whole=True)
            p.kind = "auto: " + ", ".join(comp[k].detail for k in hidden)
            out["auto"].append(p)
            print(f"[compress] {cfg.name} {mode} auto eps={eps:g}: {p.kind}, storage {p.fraction:.3f}, "
                  f"L2 {p.l2:.2e}, NTK {p.ntk:.2e}", flush=True)
    return out


# ---------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------

HEADER = ["target", "representation", "stored (% of dense)", "in memory [B]", "weight error", "L2 error",
          "activation change per layer", "NTK change", "forward, 1 point [µs] (dense)",
          "forward, 1024 points [ms] (dense)"]


def _pairs(points: list[Point], network: str, mode: str) -> list[tuple[Point, Point]]:
    ps = [p for p in points if p.network == network and p.mode == mode]
    return [(ps[i], ps[i + 1]) for i in range(0, len(ps), 2)]


def sweep_table(res: dict[str, Any], mode: str) -> str:
    cfg = res["cfg"]
    rows: list[list[Any]] = [["—", "dense", f"100 ({res['dense_bytes']} B)", res["dense_bytes"], 0.0,
                              f"{res['l2_dense']:.2e}", "0", "0", "", ""]]
    for h, s in _pairs(res["points"], cfg.name, mode):
        for p in (h, s):
            rows.append([
                f"{p.target:.0%}" + ("" if p.reached else " (not reached)") if p is h else "",
                p.kind, f"{100 * p.fraction:.1f} ({p.nbytes} B)", p.memory, f"{p.weight_error:.3f}",
                f"{p.l2:.2e}", " → ".join(f"{v:.1e}" for v in p.layers[1:]), f"{p.ntk:.2e}",
                f"{1e6 * p.t1:.0f} ({1e6 * p.t1_dense:.0f})", f"{1e3 * p.t1024:.2f} ({1e3 * p.t1024_dense:.2f})",
            ])
    return markdown_table(HEADER, rows)


def verdict(res: dict[str, Any], mode: str) -> tuple[str, dict[str, Any]]:
    """Who wins at equal storage, metric by metric, over the storage targets."""
    pairs = _pairs(res["points"], res["cfg"].name, mode)
    n = len(pairs)
    wins = {m: sum(getattr(h, m) < getattr(s, m) for h, s in pairs) for m in ("l2", "ntk", "weight_error")}
    wins["output"] = sum(h.layers[-1] < s.layers[-1] for h, s in pairs)
    ratios = {m: statistics.median(getattr(h, m) / getattr(s, m) for h, s in pairs if getattr(s, m) > 0)
              for m in ("l2", "ntk")} if pairs else {}
    slow1 = [h.t1 / h.t1_dense for h, _ in pairs]
    slowb = [h.t1024 / h.t1024_dense for h, _ in pairs]
    svdb = [s.t1024 / s.t1024_dense for _, s in pairs]
    text = (
        f"- **{mode}** ({n} storage levels, H-matrix storage {min(h.fraction for h, _ in pairs):.0%}–"
        f"{max(h.fraction for h, _ in pairs):.0%}): the H-matrix has the lower PDE L2 error at "
        f"{wins['l2']}/{n}, the lower output change at {wins['output']}/{n}, the lower NTK change at "
        f"{wins['ntk']}/{n} and the lower weight error at {wins['weight_error']}/{n} levels "
        f"(median H/SVD ratio: L2 {ratios.get('l2', math.nan):.2g}, NTK {ratios.get('ntk', math.nan):.2g}). "
        f"Forward pass of the H-matrix network against the dense one: {min(slow1):.1f}–{max(slow1):.1f}× the time "
        f"on one point, {min(slowb):.1f}–{max(slowb):.1f}× on 1024 points (truncated SVD: "
        f"{min(svdb):.2f}–{max(svdb):.2f}× on 1024 points).\n"
    ) if pairs else f"- **{mode}**: no storage level.\n"
    return text, {"n": n, "wins": wins, "ratios": ratios, "slowb": slowb, "svdb": svdb}


def plot(results: list[dict[str, Any]], path: Path) -> bool:
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex=True)
    colors = {"H-matrix": "tab:blue", "SVD": "tab:orange"}
    styles = ["-o", "--s", ":^"]
    for col, mode in enumerate(("W", "ΔW")):
        for r, res in enumerate(results):
            name = res["cfg"].name
            for kind in ("H-matrix", "SVD"):
                ps = sorted((p for p in res["points"] if p.mode == mode and p.kind == kind and p.network == name),
                            key=lambda p: p.fraction)
                x = [100 * p.fraction for p in ps]
                label = f"{kind}, {name} ({res['cfg'].arch})"
                axes[0, col].semilogy(x, [p.l2 for p in ps], styles[r % 3], color=colors[kind], label=label, ms=4)
                axes[1, col].semilogy(x, [p.ntk for p in ps], styles[r % 3], color=colors[kind], label=label, ms=4)
            axes[0, col].axhline(res["l2_dense"], color="grey", lw=0.8, ls=styles[r % 3][:-1])
        axes[0, col].set_title(f"compressing {'W' if mode == 'W' else 'ΔW = W − W₀'}", fontsize=10)
        axes[1, col].set_xlabel("storage of the compressed layers [% of dense]")
    axes[0, 0].set_ylabel("relative L2 error of the PDE solution")
    axes[1, 0].set_ylabel("NTK change ‖K_c − K‖_F / ‖K‖_F")
    for ax in axes.flat:
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 1].legend(fontsize=7, title="grey: uncompressed", title_fontsize=7)
    fig.suptitle("Trained PINNs compressed at equal storage: H-matrix vs truncated SVD", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def torch_compress_available() -> bool:
    """Whether the PyTorch face of the compression API (``natgrad.adapters.torch.compress``) is installed."""
    try:
        import natgrad.adapters.torch as nt
    except ImportError:
        return False
    return hasattr(nt, "compress")


def finetune_section(results: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """Fine-tune compressed networks a few steps (``trainable=True``): what is recovered."""
    if not torch_compress_available():
        return ("\n## Fine-tuning the compressed network\n\nNot run: `natgrad.adapters.torch.compress` "
                "(the PyTorch face of the compression API, with `trainable=True`) is not installed in this "
                "checkout.\n"), []
    return finetune(results)


#: fine-tuning: (label, compress() keywords); the error bounds are relative to ‖ΔW‖_F (or ‖W‖_F)
FINETUNE_CASES = [
    ("ΔW, H-matrix", dict(method="hmatrix", update=True, eps=0.3)),
    ("ΔW, truncated SVD at the H-matrix's storage", dict(method="svd", update=True, match=True)),
    ("ΔW, truncated SVD", dict(method="svd", update=True, eps=0.3)),
]
ADAM_LR = 1e-5


def make_net(cfg: Config, flat: Any, problem: Any) -> Any:
    """The network of ``make_poisson`` as an ``nn.Sequential`` holding ``flat``."""
    import torch

    net = tanh_mlp((cfg.dim, *cfg.hidden, 1))
    with torch.no_grad():
        problem.model.load_into(net, flat)
    return net


def pinn(module: Any, cfg: Config) -> tuple[Any, Any]:
    """The Poisson residuals of ``make_poisson`` for any module (a compressed
    one), as a ``TorchModel``, and its relative L2 error on the same test set."""
    import torch
    from torch.func import functional_call

    from natgrad.adapters.torch import TorchModel, laplacian

    params = {k: v.detach() for k, v in module.named_parameters()}

    def u_point(p: Any, x: Any) -> Any:
        return functional_call(module, p, (x,))[..., 0]

    def u_star(x: Any) -> Any:
        return torch.cos(math.pi * x).sum(-1)

    def interior(p: Any, x: Any) -> Any:
        return -laplacian(lambda y: u_point(p, y), x) - math.pi ** 2 * u_star(x)

    def boundary(p: Any, x: Any) -> Any:
        return u_point(p, x) - u_star(x)

    model = TorchModel.from_pointwise([interior, boundary], params, weights="mean")
    # the test set of make_poisson (seed 10 000 + seed)
    x_test = torch.rand(N_TEST, cfg.dim, generator=torch.Generator().manual_seed(10_000 + cfg.seed),
                        dtype=torch.float64)
    u_test = u_star(x_test)

    def l2(flat: Any) -> float:
        with torch.no_grad():
            out = functional_call(module, model.unflatten(flat), (x_test,))[..., 0]
        return float(torch.linalg.vector_norm(out - u_test) / torch.linalg.vector_norm(u_test))

    return model, l2


def finetune(results: list[dict[str, Any]]) -> tuple[str, list[str]]:
    import torch

    from natgrad.adapters.torch import compress
    from natgrad.optim import ENGD, Adam, fit

    rows, summary = [], []
    adam_worse: list[str] = []
    for res in results:
        cfg, problem, flat = res["cfg"], res["problem"], res["flat"]
        n_engd, n_adam = cfg.finetune_steps
        net = make_net(cfg, flat, problem)
        hidden = {f"{2 * i}" for i in range(1, len(cfg.hidden))}  # the hidden-to-hidden nn.Linear names
        model, l2 = pinn(net, cfg)
        l2_dense = l2(model.params)
        assert abs(l2_dense - res["l2_dense"]) <= 1e-9 * max(1.0, res["l2_dense"]), (l2_dense, res["l2_dense"])
        batches = lambda step: problem.sample(100_000 + step)  # noqa: E731 - points training never saw
        X_probe = uniform_points(N_PROBE, cfg.dim, 7)
        cases = [("dense (not compressed)", None)] + [FINETUNE_CASES[i] for i in cfg.finetune_cases]
        net0 = make_net(cfg, problem.model.params, problem)
        last_h: Any = None
        for label, case in cases:
            t0 = time.perf_counter()
            if case is None:
                module, storage, kinds = net, 1.0, "dense"
            else:
                ref = {"reference": (lambda: make_net(cfg, problem.model.params, problem)),
                       "relative_to": "delta"} if case["update"] else {}
                if case.get("match"):
                    # per layer, the truncated SVD with the largest rank whose factors fit in the bytes
                    # the H-matrix of the case before took: one compress() call per layer
                    module, layers = net, []
                    for h in last_h.layers:
                        W = dict(net.named_modules())[h.name].weight.detach().numpy()
                        M = W - dict(net0.named_modules())[h.name].weight.detach().numpy() if case["update"] else W
                        m_, n_ = M.shape
                        sv = np.linalg.svd(M, compute_uv=False)
                        k = min(h.nbytes // (M.itemsize * (m_ + n_)), len(sv) - 1)
                        tail = math.sqrt(float(np.sum(sv[k:] ** 2)))
                        # compress_matrix truncates within 0.99 eps ‖M‖_F: rank k exactly
                        eps_l = min(max(tail / (0.99 * np.linalg.norm(M)) * (1 + 1e-9), 1e-12), 0.999)
                        module, rep = compress(module, eps=eps_l, method="svd", trainable=True,
                                               select=lambda name, lin, target=h.name: name == target, **ref)
                        layers += rep.layers
                    storage = sum(x.nbytes for x in layers) / sum(x.dense_nbytes for x in layers)
                else:
                    module, report = compress(net, eps=case["eps"], method=case["method"], trainable=True,
                                              select=lambda name, lin: name in hidden, leaf_size=LEAF_SIZE, **ref)
                    layers, storage = report.layers, report.compression_ratio
                    if case["method"] == "hmatrix":
                        last_h = report
                kinds = ", ".join(f"{layer.kind} {_short_ranks(layer.ranks)}" for layer in layers)
            seconds = time.perf_counter() - t0
            m, l2m = pinn(module, cfg)
            before = l2m(m.params)
            after = {}
            for opt_name, opt, steps in (("ENGD-W", ENGD(damping=DAMPING, solver="woodbury"), n_engd),
                                         ("Adam", Adam(lr=ADAM_LR), n_adam)):
                t1 = time.perf_counter()
                p, hist = fit(opt, m, batches, steps, progress=False)
                after[opt_name] = (l2m(p), time.perf_counter() - t1, m.params.shape[0])
            rows.append([cfg.name, label, kinds, f"{100 * storage:.1f}", f"{before:.2e}",
                         f"{after['ENGD-W'][0]:.2e} ({n_engd} steps, {after['ENGD-W'][1]:.0f} s)",
                         f"{after['Adam'][0]:.2e} ({n_adam} steps, {after['Adam'][1]:.0f} s)", after["Adam"][2]])
            print(f"[compress] fine-tune {cfg.name} {label}: storage {storage:.3f}, L2 {before:.2e} → "
                  f"ENGD-W {after['ENGD-W'][0]:.2e}, Adam {after['Adam'][0]:.2e} (compress {seconds:.1f} s)",
                  flush=True)
            if case is None and after["Adam"][0] > before:
                adam_worse.append(cfg.name)
            if case is not None:
                recovered = before / after["ENGD-W"][0]
                summary.append(
                    f"SUMMARY|compress: {cfg.name}, fine-tuning {label} ({storage:.0%} storage) with {n_engd} ENGD-W "
                    f"steps|L2 {before:.2e} → {after['ENGD-W'][0]:.2e}|dense {l2_dense:.2e}|"
                    f"{recovered:.3g}× lower after fine-tuning|informative (beyond the paper)|—")
    header = ["network", "compressed", "per layer", "stored (% of dense)", "L2 after compression",
              "after ENGD-W fine-tuning (steps, time)", f"after Adam fine-tuning, lr {ADAM_LR:g} (steps, time)",
              "trainable parameters"]
    text = (
        "\n## Fine-tuning the compressed network (beyond the paper)\n\n"
        "`natgrad.adapters.torch.compress(net, eps, method, reference, relative_to=\"delta\", "
        "trainable=True, select=hidden layers)` replaces each hidden-to-hidden `nn.Linear` by a "
        "`CompressedLinear` whose factors (SVD: U, V; H-matrix: every block's factors) and biases are "
        "parameters; the rank structure stays. The PINN residuals are rebuilt on the compressed module "
        "(forward Laplacian through its operations) and trained from the compressed weights, on fresh "
        f"collocation points, for a few ENGD-W steps (damping {DAMPING:g}, line search) or, separately, "
        f"Adam steps (lr {ADAM_LR:g}). The first row of each network fine-tunes the uncompressed network for "
        "the same steps (what further training alone gives). The H-matrix and plain SVD rows use eps = 0.3 "
        "per layer, relative to ‖ΔW‖_F (W₀ regenerated, not stored); the \"at the H-matrix's storage\" row "
        "takes, per layer, the truncated SVD with the largest rank that fits in the bytes of the H-matrix row "
        "above (equal storage). Adam's learning rate was not tuned"
        + (f": at lr {ADAM_LR:g} it moves even the uncompressed {' and '.join(adam_worse)} network away from "
           "its trained weights (its dense row), so the Adam column shows what a first-order fine-tuning of "
           "this length gives, not its best" if adam_worse else "") + ".\n\n"
        + markdown_table(header, rows) + "\n"
    )
    return text, summary


def _short_ranks(ranks: list[int]) -> str:
    if not ranks:
        return ""
    return f"[{ranks[0]}]" if len(ranks) == 1 else f"({len(ranks)} blocks, ranks {min(ranks)}–{max(ranks)})"


def auto_table(res: dict[str, Any]) -> str:
    header = ["compressed", "eps (per layer, relative to ‖W‖_F)", "chosen per layer", "stored (% of dense)",
              "L2 error", "output change", "NTK change"]
    rows = [[p.mode, f"{p.target:g}", p.kind[len("auto: "):], f"{100 * p.fraction:.1f}", f"{p.l2:.2e}",
             f"{p.layers[-1]:.1e}", f"{p.ntk:.2e}"] for p in res["auto"]]
    return markdown_table(header, rows)


def overall_verdict(results: list[dict[str, Any]]) -> str:
    """The verdict over every network: who wins, metric by metric, at equal storage."""
    lines = ["## Verdict\n"]
    for mode in ("W", "ΔW"):
        pairs = [pq for res in results for pq in _pairs(res["points"], res["cfg"].name, mode)]
        if not pairs:
            continue
        n = len(pairs)
        count = lambda f: sum(f(h) < f(s) for h, s in pairs)  # noqa: E731
        l2, out, ntk, werr = (count(lambda p: p.l2), count(lambda p: p.layers[-1]), count(lambda p: p.ntk),
                              count(lambda p: p.weight_error))
        lines.append(
            f"- **{mode}**, {n} (network, storage) pairs: the H-matrix is better on the PDE L2 error at {l2}, "
            f"on the output change at {out}, on the NTK change at {ntk}, on the weight error at {werr}; "
            f"truncated SVD at {n - l2}, {n - out}, {n - ntk} and {n - werr}.")
    for res in results:
        name, dense = res["cfg"].name, res["l2_dense"]
        w = _pairs(res["points"], name, "W")
        dw = _pairs(res["points"], name, "ΔW")
        if not (w and dw):
            continue
        h_wins = [f"{h.fraction:.0%}" for h, s in w if h.l2 < s.l2]
        top = max(w, key=lambda hs: hs[0].fraction)
        ok = [s for _, s in dw if s.l2 <= 2 * dense]
        lines.append(
            f"- **{name}** (uncompressed L2 {dense:.2e}): compressing **W** spoils the PDE solution with either "
            f"representation — at {top[0].fraction:.0%} storage the L2 error is {top[0].l2:.2e} (H-matrix) and "
            f"{top[1].l2:.2e} (SVD); the H-matrix has the lower L2 error only at "
            f"{', '.join(h_wins) if h_wins else 'no'} storage. On **ΔW** truncated SVD has the lower L2 error "
            f"at {sum(s.l2 < h.l2 for h, s in dw)}/{len(dw)} storage levels "
            + (f"and keeps it within 2× of the uncompressed network's from {min(s.fraction for s in ok):.0%} "
               "of the storage on;" if ok else "but never keeps it within 2× of the uncompressed network's;")
            + f" the H-matrix's L2 error is {statistics.median(h.l2 / s.l2 for h, s in dw):.2g}× the SVD's "
            "(median over the levels).")
    slow = [h.t1024 / h.t1024_dense for res in results for h, _ in _pairs(res["points"], res["cfg"].name, "W")]
    slow1 = [h.t1 / h.t1_dense for res in results for h, _ in _pairs(res["points"], res["cfg"].name, "W")]
    svd = [s.t1024 / s.t1024_dense for res in results for _, s in _pairs(res["points"], res["cfg"].name, "W")]
    mem = [h.memory / h.nbytes for res in results for mode in ("W", "ΔW")
           for h, _ in _pairs(res["points"], res["cfg"].name, mode)]
    if slow:
        lines.append(
            f"- **Inference** (compressed W, NumPy and natgrad's numba kernels, one thread): the H-matrix "
            f"network takes {min(slow):.2g}–{max(slow):.2g}× the dense network's time on 1024 points and "
            f"{min(slow1):.2g}–{max(slow1):.2g}× on one point (a fixed cost per product: permutations and "
            "the block kernel's call); the "
            f"truncated SVD {min(svd):.2g}–{max(svd):.2g}× on 1024 points. Memory: the stored bytes in the "
            f"tables; the H-matrix holds {min(mem) - 1:.0%}–{max(mem) - 1:.0%} more in memory for its products "
            "(padding, index arrays).")
    return "\n".join(lines) + "\n\n"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small network, three storage levels (~1 min)")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats (median reported)")
    parser.add_argument("--only", nargs="+", default=None, help="network names to run (poisson5d, wide2d)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    args = parser.parse_args()
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be ≥ 1")
    return args


def main() -> None:
    args = parse()
    import torch

    # one thread: on a shared 2-core machine (load 5-10 while this ran) BLAS and PyTorch pools of two
    # threads spin against other tenants and time 10-100x worse than one thread
    torch.set_num_threads(1)
    name = "quick" if args.quick else "full"
    repeats = args.repeats or (3 if args.quick else 5)
    configs = [c for c in CONFIGS[name] if args.only is None or c.name in args.only]
    t0 = time.perf_counter()
    results = [sweep(cfg, FRACTIONS[name], repeats) for cfg in configs]
    finetune_text, finetune_summary = finetune_section(results)

    sections, summary = [], []
    for res in results:
        cfg, meta = res["cfg"], res["meta"]
        texts = {}
        for mode in ("W", "ΔW"):
            texts[mode], v = verdict(res, mode)
            if v["n"]:
                summary.append(
                    f"SUMMARY|compress: {cfg.name} ({cfg.arch}), {mode}, PDE L2 error at equal storage "
                    f"({v['n']} levels)|H-matrix lower at {v['wins']['l2']}/{v['n']}|"
                    f"SVD lower at {v['n'] - v['wins']['l2']}/{v['n']}|median H/SVD {v['ratios']['l2']:.2g}|"
                    f"H-matrix error ≤ truncated SVD's at equal storage (the paper's claim)|"
                    f"{'yes' if 2 * v['wins']['l2'] > v['n'] else 'no'}")
                summary.append(
                    f"SUMMARY|compress: {cfg.name} ({cfg.arch}), {mode}, NTK change at equal storage "
                    f"({v['n']} levels)|H-matrix lower at {v['wins']['ntk']}/{v['n']}|"
                    f"SVD lower at {v['n'] - v['wins']['ntk']}/{v['n']}|median H/SVD {v['ratios']['ntk']:.2g}|"
                    f"H-matrix preserves the NTK better than truncated SVD (the paper's claim)|"
                    f"{'yes' if 2 * v['wins']['ntk'] > v['n'] else 'no'}")
        v_w = verdict(res, "W")[1]
        if v_w["n"]:
            summary.append(
                f"SUMMARY|compress: {cfg.name}, forward pass on 1024 points, compressed W vs dense|"
                f"H-matrix {min(v_w['slowb']):.2f}–{max(v_w['slowb']):.2f}× dense|"
                f"SVD {min(v_w['svdb']):.2f}–{max(v_w['svdb']):.2f}× dense|—|informative|—")
        trained_how = (f"trained with ENGD-W (damping {DAMPING:g}, line search) for {meta['steps']} steps on "
                       f"N_Ω = {cfg.points[0]}, N_∂Ω = {cfg.points[1]} points resampled every step "
                       f"({meta['seconds']:.0f} s{', weights from the cache' if meta.get('cached') else ''}); "
                       f"relative L2 error {meta['l2_initial']:.2e} → {res['l2_dense']:.2e}")
        sections.append(
            f"## {cfg.name}: MLP {cfg.arch} (P = {res['P']})\n\n"
            f"{cfg.dim}-D Poisson, {trained_how}. Compressed: the hidden-to-hidden weight matrices "
            f"{', '.join(f'{m}×{n}' for m, n in res['shapes'])} ({res['hidden_share']:.1%} of the parameters).\n\n"
            "### Compressing W\n\n" + sweep_table(res, "W") + "\n\n"
            "### Compressing ΔW = W − W₀ (W₀ regenerated from the seed, not stored)\n\n"
            + sweep_table(res, "ΔW") + "\n\n"
            "### Who wins at equal storage\n\n" + texts["W"] + texts["ΔW"] + "\n"
            "### The library's choice: `compress_matrix(method=\"auto\")` per layer\n\n"
            + auto_table(res) + "\n"
        )

    headline = overall_verdict(results)
    plot_note = ""
    if not args.no_plot:
        RESULTS.mkdir(parents=True, exist_ok=True)
        png = RESULTS / ("compress-quick.png" if args.quick else "compress.png")
        plot_note = (f"\n\nPlot (storage against the PDE L2 error and the NTK change, W and ΔW): `{png.name}`."
                     if plot(results, png) else "\n\n(matplotlib not installed: no plot.)")

    body = (
        "The comparison of Mango & Katende (arXiv 2409.07028) on PINNs trained with natgrad's own ENGD-W: "
        "error-bounded H-matrices against truncated SVD at **equal storage**, for the weights W and for the "
        "update ΔW = W − W₀. PyTorch float64 on the CPU for the networks; the compressed operators are "
        f"natgrad's (NumPy). One thread for PyTorch, BLAS and numba (the machine is shared: two-thread pools spun "
        "against other tenants); the networks were trained beforehand (cached), with PyTorch's default "
        "threads.\n\n"
        "**Wall-time figures are from a shared 2-core machine** (other benchmarks and test runs were running "
        "at the same time): each compressed network's forward pass is timed interleaved with the dense one "
        "(A B A B …, median), so the ratios are fairer than the absolute times.\n\n"
        "How each row is made: per layer, the H-matrix (`compress_matrix(method=\"hmatrix\")`, leaf size "
        f"{LEAF_SIZE}, spectral-embedding cluster trees, weak admissibility) whose stored bytes are the largest "
        "not above the target fraction of the dense layer (bisection on its error bound eps); then the "
        "truncated SVD of the same matrix with the largest rank whose factors take no more bytes than that "
        "H-matrix (so the SVD never has more storage). Where the H-matrix cannot get down to the target even at "
        "eps = 0.99 (its dense diagonal leaves alone take 1/(number of leaves) of the matrix), the row says "
        "\"not reached\" and both use the H-matrix's storage. Storage counts the stored numbers "
        "(`CompressedMatrix.nbytes`: block entries and the H-matrix's two permutations); \"in memory\" is "
        "what the operator holds to apply itself (the H-matrix's padding and index arrays). "
        "Columns: weight error ‖Ŵ − W‖_F/‖M‖_F over the compressed layers with M = W or ΔW; L2 error: the "
        f"PDE solution's relative L2 error on {N_TEST} test points; activation change: "
        f"‖a_c − a‖_F/‖a‖_F of each hidden layer after the first compressed one, then the output, on "
        f"{N_PROBE} "
        f"probe points; NTK change: ‖K_c − K‖_F/‖K‖_F with K = J Jᵀ, J the Jacobian of the network output "
        f"w.r.t. all parameters at {N_NTK} probe points — for the compressed network J is taken w.r.t. the "
        "dense reconstruction Ŵ of its compressed weights (the NTK of the function it computes); forward: "
        "NumPy forward pass of the whole network applying the compressed operators (for ΔW: W₀ x + ΔŴ x), "
        "in brackets the dense network in the same interleaved run.\n\n"
        + headline + "\n".join(sections) + finetune_text + plot_note
        + f"\n\nTotal benchmark time {time.perf_counter() - t0:.0f} s (training included when not cached)."
    )
    summary += finetune_summary
    path = write_result("compress", "Network compression: H-matrix vs truncated SVD on trained PINNs", body,
                        quick=args.quick)
    path.with_suffix(".summary").write_text("\n".join(summary) + "\n")
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
