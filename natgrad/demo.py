"""``python -m natgrad.demo``: train the 5-D Poisson PINN with natural gradients.

The problem is the one of Guzmán-Cordero et al. (arXiv 2505.12149):
``−Δu = π² Σᵢ cos(π xᵢ)`` on ``[0, 1]⁵`` with Dirichlet data from
``u* = Σᵢ cos(π xᵢ)``, a tanh MLP written in **PyTorch** and handed to natgrad
through :class:`natgrad.adapters.torch.TorchModel`; the linear algebra runs on
the model's own (CPU, float64) tensors.  Three optimisers get the same
wall-clock budget:

* ENGD-W — energy natural gradient in sample space, ``Jᵀ(JJᵀ + λI)⁻¹r``;
* SPRING — the same with Kaczmarz-style momentum;
* Adam — the first-order baseline.

The demo prints a table (method, steps, time, final relative L2 error), the
line ``final relative L2 error: <value>`` for the best method, and saves a
convergence plot (L2 error against wall time) when matplotlib is installed.

Configurations: ``--quick`` (about a minute on two cores), the default (a few
minutes) and ``--full`` (the paper's network 5→64→64→48→48→1 with 3000
interior and 500 boundary points per step).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

CONFIGS = {
    # name: (hidden widths, interior points, boundary points, seconds per method)
    "quick": ((32, 32), 400, 100, 15.0),
    "default": ((64, 64, 48, 48), 1000, 250, 60.0),
    "full": ((64, 64, 48, 48), 3000, 500, 300.0),
}


@dataclass
class Run:
    name: str
    steps: int
    seconds: float
    l2: float
    history: Any


def _optimisers(config: str) -> dict[str, Any]:
    from natgrad.optim import ENGD, SPRING, Adam

    # Damping and momentum from a small sweep on the quick configuration
    # (ENGD-W: λ ∈ {1e-8, 1e-6, 1e-4}; SPRING: λ ∈ {1e-4, 1e-3}, μ ∈ {0.5, 0.9, 0.99}).
    return {
        "ENGD-W": ENGD(damping=1e-6, solver="woodbury"),
        "SPRING": SPRING(damping=1e-4, momentum=0.5),
        "Adam": Adam(lr=1e-3),
    }


def train(config: str = "quick", *, seconds: float | None = None, max_steps: int = 100_000,
          progress: bool = True, seed: int = 0) -> tuple[list[Run], Any]:
    """Train every method on the configuration; return the runs and the problem."""
    from natgrad.examples.poisson import make_poisson
    from natgrad.optim import fit

    hidden, n_in, n_bd, budget = CONFIGS[config]
    budget = budget if seconds is None else seconds
    problem = make_poisson(dim=5, hidden=hidden, n_interior=n_in, n_boundary=n_bd, seed=seed)
    runs = []
    for name, opt in _optimisers(config).items():
        params, hist = fit(
            opt, problem.model, problem.sample, max_steps, progress=progress,
            metric=problem.l2_error, metric_every=5 if name != "Adam" else 50, time_budget=budget,
        )
        runs.append(Run(name, len(hist["step"]), hist["elapsed"][-1], hist["metric"][-1], hist))
    return runs, problem


def _plot(runs: list[Run], path: str, title: str) -> bool:
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        ax.semilogy(run.history["metric_elapsed"], run.history["metric"], label=run.name)
    ax.set_xlabel("wall time [s]")
    ax.set_ylabel("relative L2 error")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m natgrad.demo",
        description="Train the 5-D Poisson PINN of arXiv 2505.12149 with ENGD-W, SPRING and Adam.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small network, about a minute on two cores")
    size.add_argument("--full", action="store_true", help="the paper's configuration (N_Ω=3000, N_∂Ω=500)")
    parser.add_argument("--seconds", type=float, default=None, help="wall-clock budget per method (> 0)")
    parser.add_argument("--plot", default="natgrad-demo.png",
                        help="where to save the convergence plot (its folder must exist and be writable)")
    parser.add_argument("--no-plot", action="store_true", help="do not save a plot")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--seed", type=int, default=0, help="random seed (≥ 0)")
    return parser


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
        ``quick``, ``full``, ``seconds``, ``plot``, ``no_plot``,
        ``no_progress``, ``seed``.

    Raises
    ------
    SystemExit
        With status 2 and a message naming the flag, for a budget that is not
        a finite positive number, a negative seed, or a ``--plot`` path that
        cannot be written (a missing or read-only folder, a folder given as
        the file): found at the start, not after minutes of training.

    Examples
    --------
    >>> args = parse_args(["--quick", "--seconds", "5", "--no-plot"])
    >>> args.quick, args.seconds, args.no_plot
    (True, 5.0, True)
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        parser.error(f"--seconds must be a finite positive number of seconds, got {args.seconds!r}")
    if args.seed < 0:
        parser.error(f"--seed must be ≥ 0, got {args.seed}")
    if not args.no_plot:
        problem = _plot_problem(args.plot)
        if problem is not None:
            parser.error(problem + " (or pass --no-plot)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("torch") is None:
        _parser().exit(2, "the demo needs PyTorch: pip install -e '.[demo]'\n")

    config = "quick" if args.quick else "full" if args.full else "default"
    hidden, n_in, n_bd, budget = CONFIGS[config]
    seconds = budget if args.seconds is None else args.seconds
    arch = "→".join(str(w) for w in (5, *hidden, 1))
    print(f"natgrad demo ({config}): 5-D Poisson PINN, MLP {arch}, {n_in} interior + {n_bd} boundary "
          f"points per step, PyTorch float64 on the CPU, {seconds:g} s per method\n")
    runs, problem = train(config, seconds=seconds, progress=not args.no_progress, seed=args.seed)

    header = f"{'method':<8} {'steps':>7} {'time [s]':>9} {'s/step':>8} {'rel. L2 error':>14}"
    print(header)
    print("-" * len(header))
    for run in runs:
        print(f"{run.name:<8} {run.steps:>7} {run.seconds:>9.1f} {run.seconds / max(run.steps, 1):>8.3f} {run.l2:>14.3e}")
    for run in runs:  # a method that stopped before its budget says why
        if run.history.get("stopped") not in (None, "steps", "time_budget"):
            print(f"{run.name} stopped early: {run.history['reason']}")
    best = min(runs, key=lambda r: r.l2)
    print(f"\nbest method: {best.name} (P = {problem.n_params} parameters)")
    print(f"final relative L2 error: {best.l2:.3e}")
    if not args.no_plot and _plot(runs, args.plot, f"5-D Poisson PINN ({config})"):
        print(f"convergence plot saved to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
