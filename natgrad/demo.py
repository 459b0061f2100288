"""``python -m natgrad.demo``: train the 5-D Poisson PINN with natural gradients.

The problem is the one of Guzmán-Cordero et al. (arXiv 2505.12149):
``−Δu = π² Σᵢ cos(π xᵢ)`` on ``[0, 1]⁵`` with Dirichlet data from
``u* = Σᵢ cos(π xᵢ)``, a tanh MLP written in **PyTorch** and handed to natgrad
through :class:`natgrad.adapters.torch.TorchModel`; the linear algebra runs on
the model's own (CPU, float64) tensors.  Three optimisers start from the same
weights and see the same collocation points, each for a fixed number of steps:

* ENGD-W — energy natural gradient in sample space, ``Jᵀ(JJᵀ + λI)⁻¹r``;
* SPRING — the same with Kaczmarz-style momentum;
* Adam — the first-order baseline (many more, cheaper steps).

The demo prints a table (method, steps, optimiser time, seconds per step,
final relative L2 error), the line ``final relative L2 error: <value>`` for
the best method, and saves a convergence plot (L2 error at each evaluation
against optimiser time) when matplotlib is installed.

**The printed errors depend only on the step counts and the seed**, not on
the machine's load: the budget is counted in steps (:data:`CONFIGS`), the
points of step ``k`` are a function of ``(seed, k)``, and PyTorch runs on a
fixed number of threads (:data:`THREADS`, ``--threads``) because the thread
count changes the order of floating-point sums in the matrix products, and
such last-bit differences grow over the training steps (measured: after 30
quick steps ENGD-W's error differs in the 7th digit between 1 and 2 threads,
while two runs on 2 threads agree in every bit).  Only the times change with
the load.  Configurations (steps per method sized from the seconds per step
on two idle cores): ``--quick`` (about a minute), the default (about three
minutes) and ``--full`` (the paper's network 5→64→64→48→48→1
with 3000 interior and 500 boundary points per step; about a quarter of an
hour).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

#: the methods, in the order they run and print
METHODS = ("ENGD-W", "SPRING", "Adam")

#: PyTorch intra-op threads of ``python -m natgrad.demo`` (``--threads``): fixed,
#: so that the printed errors do not depend on the machine's core count
THREADS = 2

#: L2 evaluations per method (each also at step 0 and at the last step)
EVALUATIONS = 30


@dataclass(frozen=True)
class Config:
    """A demo configuration: the network, the points per step and the step budget.

    Parameters
    ----------
    hidden : tuple of int
        Hidden layer widths of the tanh MLP ``5 → hidden… → 1``.
    n_interior, n_boundary : int
        Collocation points per step (resampled every step).
    steps : mapping of str to int
        Steps per method (keys :data:`METHODS`).
    n_test : int, default 10000
        Points of the fixed test set of the relative L2 error.

    Examples
    --------
    >>> CONFIGS["default"].steps["ENGD-W"] < CONFIGS["default"].steps["Adam"]
    True
    """

    hidden: tuple[int, ...]
    n_interior: int
    n_boundary: int
    steps: Mapping[str, int] = field(default_factory=dict)
    n_test: int = 10_000


#: The configurations.  Step counts from the seconds per step on two idle cores
#: (2 torch threads).  Default: measured on an idle machine (load ≤ 2, this
#: process alone; benchmarks/results/demo-runs.md): ENGD-W 1.51 s, SPRING
#: 1.59 s, Adam 0.064 s per step, so 40, 40 and 900 steps take about a minute
#: each.  Quick and full: estimated by timing steps against ones whose idle
#: time was measured (quick 0.043, 0.053, 0.0045 s; full 2.26, 2.31, 0.073 s).
CONFIGS = {
    "quick": Config((32, 32), 400, 100, {"ENGD-W": 400, "SPRING": 350, "Adam": 3500}),
    "default": Config((64, 64, 48, 48), 1000, 250, {"ENGD-W": 40, "SPRING": 40, "Adam": 900}),
    "full": Config((64, 64, 48, 48), 3000, 500, {"ENGD-W": 130, "SPRING": 130, "Adam": 4000}),
}


@dataclass
class Run:
    """One method's run: its name, steps taken, optimiser seconds (warm-up
    excluded), final relative L2 error, the :class:`~natgrad.optim.History`,
    the planned steps and the untimed warm-up step's seconds."""

    name: str
    steps: int
    seconds: float
    l2: float
    history: Any
    planned: int = 0
    warmup: float = 0.0

    @property
    def capped(self) -> bool:
        """True when ``--max-seconds`` stopped the run before its steps."""
        return self.history.get("stopped") == "time_budget"


