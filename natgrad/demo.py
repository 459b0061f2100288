"""``python -m natgrad.demo``: natgrad's solvers on a kernel system, printed as a table.

The demo builds a Gaussian-kernel (RBF) system ``(K + λI) x = b`` on random
3-D points, the kind of sample-space system natural-gradient methods solve,
and solves it with

* plain conjugate gradients (:func:`natgrad.linalg.cg`),
* CG with a Jacobi (diagonal) preconditioner,
* the same CG call on PyTorch and JAX arrays when those libraries are
  installed (one implementation, several backends),

and prints iterations, wall time and the relative residual of each, checked
against a dense SciPy solve.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from typing import Any, Callable

import numpy as np
import scipy.linalg

from natgrad.linalg import cg


def kernel_system(n: int, damping: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An RBF kernel matrix with uneven scales ``D K D + λI`` and a right-hand side."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    sq = np.sum(X**2, axis=1)
    K = np.exp(-np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0) / 2.0)
    # Uneven row scales (as in a Jacobian with unnormalised residual groups):
    # the case where a diagonal preconditioner pays.
    d = np.exp(rng.uniform(-2.0, 2.0, n))
    A = d[:, None] * K * d[None, :] + damping * np.eye(n)
    return A, rng.standard_normal(n)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(n: int = 2000, damping: float = 1e-2, rtol: float = 1e-8) -> list[tuple[str, int, float, float, bool]]:
    """Solve the demo system every available way; return the table rows."""
    A, b = kernel_system(n, damping)
    x_ref = scipy.linalg.solve(A, b, assume_a="pos")
    rows = []

    def record(name: str, seconds: float, res: Any, x: np.ndarray) -> None:
        rel = float(np.linalg.norm(A @ x - b) / np.linalg.norm(b))
        err = float(np.linalg.norm(x - x_ref) / np.linalg.norm(x_ref))
        rows.append((name, res.iterations, seconds, rel, err, res.converged))

    t, res = _timed(lambda: cg(A, b, rtol=rtol, maxiter=20 * n))
    record("cg (NumPy)", t, res, res.x)
    inv_diag = 1.0 / np.diag(A)
    t, res = _timed(lambda: cg(A, b, rtol=rtol, maxiter=20 * n, M=lambda r: inv_diag * r))
    record("cg + Jacobi preconditioner (NumPy)", t, res, res.x)

    if importlib.util.find_spec("torch") is not None:
        import torch

        At, bt = torch.from_numpy(A), torch.from_numpy(b)
        t, res = _timed(lambda: cg(At, bt, rtol=rtol, maxiter=20 * n))
        record("cg (PyTorch CPU tensors)", t, res, res.x.numpy())
    if importlib.util.find_spec("jax") is not None:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        Aj, bj = jnp.asarray(A), jnp.asarray(b)
        t, res = _timed(lambda: cg(Aj, bj, rtol=rtol, maxiter=20 * n))
        record("cg (JAX arrays)", t, res, np.asarray(res.x))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of kernel points")
    parser.add_argument("--damping", type=float, default=1e-2)
    parser.add_argument("--rtol", type=float, default=1e-8)
    args = parser.parse_args(argv)
    print(f"natgrad demo: (D K D + {args.damping:g} I) x = b, RBF kernel on {args.n} points in 3-D, rtol {args.rtol:g}\n")
    rows = run(args.n, args.damping, args.rtol)
    header = f"{'solver':<38} {'iters':>6} {'time [s]':>9} {'rel. residual':>14} {'error vs dense':>15}  converged"
    print(header)
    print("-" * len(header))
    for name, iters, seconds, rel, err, conv in rows:
        print(f"{name:<38} {iters:>6} {seconds:>9.3f} {rel:>14.2e} {err:>15.2e}  {conv}")


if __name__ == "__main__":
    main()
