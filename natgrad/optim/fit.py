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
    given), each a list with one entry per step.

    Parameters
    ----------
    *args
        As for ``dict`` (a mapping or an iterable of key–value pairs).
    **kwargs
        As for ``dict``: ``fit`` builds it as
        ``History(step=[], loss=[], lr=[], step_time=[], elapsed=[])``.

    Raises
    ------
    KeyError
        ``history[key]`` for a key that was not recorded, e.g. ``"metric"``
        when ``fit`` had no ``metric``; ``history.last(key)`` returns
        None instead.

    Notes
    -----
    A plain ``dict`` of lists, so it pickles, serialises to JSON and turns
    into a table (``pandas.DataFrame(history)`` for the per-step keys)
    without natgrad.  The per-step lists ``step``, ``loss``, ``lr``,
    ``step_time`` and ``elapsed`` have one entry per step taken; the metric
    lists ``metric_step``, ``metric`` and ``metric_elapsed`` have one entry
    per evaluation (step 0, every ``metric_every`` steps and the last step),
    so they are usually shorter.  ``loss`` and ``lr`` are what the optimiser
    reported in ``info`` (None where it reported nothing).

    Examples
    --------
    >>> h = History(step=[1, 2], loss=[4.0, 1.0])
    >>> h.last("loss"), h.last("metric")
    (1.0, None)
    >>> "metric" in h
    False
    """

    def last(self, key: str) -> Any:
        """The last entry of ``history[key]``, or None if ``key`` is absent or empty."""
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
    metric_every : int
        Steps between metric evaluations (default 1); the metric is also
        recorded at step 0 (the starting parameters) and at the last step.
    time_budget : float, optional
        Stop after the first step at which the optimiser time reaches this
        many seconds.

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
        ``steps`` not a positive int.
    StopIteration
        ``batches`` is an iterator that runs out before the loop ends.

    Notes
    -----
    Only ``optimizer.step`` is timed (``time.perf_counter``): drawing the
    batch, the metric, the callback and the progress bar are excluded from
    ``step_time``, ``elapsed`` and ``time_budget``.  On asynchronous devices
    (CUDA) the time includes the device work because natgrad's optimisers
    return host floats in ``info`` (``backend.to_float`` of the loss), which
    waits for the step to finish.  ``batches`` is read as follows: a callable
    is called with the step number (1, 2, …); an iterator or generator is
    advanced once per step; anything else — an array, or a tuple, list or
    dict such as ``(x_interior, x_boundary)`` — is the batch of every step.
    The loop stops after ``steps`` steps, when the time budget is used up, or
    when ``callback`` returns ``True``, whichever comes first.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.adapters.callables import CallableModel
    >>> from natgrad.optim import GradientFlow
    >>> A = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> y = np.array([1.0, 2.0, 3.0])
    >>> model = CallableModel(residuals=lambda p, b: A @ p - y,
    ...                       jacobian=lambda p, b: A, params=np.zeros(2))
    >>> params, history = fit(GradientFlow(lr=0.1), model, None, steps=20,
    ...                       progress=False, metric=lambda p: float(np.linalg.norm(p)),
    ...                       metric_every=5)
    >>> len(history["loss"]), history["metric_step"]
    (20, [0, 5, 10, 15, 20])
    >>> bool(history["loss"][-1] < history["loss"][0])
    True
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
