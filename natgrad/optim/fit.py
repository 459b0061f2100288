"""A small training loop that records a history, writes checkpoints and
resumes from them, with an optional progress bar."""

from __future__ import annotations

import importlib.util
import math
import os
import time
from numbers import Real
from typing import Any, Callable, Iterable

from .. import backend, validation
from ..adapters.base import untracked
from ..backend import io

__all__ = ["fit", "History"]

#: the per-step lists of a History (one entry per step)
STEP_KEYS = ("step", "loss", "lr", "step_time", "elapsed")
#: the metric lists (one entry per evaluation)
METRIC_KEYS = ("metric_step", "metric", "metric_elapsed")
#: what the metadata of a fit checkpoint says it is
CHECKPOINT_FORMAT = "natgrad.optim.fit checkpoint"
CHECKPOINT_VERSION = 1
#: why ``fit`` stopped (``history["stopped"]``)
STOP_REASONS = ("steps", "callback", "time_budget", "interrupted", "nonfinite", "diverged", "rejected")
#: default of ``fit(divergence=...)``: stop when the loss exceeds this multiple of its start
DIVERGENCE = 1e6
#: default of ``fit(max_rejections=...)``: stop after this many consecutive steps not taken
MAX_REJECTIONS = 25


class History(dict):
    """Per-step records: ``history["step"]``, ``["loss"]``, ``["lr"]``,
    ``["step_time"]``, ``["elapsed"]`` (cumulative seconds) and
    ``["metric"]`` (when a metric is given), each a list with one entry per
    step, ``history["interrupted"]`` (whether Ctrl-C stopped the run),
    ``history["stopped"]`` (why the run ended: one of :data:`STOP_REASONS`)
    and ``history["reason"]`` (the same for people, a sentence).

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
    A plain ``dict`` of lists (and the bool ``"interrupted"`` and the strings
    ``"stopped"`` and ``"reason"``), so it
    pickles, serialises to JSON and turns into a table
    (``pandas.DataFrame`` of the per-step keys) without natgrad.  The
    per-step lists ``step``, ``loss``, ``lr``, ``step_time`` and ``elapsed``
    have one entry per step taken (a resumed run's history holds the steps
    of the runs before it too); the metric
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
        """The last entry of the list ``history[key]``, or None if ``key`` is absent or empty."""
        value = self.get(key)
        return value[-1] if isinstance(value, list) and value else None


def _batch_source(batches: Any) -> Callable[[int], Any]:
    if callable(batches):
        return batches
    if isinstance(batches, Iterable) and not isinstance(batches, (tuple, list, dict)) and not backend.is_array(batches):
        iterator = iter(batches)
        return lambda step: next(iterator)
    return lambda step: batches


def _number(value: Any) -> Any:
    """A value of ``info`` as a JSON number (a 0-d array is read to the host)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Real):
        return float(value)
    if backend.is_array(value):
        return backend.to_float(value)
    return value


class _Checkpoint:
    """Where and how often ``fit`` saves, and the file format of what it saves."""

    def __init__(self, path: Any, every: int, optimizer: Any) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a file path (str or os.PathLike), got {type(path).__name__}")
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"checkpoint: the folder {folder!r} does not exist")
        if os.path.isdir(self.path):
            raise IsADirectoryError(f"checkpoint must name a file, {self.path!r} is a folder")
        for method in ("state_dict", "load_state_dict"):
            if not callable(getattr(optimizer, method, None)):
                raise TypeError(
                    f"checkpoint needs an optimizer with {method}(); {type(optimizer).__name__} has none"
                )
        self.every = every
        self.optimizer = optimizer
        self.written: int | None = None  # the step of the file on disk, when this run wrote it

    def save(self, params: Any, history: History, step: int) -> None:
        skeleton, arrays = io.split_arrays(self.optimizer.state_dict(), "state")
        metadata = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": step,
            "optimizer": type(self.optimizer).__name__,
            "state": skeleton,
            "history": dict(history),
        }
        io.save_checkpoint(self.path, {"params": params, **arrays}, metadata)
        self.written = step

    def load(self, like: Any) -> tuple[Any, History, int]:
        """Params, history and step from the file; the optimiser's state is loaded."""
        arrays, meta = io.load_checkpoint(self.path, like=like)
        where = f"checkpoint {self.path!r}"
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
            raise io.CheckpointError(f"{where} is not a fit checkpoint of version {CHECKPOINT_VERSION}")
        params = arrays.get("params")
        if params is None or tuple(params.shape) != tuple(like.shape) or params.dtype != like.dtype:
            got = None if params is None else (tuple(params.shape), params.dtype)
            raise ValueError(
                f"{where} holds params {got}, but the model's are {(tuple(like.shape), like.dtype)}: "
                "another model's checkpoint"
            )
        history = History(meta["history"])
        step = meta["step"]
        if not isinstance(step, int) or len(history.get("step", [])) != step:
            raise io.CheckpointError(f"{where}: its step {step!r} does not match its history")
        try:
            self.optimizer.load_state_dict(io.join_arrays(meta["state"], arrays))
        except (ValueError, TypeError) as err:
            raise type(err)(f"{where} does not fit this optimizer: {err}") from err
        self.written = step
        return params, history, step