def _optimisers() -> dict[str, Any]:
    from natgrad.optim import ENGD, SPRING, Adam

    # Damping and momentum from a small sweep on the quick configuration
    # (ENGD-W: λ ∈ {1e-8, 1e-6, 1e-4}; SPRING: λ ∈ {1e-4, 1e-3}, μ ∈ {0.5, 0.9, 0.99}).
    return {
        "ENGD-W": ENGD(damping=1e-6, solver="woodbury"),
        "SPRING": SPRING(damping=1e-4, momentum=0.5),
        "Adam": Adam(lr=1e-3),
    }


def budget(config: str | Config, steps: Mapping[str, int] | None = None) -> dict[str, int]:
    """The steps per method: the configuration's, with ``steps`` overriding some.

    Parameters
    ----------
    config : str or Config
        A name of :data:`CONFIGS` or a configuration.
    steps : mapping of str to int, optional
        Overrides (e.g. ``{"Adam": 500}``); the other methods keep theirs.

    Returns
    -------
    dict
        ``{method: steps}`` for every method of :data:`METHODS`.

    Raises
    ------
    KeyError
        An unknown configuration name.
    ValueError
        An unknown method or a step count below 1.

    Examples
    --------
    >>> budget("default", {"Adam": 500})
    {'ENGD-W': 40, 'SPRING': 40, 'Adam': 500}
    """
    cfg = CONFIGS[config] if isinstance(config, str) else config
    out = {name: int(cfg.steps[name]) for name in METHODS}
    for name, n in (steps or {}).items():
        if name not in out:
            raise ValueError(f"steps: unknown method {name!r}; the methods are {', '.join(METHODS)}")
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"steps: {name} needs a positive int, got {n!r}")
        out[name] = n
    return out


