"""
Least squares on dask arrays: the same CG, chunk by chunk
=========================================================

Ridge regression with random features: the columns of ``J`` are
``cos(X w_j + b_j)`` for random ``w_j, b_j``, and the coefficients solve

.. math::  (λI + JᵀJ)\\, x = Jᵀ y .

When ``N`` (the rows: samples) runs into the millions, ``J`` no longer fits
one machine, but ``x`` and every vector CG works with have only ``P``
entries.  On dask arrays, ``X`` and ``J`` live in row chunks (on the workers
of a cluster, or here on dask's local threaded scheduler), each product
``Jᵀ(J v)`` is a map-reduce over those chunks, and
:func:`natgrad.linalg.cg` runs unchanged.  See :ref:`scaling_out` for the
cluster version.

``X`` is drawn chunk-wise by :mod:`dask.array.random`, ``J`` is computed from
it chunk by chunk and persisted (computed once and kept); NumPy gets the same
numbers through ``compute()``, so the two solves can be compared.
"""

import time

import dask
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

from natgrad.linalg import cg, from_matvec

N, d, P, rows = 20_000, 8, 32, 5_000  # 4 row chunks of 5 000 × 32
rng = da.random.default_rng(0)
X = rng.standard_normal((N, d), chunks=(rows, d))
W = 0.25 * np.random.default_rng(1).standard_normal((d, P))
b = np.random.default_rng(2).uniform(0.0, 2.0 * np.pi, P)
J = da.cos(X @ W + b)  # the features, one row chunk at a time
y = da.sin(X[:, 0]) + 0.1 * rng.standard_normal(N, chunks=rows)
lam = 1e-3 * N
J, y = dask.persist(J, y)
rhs = (J.T @ y).persist()  # a P-vector


def gram_matvec(v):
    """λv + Jᵀ(J v): one task per row chunk, then a sum over the chunks."""
    return lam * v + J.T @ (J @ v)


A_dask = from_matvec(gram_matvec, (P, P), J.dtype)

# the same numbers as NumPy arrays (this problem fits in memory)
Jn, rhs_n = J.compute(), rhs.compute()
A_numpy = from_matvec(lambda v: lam * v + Jn.T @ (Jn @ v), (P, P), Jn.dtype)


def solve(A, b):
    """cg with a time stamp and the iterate kept at every iteration."""
    stamps, iterates = [], []

    def record(xk):
        stamps.append(time.perf_counter())
        iterates.append(xk)  # on dask a lazy array: nothing is computed here

    t0 = time.perf_counter()
    res = cg(A, b, rtol=1e-10, maxiter=500, callback=record)
    return res, np.array(stamps) - t0, iterates


res_dask, t_dask, xs_dask = solve(A_dask, rhs)
res_numpy, t_numpy, xs_numpy = solve(A_numpy, rhs_n)
x_dask = res_dask.x.compute()
print(f"dask:  {res_dask.status.value} in {res_dask.iterations} iterations, "
      f"{t_dask[-1]:.2f} s")
print(f"NumPy: {res_numpy.status.value} in {res_numpy.iterations} iterations, "
      f"{t_numpy[-1]:.2f} s")
x_exact = np.linalg.solve(lam * np.eye(P) + Jn.T @ Jn, rhs_n)
for name, x in (("dask", x_dask), ("NumPy", res_numpy.x)):
    print(f"{name}: relative error of x {np.linalg.norm(x - x_exact) / np.linalg.norm(x_exact):.1e}")

# %%
# The residual, and the cost of an iteration
# ------------------------------------------
# On NumPy, CG tests convergence at every iteration.  On dask it does so every
# 10 iterations (:func:`natgrad.backend.sync_interval`): each test computes
# the task graph built since the last one, and the solver *persists* its
# vectors there, so the next iterations start from values instead of the
# whole history.  Left: the true residual of every iterate (computed after
# the solve from the iterates the callback kept): the two curves lie on top
# of each other, and the dask solve stops at the first test after
# convergence, up to 9 iterations later than NumPy's.  Right: the time
# per iteration, averaged over each window of 10 iterations.  It stays flat
# as the iteration count grows — without the persisting it grew with every
# iteration (each test recomputed the graph from the start).  The dask
# iterations cost more than NumPy's on a problem this small: every vector
# operation of CG is a dask task, and the graph's bookkeeping, not the
# arithmetic, is what is timed here.



def relative_residuals(iterates):
    """‖Jᵀy − (λI + JᵀJ) x_k‖ / ‖Jᵀy‖ of every iterate, from the NumPy copy."""
    xs = np.stack([np.asarray(x) for x in dask.compute(*iterates)])
    return np.linalg.norm(rhs_n - xs @ A_numpy_dense, axis=1) / np.linalg.norm(rhs_n)


A_numpy_dense = lam * np.eye(P) + Jn.T @ Jn  # symmetric, so x_k A = (A x_k)ᵀ
h_dask, h_numpy = relative_residuals(xs_dask), relative_residuals(xs_numpy)

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9.0, 3.6))
ax0.semilogy(np.arange(1, len(h_numpy) + 1), h_numpy, color="C0", lw=3, alpha=0.5, label="NumPy")
ax0.semilogy(np.arange(1, len(h_dask) + 1), h_dask, color="C1", lw=1, label="dask")
ax0.axhline(1e-10, color="0.6", lw=0.8, ls="--")
ax0.set_xlabel("iteration")
ax0.set_ylabel("relative residual")
ax0.set_title(f"N = {N:,}, P = {P}, λ = {lam:g}")
ax0.legend()


def per_iteration(stamps):
    """Mean time per iteration in windows of 10 iterations (ms)."""
    edges = np.arange(0, len(stamps) - 10, 10)
    return edges + 5, 1e3 * (stamps[edges + 10] - stamps[edges]) / 10


for stamps, label, color in ((t_dask, "dask (threaded scheduler)", "C1"), (t_numpy, "NumPy", "C0")):
    centre, ms = per_iteration(stamps)
    ax1.plot(centre, ms, "o-", color=color, label=label)
ax1.set_ylim(bottom=0)
ax1.set_xlabel("iteration")
ax1.set_ylabel("ms per iteration (windows of 10)")
ax1.set_title("the cost of an iteration stays flat")
ax1.legend()
fig.tight_layout()

centre, ms = per_iteration(t_dask)
print("dask ms per iteration by window:", np.round(ms, 1))