class _Run:
    """What ``fit`` has done so far: params, history, steps and time.

    ``params``, ``done`` and the history lists change together at the end of
    a step (:meth:`commit`); :meth:`settle` cuts anything a Ctrl-C left
    half-recorded, so the three always describe the same finished steps.
    """

    def __init__(self, params: Any, history: History, done: int, metric: Callable[[Any], float] | None) -> None:
        self.params, self.history, self.done, self.metric = params, history, done, metric
        self.elapsed = history.last("elapsed") or 0.0
        if metric is not None:
            for key in METRIC_KEYS:
                history.setdefault(key, [])

    def commit(self, step: int, params: Any, info: dict[str, Any], seconds: float) -> None:
        self.elapsed += seconds
        row = (step, _number(info.get("loss")), _number(info.get("lr")), seconds, self.elapsed)
        for key, value in zip(STEP_KEYS, row):
            self.history[key].append(value)
        self.params, self.done = params, step

    def record_metric(self, step: int) -> None:
        value = backend.to_float(self.metric(self.params))
        for key, v in zip(METRIC_KEYS, (step, value, self.elapsed)):
            self.history[key].append(v)

    def settle(self) -> None:
        """Cut the history to the committed steps (after a Ctrl-C anywhere)."""
        for key in STEP_KEYS:
            del self.history[key][self.done:]
        if all(key in self.history for key in METRIC_KEYS):
            n = min(len(self.history[key]) for key in METRIC_KEYS)
            for key in METRIC_KEYS:
                del self.history[key][n:]


def _progress_bar(progress: bool, steps: int, start: int, name: str) -> Any:
    """A tqdm bar over the run's true number of steps (None without tqdm).

    ``total`` is ``steps`` and ``initial`` the resumed run's finished steps, so
    tqdm's own rate gives the remaining time of this run: ``(steps − done)``
    times the seconds per step measured so far.
    """
    if not progress or importlib.util.find_spec("tqdm") is None:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, initial=start, desc=name, leave=False)


