"""A small training loop that records a history, with an optional progress bar."""

from __future__ import annotations

import importlib.util
import time
from typing import Any, Callable, Iterable

from .. import backend

__all__ = ["fit", "History"]


class History(dict):
    """Per-step records: ``history["loss"]``, ``["lr"]``, ``["step_time"]``,
    ``["elapsed"]`` (cumulative seconds) and ``["metric"]`` (when a metric is
    given), each a list with one entry per step."""

    def last(self, key: str) -> Any:
        return self[key][-1] if self.get(key) else None


def _batch_source(batches: Any) -> Callable[[int], Any]:
    if callable(batches):
        return batches
    if isinstance(batches, Iterable) and not isinstance(batches, (tuple, list, dict)) and not backend.is_array(batches):
        iterator = iter(batches)
        return lambda step: next(iterator)
    return lambda step: batches


def fit(
    optimizer: Any,
    model: Any,
    batches: Any,
    steps: int,
    callback: Callable[[int, Any, dict[str, Any]], Any] | None = None,
    progress: bool = True,
    *,
    params: Any = None,
    metric: Callable[[Any], float] | None = None,
    metric_every: int = 1,
    time_budget: float | None = None,
) -> tuple[Any, History]:
    """Run ``steps`` optimiser steps and record what happened.

    Parameters
    ----------
    optimizer : natgrad optimiser
        Anything with ``step(params, model, batch) -> (params, info)``.
    model : adapter model
    batches : batch, callable or iterator
        A fixed batch (used every step), a callable ``batches(step) -> batch``
        (e.g. resampling collocation points) or an iterator of batches.
    steps : int
        Maximum number of steps.
    callback : callable, optional
        ``callback(step, params, info)`` after every step; returning ``True``
        stops the loop.
    progress : bool
        Show a tqdm progress bar when tqdm is installed.
    params : array, optional
        Starting parameters (``model.params`` by default).
    metric : callable, optional
        ``metric(params) -> float`` (e.g. a relative L2 error), recorded every
        ``metric_every`` steps and after the last (not counted in step times).
    time_budget : float, optional
        Stop after this many seconds of optimiser time.

    Returns
    -------
    params : array
        The final parameters.
    history : History
        Lists ``step``, ``loss``, ``lr``, ``step_time``, ``elapsed`` and, with
        a metric, ``metric_step``/``metric``/``metric_elapsed``.

    Raises
    ------
    ValueError
        ``steps < 1``.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    next_batch = _batch_source(batches)
    params = model.params if params is None else params
    history = History(step=[], loss=[], lr=[], step_time=[], elapsed=[])
    if metric is not None:
        history.update(metric_step=[], metric=[], metric_elapsed=[])
    bar = None
    if progress and importlib.util.find_spec("tqdm") is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=type(optimizer).__name__, leave=False)
    elapsed = 0.0

    def record_metric(step: int) -> None:
        history["metric_step"].append(step)
        history["metric"].append(float(metric(params)))
        history["metric_elapsed"].append(elapsed)

    if metric is not None:
        record_metric(0)
    try:
        for step in range(1, steps + 1):
            batch = next_batch(step)
            t0 = time.perf_counter()
            params, info = optimizer.step(params, model, batch)
            dt = time.perf_counter() - t0
            elapsed += dt
            history["step"].append(step)
            history["loss"].append(info.get("loss"))
            history["lr"].append(info.get("lr"))
            history["step_time"].append(dt)
            history["elapsed"].append(elapsed)
            last = step == steps or (time_budget is not None and elapsed >= time_budget)
            if metric is not None and (step % metric_every == 0 or last):
                record_metric(step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{info.get('loss', float('nan')):.3e}")
            if callback is not None and callback(step, params, info):
                break
            if last:
                break
    finally:
        if bar is not None:
            bar.close()
    return params, history
