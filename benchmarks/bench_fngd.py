"""FNGD vs SGD vs Adam: an MLP on scikit-learn's bundled digits data (issue #7, item 9).

Problem: ``sklearn.datasets.load_digits`` (1797 images 8 × 8, 10 classes),
pixels scaled to [0, 1], a fixed stratified split of 1437 training and 360
test images; MLP 64→64→10 with tanh (P = 4,810), float64, written in PyTorch
(cross-entropy per sample, ``loss="mean"`` models).  Training cycles through fixed
mini-batches of 128 (one shuffle; 12 per epoch, the last one smaller).

First the cost of one step of each method, interleaved in one run (medians),
with the parts of an FNGD step timed alone (the profile).  Then training, the
same optimiser-time budget each (test-accuracy evaluations are not counted):

* NGD with the empirical Fisher solved exactly every step — FNGD with
  ``refresh_every=1`` (``Jᵀ(JJᵀ + λN I)⁻¹1`` is the damped empirical-Fisher
  direction; the paper's own baseline, arXiv 2403.03473);
* FNGD reusing each mini-batch's ``α`` (``batch_key=`` the mini-batch index)
  until its drift ``ρ`` exceeds ``refresh_tol`` (0.3, the default), at two
  dampings; and the fixed rule of before (every 5th use, no drift check);
* SGD — ``GradientFlow(lr=lr, method="euler")``, plain gradient descent on the mini-batch;
* Adam — natgrad's ``Adam``;
* the peer: ``torch.optim.Adam`` in a plain PyTorch training loop (same
  network, data, batches and learning rate).

FNGD's model is ``TorchModel.from_pointwise`` of the loss at one sample (the
adapter's fast per-sample-gradient path, what a user writing for FNGD would
use); SGD and Adam use the generic ``TorchModel`` of the batched losses.
Goal (issue 22): an FNGD reuse step ≤ 3× an Adam step.  Reported as it comes
out: FNGD against SGD and Adam in time to 95 % test accuracy (issue 7's goal
was to reach it sooner).

Run: ``python benchmarks/bench_fngd.py`` (about 3 minutes; ``--quick``
about 30 s).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, markdown_table, parse_args, write_result  # noqa: E402

TARGET = 0.95
BATCH = 128
HIDDEN = 64


class SeparateCalls:
    """A model with the adapters' fused products hidden: FNGD's reuse step
    then calls ``residuals``, ``vjp`` and ``jvp`` (the step before them)."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        if name in ("residuals_and_vjp", "residuals_vjp_and_gram"):
            raise AttributeError(name)
        return getattr(self._model, name)


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
    # the pointwise model's batch: one array of points, each point its pixels and one-hot label
    packed = [torch.cat([X, torch.nn.functional.one_hot(y, 10).to(torch.float64)], 1) for X, y in batches]
    return {"train": (Xtr, ytr), "test": (Xte, yte), "batches": {"generic": batches, "pointwise": packed}}


def make_net(seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN, dtype=torch.float64),
        torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, 10, dtype=torch.float64),
    )


