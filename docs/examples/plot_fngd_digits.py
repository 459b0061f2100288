"""
FNGD vs Adam on the digits data
===============================

Inverse-free fast natural gradient descent (Ou, Zhu, Huang & Liu,
arXiv 2403.03473) writes the damped empirical-Fisher natural gradient as a
weighted sum of the per-sample gradients ``uᵢ`` (the columns of ``U``):

.. math:: d = U α, \\qquad α = (λN\\,I + UᵀU)^{-1} \\mathbf 1 ,

an ``N × N`` solve per batch instead of a ``P × P`` one.
:class:`~natgrad.optim.FNGD` computes ``α`` on refresh steps and reuses it
in between.  Here a small MLP (64 → 32 → 10) classifies scikit-learn's
bundled 8 × 8 digits; the model is a PyTorch module wrapped by
:meth:`TorchModel.from_module <natgrad.adapters.torch.TorchModel.from_module>`
with ``loss="mean"``, so the rows of its Jacobian are per-sample gradients
of the cross-entropy.  We compare FNGD with Adam for the same number of
mini-batch steps.  An FNGD step costs more than an Adam step — the ``N``
per-sample gradients and an ``N × N`` Cholesky instead of one gradient — so
the printed wall times matter as much as the curves.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits

from natgrad.adapters.torch import TorchModel
from natgrad.optim import FNGD, Adam, fit

digits = load_digits()
X = torch.tensor(digits.data / 16.0, dtype=torch.float64)
y = torch.tensor(digits.target)
perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
train, test = perm[:1400], perm[1400:]
batch_size, steps = 200, 70          # 10 epochs of 7 mini-batches


def batches(step):
    """Mini-batch ``step`` (1-based): 7 per epoch, reshuffled every epoch."""
    epoch, k = divmod(step - 1, len(train) // batch_size)
    order = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch))]
    idx = order[k * batch_size:(k + 1) * batch_size]
    return X[idx], y[idx]


def make_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)).double()

    def per_sample_loss(logits, batch):
        return torch.nn.functional.cross_entropy(logits, batch[1], reduction="none")

    return net, TorchModel.from_module(net, per_sample_loss, loss="mean")


def accuracy(net, model, params):
    with torch.no_grad():
        logits = torch.func.functional_call(net, model.unflatten(params), (X[test],))
    return float((logits.argmax(1) == y[test]).double().mean())


results = {}
for name, opt in {"FNGD": FNGD(damping=1e-3, lr=0.5),
                  "Adam": Adam(lr=1e-2)}.items():
    net, model = make_model()
    params, history = fit(opt, model, batches, steps=steps, progress=False,
                          metric=lambda p: accuracy(net, model, p), metric_every=7)
    results[name] = history
    print(f"{name:24s} final batch loss {history['loss'][-1]:.3f}, test accuracy "
          f"{history['metric'][-1]:.3f}, {history['elapsed'][-1]:.2f} s")

# %%
# Training loss and test accuracy
# -------------------------------

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.0, 3.8))
for name, history in results.items():
    ax1.semilogy(history["step"], history["loss"], label=name)
    ax2.plot(np.array(history["metric_step"]) / 7, history["metric"], "o-", ms=3, label=name)
ax1.set_xlabel("step (mini-batches of 200)")
ax1.set_ylabel("batch cross-entropy")
ax1.legend()
ax2.set_xlabel("epoch")
ax2.set_ylabel("test accuracy")
ax2.legend()
fig.tight_layout()
