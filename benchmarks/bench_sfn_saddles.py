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

Why the goal is out of reach (the page's last section): the escape cost of
SFN, Adam and SGD with momentum against the initial scale ε (``SCAN_SCALES``
× the default, 2 seeds, each run stopped at the escape or after
``SCAN_SECONDS``/``SCAN_COST``), and the lower bound on SFN's escape: the
cheapest saddle-free step (``CHEAPEST_SFN``: 1 gradient and 3 HVPs, counted
from the calls) times the fewest SFN steps measured to leave, against Adam's
escape at every ε.

Run: ``python benchmarks/bench_sfn_saddles.py`` (188 s measured at load 1.6-1.8 on 2 cores, the
escape scan included; ``--quick`` 30 s; ``--sweep`` re-runs the learning-rate sweep of the
first-order methods; ``--scan-only`` prints the escape scan alone).
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


def linear_ae(seed: int, scale: float = 1.0) -> tuple[Any, Any]:
    """The deep linear autoencoder of seed ``seed``, initial weights ``scale × LINEAR_INIT`` (× 1/√fan_in)."""
    import torch
    from torch.func import functional_call

    d, widths, eps = 16, (16, 16, 16), scale * LINEAR_INIT
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


def narrow_tanh(seed: int, scale: float = 1.0) -> tuple[Any, Any]:
    """The deep narrow tanh network of seed ``seed``, initial weights ``scale × TANH_INIT`` (× 1/√fan_in)."""
    import torch
    from torch.func import functional_call

    depth, width, eps = TANH_DEPTH, TANH_WIDTH, scale * TANH_INIT
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
        max_cost: float = math.inf, stop_below: float | None = None) -> dict[str, Any]:
    """``opt`` on ``problem(seed)`` for ``seconds`` of optimiser time or ``max_cost``
    gradient-equivalents, or until the loss is at most ``stop_below × L(θ₀)``."""
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
        if not math.isfinite(loss) or (stop_below is not None and loss <= stop_below * loss0):
            break
    return {"times": times, "losses": losses, "costs": costs, "loss0": loss0, "steps": len(times) - 1,
            "final": losses[-1], "best": min(losses), "grads": counted.grads, "hvps": counted.hvps}


def first_below(r: dict[str, Any], level: float) -> tuple[float, float]:
    """(time, cost) at which the loss first falls to ``level`` (inf, inf if never)."""
    return first_below_steps(r, level)[:2]


def first_below_steps(r: dict[str, Any], level: float) -> tuple[float, float, float]:
    """(time, cost, steps) at which the loss first falls to ``level`` (inf, inf, inf if never)."""
    for i, (t, c, loss) in enumerate(zip(r["times"], r["costs"], r["losses"])):
        if loss <= level:
            return t, c, float(i)
    return math.inf, math.inf, math.inf


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
# why: the escape cost against the initial scale
# ---------------------------------------------------------------------------

#: initial scales of the escape scan, as factors of each problem's default (``LINEAR_INIT``, ``TANH_INIT``)
SCAN_SCALES: dict[str, tuple[float, ...]] = {"linear autoencoder": (3.0, 1.0, 0.3, 0.1), "narrow tanh": (1.0, 0.5)}
#: each run of the scan stops at the escape, or after this optimiser time / these gradient-equivalents
SCAN_SECONDS, SCAN_COST = 4.0, 4000
#: the cheapest saddle-free step natgrad can take: 1 Lanczos step (2 products and the check), no adaptation
CHEAPEST_SFN = {"method": "lanczos", "terms": 1, "adapt_damping": False, "damping": SFN_DAMPING}