def train(config: str | Config = "quick", *, steps: Mapping[str, int] | None = None,
          max_seconds: float | None = None, progress: bool = True, seed: int = 0) -> tuple[list[Run], Any]:
    """Train every method on the configuration; return the runs and the problem.

    Each method first takes one untimed warm-up step from a copy of the
    starting weights (a separate optimiser, the batch of step 0), so that the
    first timed step does not carry PyTorch's first-call allocations; then
    :func:`natgrad.optim.fit` runs its steps from the same starting weights
    on the batches of steps 1, 2, …, with the relative L2 error evaluated
    :data:`EVALUATIONS` times (untimed).  ``max_seconds`` is an optional cap
    on each method's optimiser time; a run it stops has ``capped`` True and
    an error that depends on the machine's speed.

    Parameters
    ----------
    config : str or Config, default "quick"
        A name of :data:`CONFIGS` or a configuration (e.g. a tiny one for tests).
    steps : mapping of str to int, optional
        Step counts overriding the configuration's (see :func:`budget`).
    max_seconds : float, optional
        Cap on each method's optimiser time (``fit(time_budget=...)``).
    progress : bool, default True
        tqdm bars (when installed) labelled by the method, over its steps.
    seed : int, default 0
        Seed of the initial weights and of the points (:func:`make_poisson`).

    Returns
    -------
    runs : list of Run
        One per method of :data:`METHODS`, in that order.
    problem : natgrad.examples.poisson.PoissonProblem
        The problem (its ``n_params``, ``l2_error``, …).

    Raises
    ------
    KeyError, ValueError
        As :func:`budget`, for an unknown configuration, method or a step
        count below 1.
    """
    from natgrad.examples.poisson import make_poisson
    from natgrad.optim import fit

    cfg = CONFIGS[config] if isinstance(config, str) else config
    plan = budget(cfg, steps)
    problem = make_poisson(dim=5, hidden=cfg.hidden, n_interior=cfg.n_interior, n_boundary=cfg.n_boundary,
                           n_test=cfg.n_test, seed=seed)
    start = problem.model.params.clone()  # every method starts here; no step writes into it
    warm_batch = problem.sample(0)  # fit draws steps 1, 2, …; step 0 is the warm-up's own
    warm_ups = _optimisers()
    runs = []
    for name, opt in _optimisers().items():
        t0 = time.perf_counter()
        warm_ups[name].step(start.clone(), problem.model, warm_batch)
        warmup = time.perf_counter() - t0
        n = plan[name]
        params, hist = fit(
            opt, problem.model, problem.sample, n, progress=progress, desc=name, params=start.clone(),
            metric=problem.l2_error, metric_every=max(1, n // EVALUATIONS), time_budget=max_seconds,
        )
        runs.append(Run(name, len(hist["step"]), hist["elapsed"][-1] if hist["elapsed"] else 0.0,
                        hist["metric"][-1], hist, planned=n, warmup=warmup))
    return runs, problem


def _steps_label(runs: list[Run]) -> str:
    return ", ".join(f"{r.name} {r.steps}" + (f"/{r.planned} (time cap)" if r.capped else "") for r in runs)


def _plot(runs: list[Run], path: str, title: str) -> Any:
    """Save the convergence plot; return the (closed) figure, or None without matplotlib.

    One line per method with a marker at every evaluation of the L2 error,
    against the optimiser time at that evaluation (warm-up and evaluations
    excluded): the time-to-accuracy comparison.
    """
    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for run in runs:
        ax.semilogy(run.history["metric_elapsed"], run.history["metric"], marker="o", markersize=3,
                    label=f"{run.name} ({run.steps} steps)")
    ax.set_xlabel("optimiser time [s] (L2 evaluated at the markers)")
    ax.set_ylabel("relative L2 error")
    ax.set_title(f"{title}\nbudget in steps: {_steps_label(runs)}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m natgrad.demo",
        description="Train the 5-D Poisson PINN of arXiv 2505.12149 with ENGD-W, SPRING and Adam, "
                    "each for a fixed number of steps (the printed errors depend only on the steps and "
                    "the seed; the times on the machine).",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small network, about a minute on two cores")
    size.add_argument("--full", action="store_true",
                      help="the paper's configuration (N_Ω=3000, N_∂Ω=500), about 15 minutes on two cores")
    parser.add_argument("--steps", default=None, metavar="N | METHOD=N,...",
                        help="steps per method instead of the configuration's: one positive integer for "
                             "every method, or e.g. ENGD-W=20,Adam=1000 (the others keep theirs)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="optional cap on each method's optimiser time (> 0); a run it stops is marked "
                             "in the table, and its error then depends on the machine's speed")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help=f"PyTorch threads (default {THREADS}; another count changes the last digits)")
    parser.add_argument("--seconds", default=None, help=argparse.SUPPRESS)  # replaced: see parse_args
    parser.add_argument("--plot", default="natgrad-demo.png",
                        help="where to save the convergence plot (its folder must exist and be writable)")
    parser.add_argument("--no-plot", action="store_true", help="do not save a plot")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--seed", type=int, default=0, help="random seed (≥ 0)")
    return parser


def _parse_steps(spec: str) -> dict[str, int] | str:
    """``--steps`` as ``{method: steps}``, or why it is not valid."""
    usage = (f"--steps must be a positive integer or METHOD=N pairs separated by commas "
             f"(methods: {', '.join(METHODS)}), got {spec!r}")
    spec = spec.strip()
    if "=" not in spec:
        try:
            n = int(spec)
        except ValueError:
            return usage
        return {name: n for name in METHODS} if n >= 1 else usage
    names = {name.lower(): name for name in METHODS}
    out: dict[str, int] = {}
    for part in spec.split(","):
        key, _, value = part.partition("=")
        name = names.get(key.strip().lower())
        if name is None:
            return usage
        try:
            n = int(value)
        except ValueError:
            return usage
        if n < 1:
            return usage
        out[name] = n
    return out


def _plot_problem(path: str) -> str | None:
    """Why the plot could not be saved at ``path``, or None when it can."""
    if not path or not path.strip():
        return "--plot must name a file"
    if os.path.isdir(path):
        return f"--plot {path!r} is a folder; name a file, e.g. {os.path.join(path, 'natgrad-demo.png')!r}"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"--plot {path!r}: the folder {folder!r} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"--plot {path!r}: the folder {folder!r} is not writable"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"--plot {path!r} exists and is not writable"
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The demo's command line, checked before anything is trained.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        ``quick``, ``full``, ``steps`` (None, or ``{method: steps}`` for
        the methods it names), ``max_seconds``, ``threads``, ``plot``,
        ``no_plot``, ``no_progress``, ``seed``.

    Raises
    ------
    SystemExit
        With status 2 and a message naming the flag, for a ``--steps`` that
        is not a positive integer or ``METHOD=N`` pairs, a ``--max-seconds``
        that is not a finite positive number, ``--threads`` below 1, a
        negative seed, the retired ``--seconds``, or a ``--plot`` path that
        cannot be written (a missing or read-only folder, a folder given as
        the file): found at the start, not after minutes of training.

    Examples
    --------
    >>> args = parse_args(["--quick", "--steps", "5", "--no-plot"])
    >>> args.quick, args.steps, args.no_plot
    (True, {'ENGD-W': 5, 'SPRING': 5, 'Adam': 5}, True)
    >>> parse_args(["--steps", "adam=500", "--no-plot"]).steps
    {'Adam': 500}
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.seconds is not None:
        parser.error("--seconds was replaced by --steps (the budget is counted in steps, so the printed "
                     "errors do not depend on the machine's load) and --max-seconds (an optional cap)")
    if args.steps is not None:
        steps = _parse_steps(args.steps)
        if isinstance(steps, str):
            parser.error(steps)
        args.steps = steps
    if args.max_seconds is not None and not (math.isfinite(args.max_seconds) and args.max_seconds > 0):
        parser.error(f"--max-seconds must be a finite positive number of seconds, got {args.max_seconds!r}")
    if args.threads < 1:
        parser.error(f"--threads must be ≥ 1, got {args.threads}")
    if args.seed < 0:
        parser.error(f"--seed must be ≥ 0, got {args.seed}")
    if not args.no_plot:
        problem = _plot_problem(args.plot)
        if problem is not None:
            parser.error(problem + " (or pass --no-plot)")
    return args


