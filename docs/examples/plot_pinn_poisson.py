"""
A 2-D Poisson PINN trained with ENGD-W and SPRING
=================================================

A physics-informed network ``u_θ`` solves ``−Δu = f`` on ``[0, 1]²`` with
Dirichlet data, where ``u*(x) = cos(πx₁) + cos(πx₂)`` and ``f = π² u*``.  The
residuals are ``−Δu_θ − f`` at interior points and ``u_θ − u*`` at boundary
points (:mod:`natgrad.examples.poisson`, written in PyTorch and wrapped by
:meth:`TorchModel.from_pointwise <natgrad.adapters.torch.TorchModel.from_pointwise>`).

Two natural-gradient optimisers on the same problem (fresh collocation points
every step):

* **ENGD-W** — ``θ ← θ − η Jᵀ(JJᵀ + λI)⁻¹ r``, the energy natural gradient in
  sample space (:class:`~natgrad.optim.ENGD` with ``solver="woodbury"``);
* **SPRING** — the same with Kaczmarz-style momentum
  (:class:`~natgrad.optim.SPRING`).

Both choose ``η`` by a grid line search.  The network and the number of
points are tiny so that the example runs in seconds; the demo
(``python -m natgrad.demo``) trains the 5-D problem of arXiv 2505.12149.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from natgrad.examples.poisson import make_poisson
from natgrad.optim import ENGD, SPRING, fit

problem = make_poisson(dim=2, hidden=(16, 16), n_interior=150, n_boundary=60, n_test=2000, seed=0)
print(f"{problem.n_params} parameters, {problem.n_interior} + {problem.n_boundary} points per step")

runs = {}
for name, opt in {
    "ENGD-W": ENGD(damping=1e-6, solver="woodbury"),
    "SPRING": SPRING(damping=1e-6, momentum=0.5),
}.items():
    params, history = fit(opt, problem.model, problem.sample, steps=30, progress=False,
                          metric=problem.l2_error, metric_every=5)
    runs[name] = (params, history)
    print(f"{name}: loss {history['loss'][0]:.2e} -> {history['loss'][-1]:.2e}, "
          f"relative L2 error {history['metric'][-1]:.2e}, {history['elapsed'][-1]:.1f} s")

# %%
# Solution, error map and convergence
# -----------------------------------

g = np.linspace(0.0, 1.0, 60)
X1, X2 = np.meshgrid(g, g)
grid = torch.tensor(np.stack([X1.ravel(), X2.ravel()], axis=1), dtype=torch.float64)
exact = (np.cos(np.pi * X1) + np.cos(np.pi * X2))
best = min(runs, key=lambda k: runs[k][1]["metric"][-1])
u = problem.u(runs[best][0], grid).numpy().reshape(X1.shape)

fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.6))
im = axes[0].pcolormesh(X1, X2, u, shading="auto", cmap="viridis")
axes[0].set_title(f"u_θ ({best})")
fig.colorbar(im, ax=axes[0])
im = axes[1].pcolormesh(X1, X2, np.abs(u - exact), shading="auto", cmap="magma")
axes[1].set_title("|u_θ − u*|")
fig.colorbar(im, ax=axes[1])
for ax in axes[:2]:
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
for name, (_, history) in runs.items():
    axes[2].semilogy(history["step"], history["loss"], label=f"{name} loss")
    axes[2].semilogy(history["metric_step"], history["metric"], "o--", ms=3, label=f"{name} L2 error")
axes[2].set_xlabel("step")
axes[2].set_title("loss and relative L2 error")
axes[2].legend(fontsize=8)
fig.tight_layout()
