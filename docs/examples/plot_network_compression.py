"""
Compressing a trained PINN: H-matrix against truncated SVD
==========================================================

Mango & Katende (arXiv 2409.07028) compress the weight matrices of trained
networks with error-bounded hierarchical matrices and compare them with
truncated SVD.  Here a small 2-D Poisson PINN
(:mod:`natgrad.examples.poisson`, MLP 2→128→128→1) is trained for a few
ENGD-W steps, and its 128 × 128 hidden layer is compressed with
:func:`natgrad.hmatrix.compress_matrix`, as an H-matrix and as a truncated
SVD, over a sweep of error bounds ``eps`` (``‖Ŵ − W‖_F ≤ eps ‖W‖_F``):

* the weights ``W`` themselves;
* the update ``ΔW = W − W₀`` that training made (``W₀``, the random
  initialisation, is regenerated from the seed and not stored:
  ``reference_stored=False``).

For each, the storage of the compressed layer is plotted against the error
of the matrix and against the relative L2 error of the PDE solution of the
network that uses it.  A third panel shows a matrix with structure an
H-matrix can find: a kernel matrix whose rows were shuffled.  The benchmark
``benchmarks/bench_compress.py`` makes the full comparison at equal storage
(NTK change, error through the layers, inference time, fine-tuning).
"""

import matplotlib.pyplot as plt
import numpy as np

from natgrad.examples.poisson import make_poisson
from natgrad.hmatrix import compress_matrix
from natgrad.optim import ENGD, fit

problem = make_poisson(dim=2, hidden=(128, 128), n_interior=200, n_boundary=60, n_test=2000, seed=0)
params, history = fit(ENGD(damping=1e-6, solver="woodbury"), problem.model, problem.sample, steps=20,
                      progress=False)
l2_trained = problem.l2_error(params)
print(f"{problem.n_params} parameters; relative L2 error after {len(history['step'])} ENGD-W steps: "
      f"{l2_trained:.2e}")

trained = problem.model.unflatten(params)
initial = problem.model.unflatten(problem.model.params)
W = trained["2.weight"].numpy()   # the hidden 128 x 128 layer
W0 = initial["2.weight"].numpy()


def l2_with(W_hat):
    """The PDE solution's relative L2 error with the hidden layer replaced by ``W_hat``."""
    import torch

    new = dict(trained)
    new["2.weight"] = torch.from_numpy(np.ascontiguousarray(W_hat))
    return problem.l2_error(problem.model.flatten(new))


# %%
# Sweep of error bounds
# ---------------------
# ``compress_matrix`` measures the error of what it returns (``C.error``) and
# counts the stored numbers (``C.nbytes``: factors, or an H-matrix's blocks and
# its two permutations).

eps_list = np.geomspace(3e-3, 0.9, 9)
curves = {}
for what, ref in (("W", {}), ("ΔW", {"reference": W0, "reference_stored": False})):
    for method in ("hmatrix", "svd"):
        rows = []
        for eps in eps_list:
            C = compress_matrix(W, eps=float(eps), method=method, leaf_size=16, **ref)
            rows.append((C.compression_ratio, C.error, l2_with(np.asarray(C.to_dense()))))
        curves[what, method] = np.array(rows)
        print(f"{what:2s} {method:7s}: " + ", ".join(f"{100 * r:.0f} %: L2 {l2:.1e}" for r, _, l2 in rows))

# %%
# A matrix an H-matrix is made for: the kernel ``1/(0.05 + ‖xᵢ − xⱼ‖)`` on 256
# random points of the unit square, rows shuffled (no geometry is given:
# ``from_dense`` finds clusters from a spectral embedding of the matrix itself).

rng = np.random.default_rng(1)
pts = rng.random((256, 2))
K = 1.0 / (0.05 + np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=-1))
K = K[rng.permutation(256)]
kernel = {m: np.array([(C.compression_ratio, C.error) for C in
                       (compress_matrix(K, eps=float(e), method=m, leaf_size=16) for e in np.geomspace(1e-5, 0.2, 8))])
          for m in ("hmatrix", "svd")}

# %%
# Storage against error
# ---------------------

style = {"hmatrix": ("tab:blue", "H-matrix"), "svd": ("tab:orange", "truncated SVD")}
fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.9))
for (what, method), c in curves.items():
    color, label = style[method]
    ls = "-o" if what == "W" else "--s"
    # a forced SVD of high rank can store more than the dense matrix; an
    # exact (dense) H-matrix has error 0, off a log axis
    c = c[(c[:, 0] <= 1.05) & (c[:, 1] > 0)]
    order = np.argsort(c[:, 0])
    axes[0].semilogy(100 * c[order, 0], c[order, 1], ls, color=color, ms=4, label=f"{label}, {what}")
    axes[1].semilogy(100 * c[order, 0], c[order, 2], ls, color=color, ms=4, label=f"{label}, {what}")
axes[1].axhline(l2_trained, color="grey", lw=0.8, label="uncompressed")
for method, c in kernel.items():
    color, label = style[method]
    c = c[c[:, 0] <= 1.05]
    order = np.argsort(c[:, 0])
    axes[2].semilogy(100 * c[order, 0], c[order, 1], "-o", color=color, ms=4, label=label)
axes[0].set_title("hidden layer (128 × 128): weight error", fontsize=10)
axes[0].set_ylabel("‖Ŵ − W‖_F / ‖W‖_F")
axes[1].set_title("PDE solution with the compressed layer", fontsize=10)
axes[1].set_ylabel("relative L2 error")
axes[2].set_title("kernel 1/(0.05 + ‖x − y‖), rows shuffled (256 × 256)", fontsize=10)
axes[2].set_ylabel("relative Frobenius error")
for ax in axes:
    ax.set_xlabel("storage [% of dense]")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
fig.tight_layout()

# %%
# On the trained weights ``W`` neither representation saves much before the
# error is large: the random initialisation is incompressible.  The update
# ``ΔW`` is nearly low-rank, and there the truncated SVD (the best rank-``k``
# approximation, Eckart–Young) stores less than the H-matrix for the same
# error, whose dense diagonal blocks cost storage a single low-rank factor
# does not.  On the shuffled kernel matrix the H-matrix wins: its blocks away
# from the diagonal are of low rank though the matrix as a whole is not.