def _use_threads(threads: int) -> None:
    """Fix PyTorch's thread count (the printed digits depend on it).

    ``OMP_WAIT_POLICY=PASSIVE`` (unless set) makes idle OpenMP threads sleep
    instead of spinning: on a busy machine spinning threads steal the cores
    the working ones need (measured on two loaded cores: 17 s per default
    ENGD-W step spinning, 2.9 s passive; the results are the same).  It only
    takes effect when PyTorch is imported after it is set.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("torch") is None:
        _parser().exit(2, "the demo needs PyTorch: pip install -e '.[demo]'\n")
    _use_threads(args.threads)

    config = "quick" if args.quick else "full" if args.full else "default"
    cfg = CONFIGS[config]
    plan = budget(config, args.steps)
    arch = "→".join(str(w) for w in (5, *cfg.hidden, 1))
    cap = f"; at most {args.max_seconds:g} s per method" if args.max_seconds is not None else ""
    print(f"natgrad demo ({config}): 5-D Poisson PINN, MLP {arch}, {cfg.n_interior} interior + "
          f"{cfg.n_boundary} boundary points per step, PyTorch float64 on the CPU ({args.threads} threads), "
          f"seed {args.seed}\nsteps: {', '.join(f'{k} {v}' for k, v in plan.items())}{cap}\n")
    t0 = time.perf_counter()
    runs, problem = train(config, steps=args.steps, max_seconds=args.max_seconds,
                          progress=not args.no_progress, seed=args.seed)
    total = time.perf_counter() - t0

    header = f"{'method':<8} {'steps':>7} {'time [s]':>9} {'s/step':>8} {'rel. L2 error':>14}"
    print(header)
    print("-" * len(header))
    for run in runs:
        mark = " *" if run.capped else ""
        print(f"{run.name:<8} {run.steps:>7} {run.seconds:>9.1f} {run.seconds / max(run.steps, 1):>8.3f} "
              f"{run.l2:>14.3e}{mark}")
    print("(time: optimiser steps only; each method's untimed warm-up step and L2 evaluations excluded)")
    for run in runs:
        if run.capped:
            print(f"* {run.name} hit --max-seconds {args.max_seconds:g} after {run.steps} of {run.planned} "
                  "steps: its error depends on the machine's speed")
        elif run.history.get("stopped") not in (None, "steps"):  # a method that stopped early says why
            print(f"{run.name} stopped early: {run.history['reason']}")
    best = min(runs, key=lambda r: r.l2)
    print(f"\nbest method: {best.name} (P = {problem.n_params} parameters)")
    print(f"final relative L2 error: {best.l2:.3e}")
    print(f"total wall time: {total:.0f} s (with set-up, warm-up and L2 evaluations)")
    if not args.no_plot and _plot(runs, args.plot, f"5-D Poisson PINN ({config}, seed {args.seed})") is not None:
        print(f"convergence plot saved to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
