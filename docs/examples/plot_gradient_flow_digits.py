"""
Gradient descent as an ODE integrator
=====================================

Gradient descent ``θₙ₊₁ = θₙ − h ∇f(θₙ)`` is the forward Euler method on the
gradient flow ``θ' = −∇f(θ)`` (the view of Ma et al., arXiv 2409.04707).
:class:`~natgrad.optim.GradientFlow` integrates the flow with Euler (plain
gradient descent), Heun, classical Runge–Kutta (RK4), two-step
Adams–Bashforth (AB2), or the embedded Bogacki–Shampine 3(2) pair
(``method="bs3"``), which estimates its own local error at every step and
adapts the step size ``h`` to a tolerance ``rtol``.

First a picture of what the step size means on a stiff quadratic, then the
five integrators training a small MLP on scikit-learn's digits with
mini-batches, at equal numbers of gradient evaluations (a step of RK4 costs
four, one of bs3 four or more).
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits

from natgrad.adapters.callables import CallableModel
from natgrad.adapters.torch import TorchModel
from natgrad.optim import GradientFlow

torch.set_num_threads(1)

# %%
# A stiff quadratic: the step size is bounded by the largest curvature
# --------------------------------------------------------------------
#
# ``f(θ) = ½ (50 θ₁² + θ₂²)``: Euler is stable only while ``h·50 < 2``.
# At ``h = 0.039`` it zig-zags across the narrow valley; at ``h = 0.041`` it
# diverges.  bs3 started from a step 25× too long rejects it, shrinks ``h``
# until its error estimate is within the tolerance, and then grows it again
# as long as the estimate allows.

curv = np.array([50.0, 1.0])
quad = CallableModel(residuals=lambda p, b: p,
                     loss_and_grad=lambda p, b: (0.5 * p @ (curv * p), curv * p),
                     params=np.array([1.0, 2.0]))


def path(opt, steps):
    p, points, hs = quad.params, [quad.params], []
    for _ in range(steps):
        p, info = opt.step(p, quad, None)
        points.append(p)
        hs.append(info["lr"])
    return np.array(points), hs


paths = {
    "Euler h = 0.039": path(GradientFlow(lr=0.039), 25),
    "Euler h = 0.041": path(GradientFlow(lr=0.041), 14),
    "bs3 from h = 1": path(GradientFlow(lr=1.0, method="bs3"), 25),
}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.0, 4.0))
g1, g2 = np.meshgrid(np.linspace(-1.3, 1.3, 200), np.linspace(-0.3, 2.2, 200))
ax1.contour(g1, g2, 0.5 * (curv[0] * g1**2 + curv[1] * g2**2), levels=np.geomspace(0.02, 60, 14),
            colors="0.8", linewidths=0.8)
for (name, (pts, _)), style in zip(paths.items(), ("o-", "s-", "^-")):
    ax1.plot(pts[:, 0], pts[:, 1], style, ms=3, lw=1, label=name)
ax1.set_xlim(-1.3, 1.3)
ax1.set_ylim(-0.3, 2.2)
ax1.set_xlabel("θ₁ (curvature 50)")
ax1.set_ylabel("θ₂ (curvature 1)")
ax1.legend(fontsize=8)
ax1.set_title("paths on ½(50 θ₁² + θ₂²)")
ax2.semilogy(paths["bs3 from h = 1"][1], "^-", color="C2", ms=3, label="bs3: h of each step taken")
ax2.axhline(2 / 50, color="C0", ls="--", label="Euler's limit 2/50")
ax2.axhline(2.51 / 50, color="C2", ls=":", label="bs3's limit ≈ 2.51/50")
ax2.set_xlabel("step")
ax2.set_ylabel("h")
ax2.legend(fontsize=8)
ax2.set_title("bs3 finds the stable step by itself")
fig.tight_layout()

# %%
# Digits with mini-batches
# ------------------------
#
# An MLP 64 → 32 → 10 (tanh) on the 8 × 8 digits, mean cross-entropy of
# mini-batches of 128, two seeds (initialisation and batch order).  Each
# method gets the same budget of 240 gradient evaluations; RK4 and bs3
# spend four on each mini-batch (bs3 without ``fsal``: the batch changes
# between calls, so the last stage cannot be reused).

digits = load_digits()
X = torch.tensor(digits.data / 16.0, dtype=torch.float64)
y = torch.tensor(digits.target)
perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
train, test = perm[:1400], perm[1400:]
BATCH, BUDGET, EVERY = 128, 240, 20


def make_model(seed):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)).double()

    def per_sample_loss(logits, batch):
        return torch.nn.functional.cross_entropy(logits, batch[1], reduction="none")

    return net, TorchModel.from_module(net, per_sample_loss, loss="mean")


def train_run(method, lr, seed):
    net, model = make_model(seed)
    order = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))]
    batches = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
    opt, params = GradientFlow(lr=lr, method=method), model.params
    evals, step, record, hs = 0, 0, [], []

    def evaluate():
        with torch.no_grad():
            out = torch.func.functional_call(net, model.unflatten(params), (X,))
            loss = float(torch.nn.functional.cross_entropy(out[train], y[train]))
            acc = float((out[test].argmax(1) == y[test]).double().mean())
        record.append((evals, loss, acc))

    evaluate()
    while evals < BUDGET:
        idx = batches[step % len(batches)]
        params, info = opt.step(params, model, (X[idx], y[idx]))
        step += 1
        if info["step_taken"]:
            hs.append(info["lr"])
        evals += info["gradient_evaluations"]
        if evals // EVERY > record[-1][0] // EVERY:
            evaluate()
    return np.array(record), hs


configs = {"euler": ("euler", 1.0), "heun": ("heun", 1.0), "rk4": ("rk4", 1.0), "ab2": ("ab2", 0.5),
           "bs3 from lr 1": ("bs3", 1.0), "bs3 from lr 8": ("bs3", 8.0), "euler lr 4": ("euler", 4.0)}
runs = {name: [train_run(method, lr, seed) for seed in (0, 1)] for name, (method, lr) in configs.items()}
grid = np.arange(0, BUDGET + 1, EVERY)


def on_grid(record, column):
    """The recorded value at the last record at or before each grid point."""
    idx = np.searchsorted(record[:, 0], grid, side="right") - 1
    return record[idx, column]


fig, axes = plt.subplots(1, 3, figsize=(14.0, 4.0))
for (name, seeds), color in zip(runs.items(), ("C0", "C1", "C3", "C4", "C2", "C5", "C7")):
    for col, column in ((0, 1), (1, 2)):
        vals = np.array([on_grid(rec, column) for rec, _ in seeds])
        style = "--" if name == "euler lr 4" else "-"
        axes[col].plot(grid, np.median(vals, 0), style, color=color, label=name)
        axes[col].fill_between(grid, vals.min(0), vals.max(0), color=color, alpha=0.2)
    if name.startswith("bs3"):
        for k, (_, hs) in enumerate(seeds):
            axes[2].semilogy(hs, color=color, alpha=0.8, label=name if k == 0 else None)
    final = [rec[-1, 1:] for rec, _ in seeds]
    print(f"{name:14s} final training loss {np.median([f[0] for f in final]):.3f}, "
          f"test accuracy {np.median([f[1] for f in final]):.3f}")
axes[0].set_yscale("log")
axes[0].set_ylim(0.05, 5)
axes[0].set_ylabel("training loss (whole training set)")
axes[1].set_ylim(0.5, 1.0)
axes[1].set_ylabel("test accuracy")
for ax in axes[:2]:
    ax.set_xlabel("gradient evaluations")
    ax.legend(fontsize=7)
axes[2].set_xlabel("bs3 step")
axes[2].set_ylabel("h")
axes[2].legend(fontsize=8)
axes[2].set_title("bs3's step size on the mini-batches")
fig.tight_layout()

# %%
# What to read off
# ----------------
#
# On mini-batches, at equal gradient evaluations, the higher-order methods
# follow each batch's flow more accurately but see a quarter (RK4) or half
# (Heun) as many batches; plain gradient descent at a well-chosen step is
# hard to beat, and a step only twice as long makes it diverge (dashed).
# bs3 is stable from any initial step — it picks its ``h`` from the error
# estimate — but following the flow to a tolerance is not the same as
# descending fast: its tolerance ``rtol`` becomes the knob instead of ``lr``.
# ``benchmarks/results/flow.md`` has the full comparison: five seeds, a
# step-size sweep, an MLP and a CNN, equal gradient evaluations and equal
# wall time.