def escape_scan(seeds: list[int], seconds: float, max_cost: float) -> dict[str, Any]:
    """Per problem, initial scale and first-order/SFN method: the escape records
    ``(seconds, grad-eq, steps)`` of each seed, each run stopped at the escape."""
    out: dict[str, Any] = {}
    for problem, spec in PROBLEMS.items():
        out[problem] = {}
        for scale in SCAN_SCALES[problem]:
            make = (lambda seed, scale=scale: spec["make"](seed, scale))
            out[problem][scale] = {}
            for name, _, factory in methods(problem):
                if name == "Newton-CG":
                    continue  # it stays at the saddle at every scale (the main runs)
                records = []
                for seed in seeds:
                    r = run(make, seed, factory(), seconds, max_cost, stop_below=ESCAPE)
                    esc = first_below_steps(r, ESCAPE * r["loss0"])
                    records.append({"t": esc[0], "c": esc[1], "steps": esc[2], "t_end": r["times"][-1],
                                    "c_end": r["costs"][-1], "steps_end": r["steps"]})
                out[problem][scale][name] = records
                print(f"[sfn_saddles] scan {problem} x{scale:g} {name}: "
                      + ", ".join(f"{_fmt(x['c'], 'g')} grad-eq/{_fmt(x['t'])} s/{_fmt(x['steps'], 'g')} steps"
                                  for x in records), flush=True)
    return out


def cheapest_sfn_step(problem: Callable[[int], tuple[Any, Any]], repeats: int) -> tuple[int, float]:
    """Gradient-equivalents of one step of ``CHEAPEST_SFN`` (counted as the code makes the calls)
    and its median time, at the start of seed 0."""
    from natgrad.optim import SaddleFreeNewton

    model, batch = problem(0)
    counted = Counting(model)
    SaddleFreeNewton(**CHEAPEST_SFN).step(model.params, model, batch)  # warm-up
    times, cost = [], 0
    for _ in range(repeats):
        before = counted.cost
        t0 = time.perf_counter()
        SaddleFreeNewton(**CHEAPEST_SFN).step(model.params, counted, batch)
        times.append(time.perf_counter() - t0)
        cost = counted.cost - before
    return cost, statistics.median(times)


def _escape_cell(records: list[dict[str, Any]], key: str, digits: str) -> str:
    """The median escape ``key`` ("t", "c" or "steps"), or "> x" (the median where the
    runs ended) when more than half did not leave within the cap."""
    value = _median([x[key] for x in records])
    if math.isfinite(value):
        return format(value, digits)
    return "> " + format(_median([x[key + "_end"] for x in records]), digits)


