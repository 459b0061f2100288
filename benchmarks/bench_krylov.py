"""natgrad.linalg.cg against scipy.sparse.linalg.cg on the same problems, same run.

Problems (issue #2):

(a) dense RBF kernel system, n = 4000 points drawn from a 3-D standard normal,
    ``K_ij = exp(-|x_i - x_j|² / 2) + 1e-2 δ_ij``, rtol 1e-8;
(b) sparse 2-D Laplacian (5-point stencil, 500 × 500 grid, n = 250,000), given
    to natgrad through ``from_matvec`` (the sparse matrix's own product) and to
    SciPy as the sparse matrix, rtol 1e-6.

Reports iteration counts and median wall time of 5 solves; goal: counts equal
within 2 %, time ratio natgrad/scipy ≤ 1.05.  Also natgrad on PyTorch and JAX
(CPU) arrays for the dense problem, for information.

Run: ``python benchmarks/bench_krylov.py`` (``--quick`` for a small version).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.sparse
import scipy.sparse.linalg as spla

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, markdown_table, median_time, parse_args, write_result  # noqa: E402

from natgrad.linalg import cg, from_matvec  # noqa: E402


def rbf_system(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    sq = np.sum(X**2, axis=1)
    D = np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0)
    K = np.exp(-D / 2.0)
    K[np.diag_indices(n)] += 1e-2
    return K, rng.standard_normal(n)


def laplacian_2d(m: int) -> scipy.sparse.csr_matrix:
    one_d = scipy.sparse.diags([-np.ones(m - 1), 2.0 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])
    eye = scipy.sparse.identity(m)
    return (scipy.sparse.kron(one_d, eye) + scipy.sparse.kron(eye, one_d)).tocsr()


def scipy_cg(A, b, rtol, maxiter):
    count = [0]

    def cb(_):
        count[0] += 1

    x, info = spla.cg(A, b, rtol=rtol, atol=0.0, maxiter=maxiter, callback=cb)
    return x, count[0], info


def compare(name, A_natgrad, A_scipy, b, rtol, maxiter, repeats):
    (t_ng, t_sp), (res, (x_sp, it_sp, info)) = interleaved(
        [lambda: cg(A_natgrad, b, rtol=rtol, maxiter=maxiter), lambda: scipy_cg(A_scipy, b, rtol, maxiter)],
        repeats, with_values=True)
    rel_ng = np.linalg.norm(A_scipy @ res.x - b) / np.linalg.norm(b)
    rel_sp = np.linalg.norm(A_scipy @ x_sp - b) / np.linalg.norm(b)
    it_diff = abs(res.iterations - it_sp) / max(it_sp, 1)
    ratio = t_ng / t_sp
    met = it_diff <= 0.02 and ratio <= 1.05 and res.converged and info == 0
    return [name, res.iterations, it_sp, f"{100 * it_diff:.1f}%", f"{rel_ng:.2e}", f"{rel_sp:.2e}",
            f"{t_ng * 1e3:.1f}", f"{t_sp * 1e3:.1f}", f"{ratio:.3f}", "yes" if met else "NO"]


def other_backends(K, b, rtol, maxiter, repeats, t_scipy):
    rows = []
    try:
        import torch

        Kt, bt = torch.from_numpy(K), torch.from_numpy(b)
        t, res = median_time(lambda: cg(Kt, bt, rtol=rtol, maxiter=maxiter), repeats)
        rows.append(["natgrad on torch (CPU)", res.iterations, f"{t * 1e3:.1f}", f"{t / t_scipy:.3f}"])
    except ImportError:
        pass
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        Kj, bj = jnp.asarray(K), jnp.asarray(b)
        t, res = median_time(lambda: cg(Kj, bj, rtol=rtol, maxiter=maxiter), repeats)
        rows.append(["natgrad on jax (CPU)", res.iterations, f"{t * 1e3:.1f}", f"{t / t_scipy:.3f}"])
    except ImportError:
        pass
    return rows


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n_kernel, grid = (1000, 120) if args.quick else (4000, 500)
    repeats = args.repeats or (3 if args.quick else 9)

    K, b = rbf_system(n_kernel)
    L = laplacian_2d(grid)
    bl = np.random.default_rng(1).standard_normal(L.shape[0])
    L_op = from_matvec(lambda v: L @ v, L.shape, np.float64, matmat=lambda V: L @ V)

    rows = [
        compare(f"(a) RBF kernel, n={n_kernel}, rtol 1e-8", K, K, b, 1e-8, 10 * n_kernel, repeats),
        compare(f"(b) 2-D Laplacian, n={L.shape[0]}, rtol 1e-6", L_op, L, bl, 1e-6, 10 * L.shape[0], repeats),
    ]
    header = ["problem", "natgrad iters", "scipy iters", "iter diff", "natgrad rel. res.",
              "scipy rel. res.", "natgrad ms", "scipy ms", "time ratio", "goal met"]
    t_scipy_dense = float(rows[0][7]) / 1e3
    extra = other_backends(K, b, 1e-8, 10 * n_kernel, repeats, t_scipy_dense)
    body = (
        f"Median of {repeats} solves each, natgrad and SciPy alternating; times in milliseconds; ratio = natgrad / scipy "
        "(goal: iteration counts within 2 %, time ratio ≤ 1.05 on NumPy).\n\n"
        + markdown_table(header, rows)
        + "\n\nThe dense problem (a) on other backends, same natgrad code "
        "(ratio to scipy on NumPy):\n\n"
        + markdown_table(["backend", "iters", "ms", "ratio to scipy"], extra)
    )
    write_result("krylov", "Conjugate gradients: natgrad vs scipy.sparse.linalg.cg", body, quick=args.quick)


if __name__ == "__main__":
    main()