def fit(
    optimizer: Any,
    model: Any,
    batches: Any,
    steps: int,
    *,
    callback: Callable[[int, Any, dict[str, Any]], Any] | None = None,
    progress: bool = True,
    params: Any = None,
    metric: Callable[[Any], float] | None = None,
    metric_every: int = 1,
    time_budget: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 10,
    resume: bool = False,
    divergence: float | None = DIVERGENCE,
    max_rejections: int | None = MAX_REJECTIONS,
    desc: str | None = None,
) -> tuple[Any, History]:
    """Run optimiser steps up to step ``steps``, record what happened, save and resume.

    Parameters
    ----------
    optimizer : natgrad optimiser
        Anything with ``step(params, model, batch) -> (params, info)``; with
        ``checkpoint`` also ``state_dict()`` and ``load_state_dict()``.
    model : adapter model
    batches : batch, callable or iterator
        A fixed batch (used every step), a callable ``batches(step) -> batch``
        of the step number 1, 2, … (e.g. resampling collocation points; the
        way to make a resumed run see the same batches) or an iterator of
        batches.
    steps : int
        The step to stop at, counted over the whole run: a resumed run
        continues from the checkpoint's step up to ``steps``.
    callback : callable, optional
        ``callback(step, params, info)`` after every step; returning ``True``
        stops the loop.
    progress : bool, default True
        Show a tqdm progress bar when tqdm is installed: its total is
        ``steps`` (a resumed run starts it at the checkpoint's step), so its
        remaining time is that of this run.
    params : array, optional
        Starting parameters (``model.params`` by default).  When resuming
        from a checkpoint its parameters are used instead.
    metric : callable, optional
        ``metric(params) -> float`` (e.g. a relative L2 error), recorded every
        ``metric_every`` steps and after the last (not counted in step times).
    metric_every : int, default 1
        Steps between metric evaluations; the metric is also recorded at
        step 0 (the starting parameters, not when resuming) and at the last
        step.
    time_budget : float, optional
        Stop after the first step at which the optimiser time of the whole
        run (``history["elapsed"]``, resumed runs included) reaches this many
        seconds.
    checkpoint : str or path-like, optional
        A file to save the run to (``.npz`` by convention; its folder must
        exist): the parameters, the optimiser's :meth:`state_dict`, the step
        and the history.
    checkpoint_every : int, default 10
        Save every this many steps (step numbers divisible by it) and
        whenever ``fit`` returns: at the end, on a stop by ``callback`` or
        ``time_budget``, and after Ctrl-C.
    resume : bool, default False
        Continue from ``checkpoint`` when that file exists: parameters,
        optimiser state, step count and history come from it and the steps
        are numbered on.  When the file does not exist the run starts afresh
        (so one command line serves for the first start and every restart).
    divergence : float or None, default 1e6
        Stop when a step reports a loss above ``divergence`` times the loss
        of the run's first step (a run that diverges); None never stops for
        this.  Must be greater than 1.
    max_rejections : int or None, default 25
        Stop after this many consecutive steps that were not taken
        (``info["step_taken"] is False``: a non-finite model output, a line
        search without decrease, ...), instead of repeating a step that
        cannot be taken; None never stops for this.
    desc : str, optional
        The progress bar's label, e.g. the method's name in a comparison
        (default: the optimiser's class name).

    Returns
    -------
    params : array
        The parameters after the last finished step.
    history : History
        Lists ``step``, ``loss``, ``lr``, ``step_time``, ``elapsed`` (a resumed
        run's joined to the saved ones), with a metric
        ``metric_step``/``metric``/``metric_elapsed``, ``interrupted``:
        True when Ctrl-C stopped the run, ``stopped`` (why the run ended:
        ``"steps"``, ``"callback"``, ``"time_budget"``, ``"interrupted"``,
        ``"nonfinite"``, ``"diverged"`` or ``"rejected"``) and ``reason``
        (a sentence saying why, with the step).

    Raises
    ------
    ValueError
        ``steps``, ``metric_every``, ``checkpoint_every`` or
        ``max_rejections`` below 1, ``time_budget`` not positive,
        ``divergence`` not above 1, ``resume=True`` without
        ``checkpoint``, a checkpoint of another model (parameters of another
        shape or dtype) or another optimiser (the error of
        ``load_state_dict``, naming the entry).
    TypeError
        ``steps``, ``metric_every``, ``checkpoint_every`` or
        ``max_rejections`` not an int, ``divergence`` or ``time_budget``
        not a real number, ``callback`` or ``metric`` not callable,
        ``desc`` not a string,
        ``checkpoint`` not a path, ``params`` not an array,
        an optimiser without ``state_dict``/``load_state_dict`` when
        ``checkpoint`` is given.
    IsADirectoryError
        ``checkpoint`` names a folder.
    FileNotFoundError
        The folder of ``checkpoint`` does not exist (checked before the first
        step).
    natgrad.backend.TracedArrayError
        ``params`` is a JAX tracer (``fit`` called inside ``jax.jit``).
    natgrad.backend.io.CheckpointError
        ``resume=True`` and the file is not a checkpoint written by ``fit``.
    StopIteration
        ``batches`` is an iterator that runs out before the loop ends.

    Notes
    -----
    Only ``optimizer.step`` is timed (``time.perf_counter``): drawing the
    batch, the metric, the callback, checkpoints and the progress bar are
    excluded from ``step_time``, ``elapsed`` and ``time_budget``.  On
    asynchronous devices (CUDA) the time includes the device work because
    natgrad's optimisers return host floats in ``info``.  ``batches`` is read
    as follows: a callable is called with the step number; an iterator or
    generator is advanced once per step (a resumed run does not skip ahead
    in it); anything else — an array, or a tuple, list or dict such as
    ``(x_interior, x_boundary)`` — is the batch of every step.

    **Checkpoints** are one NumPy ``.npz`` archive with the arrays and a JSON
    document (:mod:`natgrad.backend.io`): nothing is pickled, and reading one
    never runs code.  Each is written to a temporary file in the same folder
    and renamed over the old one, so the file on disk is always a complete
    checkpoint.  A resumed run equals the uninterrupted one bit for bit when
    the batches are a function of the step number and the arrays live on the
    CPU: the parameters and the optimiser state are saved exactly, and a
    natgrad step depends on nothing else.

    **Stopping on failure.**  The loop ends early, with the reason in
    ``history["stopped"]``/``history["reason"]``, when a step reports a loss
    that is NaN/Inf (``"nonfinite"``: the optimisers reject such a step, so
    the parameters are those before it), a loss above ``divergence`` times
    the first step's loss (``"diverged"``; 1e6 by default: far beyond the
    noise of mini-batch losses, and early enough that nothing overflows), or
    ``max_rejections`` steps in a row were not taken (``"rejected"``; with a
    fixed batch an optimiser that cannot take a step repeats the same
    computation).  The loss compared is ``info["loss"]``, the loss at the
    parameters before each step.

    **Tracked parameters.**  ``params`` may be a PyTorch tensor that
    requires grad (e.g. ``parameters_to_vector(module.parameters())``): it
    is detached (:func:`natgrad.adapters.base.untracked`) and the returned
    parameters do not require grad; copy them back with
    ``vector_to_parameters`` or ``TorchModel.load_into``.

    **Ctrl-C** (``KeyboardInterrupt``) during a step stops the loop: natgrad's
    steps are atomic, so the optimiser is as it was after the last finished
    step, and ``fit`` returns the parameters and history of the finished
    steps with ``history["interrupted"] = True`` and, with ``checkpoint``,
    saves them.  Another exception goes through (the last checkpoint written
    stays valid).

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.adapters.callables import CallableModel
    >>> from natgrad.optim import GradientFlow
    >>> A = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> y = np.array([1.0, 2.0, 3.0])
    >>> model = CallableModel(residuals=lambda p, b: A @ p - y,
    ...                       loss_and_grad=lambda p, b: (0.5 * np.sum((A @ p - y) ** 2), A.T @ (A @ p - y)),
    ...                       params=np.zeros(2))
    >>> params, history = fit(GradientFlow(lr=0.1), model, None, steps=20,
    ...                       progress=False, metric=lambda p: float(np.linalg.norm(p)),
    ...                       metric_every=5)
    >>> len(history["loss"]), history["metric_step"], history["interrupted"], history["stopped"]
    (20, [0, 5, 10, 15, 20], False, 'steps')

    Saved and resumed, 10 steps then 10 more equal 20 in one go:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "run.npz")
    >>> _, h = fit(GradientFlow(lr=0.1), model, None, steps=10, progress=False, checkpoint=path)
    >>> p, h = fit(GradientFlow(lr=0.1), model, None, steps=20, progress=False,
    ...            checkpoint=path, resume=True)
    >>> h["step"][8:12], bool(np.array_equal(p, params))
    ([9, 10, 11, 12], True)
    """
    steps = validation.positive_int(steps, "steps")
    callback = validation.callable_arg(callback, "callback", optional=True)
    metric = validation.callable_arg(metric, "metric", optional=True)
    metric_every = validation.positive_int(metric_every, "metric_every")
    time_budget = validation.optional_positive(time_budget, "time_budget")
    every = validation.positive_int(checkpoint_every, "checkpoint_every")
    if divergence is not None:
        divergence = validation.positive(divergence, "divergence")
        if not divergence > 1:
            raise ValueError(f"divergence must be above 1 (a factor over the first loss), got {divergence!r}")
    max_rejections = validation.optional_positive_int(max_rejections, "max_rejections")
    if desc is not None and not isinstance(desc, str):
        raise TypeError(f"desc must be a string (the progress bar's label), got {type(desc).__name__}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint= (the file to resume from)")
    saver = None if checkpoint is None else _Checkpoint(checkpoint, every, optimizer)
    params = untracked(model.params if params is None else params)
    validation.array(params, "params")
    backend.namespace(params=params)  # a JAX tracer is refused here, naming params
    history, start = History({key: [] for key in STEP_KEYS}), 0
    if resume and os.path.exists(saver.path):
        params, history, start = saver.load(like=params)
    run = _Run(params, history, start, metric)
    if metric is not None and start == 0:
        run.record_metric(0)
    stop = _Stop(divergence, max_rejections)
    bar = _progress_bar(progress, steps, start, type(optimizer).__name__ if desc is None else desc)
    try:
        stopped, reason = _loop(run, optimizer, model, _batch_source(batches), steps, callback, metric_every,
                                time_budget, saver, bar, stop)
    finally:
        if bar is not None:
            bar.close()
    run.history["interrupted"] = stopped == "interrupted"
    run.history["stopped"], run.history["reason"] = stopped, reason
    if saver is not None and saver.written != run.done:
        saver.save(run.params, run.history, run.done)
    return run.params, run.history