def scan_report(scan: dict[str, Any], seeds: list[int], cheapest: dict[str, tuple[int, float]],
                main_steps: dict[str, list[float]], seconds: float, max_cost: float) -> tuple[str, list[str]]:
    """The page's "why" section and its summary rows."""
    parts, summary = [], []
    lines = []
    for problem, per_scale in scan.items():
        default = LINEAR_INIT if problem == "linear autoencoder" else TANH_INIT
        rows = []
        adam_c, adam_t, sfn_steps = [], [], list(main_steps.get(problem, []))
        growth: dict[str, list[float]] = {}
        for scale, per_method in per_scale.items():
            row = [f"{scale * default:g} (×{scale:g})"]
            for name, records in per_method.items():
                row += [f"{sum(math.isfinite(x['c']) for x in records)}/{len(records)}",
                        _escape_cell(records, "c", "g"), _escape_cell(records, "t", ".3g")]
                if name == "SFN Lanczos":
                    row.append(_escape_cell(records, "steps", "g"))
                    sfn_steps += [x["steps"] for x in records]
                if name == "Adam":
                    adam_c.append(_median([x["c"] for x in records]))
                    adam_t.append(_median([x["t"] for x in records]))
                growth.setdefault(name, []).append(_median([x["c"] for x in records]))
            rows.append(row)
        names = list(next(iter(per_scale.values())))
        header = ["ε"]
        for name in names:
            header += [f"{name} left", f"{name} grad-eq", f"{name} s"] + (["SFN steps"] if name == "SFN Lanczos"
                                                                          else [])
        floor_c, floor_t = cheapest[problem]
        n_min = min((n for n in sfn_steps if math.isfinite(n)), default=math.inf)
        n_bound = n_min if math.isfinite(n_min) else 1.0  # never left: any escape takes at least one step
        bound_c, bound_t = floor_c * n_bound, floor_t * n_bound
        worst_adam_c, worst_adam_t = max(adam_c), max(adam_t)
        beyond_c = bound_c > worst_adam_c
        beyond_t = bound_t > worst_adam_t
        scales = list(per_scale)
        big, small = scales[0], scales[-1]
        spread = []
        for name, values in growth.items():
            lo, hi = values[0], values[-1]
            ratio = f"×{hi / lo:.3g}" if math.isfinite(hi) and math.isfinite(lo) and lo > 0 else (
                "not left within the cap at the smallest ε" if not math.isfinite(hi) else "—")
            spread.append(f"{name} {_fmt(lo, 'g')} → {_fmt(hi, 'g')} grad-eq ({ratio})")
        steps_big = _median([x["steps"] for x in per_scale[big]["SFN Lanczos"]])
        steps_small = _median([x["steps"] for x in per_scale[small]["SFN Lanczos"]])
        decades = math.log10(big / small)
        sfn_by_scale = [_median([x["steps"] for x in per_scale[sc]["SFN Lanczos"]]) for sc in scales]
        increments = [(b - a) / math.log10(sa / sb) for (a, sa), (b, sb) in
                      zip(zip(sfn_by_scale, scales), zip(sfn_by_scale[1:], scales[1:]))]
        # "linear in log(1/ε)" is a claim only where three or more scales agree on the slope (two always do)
        linear = (len(increments) >= 2 and all(math.isfinite(i) for i in increments)
                  and max(increments) <= 1.25 * min(increments))
        if math.isfinite(steps_small):
            per_decade = (f"SFN's steps to leave grow by {(steps_small - steps_big) / decades:.3g} per decade of ε "
                          f"({' → '.join(format(n, 'g') for n in sfn_by_scale)})"
                          + (": linear in log(1/ε), a bounded growth factor per step" if linear else
                             " (too few scales, or too uneven, to call the growth linear in log(1/ε))"))
        else:
            ran = _escape_cell(per_scale[small]["SFN Lanczos"], "steps", "g")
            per_decade = f"SFN did not leave within the cap at ε ×{small:g} ({ran} steps)"
        parts.append(
            f"### {problem}\n\n"
            + markdown_table(header, rows)
            + f"\n\nFrom ε ×{big:g} to ×{small:g} of the default, the median escape cost goes: "
            + "; ".join(spread) + f".  {per_decade}.\n\n"
            f"Lower bound for SFN: the cheapest saddle-free step natgrad can take (1 Lanczos step, no damping "
            f"adaptation: 1 gradient and 3 HVPs, counted from the calls the code makes) costs {floor_c} grad-eq "
            f"and {1e3 * floor_t:.3g} ms here; the fewest SFN steps measured to leave this plateau, over every "
            f"ε, seed and the main runs, are "
            + (f"{n_min:g}" if math.isfinite(n_min) else "— (SFN never left within the cap: one step counted)")
            + f"; so no SFN run leaves in fewer than "
            f"{_fmt(bound_c, 'g')} grad-eq or {_fmt(bound_t, '.3g')} s, against Adam's median escape of at most "
            f"{_fmt(worst_adam_c, 'g')} grad-eq and {_fmt(worst_adam_t, '.3g')} s at every ε (the step count "
            "is that of the tuned SFN; the one-step floor assumes nothing).  "
            + ("Even a single such step costs more than Adam's whole escape.  " if floor_c > worst_adam_c else "")
            + ("The bound exceeds Adam's cost at every ε, in gradient-equivalents"
               + (" and in seconds" if beyond_t else " (not in seconds)") + "."
               if beyond_c else "The bound does not exceed Adam's cost at every ε.")
        )
        summary.append(f"SUMMARY|sfn_saddles: {problem}, SFN escape lower bound (cheapest step × fewest steps)|"
                       f"SFN ≥ {_fmt(bound_c, 'g')} grad-eq|Adam ≤ {_fmt(worst_adam_c, 'g')} grad-eq|—|"
                       f"evidence, not a goal: the bound above Adam at every ε|"
                       f"{'shown: the escape goal cannot be met' if beyond_c else 'not shown'}")
        lines.append((problem, beyond_c, beyond_t, bound_c, worst_adam_c))
    verdict = all(b for _, b, _, _, _ in lines)
    intro = (
        "## Why: the escape cost against the initial scale ε\n\n"
        f"Each problem started at other initial scales ε (ε sets the weights' "
        f"standard deviation `N(0, ε²/fan_in)`); SFN, Adam and SGD with momentum at the settings above "
        f"(tuned at the default ε), {len(seeds)} seed(s), each run stopped when it leaves the plateau (loss ≤ "
        f"{ESCAPE:.0%} of L(θ₀)) or after {seconds:g} s / {max_cost:g} grad-eq.  Medians; \"left\" = seeds "
        "that left within the cap; \"> x\" = more than half did not, x where they stopped.\n\n"
    )
    conclusion = (
        "\n\n"
        + ("**The goal cannot be met by a curvature method that pays several HVPs per step** on these "
           "problems: " if verdict else "The bound alone does not rule the goal out on every problem: ")
        + "; ".join(f"{p}: bound {_fmt(bc, 'g')} vs Adam ≤ {_fmt(ac, 'g')} grad-eq" for p, _, _, bc, ac in lines)
        + ".  The per-step floor counts the products the code makes (a gradient 1, an HVP 2); a method with "
        "fewer products per step is no longer this saddle-free Newton."
    )
    return intro + "\n\n".join(parts) + conclusion, summary


