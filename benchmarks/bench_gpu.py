"""natgrad's solvers on CuPy arrays (GPU) against the same calls on NumPy (CPU) and CuPy's own CG.

Each solver is called as a user would call it, with its defaults, on CuPy
arrays and on NumPy arrays of the same problem on the same machine's CPU:

(a) ``cg(A, b, rtol=1e-8)`` on ``A = K + μI``, ``K_ij = exp(−|x_i − x_j|²/2)``
    for n = 8192 points from a 3-D standard normal, μ = 0.1 (about 300
    iterations); peer: ``cupyx.scipy.sparse.linalg.cg`` on the same CuPy
    arrays with the same tolerance (SciPy's stopping rule, as natgrad's);
(b) ``nystrom_pcg(K, b, 200, damping=μ, seed=0, rtol=1e-8)``, the same system;
(c) ``woodbury_solve(U, b, 1e-3)``, ``(λI_P + UᵀU) x = b`` with a random
    ``U`` of shape (N, P) = (2048, 32768) (512 MB), factorisation and solve;
    peer: the same Woodbury identity written by hand in CuPy
    (``U @ U.T``, Cholesky, two triangular solves).

Median of ``--repeats`` (default 5) after one warm-up call; a GPU timer stops
after ``cupy.cuda.Device().synchronize()``.  The error column is
``‖x − x_ref‖/‖x_ref‖`` against a float64 NumPy/SciPy reference on the CPU:
the dense Cholesky solve for (a) and (b), natgrad's NumPy answer for (c).

Run: ``python benchmarks/bench_gpu.py`` (``--quick`` for small sizes); writes
``results/gpu_solvers.md``.  ``benchmarks/gpu_run.sh`` runs it on a lent GPU
machine with the CuPy tests; ``results/gpu.md`` records such a run.
Without CuPy and a GPU it says so and exits; ``--emulate`` runs the same code
with NumPy/SciPy standing in for CuPy (a check of the script, not a benchmark).
"""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path

import numpy as np
import scipy.linalg as sla

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, median_time, parse_args, write_result  # noqa: E402

from natgrad.linalg import cg, nystrom_pcg, woodbury_solve  # noqa: E402

MU, RTOL, LAM, RANK = 0.1, 1e-8, 1e-3, 200


def no_sync() -> None:
    """NumPy calls return when done."""


def gpu_device(emulate: bool) -> types.SimpleNamespace | None:
    """CuPy's array module, its SciPy-like linalg modules, a device sync and a
    host copy; with ``emulate``, NumPy and SciPy in their place."""
    if emulate:
        import scipy.sparse.linalg as spla

        return types.SimpleNamespace(name="NumPy (emulated GPU)", xp=np, la=sla, spla=spla,
                                     sync=no_sync, host=np.asarray, info="emulated")
    try:
        import cupy as cp
        import cupyx.scipy.linalg as cla
        import cupyx.scipy.sparse.linalg as cspla

        if cp.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:
        return None
    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    info = (f"{name}, CuPy {cp.__version__}, CUDA runtime "
            f"{cp.cuda.runtime.runtimeGetVersion()}, driver {cp.cuda.runtime.driverGetVersion()}")
    return types.SimpleNamespace(name="CuPy (GPU)", xp=cp, la=cla, spla=cspla,
                                 sync=cp.cuda.Device().synchronize, host=cp.asnumpy, info=info)


def timed(fn, sync, repeats):
    """Median seconds of ``fn()`` (one warm-up call; ``sync()`` before each timer stops)."""
    def call():
        out = fn()
        sync()
        return out
    return median_time(call, repeats)


def rel_err(x, ref) -> str:
    return f"{np.linalg.norm(x - ref) / np.linalg.norm(ref):.1e}"


def peer_cg(dev, A, b):
    """The library's own CG with SciPy's rule ‖r‖ ≤ rtol‖b‖ (CuPy names it ``tol``)."""
    count = [0]

    def cb(_):
        count[0] += 1

    kw = "rtol" if "rtol" in inspect.signature(dev.spla.cg).parameters else "tol"
    x, info = dev.spla.cg(A, b, **{kw: RTOL}, atol=0.0, maxiter=10 * b.shape[0], callback=cb)
    return x, count[0], info


def hand_woodbury(dev, U, b):
    xp = dev.xp
    K = U @ U.T + LAM * xp.eye(U.shape[0])
    L = xp.linalg.cholesky(K)
    y = dev.la.solve_triangular(L, U @ b, lower=True)
    return (b - U.T @ dev.la.solve_triangular(L.T, y, lower=False)) / LAM