class _Stop:
    """The failure rules of :func:`fit`: a non-finite loss, divergence, and a
    run of steps not taken."""

    def __init__(self, divergence: float | None, max_rejections: int | None) -> None:
        self.divergence, self.max_rejections = divergence, max_rejections
        self.rejected = 0

    def check(self, run: _Run, step: int, info: dict[str, Any]) -> tuple[str, str] | None:
        """``(stopped, reason)`` when the run must stop after ``step``, else None."""
        loss = _number(info.get("loss"))
        if isinstance(loss, float) and not math.isfinite(loss):
            return "nonfinite", (
                f"the loss is {loss} at step {step}: stopped (natgrad's optimisers do not take such a step; "
                "params are those before it)"
            )
        first = run.history["loss"][0] if run.history["loss"] else None
        if (
            self.divergence is not None and isinstance(loss, float) and isinstance(first, float)
            and math.isfinite(first) and first > 0 and loss > self.divergence * first
        ):
            return "diverged", (
                f"the loss {loss:.3e} at step {step} is more than divergence={self.divergence:g} times "
                f"the first loss {first:.3e}: stopped (the run diverges)"
            )
        self.rejected = self.rejected + 1 if info.get("step_taken") is False else 0
        if self.max_rejections is not None and self.rejected >= self.max_rejections:
            why = info.get("message", "no reason given")
            return "rejected", (
                f"{self.rejected} steps in a row were not taken (steps {step - self.rejected + 1} to {step}); "
                f"the last said: {why}"
            )
        return None


