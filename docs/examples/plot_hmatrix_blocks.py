"""
H-matrix block structure and error against ε
=============================================

An H-matrix stores the blocks of a kernel matrix that couple well-separated
clusters of points as low-rank factors, each with the rank it needs for the
requested relative error ``‖H − A‖_F ≤ ε‖A‖_F`` (Mango & Katende,
arXiv 2409.07028; Hackbusch; Bebendorf's ACA).  We compress the exponential
kernel ``exp(−‖x − y‖/ℓ)`` on random points in the unit square, draw the block
structure coloured by rank, and check the achieved error and the storage for
several ``ε``.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

import natgrad.hmatrix as hm
from natgrad.hmatrix import HMatrix

rng = np.random.default_rng(0)
n = 2000
points = rng.uniform(0.0, 1.0, size=(n, 2))


def kernel(X, Y):
    """The (len(X), len(Y)) block of exp(−‖x − y‖ / 0.2)."""
    d2 = np.sum(X**2, 1)[:, None] + np.sum(Y**2, 1)[None, :] - 2.0 * X @ Y.T
    return np.exp(-np.sqrt(np.maximum(d2, 0.0)) / 0.2)


A = kernel(points, points)
norm_A = np.linalg.norm(A)

# %%
# Block structure
# ---------------
# Each square is one block of the matrix in the cluster ordering; dense
# (inadmissible) blocks sit along the diagonal, low-rank blocks away from it,
# larger and of lower rank the farther apart their clusters are.

# The default settings (chosen by a sweep over kernels, dimensions and sizes):
# standard admissibility with η = 4 for points off a line (weak admissibility,
# one low-rank block per pair of sibling clusters, on a line), bisection
# clusters of at most 192 points in 2-3 D (80 on a line), the near field
# tested for low rank too (NumPy), symmetry detected (one triangle of blocks
# is stored and drawn at both places) and mixed precision (a block is stored
# in float32 where its share of the error budget allows).

H = HMatrix.from_kernel(kernel, points, eps=1e-6)
fig, ax = plt.subplots(figsize=(6.2, 5.0))
hm.plot(H, ax=ax)
ax.set_title(f"n = {n}, ε = 1e-6: storage {H.nbytes / A.nbytes:.1%} of dense")
fig.tight_layout()

ranks = np.asarray(H.ranks()).ravel()
print(f"low-rank blocks: {ranks.size}, ranks from {ranks.min()} to {ranks.max()}, "
      f"median {np.median(ranks):.0f}")

# %%
# Error and storage against ε
# ---------------------------
# The achieved error stays below the requested bound (the dashed diagonal);
# storage grows slowly as ε shrinks, since ranks grow like ``log(1/ε)`` for
# this smooth-away-from-the-diagonal kernel.

eps_values = [1e-2, 1e-4, 1e-6, 1e-8, 1e-10]
errors, storage, build = [], [], []
for eps in eps_values:
    t0 = time.perf_counter()
    H = HMatrix.from_kernel(kernel, points, eps=eps)
    build.append(time.perf_counter() - t0)
    errors.append(np.linalg.norm(H.to_dense() - A) / norm_A)
    storage.append(H.nbytes / A.nbytes)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.6, 3.8))
ax1.loglog(eps_values, errors, "o-", label="‖H − A‖_F / ‖A‖_F")
ax1.loglog(eps_values, eps_values, "k--", lw=0.8, label="requested ε")
ax1.set_xlabel("ε")
ax1.set_ylabel("relative error")
ax1.invert_xaxis()
ax1.legend()
ax2.semilogx(eps_values, np.array(storage) * 100, "s-")
ax2.set_xlabel("ε")
ax2.set_ylabel("storage, % of dense")
ax2.invert_xaxis()
fig.tight_layout()

for eps, err, st, t in zip(eps_values, errors, storage, build):
    print(f"eps {eps:.0e}: error {err:.2e}, storage {st:6.1%} of dense, build {t:.2f} s")
