"""natgrad.linalg.woodbury against dense normal equations and a hand-written
NumPy/SciPy Woodbury solve, same run (issue #3).

Problem: the damped Gauss–Newton solve ``x = (λI_P + UᵀU)⁻¹ b`` with a random
float64 ``U`` of shape ``(N, P)``, λ = 1e-3, from scratch (factorisation and
one solve), and the ENGD step ``Uᵀ(λI_N + UUᵀ)⁻¹ r``.

Peers:

* dense normal equations: ``cho_factor(λI + UᵀU)`` on the ``P × P`` matrix and
  ``cho_solve`` (goal: natgrad ≥ 20× faster at N = 1000, P = 8000);
* hand-written Woodbury: ``K = U @ U.T + λI``, ``cho_factor``, ``cho_solve``
  (goal: time ratio natgrad/hand ≤ 0.8: natgrad forms UUᵀ with BLAS syrk).
  NumPy already routes ``U @ U.T`` to syrk, so a further row uses a general
  GEMM (``scipy.linalg.blas.dgemm``) for ``UUᵀ`` to show the symmetric saving.

Memory: N = 2000, P = 50,000 (U is 800 MB), each method in its own
subprocess; reports the extra memory allocated beyond U (tracemalloc, which
sees NumPy's allocations) and the subprocess's peak resident set size.
The dense normal equations would need the 20 GB ``P × P`` matrix there.

Run: ``python benchmarks/bench_woodbury.py`` (``--quick`` for a small version).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.linalg as sla

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, median_time, parse_args, write_result  # noqa: E402

from natgrad.linalg.woodbury import Woodbury, woodbury_solve  # noqa: E402

LAM = 1e-3


def problem(N: int, P: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((N, P)) / np.sqrt(P)
    return U, rng.standard_normal(P), rng.standard_normal(N)


def dense_normal_equations(U, b, lam=LAM):
    A = U.T @ U
    A[np.diag_indices_from(A)] += lam
    return sla.cho_solve(sla.cho_factor(A, lower=True, check_finite=False), b, check_finite=False)


def hand_woodbury(U, b, lam=LAM):
    K = U @ U.T
    K[np.diag_indices_from(K)] += lam
    c = sla.cho_factor(K, lower=True, check_finite=False)
    return (b - U.T @ sla.cho_solve(c, U @ b, check_finite=False)) / lam


def hand_woodbury_gemm(U, b, lam=LAM):
    """As hand_woodbury but with a general GEMM for UUᵀ (BLAS dgemm on U's own
    memory, no copy): what a Woodbury solve costs without a symmetric product."""
    K = sla.blas.dgemm(1.0, U.T, U.T, trans_a=1)
    K[np.diag_indices_from(K)] += lam
    c = sla.cho_factor(K, lower=True, check_finite=False)
    return (b - U.T @ sla.cho_solve(c, U @ b, check_finite=False)) / lam


def hand_step(U, r, lam=LAM):
    K = U @ U.T
    K[np.diag_indices_from(K)] += lam
    return U.T @ sla.cho_solve(sla.cho_factor(K, lower=True, check_finite=False), r, check_finite=False)


def rel_residual(U, x, b, lam=LAM):
    return np.linalg.norm(lam * x + U.T @ (U @ x) - b) / np.linalg.norm(b)


def timing_table(N, P, repeats, dense_repeats):
    U, b, r = problem(N, P)
    rows = []
    t_ng, x_ng = median_time(lambda: woodbury_solve(U, b, LAM), repeats)
    t_hand, x_hand = median_time(lambda: hand_woodbury(U, b), repeats)
    t_gemm, x_gemm = median_time(lambda: hand_woodbury_gemm(U, b), repeats)
    t_dense, x_dense = median_time(lambda: dense_normal_equations(U, b), dense_repeats, warmup=0)
    res = {k: rel_residual(U, x, b) for k, x in (("ng", x_ng), ("hand", x_hand), ("gemm", x_gemm),
                                                 ("dense", x_dense))}
    rows.append(["(λI+UᵀU)⁻¹b: natgrad woodbury_solve", f"{t_ng * 1e3:.1f}", "1", f"{res['ng']:.1e}"])
    rows.append(["hand-written Woodbury (U@U.T, cho_factor, cho_solve)", f"{t_hand * 1e3:.1f}",
                 f"natgrad/hand = {t_ng / t_hand:.2f} (goal ≤ 0.8: {'yes' if t_ng / t_hand <= 0.8 else 'NO'})",
                 f"{res['hand']:.1e}"])
    rows.append(["hand-written Woodbury with a general GEMM (dgemm for UUᵀ)", f"{t_gemm * 1e3:.1f}",
                 f"natgrad/hand-gemm = {t_ng / t_gemm:.2f} (≤ 0.8: {'yes' if t_ng / t_gemm <= 0.8 else 'NO'})",
                 f"{res['gemm']:.1e}"])
    rows.append(["dense normal equations (cho_factor P×P)", f"{t_dense * 1e3:.1f}",
                 f"dense/natgrad = {t_dense / t_ng:.1f}× (goal ≥ 20×: {'yes' if t_dense / t_ng >= 20 else 'NO'})",
                 f"{res['dense']:.1e}"])
    t_step, x_step = median_time(lambda: Woodbury(U, LAM).solve_sample(r), repeats)
    t_hstep, x_hstep = median_time(lambda: hand_step(U, r), repeats)
    ref = np.linalg.norm(x_step - x_hstep) / np.linalg.norm(x_hstep)
    rows.append(["ENGD step Uᵀ(λI+UUᵀ)⁻¹r: natgrad Woodbury", f"{t_step * 1e3:.1f}",
                 f"natgrad/hand = {t_step / t_hstep:.2f}", f"vs hand {ref:.1e}"])
    rows.append(["ENGD step: hand-written", f"{t_hstep * 1e3:.1f}", "", ""])
    W = Woodbury(U, LAM)
    t_reuse, _ = median_time(lambda: W.solve(b), repeats)
    rows.append(["reuse a factorisation: W.solve(b)", f"{t_reuse * 1e3:.2f}", "", ""])
    try:
        import torch

        Ut, bt = torch.from_numpy(U), torch.from_numpy(b)
        t_t, _ = median_time(lambda: woodbury_solve(Ut, bt, LAM), repeats)
        rows.append(["natgrad on torch (CPU) arrays, for information", f"{t_t * 1e3:.1f}",
                     f"torch/numpy = {t_t / t_ng:.2f}", ""])
    except ImportError:
        pass
    header = ["method", "median ms", "ratio", "rel. residual"]
    note = ("Note: NumPy itself sends `U @ U.T` (two views of one buffer) to BLAS syrk, so the "
            "hand-written peer already gets the symmetric product's halved flops; the "
            "general-GEMM row shows what the symmetric product saves.  NumPy and SciPy wheels "
            "each bundle an OpenBLAS with its own thread pool; the hand-written peer alternates "
            "between them (`U @ U.T` in NumPy's, `cho_factor` in SciPy's), whose threads "
            "spin after each call and fight the other pool for the cores; natgrad keeps its "
            "syrk, Cholesky and matrix-vector products in NumPy's pool.")
    return f"### N = {N}, P = {P}, float64, λ = {LAM}\n\n" + markdown_table(header, rows) + "\n\n" + note


# ---------------------------------------------------------------------------
# memory, one subprocess per method
# ---------------------------------------------------------------------------


def memory_child(method: str, N: int, P: int, repeats: int) -> None:
    import resource
    import time
    import tracemalloc

    U, b, _ = problem(N, P)
    fn = {"natgrad": lambda: woodbury_solve(U, b, LAM), "hand": lambda: hand_woodbury(U, b)}[method]
    fn()  # warm-up (BLAS threads, imports)
    tracemalloc.start()
    tracemalloc.reset_peak()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"peak_extra": peak, "maxrss": maxrss, "U": U.nbytes,
                      "time": sorted(times)[len(times) // 2]}))


def memory_table(N, P, repeats):
    rows = []
    for method in ("natgrad", "hand"):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", method, str(N), str(P), str(repeats)],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        m = json.loads(out)
        mib = 1 << 20
        rows.append([method, f"{m['time']:.2f}", f"{m['U'] / mib:.0f}", f"{m['peak_extra'] / mib:.1f}",
                     f"{m['peak_extra'] / m['U']:.3f}", f"{m['maxrss'] / mib:.0f}"])
    header = ["method", "median s", "U MiB", "extra peak MiB (tracemalloc)", "extra / size(U)",
              "process max RSS MiB"]
    note = (f"Dense normal equations are not run here: the P × P matrix alone would take "
            f"{P * P * 8 / 1e9:.0f} GB.")
    return f"### memory: N = {N}, P = {P}, float64 (one subprocess per method)\n\n" + markdown_table(header, rows) + "\n\n" + note


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    args = parse_args(__doc__.splitlines()[0])
    if args.quick:
        sizes, mem, repeats, dense_repeats = (200, 1600), (500, 10_000), args.repeats or 3, 1
    else:
        sizes, mem, repeats, dense_repeats = (1000, 8000), (2000, 50_000), args.repeats or 5, 3
    body = timing_table(*sizes, repeats, dense_repeats) + "\n\n" + memory_table(*mem, 3 if not args.quick else 1)
    write_result("woodbury", "Woodbury solves: natgrad vs dense normal equations and hand-written Woodbury", body,
                 args.quick)


if __name__ == "__main__":
    main()