def _loop(
    run: _Run, optimizer: Any, model: Any, next_batch: Callable[[int], Any], steps: int,
    callback: Callable[..., Any] | None, metric_every: int, time_budget: float | None,
    saver: _Checkpoint | None, bar: Any, stop: _Stop,
) -> tuple[str, str]:
    """The steps of :func:`fit`; returns why they stopped (code, sentence)."""
    snapshot = getattr(optimizer, "state_dict", None)
    restore = getattr(optimizer, "load_state_dict", None)
    budget = f"the time budget of {time_budget:g} s is spent" if time_budget is not None else ""
    if time_budget is not None and run.elapsed >= time_budget:
        return "time_budget", f"{budget} before step {run.done + 1}"
    if run.done >= steps:
        return "steps", f"step {steps} was reached"
    for step in range(run.done + 1, steps + 1):
        # The state before the step (references, no copies): a Ctrl-C that lands
        # after step() returned but before the step is recorded is rolled back.
        before = snapshot() if callable(snapshot) and callable(restore) else None
        try:
            batch = next_batch(step)
            t0 = time.perf_counter()
            new_params, info = optimizer.step(run.params, model, batch)
            seconds = time.perf_counter() - t0
            run.commit(step, new_params, info, seconds)
            failed = stop.check(run, step, info)
            out_of_time = time_budget is not None and run.elapsed >= time_budget
            last = step == steps or out_of_time or failed is not None
            if run.metric is not None and (step % metric_every == 0 or last):
                run.record_metric(step)
        except KeyboardInterrupt:
            if run.done < step and before is not None:
                restore(before)
            run.settle()
            return "interrupted", f"Ctrl-C (KeyboardInterrupt) during step {run.done + 1}"
        try:
            if saver is not None and step % saver.every == 0:
                saver.save(run.params, run.history, step)
            if bar is not None:
                bar.update(1)
                loss = info.get("loss")
                if isinstance(loss, Real):
                    bar.set_postfix(loss=f"{loss:.3e}")
            if callback is not None and callback(step, run.params, info):
                return "callback", f"the callback returned True at step {step}"
        except KeyboardInterrupt:
            run.settle()
            return "interrupted", f"Ctrl-C (KeyboardInterrupt) after step {run.done}"
        if failed is not None:
            return failed
        if out_of_time:
            return "time_budget", f"{budget} at step {step}"
        if last:
            break
    return "steps", f"step {steps} was reached"
