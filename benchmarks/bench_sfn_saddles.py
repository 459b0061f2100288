"""Saddle-free Newton where saddles are: a deep linear autoencoder and a deep narrow tanh network (issue 22).

Two landscapes dominated by saddle points, both started near the origin
(a saddle of the loss: the network's output is ≈ 0 there and, with depth,
the gradient is a product of many small weights):

* **deep linear autoencoder**: ``x ↦ W₄W₃W₂W₁x`` (16→16→16→16→16, no
  biases, P = 1024), 256 inputs with the decaying spectrum
  ``σᵢ = 0.75^i``, loss mean ``½‖W₄W₃W₂W₁x − x‖²``; weights ``N(0, ε²/fan_in)``
  with ``ε = 0.1`` (``LINEAR_INIT``).  Gradient descent learns the singular directions one
  after the other, resting on a plateau (a saddle) before each (Saxe et al.,
  ICLR 2014);
* **deep narrow tanh network**: 2→6→…→6→1 (8 hidden layers of width 6,
  P = 319), weights ``N(0, ε²/fan_in)`` with ``ε = 0.3`` and zero biases,
  regression of ``sin(3x₁)·cos(2x₂)`` on 256 points of ``[-1, 1]²``; the
  classic vanishing-gradient plateau.

Methods, all on the flat float64 parameter vector of a
``natgrad.adapters.torch.TorchModel`` (full batch):

* SFN: natgrad's ``SaddleFreeNewton(method="lanczos", terms=3, damping=1e-6)``
  with its Levenberg–Marquardt damping adaptation (``SFN_TERMS``, ``SFN_DAMPING``);
* Adam (natgrad's), SGD with heavy-ball momentum 0.9 (written here: ``v ← μv + g``,
  ``θ ← θ − lr·v``), learning rates from a sweep (``--sweep``);
* Newton-CG: the Newton step ``θ ← θ + d``, ``d`` from ``natgrad.linalg.cg``
  on ``(H + λI) d = −g`` with the same Hessian-vector products, a fixed
  small λ (1e-4, ``TUNED``), at most 10 CG iterations, relative tolerance
  1e-2; when CG meets negative curvature (status ``indefinite``) the step is
  CG's best iterate so far (natgrad's documented behaviour), and ``−g`` if
  that comes at the first iteration (Nocedal & Wright, Alg. 7.1).  No line
  search and no trust region: plain Newton, which is drawn to any critical
  point, saddles included.

Cost convention: one gradient (``model.loss_and_grad``, also when only its
loss is used) counts 1, one Hessian-vector product (forward-over-reverse)
counts 2 ("gradient-equivalents"); the measured ratio HVP/gradient time is
printed on the page.  Loss evaluations for the record are not counted and
not timed.

"Leaves the plateau": the loss first falls below ``ESCAPE × L(θ₀)`` (the
plateau value: the loss at the start, ≈ at the saddle).  Medians over seeds.

Run: ``python benchmarks/bench_sfn_saddles.py`` (2.5 minutes measured at load 5 on 2 cores;
``--quick`` 25 s;
``--sweep`` re-runs the learning-rate sweep of the first-order methods).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, markdown_table, write_result  # noqa: E402

N_POINTS = 256
ESCAPE = 0.9  # leaves the plateau: loss ≤ 90 % of the plateau value
NCG_MARGIN = 0.9  # "a lower loss than Newton-CG": at most 90 % of Newton-CG's


# ---------------------------------------------------------------------------
# problems
# ---------------------------------------------------------------------------


def _model(net: Any, per_sample: Callable[[Any, Any], Any]) -> Any:
    from natgrad.adapters.torch import TorchModel

    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    return TorchModel(per_sample, params, loss="mean")


def linear_ae(seed: int) -> tuple[Any, Any]:
    import torch
    from torch.func import functional_call

    d, widths, eps = 16, (16, 16, 16), LINEAR_INIT
    g = torch.Generator().manual_seed(1000 + seed)
    # data with a decaying spectrum: random orthogonal directions scaled by 0.75^i
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    Z = torch.randn(N_POINTS, d, generator=g, dtype=torch.float64)
    X = (Z * 0.75 ** torch.arange(d, dtype=torch.float64)) @ Q.T
    sizes = (d, *widths, d)
    layers = [torch.nn.Linear(sizes[i], sizes[i + 1], bias=False, dtype=torch.float64) for i in range(len(sizes) - 1)]
    for lin in layers:
        with torch.no_grad():
            lin.weight.copy_(eps / math.sqrt(lin.in_features) * torch.randn(lin.weight.shape, generator=g,
                                                                               dtype=torch.float64))
    net = torch.nn.Sequential(*layers)

    def per_sample(p: Any, Xb: Any) -> Any:
        return 0.5 * ((functional_call(net, p, (Xb,)) - Xb) ** 2).sum(dim=1)

    return _model(net, per_sample), X


def narrow_tanh(seed: int) -> tuple[Any, Any]:
    import torch
    from torch.func import functional_call

    depth, width, eps = TANH_DEPTH, TANH_WIDTH, TANH_INIT
    g = torch.Generator().manual_seed(2000 + seed)
    X = 2 * torch.rand(N_POINTS, 2, generator=g, dtype=torch.float64) - 1
    y = torch.sin(3 * X[:, 0]) * torch.cos(2 * X[:, 1])
    sizes = (2, *([width] * depth), 1)
    layers: list[Any] = []
    for i in range(len(sizes) - 1):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(eps / math.sqrt(sizes[i]) * torch.randn(lin.weight.shape, generator=g,
                                                                        dtype=torch.float64))
            lin.bias.zero_()
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    net = torch.nn.Sequential(*layers)

    def per_sample(p: Any, batch: Any) -> Any:
        Xb, yb = batch
        return 0.5 * (functional_call(net, p, (Xb,))[:, 0] - yb) ** 2

    return _model(net, per_sample), (X, y)


LINEAR_INIT = 0.1
TANH_DEPTH, TANH_WIDTH, TANH_INIT = 8, 6, 0.3


# ---------------------------------------------------------------------------
# optimisers written here (the peers natgrad does not ship)
# ---------------------------------------------------------------------------


class SGDMomentum:
    """Heavy ball: ``v ← μv + g``, ``θ ← θ − lr·v`` (PyTorch's SGD convention)."""

    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        self.lr, self.momentum, self.v = lr, momentum, None

    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        loss, g = model.loss_and_grad(params, batch)
        self.v = g if self.v is None else self.momentum * self.v + g
        return params - self.lr * self.v, {"loss": loss}


class NewtonCG:
    """Plain Newton-CG: ``θ ← θ + d`` with ``d`` from ``natgrad.linalg.cg`` on
    ``(H + λI) d = −g`` (fixed λ, relative tolerance ``rtol``, at most
    ``maxiter`` iterations, each one HVP).  CG stops where it meets negative
    curvature (status ``indefinite``) and returns its best iterate so far; at
    the first iteration that is no step, so ``d = −g`` then (the rule of
    Nocedal & Wright, Alg. 7.1, which SciPy's ``newton-cg`` follows).  No
    line search, no trust region: the step is taken whatever the loss does."""

    def __init__(self, damping: float, maxiter: int = 10, rtol: float = 1e-2) -> None:
        self.damping, self.maxiter, self.rtol = damping, maxiter, rtol
        self.statuses: dict[str, int] = {}

    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        from natgrad.linalg import cg, from_matvec

        loss, g = model.loss_and_grad(params, batch)
        P = params.shape[0]
        op = from_matvec(lambda v: model.hvp(params, batch, v) + self.damping * v, (P, P), params.dtype)
        res = cg(op, -g, rtol=self.rtol, maxiter=self.maxiter)
        status = res.status.value
        d = res.x
        if status == "indefinite" and res.iterations == 0:
            d, status = -g, "indefinite at once: -g"
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return params + d, {"loss": loss, "status": status}


class Counting:
    """Forwards to a model and counts gradients and Hessian-vector products."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.grads = 0
        self.hvps = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def loss_and_grad(self, params: Any, batch: Any) -> Any:
        self.grads += 1
        return self._model.loss_and_grad(params, batch)

    def hvp(self, params: Any, batch: Any, v: Any) -> Any:
        self.hvps += 1
        return self._model.hvp(params, batch, v)

    @property
    def cost(self) -> int:
        return self.grads + 2 * self.hvps


# ---------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------


def run(problem: Callable[[int], tuple[Any, Any]], seed: int, opt: Any, seconds: float,
        max_cost: float = math.inf) -> dict[str, Any]:
    model, batch = problem(seed)
    counted = Counting(model)
    params = model.params
    model.loss_and_grad(params, batch)  # warm up the code paths (not in the budget)
    model.hvp(params, batch, params)

    def loss_of(p: Any) -> float:  # a forward pass: the mean of the per-sample losses
        return float(model.residuals(p, batch).mean())

    loss0 = loss_of(params)
    times, losses, costs = [0.0], [loss0], [0]
    elapsed = 0.0
    while elapsed < seconds and counted.cost < max_cost:
        t0 = time.perf_counter()
        params, _ = opt.step(params, counted, batch)
        elapsed += time.perf_counter() - t0
        loss = loss_of(params)  # not timed, not counted
        times.append(elapsed)
        losses.append(loss)
        costs.append(counted.cost)
        if not math.isfinite(loss):
            break
    return {"times": times, "losses": losses, "costs": costs, "loss0": loss0, "steps": len(times) - 1,
            "final": losses[-1], "best": min(losses), "grads": counted.grads, "hvps": counted.hvps}


def first_below(r: dict[str, Any], level: float) -> tuple[float, float]:
    """(time, cost) at which the loss first falls to ``level`` (inf, inf if never)."""
    for t, c, loss in zip(r["times"], r["costs"], r["losses"]):
        if loss <= level:
            return t, c
    return math.inf, math.inf


def loss_at(r: dict[str, Any], key: str, x: float) -> float:
    """The loss of the last record with ``r[key]`` ≤ x."""
    out = r["losses"][0]
    for xi, li in zip(r[key], r["losses"]):
        if xi > x:
            break
        out = li
    return out


# ---------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------

PROBLEMS: dict[str, dict[str, Any]] = {
    "linear autoencoder": {"make": linear_ae},
    "narrow tanh": {"make": narrow_tanh},
}

#: first-order learning rates and Newton-CG's damping: the best final loss after the
#: full budget on seed 0 in the sweep (``--sweep``, grids in ``sweep``)
TUNED = {
    # Adam 0.1 (best at 3 s on seed 0) spiked to 0.77 after 5 s in the full run; SGD 0.3 ended 0.3 % below
    # 0.1 on seed 0 but diverged on another seed: the next smaller, stable rates are used
    "linear autoencoder": {"adam": 3e-2, "sgd": 1e-1, "ncg": 1e-4},
    "narrow tanh": {"adam": 1e-1, "sgd": 3e-1, "ncg": 1e-4},
}
SFN_DAMPING, SFN_TERMS = 1e-6, 3


def methods(problem: str) -> list[tuple[str, str, Callable[[], Any]]]:
    from natgrad.optim import Adam, SaddleFreeNewton

    t = TUNED[problem]
    return [
        ("SFN Lanczos", f"λ₀ {SFN_DAMPING:g}, {SFN_TERMS} Lanczos steps, LM damping", lambda: SaddleFreeNewton(
            damping=SFN_DAMPING, terms=SFN_TERMS, method="lanczos", adapt_damping=True)),
        ("Adam", f"lr {t['adam']:g}", lambda: Adam(lr=t["adam"])),
        ("SGD momentum", f"lr {t['sgd']:g}, μ 0.9", lambda: SGDMomentum(t["sgd"])),
        ("Newton-CG", f"λ {t['ncg']:g}, ≤ 10 CG its, rtol 1e-2", lambda: NewtonCG(t["ncg"])),
    ]


def sweep(seconds: float) -> None:
    from natgrad.optim import Adam, SaddleFreeNewton

    grids: dict[str, list[tuple[str, Callable[[], Any]]]] = {
        "adam": [(f"{lr:g}", (lambda lr=lr: Adam(lr=lr))) for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)],
        "sgd": [(f"{lr:g}", (lambda lr=lr: SGDMomentum(lr))) for lr in (1e-2, 3e-2, 1e-1, 3e-1, 1.0)],
        "ncg": [(f"{lam:g}", (lambda lam=lam: NewtonCG(lam))) for lam in (1e-6, 1e-4, 1e-2, 1.0)],
        "sfn": [(f"λ₀ {lam:g}, {k} steps", (lambda lam=lam, k=k: SaddleFreeNewton(
            damping=lam, terms=k, method="lanczos"))) for lam, k in ((1e-6, 3), (1e-6, 5), (1e-6, 10), (1e-2, 5))],
    }
    for problem, spec in PROBLEMS.items():
        for kind, grid in grids.items():
            for label, factory in grid:
                r = run(spec["make"], 0, factory(), seconds)
                esc = first_below(r, ESCAPE * r["loss0"])
                print(f"[sweep] {problem} {kind} {label}: final {r['final']:.3e} best {r['best']:.3e} "
                      f"escape at {esc[1]} grad-eq / {esc[0]:.3g} s ({r['steps']} steps)", flush=True)


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def _fmt(x: float, digits: str = ".3g") -> str:
    return "—" if not math.isfinite(x) else format(x, digits)


def _median(values: list[float]) -> float:
    return statistics.median(values)  # inf (never reached) sorts last, as it should


def plot(results: dict[str, dict[str, list[dict[str, Any]]]], path: Path) -> bool:
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(11, 4 * len(results)), squeeze=False)
    colours = ["C0", "C1", "C2", "C3", "C4"]
    for row, (problem, per_method) in enumerate(results.items()):
        for colour, (name, runs) in zip(colours, per_method.items()):
            for i, r in enumerate(runs):
                label = name if i == 0 else None
                axes[row][0].semilogy([max(t, 1e-3) for t in r["times"]], r["losses"], color=colour, alpha=0.8,
                                      lw=1, label=label)
                axes[row][1].semilogy([max(c, 1) for c in r["costs"]], r["losses"], color=colour, alpha=0.8,
                                      lw=1, label=label)
        loss0 = _median([r["loss0"] for runs in per_method.values() for r in runs])
        for ax in axes[row]:
            ax.axhline(ESCAPE * loss0, color="grey", ls=":", lw=1)
            ax.set_ylim(top=3 * loss0)  # a diverged run leaves the plot at the top
            ax.set_ylabel(f"{problem}: training loss")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        axes[row][0].set_xscale("log")
        axes[row][1].set_xscale("log")
        axes[row][0].set_xlabel("optimiser wall time [s]")
        axes[row][1].set_xlabel("gradient-equivalents (gradient 1, HVP 2)")
    fig.suptitle(f"Saddle-dominated landscapes (every seed; dotted: {ESCAPE:.0%} of the plateau value)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def hvp_ratio(problem: Callable[[int], tuple[Any, Any]], repeats: int = 20) -> tuple[float, float]:
    """Median seconds of one gradient and one HVP at the start of seed 0."""
    model, batch = problem(0)
    p = model.params
    grads, hvps = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.loss_and_grad(p, batch)
        t1 = time.perf_counter()
        model.hvp(p, batch, p)
        hvps.append(time.perf_counter() - t1)
        grads.append(t1 - t0)
    return statistics.median(grads), statistics.median(hvps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, short budget")
    parser.add_argument("--repeats", type=int, default=None, help="number of seeds (default 3, 1 with --quick)")
    parser.add_argument("--sweep", action="store_true", help="run the learning-rate / damping sweep instead")
    args = parser.parse_args()
    import torch

    # tiny problems on a shared 2-core machine: two intra-op threads made every call ~50× slower under load
    torch.set_num_threads(1)
    seconds = 1.0 if args.quick else 5.0
    if args.sweep:
        sweep(seconds)
        return
    seeds = list(range(args.repeats if args.repeats else (1 if args.quick else 3)))
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    hyper: dict[str, dict[str, str]] = {}
    ratios: dict[str, tuple[float, float]] = {}
    sizes: dict[str, int] = {}
    for problem, spec in PROBLEMS.items():
        results[problem], hyper[problem] = {}, {}
        sizes[problem] = spec["make"](0)[0].n_params
        ratios[problem] = hvp_ratio(spec["make"], 5 if args.quick else 20)
        for name, hyp, factory in methods(problem):
            hyper[problem][name] = hyp
            results[problem][name] = []
            for seed in seeds:
                print(f"[sfn_saddles] {problem}, {name}, seed {seed}: {seconds:g} s ...", flush=True)
                opt = factory()
                r = run(spec["make"], seed, opt, seconds)
                r["statuses"] = getattr(opt, "statuses", None)
                results[problem][name].append(r)
    load_after = os.getloadavg()

    parts: list[str] = []
    summary: list[str] = []
    cost_marks = (30, 100, 300, 1000)
    for problem, per_method in results.items():
        g_s, h_s = ratios[problem]
        loss0 = _median([r["loss0"] for runs in per_method.values() for r in runs])
        rows, time_rows, cost_rows = [], [], []
        stats: dict[str, dict[str, float]] = {}
        for name, runs in per_method.items():
            esc = [first_below(r, ESCAPE * r["loss0"]) for r in runs]
            half = [first_below(r, 0.5 * r["loss0"]) for r in runs]
            st = {"esc_t": _median([e[0] for e in esc]), "esc_c": _median([e[1] for e in esc]),
                  "half_t": _median([h[0] for h in half]), "half_c": _median([h[1] for h in half]),
                  # a run that diverged (NaN/Inf) counts as an infinite final loss
                  "final": _median([r["final"] if math.isfinite(r["final"]) else math.inf for r in runs]),
                  "escaped": sum(math.isfinite(e[0]) for e in esc)}
            stats[name] = st
            steps = _median([r["steps"] for r in runs])
            cost = _median([r["costs"][-1] for r in runs])
            rows.append([name, hyper[problem][name], f"{steps:g}", f"{cost:g}", f"{st['escaped']}/{len(runs)}",
                         _fmt(st["esc_c"], "g"), _fmt(st["esc_t"]), _fmt(st["half_c"], "g"), _fmt(st["half_t"]),
                         _fmt(st["final"], ".3e")])
            checkpoints = [seconds * f for f in (0.1, 0.25, 0.5, 1.0)]
            time_rows.append([name] + [f"{_median([loss_at(r, 'times', c) for r in runs]):.3e}" for c in checkpoints])
            cost_rows.append([name] + [f"{_median([loss_at(r, 'costs', c) for r in runs]):.3e}" for c in cost_marks])
        sfn = stats["SFN Lanczos"]
        first_order = {n: stats[n] for n in ("Adam", "SGD momentum")}
        best_c = min(first_order, key=lambda n: first_order[n]["esc_c"])
        best_t = min(first_order, key=lambda n: first_order[n]["esc_t"])
        met_c = sfn["esc_c"] < first_order[best_c]["esc_c"]
        met_t = sfn["esc_t"] < first_order[best_t]["esc_t"]
        met_ncg = sfn["final"] < NCG_MARGIN * stats["Newton-CG"]["final"]
        ncg_statuses: dict[str, int] = {}
        for r in per_method["Newton-CG"]:
            for k, v in (r["statuses"] or {}).items():
                ncg_statuses[k] = ncg_statuses.get(k, 0) + v
        checkpoints = [seconds * f for f in (0.1, 0.25, 0.5, 1.0)]
        parts.append(
            f"## {problem} (P = {sizes[problem]})\n\n"
            f"Plateau value L(θ₀) = {loss0:.4g} (median over seeds); leaves the plateau = loss ≤ "
            f"{ESCAPE:.0%} of it; also the time to 50 %.  One gradient {1e3 * g_s:.2f} ms, one HVP "
            f"{1e3 * h_s:.2f} ms (measured HVP/gradient = {h_s / g_s:.1f}, against the convention's 2).  "
            f"Medians over {len(seeds)} seed(s); \"—\" = not reached within the budget (the median of a "
            "set where more than half never reached it; in the last column: diverged).\n\n"
            + markdown_table(["method", "settings", "steps", "grad-eq", "escaped", "escape grad-eq", "escape s",
                              "50 % grad-eq", "50 % s", f"loss at {seconds:g} s"], rows)
            + "\n\nLoss against optimiser time (medians):\n\n"
            + markdown_table(["method"] + [f"t = {c:.3g} s" for c in checkpoints], time_rows)
            + "\n\nLoss against gradient-equivalents (medians):\n\n"
            + markdown_table(["method"] + [f"{c} grad-eq" for c in cost_marks], cost_rows)
            + f"\n\nNewton-CG's CG outcomes (all seeds, steps): {ncg_statuses}.\n\n"
            f"- SFN leaves the plateau in fewer gradient-equivalents than every first-order method: "
            f"{'met' if met_c else 'NOT met'} (SFN {_fmt(sfn['esc_c'], 'g')}, best first-order {best_c} "
            f"{_fmt(first_order[best_c]['esc_c'], 'g')})\n"
            f"- SFN leaves the plateau in less time than every first-order method: {'met' if met_t else 'NOT met'} "
            f"(SFN {_fmt(sfn['esc_t'])} s, best first-order {best_t} {_fmt(first_order[best_t]['esc_t'])} s)\n"
            f"- (for the record) SFN against SGD with momentum alone: "
            f"{_fmt(sfn['esc_c'], 'g')} vs {_fmt(stats['SGD momentum']['esc_c'], 'g')} grad-eq, "
            f"{_fmt(sfn['esc_t'])} vs {_fmt(stats['SGD momentum']['esc_t'])} s to leave the plateau\n"
            f"- SFN reaches a lower loss than Newton-CG (by at least {1 - NCG_MARGIN:.0%}): "
            f"{'met' if met_ncg else 'NOT met'} "
            f"(after {seconds:g} s: SFN {sfn['final']:.3e}, Newton-CG {stats['Newton-CG']['final']:.3e})"
        )
        summary.append(f"SUMMARY|sfn_saddles: {problem}, grad-eq to leave the plateau (loss ≤ {ESCAPE:.0%})|"
                       f"SFN {_fmt(sfn['esc_c'], 'g')}|{best_c} {_fmt(first_order[best_c]['esc_c'], 'g')}|"
                       f"—|SFN fewer than every first-order method|{'yes' if met_c else 'no'}")
        summary.append(f"SUMMARY|sfn_saddles: {problem}, seconds to leave the plateau|SFN {_fmt(sfn['esc_t'])} s|"
                       f"{best_t} {_fmt(first_order[best_t]['esc_t'])} s|—|SFN less than every first-order "
                       f"method|{'yes' if met_t else 'no'}")
        summary.append(f"SUMMARY|sfn_saddles: {problem}, loss after {seconds:g} s|SFN {sfn['final']:.3e}|"
                       f"Newton-CG {stats['Newton-CG']['final']:.3e}|—|SFN below Newton-CG|"
                       f"{'yes' if met_ncg else 'no'}")

    png = RESULTS / ("sfn_saddles-quick.png" if args.quick else "sfn_saddles.png")
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot_note = f"Curves (every seed; loss against time and against gradient-equivalents): `{png.name}`." \
        if plot(results, png) else "(matplotlib not installed: no plot)"
    intro = (
        "Saddle-free Newton against Adam, SGD with momentum and Newton-CG where saddles are: both problems start "
        "near the origin, a saddle of the loss.  float64 PyTorch on the CPU through `TorchModel(..., "
        "loss=\"mean\")`, full batch of 256, **1 torch thread** (set by the script: the problems are tiny and the "
        "machine is shared).  Each method runs for a fixed optimiser wall time per seed (loss evaluations for the "
        "record are neither timed nor counted).  Cost convention: a gradient (`loss_and_grad`, also when only its "
        "loss is used, as in SFN's damping adaptation) counts 1, a Hessian-vector product counts 2 "
        "(*gradient-equivalents*, grad-eq); the measured HVP/gradient time ratio is given per problem.  Methods "
        "and settings are defined in the script's docstring; first-order learning rates and Newton-CG's damping "
        "come from a sweep on seed 0 (`--sweep`; best final loss; on the autoencoder the next smaller rate, "
        "where the best one spiked or diverged on other seeds, see `TUNED`), SFN's settings (λ₀ "
        f"{SFN_DAMPING:g}, {SFN_TERMS} Lanczos steps) from a sweep of λ₀ ∈ {{1e-6, 1e-2}} and 3/5/10 steps "
        "(fewest grad-eq to leave the plateau).  The series variant (`method=\"series\"`, 8 terms, λ₀ 1e-4) "
        "left neither plateau within 4 s in exploratory runs on seed 0 (its scale estimate alone costs 16 HVPs "
        "per step, then 14 per step for the terms), so Lanczos is the SFN measured here.\n\n"
        f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after the runs, on "
        f"{os.cpu_count()} cores: times are noisy; medians over seeds.  {plot_note}"
    )
    why = (
        "## Reading\n\n"
        "- Adam leaves both plateaus within a handful of gradients: its update is normalised per coordinate "
        "(`m/√v`), so the vanishing size of the gradient near the origin does not slow it — the first steps "
        "move every weight by about `lr`.  No curvature method that spends several HVPs per step can leave "
        "in fewer gradient-equivalents.\n"
        "- SGD with momentum is slowed by the small gradient (its escape time grows as the initial scale "
        "shrinks); on the deep narrow tanh network it did not leave the plateau within the budget at any "
        "learning rate of the sweep (seed 0).\n"
        "- SFN's step `(|H| + λI)⁻¹g` grows the weights by a constant factor per step near a degenerate "
        "saddle (for `f = −x⁴` it is `x/3`), so it leaves in a few steps whatever the initial scale, at "
        "several HVPs each.  One step with 3 Lanczos steps costs 14 grad-eq: 4 HVPs for Lanczos, 1 for the "
        "solver's residual check, 1 for the damping's quadratic model, the gradient, and a full gradient for "
        "the trial loss (`loss_and_grad`); about 7 steps leave the autoencoder's first plateau (98 grad-eq).\n"
        "- SFN's damping adaptation was changed for these landscapes (natgrad/optim/sfn.py): a rejected "
        "step now makes the next one at least twice shorter (before: λ/0.9 per rejection, and the run stayed "
        "at 0.79, every one of the last 18 steps of a 25-step trace rejected, after leaving the first plateau), and a good model (ρ > ¾) lowers λ "
        "by Nielsen's factor, ⅓ at ρ ≈ 1 (before: 0.9, ~20 steps per later plateau).\n"
        "- Newton-CG stays at the saddle: along the Krylov directions `H + λI` looks positive definite or "
        "CG meets negative curvature at once; the Newton step points at the critical point (the saddle), "
        "and −g, taken when CG stops at once, is as small as the gradient.  In the sweep (seed 0) it stayed "
        "on both plateaus for every λ ∈ {1e-6, 1e-4, 1e-2, 1}.\n"
        "- Why the regression MLP of `sfn.md` differs: it starts from PyTorch's default initialisation, away "
        "from any saddle, so there is no plateau to leave; what remains is local convergence, where an Adam "
        "step costs one gradient and an SFN step ~20 HVPs plus two gradients (times on `sfn.md`).\n"
    )
    body = intro + "\n\n" + "\n\n".join(parts) + "\n\n" + why + \
        f"\nTotal benchmark time {time.perf_counter() - t_start:.0f} s."
    write_result("sfn_saddles", "Saddle-free Newton where saddles are: deep linear autoencoder, deep narrow tanh",
                 body, quick=args.quick)
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
