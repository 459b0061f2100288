"""FNGD vs SGD vs Adam: an MLP on scikit-learn's bundled digits data (issue #7, item 9).

Problem: ``sklearn.datasets.load_digits`` (1797 images 8 × 8, 10 classes),
pixels scaled to [0, 1], a fixed stratified split of 1437 training and 360
test images; MLP 64→64→10 with tanh (P = 4,810), float64, written in PyTorch
and handed to natgrad as ``TorchModel(fn, params, loss="mean")`` where ``fn``
returns the per-sample cross-entropy losses.  Training cycles through fixed
mini-batches of 128 (one shuffle; 12 per epoch, the last one smaller).

Methods, the same optimiser-time budget each (test-accuracy evaluations are
not counted):

* FNGD (Ou et al., arXiv 2403.03473): ``U α`` with ``α = (λN I + UᵀU)⁻¹ 1``
  refreshed every step (``refresh_every=1``: the exact damped empirical-Fisher
  NGD direction), and refreshed every 5th use of a mini-batch (the paper's
  reuse of the coefficients across epochs; ``batch_key=`` the mini-batch
  index so every mini-batch keeps its own α);
* SGD — ``GradientFlow(lr=lr, method="euler")``, plain gradient descent on the mini-batch;
* Adam — natgrad's ``Adam``;
* the peer: ``torch.optim.Adam`` in a plain PyTorch training loop (same
  network, data, batches and learning rate).

Reports time to 95 % test accuracy and the final test accuracy.  Headline:
FNGD reaches 95 % sooner than SGD and than Adam (natgrad's and torch.optim's).

Run: ``python benchmarks/bench_fngd.py`` (about 2.5 minutes; ``--quick``
about 25 s).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, parse_args, write_result  # noqa: E402

TARGET = 0.95
BATCH = 128
HIDDEN = 64


def load_data(seed: int = 0) -> dict[str, Any]:
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(Xtr))
    Xtr, ytr = Xtr[order], ytr[order]
    t = lambda a, dt: torch.as_tensor(a, dtype=dt)  # noqa: E731
    Xtr, Xte = t(Xtr, torch.float64), t(Xte, torch.float64)
    ytr, yte = t(ytr, torch.long), t(yte, torch.long)
    batches = [(Xtr[i:i + BATCH], ytr[i:i + BATCH]) for i in range(0, len(Xtr), BATCH)]
    return {"train": (Xtr, ytr), "test": (Xte, yte), "batches": batches}


def make_net(seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN, dtype=torch.float64),
        torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, 10, dtype=torch.float64),
    )


def make_model(net: Any) -> Any:
    import torch.nn.functional as F
    from torch.func import functional_call

    from natgrad.adapters.torch import TorchModel

    params = {k: v.detach().clone() for k, v in net.named_parameters()}

    def per_sample_ce(p: Any, batch: Any) -> Any:
        X, y = batch[0], batch[1]
        return F.cross_entropy(functional_call(net, p, (X,)), y, reduction="none")

    return TorchModel(per_sample_ce, params, loss="mean")


def accuracy_fn(net: Any, model: Any, test: Any) -> Any:
    import torch
    from torch.func import functional_call

    X, y = test

    def acc(flat: Any) -> float:
        with torch.no_grad():
            pred = functional_call(net, model.unflatten(flat), (X,)).argmax(-1)
        return float((pred == y).double().mean())

    return acc


class Keyed:
    """FNGD inside ``fit``: the batch carries its index, passed as ``batch_key``."""

    def __init__(self, opt: Any) -> None:
        self.opt = opt

    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        X, y, key = batch
        return self.opt.step(params, model, (X, y), batch_key=key)


def run_natgrad(name: str, hyper: str, opt: Any, data: dict[str, Any], seconds: float, every: int) -> dict[str, Any]:
    from natgrad.optim import fit

    net = make_net()
    model = make_model(net)
    acc = accuracy_fn(net, model, data["test"])
    batches = data["batches"]
    B = len(batches)
    keyed = isinstance(opt, Keyed)

    def next_batch(step: int) -> Any:
        k = (step - 1) % B
        return (*batches[k], k) if keyed else batches[k]

    # warm up the model's code paths once (not in the budget)
    model.residuals_and_jacobian(model.params, batches[0])
    model.loss_and_grad(model.params, batches[0])
    _, hist = fit(opt, model, next_batch, 10_000_000, progress=False, metric=acc,
                  metric_every=every, time_budget=seconds)
    hit = next((i for i, a in enumerate(hist["metric"]) if a >= TARGET), None)
    reached = None if hit is None else hist["metric_elapsed"][hit]
    return {"name": name, "hyper": hyper, "steps": len(hist["step"]), "epochs": len(hist["step"]) / B,
            "steps_to": None if hit is None else hist["metric_step"][hit],
            "median_step": statistics.median(hist["step_time"]), "reached": reached,
            "final": hist["metric"][-1], "best": max(hist["metric"]), "final_loss": hist["loss"][-1]}


def run_torch_adam(lr: float, data: dict[str, Any], seconds: float, every: int) -> dict[str, Any]:
    """The peer: torch.optim.Adam in the plain PyTorch loop."""
    import torch
    import torch.nn.functional as F

    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    Xte, yte = data["test"]
    batches = data["batches"]

    def acc() -> float:
        with torch.no_grad():
            return float((net(Xte).argmax(-1) == yte).double().mean())

    elapsed, times, accs, steps_at, step_times, loss = 0.0, [0.0], [acc()], [0], [], float("nan")
    step = 0
    X, y = batches[0]  # warm-up forward/backward outside the budget, then reset
    F.cross_entropy(net(X), y).backward()
    opt.zero_grad(set_to_none=True)
    while elapsed < seconds:
        X, y = batches[step % len(batches)]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = F.cross_entropy(net(X), y)
        out.backward()
        opt.step()
        loss = float(out.detach())
        dt = time.perf_counter() - t0
        elapsed += dt
        step_times.append(dt)
        step += 1
        if step % every == 0 or elapsed >= seconds:
            times.append(elapsed)
            accs.append(acc())
            steps_at.append(step)
    hit = next((i for i, a in enumerate(accs) if a >= TARGET), None)
    reached = None if hit is None else times[hit]
    return {"name": "Adam (torch.optim, plain loop) — peer", "hyper": f"lr {lr:g}", "steps": step,
            "steps_to": None if hit is None else steps_at[hit],
            "epochs": step / len(batches), "median_step": statistics.median(step_times), "reached": reached,
            "final": accs[-1], "best": max(accs), "final_loss": loss}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    seconds = 3.0 if args.quick else 25.0
    import torch

    from natgrad.optim import FNGD, Adam, GradientFlow

    data = load_data()
    n_train, n_test = len(data["train"][1]), len(data["test"][1])
    t0 = time.perf_counter()
    lr_adam = 1e-2
    runs = []
    specs = [
        ("FNGD (refresh every step)", "λ 1e-2, lr 0.5, momentum 0", Keyed(FNGD(damping=1e-2, refresh_every=1, lr=0.5)), 5),
        ("FNGD (refresh every 5th use)", "λ 1, lr 1, momentum 0",
         Keyed(FNGD(damping=1.0, refresh_every=5, lr=1.0)), 5),
        ("SGD (GradientFlow euler)", "lr 1", GradientFlow(lr=1.0, method="euler"), 5),
        ("Adam (natgrad)", f"lr {lr_adam:g}", Adam(lr=lr_adam), 5),
    ]
    for name, hyper, opt, every in specs:
        print(f"[fngd] {name} for {seconds:g} s ...", flush=True)
        runs.append(run_natgrad(name, hyper, opt, data, seconds, every))
    print(f"[fngd] torch.optim.Adam for {seconds:g} s ...", flush=True)
    runs.append(run_torch_adam(lr_adam, data, seconds, 5))

    fmt_t = lambda t: f"{t:.2f}" if t is not None else "not reached"  # noqa: E731
    rows = [[r["name"], r["hyper"], r["steps"], f"{r['epochs']:.1f}", f"{1e3 * r['median_step']:.2f}",
             r["steps_to"] if r["steps_to"] is not None else "—", fmt_t(r["reached"]), f"{100 * r['final']:.1f}", f"{100 * r['best']:.1f}", f"{r['final_loss']:.3g}"]
            for r in runs]
    fngd = runs[0] if runs[0]["reached"] is not None and (
        runs[1]["reached"] is None or runs[0]["reached"] <= runs[1]["reached"]) else runs[1]
    others = runs[2:]
    reached_others = [r["reached"] for r in others if r["reached"] is not None]
    best_other = min(others, key=lambda r: r["reached"] if r["reached"] is not None else float("inf"))
    met = fngd["reached"] is not None and all(fngd["reached"] < t for t in reached_others)
    ratio = (f"{best_other['reached'] / fngd['reached']:.2f}× sooner"
             if fngd["reached"] is not None and best_other["reached"] is not None else "—")

    body = (
        f"Digits (sklearn bundled), {n_train} train / {n_test} test images, MLP 64→{HIDDEN}→10 tanh "
        f"(P = {64 * HIDDEN + HIDDEN + HIDDEN * 10 + 10}), float64 PyTorch on the CPU "
        f"({torch.get_num_threads()} torch threads, not set by the script), fixed mini-batches of {BATCH}, {seconds:g} s of optimiser time per method "
        "(test-accuracy evaluations not counted; a step that starts before the budget runs out finishes). "
        "Time to 95 % is the optimiser time at the first evaluation (every 5 steps) at or above 95 %. "
        "Hyper-parameters from a short sweep on this problem (4 s runs): FNGD λ ∈ {1e-3, 1e-2} × lr ∈ "
        "{0.5, 1}; with reuse (refresh every 5th/3rd use) λ ≤ 1e-1 diverged (the stale α amplifies the "
        "new per-sample gradients), λ = 1 was stable; SGD lr ∈ {0.5, 1, 2}; Adam lr ∈ {1e-3, 3e-3, 1e-2}. "
        "The model is the generic `TorchModel(fn, params, loss=\"mean\")`, whose Jacobian (the "
        "per-sample gradients) is a vmapped VJP of the batched function; a `from_pointwise` model "
        "(vmapped per-sample `grad`) gives the same Jacobian 4–6× faster.\n\n"
        + markdown_table(["method", "hyper-parameters", "steps", "epochs", "median ms/step",
                          "steps to 95 %", "time to 95 % test acc. [s]", "final test acc. [%]", "best test acc. [%]",
                          "final batch loss"], rows)
        + "\n\n"
        f"- FNGD reaches 95 % test accuracy sooner than SGD and Adam: {'met' if met else 'NOT met'} "
        f"(best FNGD variant {fmt_t(fngd['reached'])} s; fastest other: {best_other['name']} "
        f"{fmt_t(best_other['reached'])} s)\n"
        f"\nTotal benchmark time {time.perf_counter() - t0:.0f} s."
    )
    write_result("fngd", "FNGD vs SGD vs Adam on the digits data", body, quick=args.quick)
    print(f"SUMMARY|fngd: time to 95 % test accuracy, digits MLP (P = {64 * HIDDEN + HIDDEN + HIDDEN * 10 + 10})|"
          f"{fngd['name']} {fmt_t(fngd['reached'])} s|{best_other['name']} {fmt_t(best_other['reached'])} s|"
          f"{ratio}|FNGD reaches 95 % sooner than SGD and Adam|{'yes' if met else 'no'}")


if __name__ == "__main__":
    main()