def kernel_rows(dev, n, repeats):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3))
    sq = np.sum(X**2, axis=1)
    K = np.exp(-np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0) / 2.0)
    b = rng.standard_normal(n)
    A = K + MU * np.eye(n)
    x_ref = sla.cho_solve(sla.cho_factor(A), b)
    Kd, Ad, bd = dev.xp.asarray(K), dev.xp.asarray(A), dev.xp.asarray(b)
    calls = [
        (f"(a) cg, n = {n}", [
            ("natgrad, NumPy (CPU)", lambda: cg(A, b, rtol=RTOL), np.asarray, no_sync),
            (f"natgrad, {dev.name}", lambda: cg(Ad, bd, rtol=RTOL), dev.host, dev.sync),
            (f"{dev.spla.__name__}.cg, {dev.name}", lambda: peer_cg(dev, Ad, bd), dev.host, dev.sync)]),
        (f"(b) nystrom_pcg rank {RANK}, n = {n}", [
            ("natgrad, NumPy (CPU)", lambda: nystrom_pcg(K, b, RANK, damping=MU, seed=0, rtol=RTOL),
             np.asarray, no_sync),
            (f"natgrad, {dev.name}", lambda: nystrom_pcg(Kd, bd, RANK, damping=MU, seed=0, rtol=RTOL),
             dev.host, dev.sync)]),
    ]
    return run_group(calls, x_ref, repeats)


def woodbury_rows(dev, N, P, repeats):
    rng = np.random.default_rng(1)
    U = rng.standard_normal((N, P)) / np.sqrt(P)
    b = rng.standard_normal(P)
    x_ref = woodbury_solve(U, b, LAM)
    Ud, bd = dev.xp.asarray(U), dev.xp.asarray(b)
    calls = [(f"(c) woodbury_solve, U {N}×{P}", [
        ("natgrad, NumPy (CPU)", lambda: woodbury_solve(U, b, LAM), np.asarray, no_sync),
        (f"natgrad, {dev.name}", lambda: woodbury_solve(Ud, bd, LAM), dev.host, dev.sync),
        (f"hand-written Woodbury, {dev.name}", lambda: hand_woodbury(dev, Ud, bd), dev.host, dev.sync)])]
    return run_group(calls, x_ref, repeats)


def run_group(calls, x_ref, repeats):
    """One row per contender: its iterations, error, median, and its time
    against natgrad on NumPy (the first contender) and on the GPU (the second).
    A contender that raises gets its error in its row; the others still run."""
    rows = []
    for problem, contenders in calls:
        group = []
        for label, fn, host, sync in contenders:
            try:
                t, out = timed(fn, sync, repeats)
            except Exception as err:  # a finding to report, not a reason to lose the other rows
                group.append((label, "-", f"raised {type(err).__name__}: {str(err)[:100]}", "-", None))
                continue
            if isinstance(out, tuple):  # the peer CG: (x, iterations, info)
                x, iters, ok = host(out[0]), out[1], out[2] == 0
            elif hasattr(out, "converged"):
                x, iters, ok = host(out.x), out.iterations, out.converged
            else:
                x, iters, ok = host(out), "-", True
            group.append((label, iters, "yes" if ok else "NO", rel_err(x, x_ref), t))
        t_cpu, t_gpu = group[0][4], group[1][4]
        for label, iters, ok, err, t in group:
            ratios = [f"{a / b:.2f}" if a and b else "-" for a, b in ((t_cpu, t), (t, t_gpu))]
            rows.append([problem, label, iters, ok, err, f"{t * 1e3:.2f}" if t else "-", *ratios])
    return rows


def main() -> None:
    emulate = "--emulate" in sys.argv
    if emulate:
        sys.argv.remove("--emulate")
    args = parse_args(__doc__.splitlines()[0])
    dev = gpu_device(emulate)
    if dev is None:
        print("bench_gpu: CuPy with a CUDA GPU is not available here; nothing to measure "
              "(--emulate runs the script with NumPy standing in for CuPy).")
        print("SUMMARY|gpu|-|-|-|needs CuPy and a GPU|not run: no GPU here (results/gpu.md: the last GPU run)")
        return
    n, (N, P) = (512, (64, 1024)) if args.quick else (8192, (2048, 32768))
    repeats = args.repeats or (2 if args.quick else 5)
    rows = kernel_rows(dev, n, repeats) + woodbury_rows(dev, N, P, repeats)
    header = ["problem", "solver, arrays", "iterations", "converged", "rel. error vs float64 reference",
              "median ms", "natgrad NumPy (CPU) time / this", "this / natgrad GPU time"]
    body = (f"GPU: {dev.info}. Median of {repeats} calls after one warm-up, each GPU call followed by "
            f"a device synchronisation inside the timer; μ = {MU}, rtol = {RTOL}, Woodbury λ = {LAM}; "
            "NumPy on every core of the same machine. Reference: the dense float64 Cholesky solve "
            "(a, b), natgrad's NumPy answer (c).\n\n" + markdown_table(header, rows))
    for problem in dict.fromkeys(r[0] for r in rows):  # for run_all: natgrad on the GPU against a peer
        group = [r for r in rows if r[0] == problem]
        gpu, peer = group[1], group[2] if len(group) > 2 else group[0]
        print(f"SUMMARY|gpu {problem}|{gpu[5]} ms ({gpu[1]})|{peer[5]} ms ({peer[1]})|"
              f"peer / natgrad {peer[7]}|none (a record)|-")
    if emulate:
        print(body)
        return
    write_result("gpu_solvers", "natgrad's solvers on CuPy (GPU) against NumPy (CPU) and CuPy's CG",
                 body, args.quick)


if __name__ == "__main__":
    main()
