"""Shared helpers for the benchmark scripts: timing, machine description, tables.

Benchmarks print a markdown table (natgrad against a peer on the same problem,
in the same run) and write it to ``benchmarks/results/<name>.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(description: str) -> argparse.Namespace:
    """The common command line: ``--quick`` for a short smoke run."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small problems, few repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats (median is reported)")
    return parser.parse_args()


def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``repeats`` runs (after ``warmup`` runs),
    and the value of the last call."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def interleaved(fns: list[Callable[[], Any]], repeats: int = 5, warmup: int = 1,
                with_values: bool = False, pause: float = 0.0,
                settle: Callable[[], Any] | None = None) -> Any:
    """Median wall time of each function, the runs interleaved (A B A B …) so
    that drift in the machine's speed (other tenants, memory bandwidth, clock)
    hits every contender alike; with ``with_values`` also each one's last value.

    ``pause`` seconds of idle time before each timed call (not timed) let the
    previous call's thread pool go to sleep: OpenBLAS workers keep spinning
    for a while after a call and would otherwise slow a contender that runs
    its own threads (numba) right after a BLAS call.  ``settle``, if given,
    runs (untimed) before each timed call instead: busy work such as
    :func:`sweep_memory`, which does the same without leaving the machine
    idle (an idle virtual machine wakes up slowly: several ms measured)."""
    values: list[Any] = [None] * len(fns)
    for i, fn in enumerate(fns):
        for _ in range(warmup):
            values[i] = fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if settle is not None:
                settle()
            elif pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            values[i] = fn()
            times[i].append(time.perf_counter() - t0)
    medians = [statistics.median(t) for t in times]
    return (medians, values) if with_values else medians


def sweep_memory(seconds: float = 0.3, mib: int = 512) -> None:
    """Read a ``mib``-MiB buffer on one thread for at least ``seconds``:
    evicts earlier data from every cache level and lets other thread pools
    time out, while the machine stays busy."""
    global _SWEEP
    if _SWEEP is None or _SWEEP.nbytes != mib << 20:
        import numpy

        _SWEEP = numpy.ones(mib << 17)
    end = time.perf_counter() + seconds
    while True:
        float(_SWEEP.sum())
        if time.perf_counter() >= end:
            return


_SWEEP: Any = None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> str:
    import importlib.metadata as md

    parts = [f"python {platform.python_version()}"]
    # CuPy's wheels are named by CUDA major version (cupy-cuda13x on the H200 machines)
    for pkg in ("natgrad", "numpy", "scipy", "array-api-compat", "torch", "jax",
                "cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x", "cupy"):
        try:
            parts.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(parts)


def _blas() -> str:
    try:
        import numpy  # noqa: F401 - load the BLAS libraries the benchmarks use,
        import scipy.linalg  # noqa: F401 - so that a process that has not yet sees them
        from threadpoolctl import threadpool_info

        infos = [f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads, {i.get('architecture')})"
                 for i in threadpool_info() if i.get("user_api") == "blas"]
        return "; ".join(infos) or "unknown"
    except Exception:
        return "unknown (threadpoolctl not installed)"


def machine_info() -> str:
    """A markdown paragraph describing where the figures were measured."""
    env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    return (
        f"- date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}\n"
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores\n"
        f"- BLAS: {_blas()}\n"
        f"- environment: {env or 'no OPENBLAS_* variables'}\n"
        f"- versions: {_versions()}\n"
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, title: str, body: str, quick: bool = False) -> Path:
    """Print ``body`` and write it with the machine description to
    ``benchmarks/results/<name>.md`` (``<name>-quick.md`` for quick runs)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (f"{name}-quick.md" if quick else f"{name}.md")
    text = f"# {title}\n\n{body}\n\n## Machine\n\n{machine_info()}"
    path.write_text(text)
    print(text)
    print(f"written to {path}")
    return path


def save_figure(fig: Any, path: Path, dpi: int = 100) -> None:
    """Lay out, write ``fig`` to ``path`` and close it (a script's figures do not pile up)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def tanh_mlp(sizes: Sequence[int]) -> Any:
    """``nn.Sequential`` of float64 ``nn.Linear`` layers ``sizes[0] → … → sizes[-1]``
    with tanh between them (PyTorch's default initialisation, from its global
    generator): the network of :func:`natgrad.examples.poisson.make_poisson`."""
    import torch

    layers: list[Any] = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1], dtype=torch.float64))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)