def make_model(net: Any, kind: str = "pointwise") -> Any:
    """The natgrad model of ``net``'s per-sample cross-entropy.

    ``"pointwise"``: ``TorchModel.from_pointwise`` of the loss at ONE sample
    (the adapter's fast path for per-sample gradients: a vmapped per-sample
    ``grad``); ``"generic"``: ``TorchModel`` of the batched per-sample losses
    (its Jacobian is a vmapped VJP of the batched function)."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    from natgrad.adapters.torch import TorchModel

    params = {k: v.detach().clone() for k, v in net.named_parameters()}

    if kind == "pointwise":
        def sample_ce(p: Any, x: Any) -> Any:  # x: 64 pixels, then the one-hot label
            return -(x[64:] * torch.log_softmax(functional_call(net, p, (x[:64],)), -1)).sum()

        return TorchModel.from_pointwise([sample_ce], params, loss="mean")

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

        self.infos: list[dict[str, Any]] = []

    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        batch, key = batch
        params, info = self.opt.step(params, model, batch, batch_key=key)
        self.infos.append(info)
        return params, info


def run_natgrad(name: str, hyper: str, opt: Any, data: dict[str, Any], seconds: float, every: int,
                kind: str = "pointwise") -> dict[str, Any]:
    from natgrad.optim import fit

    net = make_net()
    model = make_model(net, kind)
    acc = accuracy_fn(net, model, data["test"])
    batches = data["batches"][kind]
    B = len(batches)
    keyed = isinstance(opt, Keyed)

    def next_batch(step: int) -> Any:
        k = (step - 1) % B
        return (batches[k], k) if keyed else batches[k]

    # warm up the model's code paths once (not in the budget)
    model.residuals_and_jacobian(model.params, batches[0])
    model.loss_and_grad(model.params, batches[0])
    model.vjp(model.params, batches[0], model.residuals(model.params, batches[0]))
    model.jvp(model.params, batches[0], model.params)
    _, hist = fit(opt, model, next_batch, 10_000_000, progress=False, metric=acc,
                  metric_every=every, time_budget=seconds)
    infos = getattr(opt, "infos", [])
    hit = next((i for i, a in enumerate(hist["metric"]) if a >= TARGET), None)
    reached = None if hit is None else hist["metric_elapsed"][hit]
    return {"name": name, "hyper": hyper, "steps": len(hist["step"]), "epochs": len(hist["step"]) / B,
            "steps_to": None if hit is None else hist["metric_step"][hit],
            "median_step": statistics.median(hist["step_time"]), "reached": reached,
            "final": hist["metric"][-1], "best": max(hist["metric"]), "final_loss": hist["loss"][-1],
            "epoch_time": sum(hist["step_time"]) / (len(hist["step"]) / B),
            "refresh_share": (sum(bool(i.get("refreshed")) for i in infos) / len(infos)) if infos else None}


def run_torch_adam(lr: float, data: dict[str, Any], seconds: float, every: int) -> dict[str, Any]:
    """The peer: torch.optim.Adam in the plain PyTorch loop."""
    import torch
    import torch.nn.functional as F

    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    Xte, yte = data["test"]
    batches = data["batches"]["generic"]

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
            "epoch_time": elapsed / (step / len(batches)), "refresh_share": None,
            "steps_to": None if hit is None else steps_at[hit],
            "epochs": step / len(batches), "median_step": statistics.median(step_times), "reached": reached,
            "final": accs[-1], "best": max(accs), "final_loss": loss}


def step_costs(data: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median wall time of one step of each contender, the steps interleaved
    (A B C … A B C …) in one run, at fixed parameters (lr tiny) on one batch."""
    import torch
    import torch.nn.functional as F

    from natgrad.linalg import Woodbury
    from natgrad.optim import FNGD, Adam

    net = make_net()
    models = {kind: make_model(net, kind) for kind in ("pointwise", "generic")}
    batch = {kind: data["batches"][kind][0] for kind in models}
    theta = models["generic"].params

    def fngd(kind: str, separate: bool = False, **kw: Any) -> Any:
        opt = FNGD(damping=1e-2, lr=1e-12, **kw)
        model = SeparateCalls(models[kind]) if separate else models[kind]
        opt.step(theta, model, batch[kind])  # the refresh that makes α
        return lambda: opt.step(theta, model, batch[kind])

    adam = Adam(lr=1e-2)
    tnet = make_net()
    topt = torch.optim.Adam(tnet.parameters(), lr=1e-2)
    X, y = batch["generic"]

    def torch_adam() -> None:
        topt.zero_grad(set_to_none=True)
        out = F.cross_entropy(tnet(X), y)
        out.backward()
        topt.step()
        float(out.detach())

    pw, pb = models["pointwise"], batch["pointwise"]
    _, J = pw.residuals_and_jacobian(theta, pb)
    N = J.shape[0]
    ones = torch.ones(N, dtype=J.dtype)
    alpha = Woodbury(J, 1e-2 * N).coefficients(ones)
    d = J.T @ alpha
    never = 10**9  # refresh_every: reuse on every step; refresh_tol=1e300: measure ρ, never act on it
    fns = {
        "Adam step (natgrad, generic model)": lambda: adam.step(theta, models["generic"], batch["generic"]),
        "Adam step (torch.optim, plain loop)": torch_adam,
        "FNGD reuse, pointwise, drift 'residual' (default check)": fngd("pointwise", refresh_every=never, refresh_tol=1e300),
        "FNGD reuse, pointwise, drift 'residual', three separate calls (before)": fngd(
            "pointwise", separate=True, refresh_every=never, refresh_tol=1e300),
        "FNGD reuse, pointwise, drift 'projected'": fngd("pointwise", refresh_every=never, refresh_tol=1e300, drift="projected"),
        "FNGD reuse, pointwise, no drift check": fngd("pointwise", refresh_every=never, refresh_tol=None),
        "FNGD reuse, generic, drift 'residual'": fngd("generic", refresh_every=never, refresh_tol=1e300),
        "FNGD reuse, generic, drift 'projected'": fngd("generic", refresh_every=never, refresh_tol=1e300, drift="projected"),
        "FNGD reuse, generic, no drift check": fngd("generic", refresh_every=never, refresh_tol=None),
        "FNGD refresh (exact NGD step), pointwise": fngd("pointwise"),
        "FNGD refresh (exact NGD step), generic": fngd("generic"),
        "per-sample gradients J alone, pointwise": lambda: models["pointwise"].residuals_and_jacobian(theta, batch["pointwise"]),
        "per-sample gradients J alone, generic": lambda: models["generic"].residuals_and_jacobian(theta, batch["generic"]),
        "gradient alone (loss_and_grad), generic": lambda: models["generic"].loss_and_grad(theta, batch["generic"]),
        "losses alone (model.residuals), pointwise": lambda: pw.residuals(theta, pb),
        "VJP Jᵀα alone (model.vjp), pointwise": lambda: pw.vjp(theta, pb, alpha),
        "JVP J(Jᵀα) alone (model.jvp), pointwise": lambda: pw.jvp(theta, pb, d),
        "losses, Jᵀα and J(Jᵀα) in one call (model.residuals_vjp_and_gram), pointwise":
            lambda: pw.residuals_vjp_and_gram(theta, pb, alpha),
        "losses and Jᵀα in one call (model.residuals_and_vjp), pointwise": lambda: pw.residuals_and_vjp(theta, pb, alpha),
        "Woodbury(J, λN).coefficients(1): Gram JJᵀ, Cholesky, solve": lambda: Woodbury(J, 1e-2 * N).coefficients(ones),
    }
    medians = interleaved(list(fns.values()), repeats=repeats, warmup=3)
    out = dict(zip(fns, medians))
    # the same two steps with Python's cyclic garbage collector off for the whole block: how much
    # of a step is the collector scanning the heap (functorch's transforms allocate many objects)
    pair = [fns["Adam step (natgrad, generic model)"], fns["FNGD reuse, pointwise, drift 'residual' (default check)"]]
    gc.collect()
    gc.disable()
    try:
        off = interleaved(pair, repeats=repeats, warmup=3)
    finally:
        gc.enable()
    out["Adam step (natgrad), cyclic GC off"] = off[0]
    out["FNGD reuse, pointwise, drift 'residual', cyclic GC off"] = off[1]
    return out


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    seconds = 3.0 if args.quick else 16.0
    import torch

    # one thread: on this shared 2-core machine, with other jobs running, two OpenMP threads made
    # the steps 3-5x slower and far noisier (Adam 13.5 ms against 2.9 ms, same run, load 4.7)
    torch.set_num_threads(1)
    from natgrad.optim import FNGD, Adam, GradientFlow

    load_before = os.getloadavg()
    data = load_data()
    n_train, n_test = len(data["train"][1]), len(data["test"][1])
    t0 = time.perf_counter()
    print("[fngd] step costs ...", flush=True)
    costs = step_costs(data, 15 if args.quick else 150)
    lr_adam = 1e-2
    runs = []
    specs = [
        ("NGD, empirical Fisher solved exactly every step (FNGD refresh_every=1)", "λ 1e-2, lr 0.5",
         Keyed(FNGD(damping=1e-2, refresh_every=1, lr=0.5)), "pointwise"),
        ("FNGD, reuse, refresh on drift ρ > 0.3", "λ 1e-2, lr 0.5",
         Keyed(FNGD(damping=1e-2, refresh_every=10**9, lr=0.5)), "pointwise"),
        ("FNGD, reuse, refresh on drift ρ > 0.3", "λ 1, lr 1",
         Keyed(FNGD(damping=1.0, refresh_every=10**9, lr=1.0)), "pointwise"),
        ("FNGD, refresh every 5th use, no drift check (before)", "λ 1, lr 1",
         Keyed(FNGD(damping=1.0, refresh_every=5, lr=1.0, refresh_tol=None)), "pointwise"),
        ("SGD (GradientFlow euler)", "lr 1", GradientFlow(lr=1.0, method="euler"), "generic"),
        ("Adam (natgrad)", f"lr {lr_adam:g}", Adam(lr=lr_adam), "generic"),
    ]
    for name, hyper, opt, kind in specs:
        print(f"[fngd] {name} {hyper} for {seconds:g} s ...", flush=True)
        runs.append(run_natgrad(name, hyper, opt, data, seconds, 5, kind))
        runs[-1]["kind"] = kind
    print(f"[fngd] torch.optim.Adam for {seconds:g} s ...", flush=True)
    runs.append(run_torch_adam(lr_adam, data, seconds, 5))
    runs[-1]["kind"] = "plain PyTorch"
    load_after = os.getloadavg()

    fmt_t = lambda t: f"{t:.2f}" if t is not None else "not reached"  # noqa: E731
    share = lambda s: "—" if s is None else f"{100 * s:.0f} %"  # noqa: E731
    rows = [[r["name"], r["hyper"], r["kind"], r["steps"], f"{r['epochs']:.1f}", f"{1e3 * r['median_step']:.2f}",
             f"{1e3 * r['epoch_time']:.0f}", share(r["refresh_share"]),
             r["steps_to"] if r["steps_to"] is not None else "—", fmt_t(r["reached"]), f"{100 * r['final']:.1f}",
             f"{100 * r['best']:.1f}", f"{r['final_loss']:.3g}"]
            for r in runs]
    adam_ms = costs["Adam step (natgrad, generic model)"]
    torch_ms = costs["Adam step (torch.optim, plain loop)"]
    cost_rows = [[k, f"{1e3 * v:.2f}", f"{v / adam_ms:.2f}", f"{v / torch_ms:.2f}"] for k, v in costs.items()]
    reuse_default = costs["FNGD reuse, pointwise, drift 'residual' (default check)"]
    reuse_best = min(v for k, v in costs.items() if k.startswith("FNGD reuse"))
    parts_reuse = {
        "losses, Jᵀα and J(Jᵀα) in one call (model.residuals_vjp_and_gram)":
            costs["losses, Jᵀα and J(Jᵀα) in one call (model.residuals_vjp_and_gram), pointwise"],
    }
    reuse_before = costs["FNGD reuse, pointwise, drift 'residual', three separate calls (before)"]
    parts_before = {
        "losses": costs["losses alone (model.residuals), pointwise"],
        "VJP Jᵀα": costs["VJP Jᵀα alone (model.vjp), pointwise"],
        "JVP J(Jᵀα) (the drift check)": costs["JVP J(Jᵀα) alone (model.jvp), pointwise"],
    }
    refresh = costs["FNGD refresh (exact NGD step), pointwise"]
    parts_refresh = {
        "per-sample gradients J": costs["per-sample gradients J alone, pointwise"],
        "Gram JJᵀ + Cholesky + solve": costs["Woodbury(J, λN).coefficients(1): Gram JJᵀ, Cholesky, solve"],
    }

    def breakdown(total: float, parts: dict[str, float]) -> str:
        rest = total - sum(parts.values())
        items = [f"{k} {1e3 * v:.2f} ms ({100 * v / total:.0f} %)" for k, v in parts.items()]
        return "; ".join(items + [f"the rest (FNGD's own arithmetic, checks, syncs) {1e3 * rest:.2f} ms "
                                  f"({100 * rest / total:.0f} %)"])
    goal = reuse_default / adam_ms <= 3.0
    fngd_off = costs["FNGD reuse, pointwise, drift 'residual', cyclic GC off"]
    adam_off = costs["Adam step (natgrad), cyclic GC off"]
    fngd_runs = runs[:4]
    others = runs[4:]
    fngd = min(fngd_runs, key=lambda r: r["reached"] if r["reached"] is not None else float("inf"))
    best_other = min(others, key=lambda r: r["reached"] if r["reached"] is not None else float("inf"))
    met = fngd["reached"] is not None and all(r["reached"] is None or fngd["reached"] < r["reached"] for r in others)
    ratio = (f"{best_other['reached'] / fngd['reached']:.2f}× sooner"
             if fngd["reached"] is not None and best_other["reached"] is not None else "—")
    P = 64 * HIDDEN + HIDDEN + HIDDEN * 10 + 10

    body = (
        f"Digits (sklearn bundled), {n_train} train / {n_test} test images, MLP 64→{HIDDEN}→10 tanh "
        f"(P = {P}), float64 PyTorch on the CPU, 1 torch thread (set by the script: on this shared 2-core "
        "machine, with other jobs running, two OpenMP threads made every step 3–5× slower and far noisier), "
        f"fixed mini-batches of {BATCH}. Load average (1/5/15 min) before the run "
        f"{load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, after "
        f"{load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} (2 cores): absolute times are those of "
        "a loaded machine; the ratios of one run are what to compare.\n\n"
        "Models, as a user would write them: FNGD needs per-sample gradients, and its model is "
        "`TorchModel.from_pointwise([sample_ce], params, loss=\"mean\")` where `sample_ce(p, x)` is the "
        "cross-entropy of ONE sample (`x` = its 64 pixels and its one-hot label): the adapter's fast path "
        "for the Jacobian (a vmapped per-sample `grad`). SGD and Adam need only the gradient and use the "
        "generic `TorchModel(fn, params, loss=\"mean\")` of the batched per-sample losses.\n\n"
        f"## Cost of one step ({'15' if args.quick else '150'} interleaved repeats, medians, same run)\n\n"
        "A reuse step needs the losses, `Jᵀα` (no Jacobian is formed) and, for the default drift check "
        "`ρ = ‖(JJᵀ + λN I)α − 1‖/√N`, `J(Jᵀα)`. It gets all three from one adapter call, "
        "`model.residuals_vjp_and_gram`: one forward pass, the VJP, and `J(Jᵀα)` as the VJP of the (linear) "
        "pullback, a second reverse pass through the kept graph. Before, it made three calls: "
        "`model.residuals`, `model.vjp` and a forward-mode `model.jvp` (the row 'three separate calls'). "
        "`drift=\"projected\"` reads `|αᵀ(JJᵀ + λN I)α / 1ᵀα − 1|` off the VJP (`model.residuals_and_vjp`). "
        "A refresh step forms the per-sample gradients `J` (N × P), the Gram matrix `JJᵀ`, its Cholesky and "
        "`Jᵀα`.\n\n"
        + markdown_table(["step", "median ms", "× Adam step (natgrad)", "× Adam step (torch.optim)"], cost_rows)
        + "\n\n"
        "Where the time of an FNGD step goes (the parts timed alone in the same run; pointwise model):\n\n"
        f"- reuse step, default drift check, {1e3 * reuse_default:.2f} ms: {breakdown(reuse_default, parts_reuse)}\n"
        f"- the same step through three separate model calls (before the fused products), "
        f"{1e3 * reuse_before:.2f} ms: {breakdown(reuse_before, parts_before)}\n"
        f"- refresh step {1e3 * refresh:.2f} ms: {breakdown(refresh, parts_refresh)}\n\n"
        f"- FNGD reuse step ≤ 3× an Adam step (default drift check, pointwise model, natgrad's Adam): "
        f"{'met' if goal else 'NOT met'} ({reuse_default / adam_ms:.2f}×; cheapest reuse variant "
        f"{reuse_best / adam_ms:.2f}×; against torch.optim's plain loop {reuse_default / torch_ms:.2f}×)\n"
        f"- the same two steps with Python's cyclic garbage collector off (a block of its own): "
        f"{fngd_off / adam_off:.2f}× (FNGD {1e3 * fngd_off:.2f} ms, Adam {1e3 * adam_off:.2f} ms): "
        "the collector's share of the gap\n\n"
        f"## Training: time to 95 % test accuracy ({seconds:g} s of optimiser time per method)\n\n"
        "Test-accuracy evaluations (every 5 steps) are not counted; a step that starts before the budget "
        "runs out finishes. Time to 95 % is the optimiser time at the first evaluation at or above 95 %; "
        "time per epoch is the optimiser time over the epochs done. The paper's own comparison "
        "(arXiv 2403.03473) is FNGD against natural gradient with the empirical Fisher solved exactly at "
        "every step: here that is FNGD with `refresh_every=1`, whose `Jᵀ(JJᵀ + λN I)⁻¹1` is the exact "
        "damped empirical-Fisher direction `(JᵀJ/N + λI)⁻¹ Jᵀ1/N` (push-through identity; one Cholesky "
        "of the N × N Gram matrix, not a P × P solve). Hyper-parameters: FNGD λ ∈ {1e-3, 1e-2} × lr ∈ "
        "{0.5, 1} (exact every step); reuse with drift refresh: λ ∈ {1e-3, 1e-2, 1e-1, 1}, threshold "
        "ρ ∈ {0.3, 1} ('residual') and {0.1, 0.3, 1} ('projected'), 4 s runs: 'projected' let harmful "
        "stale steps through at λ ≤ 1e-1 (final accuracy 78–91 %, against 96 % refreshing every step), "
        "'residual' at 0.3 was stable at λ = 1e-2 and 1, at 1.0 it was not at λ = 1e-1 (final 91 %); "
        "SGD lr ∈ {0.5, 1, 2}; Adam lr ∈ {1e-3, 3e-3, 1e-2}.\n\n"
        + markdown_table(["method", "hyper-parameters", "model", "steps", "epochs", "median ms/step",
                          "ms/epoch", "refreshed", "steps to 95 %", "time to 95 % test acc. [s]",
                          "final test acc. [%]", "best test acc. [%]", "final batch loss"], rows)
        + "\n\n"
        f"- for the record (issue 22 asks to report it; reaching 95 % first was issue 7's goal): FNGD reaches "
        f"95 % test accuracy sooner than SGD and Adam: {'yes' if met else 'no'} "
        f"(best FNGD variant: {fngd['name']} {fngd['hyper']}, {fmt_t(fngd['reached'])} s; fastest other: "
        f"{best_other['name']} {fmt_t(best_other['reached'])} s)\n"
        f"\nTotal benchmark time {time.perf_counter() - t0:.0f} s."
    )
    write_result("fngd", "FNGD vs SGD vs Adam on the digits data", body, quick=args.quick)
    print(f"SUMMARY|fngd: time to 95 % test accuracy, digits MLP (P = {P})|"
          f"{fngd['name']} {fmt_t(fngd['reached'])} s|{best_other['name']} {fmt_t(best_other['reached'])} s|"
          f"{ratio}|for the record: FNGD reaches 95 % sooner than SGD and Adam (issue 7)|{'yes' if met else 'no'}")
    print(f"SUMMARY|fngd: reuse step / Adam step, digits MLP, batch {BATCH}|{1e3 * reuse_default:.2f} ms|"
          f"{1e3 * adam_ms:.2f} ms|{reuse_default / adam_ms:.2f}×|FNGD reuse step ≤ 3× an Adam step|"
          f"{'yes' if goal else 'no'}")


if __name__ == "__main__":
    main()