def plot_scan(scan: dict[str, Any], path: Path) -> bool:
    """Escape grad-eq and seconds against ε (medians; open markers: not left within the cap)."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scan), 2, figsize=(10, 3.6 * len(scan)), squeeze=False)
    for row, (problem, per_scale) in enumerate(scan.items()):
        default = LINEAR_INIT if problem == "linear autoencoder" else TANH_INIT
        names = list(next(iter(per_scale.values())))
        for colour, name in zip(("C0", "C1", "C2"), names):
            for col, key in enumerate(("c", "t")):
                xs, ys, open_x, open_y = [], [], [], []
                for scale, per_method in per_scale.items():
                    v = _median([x[key] for x in per_method[name]])
                    if math.isfinite(v):
                        xs.append(scale * default)
                        ys.append(max(v, 1e-4))
                    else:
                        open_x.append(scale * default)
                        open_y.append(_median([x[key + "_end"] for x in per_method[name]]))
                ax = axes[row][col]
                ax.loglog(xs, ys, "o-", color=colour, label=name)
                if open_x:
                    ax.loglog(open_x, open_y, "^", color=colour, mfc="none")
                ax.set_xlabel("initial scale ε")
                ax.set_ylabel(f"{problem}: escape {'grad-eq' if key == 'c' else 's'}")
                ax.grid(True, which="both", alpha=0.3)
        axes[row][0].legend(fontsize=8)
    fig.suptitle("Cost to leave the plateau against the initial scale (open triangles: not left, where the run "
                 "stopped)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


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
    parser.add_argument("--scan-only", action="store_true",
                        help="run only the escape scan against the initial scale (printed, no page written)")
    args = parser.parse_args()
    import torch

    # tiny problems on a shared 2-core machine: two intra-op threads made every call ~50× slower under load
    torch.set_num_threads(1)
    seconds = 1.0 if args.quick else 5.0
    scan_seconds, scan_cost = (1.0, 1000) if args.quick else (SCAN_SECONDS, SCAN_COST)
    scan_seeds = [0] if args.quick else [0, 1]
    if args.sweep:
        sweep(seconds)
        return
    if args.scan_only:
        cheapest = {pr: cheapest_sfn_step(spec["make"], 5) for pr, spec in PROBLEMS.items()}
        text, rows = scan_report(escape_scan(scan_seeds, scan_seconds, scan_cost), scan_seeds, cheapest, {},
                                 scan_seconds, scan_cost)
        print(text)
        print("\n".join(rows))
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
    cheapest = {problem: cheapest_sfn_step(spec["make"], 5 if args.quick else 20) for problem, spec in PROBLEMS.items()}
    scan = escape_scan(scan_seeds, scan_seconds, scan_cost)
    load_after = os.getloadavg()

    parts: list[str] = []
    summary: list[str] = []
    cost_marks = (30, 100, 300, 1000)
    main_steps: dict[str, list[float]] = {}
    sfn_step_cost: dict[str, tuple[float, float]] = {}  # grad-eq per SFN step, SFN steps to leave (medians)
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
        sfn_runs = per_method["SFN Lanczos"]
        main_steps[problem] = [first_below_steps(r, ESCAPE * r["loss0"])[2] for r in sfn_runs]
        sfn_step_cost[problem] = (_median([r["costs"][-1] / max(r["steps"], 1) for r in sfn_runs]),
                                  _median(main_steps[problem]))
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
        "- SFN's step `(|H| + λI)⁻¹g` grows the weights by a bounded factor per step near a degenerate "
        "saddle (for `f = −x^d` the step is `x/(d − 1)`, so `x ← x·d/(d − 1)`: ×4/3 for the product of four "
        "weights), so the number of steps grows only like `log(1/ε)` (measured below), at several HVPs each.  "
        f"One step with {SFN_TERMS} Lanczos steps costs {1 + 2 * (SFN_TERMS + 2) + 1} grad-eq: "
        f"{SFN_TERMS + 1} HVPs for Lanczos, 1 for the solver's check of its result (`H x`, which now also gives "
        "the damping's quadratic model its `H s`: before, a separate HVP made it 14 grad-eq), the gradient, "
        "and a full gradient for the trial loss (`loss_and_grad`); measured "
        + "; ".join(f"{pr}: {_fmt(c, '.3g')} grad-eq per step, {_fmt(n, 'g')} steps to leave (median)"
                    for pr, (c, n) in sfn_step_cost.items()) + ".\n"
        "- SFN's damping adaptation was changed for these landscapes (natgrad/optim/sfn.py): a rejected "
        "step now makes the next one at least twice shorter (before: λ/0.9 per rejection, and the run stayed "
        "at 0.79, every one of the last 18 steps of a 25-step trace rejected, after leaving the first plateau), "
        "and a good model (ρ > ¾) lowers λ by Nielsen's factor, ⅓ at ρ ≈ 1 (before: 0.9, ~20 steps per later "
        "plateau).\n"
        "- Newton-CG stays at the saddle: along the Krylov directions `H + λI` looks positive definite or "
        "CG meets negative curvature at once; the Newton step points at the critical point (the saddle), "
        "and −g, taken when CG stops at once, is as small as the gradient.  In the sweep (seed 0) it stayed "
        "on both plateaus for every λ ∈ {1e-6, 1e-4, 1e-2, 1}.\n"
        "- Why the regression MLP of `sfn.md` differs: it starts from PyTorch's default initialisation, away "
        "from any saddle, so there is no plateau to leave; what remains is local convergence, where an Adam "
        "step costs one gradient and an SFN step ~20 HVPs plus two gradients (times on `sfn.md`).\n"
    )
    scan_text, scan_summary = scan_report(scan, scan_seeds, cheapest, main_steps, scan_seconds, scan_cost)
    summary += scan_summary
    scan_png = RESULTS / ("sfn_saddles-scale-quick.png" if args.quick else "sfn_saddles-scale.png")
    if plot_scan(scan, scan_png):
        scan_text += f"\n\nFigure: `{scan_png.name}` (escape grad-eq and seconds against ε)."
    body = intro + "\n\n" + "\n\n".join(parts) + "\n\n" + why + "\n" + scan_text + \
        f"\n\nTotal benchmark time {time.perf_counter() - t_start:.0f} s."
    write_result("sfn_saddles", "Saddle-free Newton where saddles are: deep linear autoencoder, deep narrow tanh",
                 body, quick=args.quick)
    for line in summary:
        print(line)
    (RESULTS / ("sfn_saddles-quick.summary" if args.quick else "sfn_saddles.summary")).write_text(
        "\n".join(summary) + "\n")


if __name__ == "__main__":
    main()
