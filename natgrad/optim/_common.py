"""Pieces shared by the optimisers: the model protocol, the loss conventions,
the grid line search, the step-or-reject rule and the state as data."""

from __future__ import annotations

import functools
import math
import re
import threading
import time
import warnings
from numbers import Integral, Real
from typing import Any, Callable, ClassVar, Mapping, Sequence

from .. import backend, validation
from ..adapters.base import untracked

LOSS_KINDS = ("squared", "mean")

#: the step sizes 2⁰, 2⁻¹, …, 2⁻³⁰ of the ENGD/SPRING grid line search
LINE_SEARCH_GRID: tuple[float, ...] = tuple(2.0**-k for k in range(31))


def require(model: Any, methods: Sequence[str], who: str) -> None:
    """``model`` must provide the named methods (the adapter protocol)."""
    missing = [m for m in methods if not callable(getattr(model, m, None))]
    if missing:
        raise TypeError(
            f"model must provide {', '.join(m + '()' for m in missing)} for {who}; "
            f"got {type(model).__name__} (see natgrad.adapters)"
        )


def loss_kind(model: Any) -> str:
    """The model's loss convention: "squared" (½‖r‖²) or "mean" (mean of ℓᵢ)."""
    kind = getattr(model, "loss", "squared")
    if kind not in LOSS_KINDS:
        raise ValueError(f"model.loss must be 'squared' or 'mean', got {kind!r}")
    return kind


def require_kind(model: Any, kind: str, who: str) -> None:
    actual = loss_kind(model)
    if actual != kind:
        hint = {
            "squared": "outputs are residuals (loss='squared')",
            "mean": "outputs are per-sample losses (loss='mean')",
        }[kind]
        raise ValueError(f"{who} needs a model whose {hint}; this model has loss={actual!r}")


def loss_of(xp: Any, outputs: Any, kind: str) -> Any:
    """The scalar loss from the model's output vector (0-d array)."""
    if kind == "squared":
        return 0.5 * backend.vecdot(xp, outputs, outputs)
    return xp.mean(outputs)


def residuals_and_jacobian(model: Any, params: Any, batch: Any) -> tuple[Any, Any]:
    """Residuals and Jacobian in one call when the adapter can share the work."""
    both = getattr(model, "residuals_and_jacobian", None)
    if callable(both):
        return both(params, batch)
    return model.residuals(params, batch), model.jacobian(params, batch)


#: the grid is evaluated this many step sizes at a time (a fixed length: the
#: JAX adapter compiles its vectorised ``losses_along`` once per length)
LINE_SEARCH_CHUNK = 4
#: the decrease ``loss0 − L(η)`` is in its linear regime when halving ``η``
#: halves it, to within this band (exactly 1/2 where the first-order term
#: dominates; a ratio far from 1/2 is curvature or a far-off feature of the
#: loss, such as the tail of a dip, which says nothing about smaller steps)
_LINEAR_BAND = (0.4, 0.6)


def _in_linear_regime(loss0: float, values: Sequence[float], best: int) -> bool:
    """Whether the last three losses, at or past the best, decrease ``loss0``
    by amounts that halve with ``η``, twice: the rest of the grid then
    decreases it less and less (see :func:`grid_line_search`)."""
    if len(values) < best + 3:
        return False
    d0, d1, d2 = (loss0 - v for v in values[-3:])
    lo, hi = _LINEAR_BAND
    return d2 > 0.0 and lo * d1 <= d2 <= hi * d1 and lo * d0 <= d1 <= hi * d0


def grid_line_search(
    model: Any,
    params: Any,
    direction: Any,
    batch: Any,
    loss0: float,
    kind: str,
    grid: Sequence[float] = LINE_SEARCH_GRID,
    outputs: "Outputs | None" = None,
) -> tuple[float | None, float | None, int]:
    """Best step size on a grid for ``params − η·direction``.

    The step sizes of ``grid`` (descending, halving: ``2⁰ … 2⁻³⁰``) are tried
    on the batch loss and the best kept (the ENGD line search of Müller &
    Zeinhofer 2023), from the largest down, :data:`LINE_SEARCH_CHUNK` at a
    time.  The search stops early once the grid's tail cannot win: when the
    last three losses lie at or past the best and each halving of ``η``
    halves the decrease ``loss0 − L(η)`` (a ratio within 0.4-0.6, twice).
    By Taylor, ``loss0 − L(η) = η gᵀd − η² dᵀHd/2 + O(η³)``: the ratio is
    ``½`` once the first-order term dominates, and from there every smaller
    ``η`` decreases the loss less, so the best of the whole grid has been
    seen.  A ratio outside the band (curvature, or the tail of a dip of the
    loss at a larger ``η``) does not stop the search.
    On the 5-D Poisson PINN this skips about half of the 31 evaluations
    and picks the same step size.  When the adapter offers
    ``model.losses_along(params, direction, etas, batch)`` each chunk is
    evaluated in one call.

    Returns
    -------
    eta : float or None
        The best step size, or None when no step size decreases the loss.
    loss : float or None
        The loss at the chosen step (``loss0`` when no step size decreases
        it, None when every loss evaluated is NaN/Inf).
    evaluations : int
        Loss evaluations made.
    """
    xp = backend.namespace(params=params, direction=direction)
    along = getattr(model, "losses_along", None)
    grid = list(grid)

    def losses(etas: list[float]) -> list[float]:
        if not callable(along):
            out = []
            for eta in etas:
                r = model.residuals(params - eta * direction, batch)
                if outputs is not None:
                    outputs.residuals(r, what="the model's residuals along the direction")
                    outputs.seen.pop()  # not a suspect: the point is off the current params
                out.append(backend.to_float(loss_of(xp, r, kind)))
            return out
        # a short last chunk is padded to the chunk's length (one compiled
        # shape in the JAX adapter); the padding's losses are dropped
        padded = etas + [etas[-1]] * (LINE_SEARCH_CHUNK - len(etas))
        values = along(params, direction, padded, batch)
        if not isinstance(values, (list, tuple)) or len(values) != len(padded):
            got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
            where = "model.losses_along" if outputs is None else outputs.where("losses_along")
            raise validation.CallableOutputError(
                f"{where} returned {got} values for {len(padded)} step sizes",
                "model.losses_along", 0 if outputs is None else outputs.step,
            )
        return [backend.to_float(v) if backend.is_array(v) else float(v) for v in values[:len(etas)]]

    values: list[float] = []
    best = -1  # index of the smallest finite loss so far
    chunk = LINE_SEARCH_CHUNK if callable(along) else 1
    while len(values) < len(grid):
        for v in losses(grid[len(values):len(values) + chunk]):
            values.append(v)
            if math.isfinite(v) and (best < 0 or v < values[best]):
                best = len(values) - 1
        if best >= 0 and values[best] < loss0 and _in_linear_regime(loss0, values, best):
            break
    if best < 0:
        return None, None, len(values)
    if not values[best] < loss0:
        return None, loss0, len(values)
    return float(grid[best]), values[best], len(values)


class Timer:
    """Wall-clock sections of one optimiser step, reported in ``info["time"]``."""

    def __init__(self) -> None:
        self.sections: dict[str, float] = {}
        self._t = time.perf_counter()
        self._start = self._t

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.sections[name] = self.sections.get(name, 0.0) + now - self._t
        self._t = now

    def total(self) -> dict[str, float]:
        out = dict(self.sections)
        out["total"] = time.perf_counter() - self._start
        return out


# ---------------------------------------------------------------------------
# the entry of a step, and what the model returns during one
# ---------------------------------------------------------------------------


def begin(params: Any) -> tuple[Any, Any]:
    """``(params, xp)`` at the start of a step: the tracked-input policy.

    A PyTorch tensor that requires grad (e.g.
    ``parameters_to_vector(module.parameters())``) is detached: the
    optimisers compute their own derivatives through the model, so the
    returned parameters never require grad and the user's module is never
    written to.  A JAX tracer (a step called inside ``jax.jit``) is refused
    with :class:`~natgrad.backend.TracedArrayError` naming ``params``.
    """
    params = untracked(params)
    xp = backend.namespace(params=params)
    if params.ndim != 1:
        raise ValueError(f"params must be a flat vector of shape (P,), got shape {tuple(params.shape)}")
    return params, xp


#: how a model method's outputs are called in messages
QUANTITIES = {
    "residuals": "residuals",
    "jacobian": "Jacobian",
    "residuals_and_jacobian": "residuals and Jacobian",
    "jvp": "Jacobian-vector products",
    "vjp": "vector-Jacobian products",
    "loss_and_grad": "gradient",
    "hvp": "Hessian-vector products",
    "losses_along": "line-search losses",
}


class Outputs:
    """Checks the arrays a model returns during one step of ``who``.

    Shape, dtype, library and device are read from metadata (no host
    synchronisation); a mismatch is the model's bug and raises, naming the
    model method and the step: :class:`~natgrad.validation.CallableOutputError`
    (a ``ValueError``) for a shape, ``TypeError`` for a type, dtype, library
    or device.  Finiteness is not checked here: the step reads it with the
    loss it syncs anyway, or finds the culprit after a failure
    (:meth:`culprit`).
    """

    def __init__(self, who: str, step: int, params: Any) -> None:
        self.who, self.step, self.params = who, step, params
        self.seen: list[tuple[str, Any]] = []  # (what, array) for culprit()
        self.n: int | None = None  # the number of residuals, once seen

    def where(self, method: str) -> str:
        return f"model.{method} at {self.who} step {self.step}"

    def array(self, x: Any, method: str, shape: tuple[int | None, ...], what: str | None = None) -> Any:
        """``x`` from ``model.method``; ``shape`` entries None accept any length."""
        p = self.params
        if not backend.is_array(x):
            raise TypeError(f"{self.where(method)} returned {type(x).__name__}, not an array")
        if type(x) is not type(p) or backend.device(x) != backend.device(p):
            try:
                backend.namespace(params=p, **{f"the output of model.{method}": x})
            except TypeError as err:
                raise TypeError(f"{self.where(method)}: {err}") from None
        got = tuple(x.shape)
        if len(got) != len(shape) or any(w is not None and g != w for g, w in zip(got, shape)):
            want = "(" + ", ".join("N" if w is None else str(w) for w in shape) + (",)" if len(shape) == 1 else ")")
            raise validation.CallableOutputError(
                f"{self.where(method)} returned shape {got}, expected {want}", f"model.{method}", self.step
            )
        if x.dtype != p.dtype:
            raise TypeError(f"{self.where(method)} returned dtype {x.dtype}, but params have dtype {p.dtype}")
        self.seen.append((what or f"the model's {QUANTITIES.get(method, method)} (model.{method})", x))
        return x

    def scalar(self, x: Any, method: str) -> Any:
        """A loss from ``model.method``: a Python number or a 0-d array."""
        if isinstance(x, Real) and not isinstance(x, bool):
            return x
        if not backend.is_array(x) or x.ndim != 0:
            got = tuple(x.shape) if backend.is_array(x) else type(x).__name__
            raise validation.CallableOutputError(
                f"{self.where(method)} returned a loss of shape {got}, expected a scalar (0-d array)",
                f"model.{method}", self.step,
            )
        return x

    def residuals(self, r: Any, method: str = "residuals", what: str = "the model's residuals") -> Any:
        """``r`` of shape ``(N,)``; the first ``N`` seen in the step is the one
        every later residual vector (the line search's) must have."""
        r = self.array(r, method, (self.n,), f"{what} (model.{method})")
        self.n = r.shape[0] if self.n is None else self.n
        return r

    def jacobian(self, J: Any, n: int, method: str = "jacobian", what: str = "the model's Jacobian") -> Any:
        """``J`` of shape ``(n, P)``, ``n`` the number of residuals the model returned."""
        try:
            return self.array(J, method, (n, self.params.shape[0]), f"{what} (model.{method})")
        except validation.CallableOutputError as err:
            if J.ndim == 2 and J.shape[0] != n and method != "residuals_and_jacobian":
                raise validation.CallableOutputError(
                    f"{err} (model.residuals returned {n} residuals; one of the two is wrong)", err.name, err.call
                ) from None
            raise

    def gradient(self, g: Any, method: str = "loss_and_grad", stage: str = "") -> Any:
        what = f"the model's gradient{stage} (model.{method})"
        return self.array(g, method, (self.params.shape[0],), what)

    def culprit(self, default: str) -> str:
        """The first model output seen that has NaN/Inf, else ``default``
        (host synchronisations, on the failure path only)."""
        for what, x in self.seen:
            if not backend.all_finite(x):
                return what
        return default


def read(xp: Any, scalars: Sequence[Any], arrays: Sequence[Any] = ()) -> tuple[list[float], list[bool]]:
    """Scalars (losses, dot products) and whether each array is finite, in
    one host synchronisation.

    ``isfinite`` raises no floating-point warning, so a gradient with Inf is
    found before any arithmetic on it (``Inf − Inf`` would warn on NumPy).
    The scalars are 0-d arrays or Python numbers; the first array (or
    scalar) gives the dtype and device.
    """
    like = next((a for a in (*arrays, *scalars) if backend.is_array(a)), None)
    if like is None:
        return [float(v) for v in scalars], []
    dtype, device = like.dtype, backend.device(like)
    parts = [xp.reshape(xp.asarray(v, dtype=dtype, device=device), (1,)) for v in scalars]
    parts += [xp.reshape(xp.astype(xp.all(xp.isfinite(a)), dtype), (1,)) for a in arrays]
    values = backend.to_list(xp.concat(parts))
    k = len(scalars)
    return [float(v) for v in values[:k]], [bool(v) for v in values[k:]]


#: ‖d‖₂ without overflow in the squares (the optimisers' step statistics)
scaled_norm = backend.scaled_norm


# ---------------------------------------------------------------------------
# a repeated warning is shown once per optimiser, not once per step
# ---------------------------------------------------------------------------

#: numbers in a warning's text (a damping, a jitter, a size, float32): two
#: warnings whose texts differ only in them are of one kind
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")

_hook_lock = threading.Lock()
_hook_users = 0
_hook_previous: Any = None
_local = threading.local()  # .stack: the recorders of the steps running in this thread


def _dispatch(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
              line: Any = None) -> None:
    """``warnings.showwarning`` while some thread is inside a step: a warning
    from this thread's innermost step is recorded for it, any other is shown
    as before."""
    stack = getattr(_local, "stack", None)
    if stack:
        stack[-1].append(warnings.WarningMessage(message, category, filename, lineno, file, line))
    else:
        _hook_previous(message, category, filename, lineno, file, line)


def _hook(on: bool) -> None:
    """Install :func:`_dispatch` for the first step running, restore the
    previous ``showwarning`` when the last one ends (counted under a lock)."""
    global _hook_users, _hook_previous
    with _hook_lock:
        if on:
            if _hook_users == 0 and warnings.showwarning is not _dispatch:
                _hook_previous = warnings.showwarning
                warnings.showwarning = _dispatch
            _hook_users += 1
        else:
            _hook_users -= 1
            if _hook_users == 0 and warnings.showwarning is _dispatch:
                warnings.showwarning = _hook_previous


def _natgrad_warning(category: type) -> bool:
    return category.__module__.split(".")[0] == "natgrad"


def warn_once_per_optimizer(step: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator of an optimiser's ``step``: natgrad's own warnings (such as
    :class:`~natgrad.linalg.FactorizationWarning`) are shown once per
    optimiser instance and kind, not once per step.

    Parameters
    ----------
    step : callable
        ``step(self, params, model, batch, ...) -> (params, info)`` of a
        :class:`Stateful` optimiser.

    Returns
    -------
    callable
        The step.  A natgrad warning raised inside it is shown the first
        time its kind (category and text up to the numbers in it) occurs on
        this optimiser, with a note saying so; later ones are not shown.
        Every natgrad warning of a step that the ``warnings`` filters let
        through, shown or not, is listed in its ``info["warnings"]``
        (``"FactorizationWarning: <text>"``; the key is present only when
        there was one; Python's default filter already drops a repeat of
        the very same text from the same place, so under it only warnings
        whose text changed reach the list).  A new optimiser or :meth:`reset`
        shows each kind again.  Other warnings (the user's model's, NumPy's)
        are shown as they came, after the step.

    Notes
    -----
    Only the display is de-duplicated: the ``warnings`` filters act where
    the warning is raised, as always, so an ``"error"`` filter still raises
    the first (and every) one from inside the step, before the step commits
    its state, and ``"ignore"`` still silences it.  The linear-algebra
    functions themselves (:func:`~natgrad.linalg.woodbury_solve`, ...) keep
    warning at every call.

    The warnings reach the step through ``warnings.showwarning``, which is
    replaced while any step runs (counted under a lock, restored when the
    last one ends) by a function that gives a warning to the innermost step
    running in the same thread (a thread-local stack) and shows any other
    as before.  Unlike ``warnings.catch_warnings``, which swaps the
    process-wide filters and handlers and may leave them wrong when two
    threads use it at once, this is safe for optimisers stepping in
    several threads.  A ``warnings.catch_warnings()`` block entered in
    another thread while a step runs (pytest's, a user's) may record that
    step's first warning in its own list instead of showing it; that is the
    known thread-unsafety of ``catch_warnings`` itself.

    Examples
    --------
    A float32 rank-one Jacobian with a damping far below float32 rounding:
    the Gram matrix's Cholesky breaks down at every step, the warning is
    shown once.

    >>> import warnings
    >>> import numpy as np
    >>> from natgrad.adapters.callables import CallableModel
    >>> from natgrad.optim import ENGD
    >>> A, y = np.ones((3, 4), np.float32), np.full(3, 2.0, np.float32)
    >>> model = CallableModel(residuals=lambda p, b: A @ p - y, jacobian=lambda p, b: A,
    ...                       params=np.zeros(4, np.float32))
    >>> opt, params = ENGD(damping=1e-20), model.params
    >>> with warnings.catch_warnings(record=True) as shown:
    ...     warnings.simplefilter("always")
    ...     for _ in range(4):
    ...         params, info = opt.step(params, model, None)
    >>> len(shown), len(info["warnings"])
    (1, 1)
    >>> info["warnings"][0].split(" failed")[0]
    'FactorizationWarning: Cholesky of λI_N + UUᵀ'
    """

    @functools.wraps(step)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        caught: list[Any] = []
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        stack.append(caught)
        _hook(True)
        try:
            result = step(self, *args, **kwargs)
        finally:
            stack.pop()
            _hook(False)
            # shown also when the step raised: the warnings it gave before
            raised = _show_once(self, caught)
        if raised and isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
            result[1]["warnings"] = raised
        return result

    return wrapper


def _show_once(optimizer: Any, caught: list[Any]) -> list[str]:
    """Show the caught warnings (natgrad's once per kind on ``optimizer``);
    the natgrad ones as ``"Category: text"``."""
    seen = optimizer.__dict__.setdefault("_warnings_seen", {})
    raised = []
    for w in caught:
        message = w.message
        if _natgrad_warning(w.category):
            text = str(message)
            raised.append(f"{w.category.__name__}: {text}")
            key = (w.category, _NUMBER.sub("#", text))
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                continue
            who = type(optimizer).__name__
            try:
                message = w.category(
                    f"{text} [shown once per {who} optimiser; later ones are listed in "
                    "info['warnings'] of their steps; reset() shows it again]"
                )
            except Exception:  # a category whose constructor wants more: the text as it was
                pass
        warnings.showwarning(message, w.category, w.filename, w.lineno, w.file, w.line)
    return raised


# ---------------------------------------------------------------------------
# a step is taken only when everything about it is finite
# ---------------------------------------------------------------------------


def rejection(loss: float, what: str, step: int | None = None) -> dict[str, Any]:
    """``info`` of a step that is not taken because ``what`` is not finite;
    ``step`` is the optimiser's step number (the steps taken so far + 1)."""
    at = "" if step is None else f" at step {step}"
    return {
        "loss": loss,
        "lr": 0.0,
        "step_taken": False,
        "reason": "nonfinite",
        "message": f"{what} has NaN/Inf entries{at}: no step taken (params and the optimiser state are unchanged)",
    }


def loss_rejection(loss: float, outputs: Outputs, kind: str = "squared") -> dict[str, Any]:
    """The rejection of a step whose loss is NaN/Inf: the model's outputs
    have NaN/Inf, or the loss overflows (found after the failure)."""
    culprit = outputs.culprit("")
    if culprit:
        return rejection(loss, culprit, outputs.step)
    info = rejection(loss, "the loss", outputs.step)
    what = "½‖r‖²" if kind == "squared" else "the mean loss"
    info["message"] = (
        f"the loss {what} overflows at step {outputs.step} (the model's outputs are finite but too large): "
        "no step taken (params and the optimiser state are unchanged)"
    )
    return info


def factor_rejection(err: ValueError, J: Any, loss: float, outputs: Outputs) -> dict[str, Any]:
    """The rejection of a step whose sample-space factorisation refused the
    model's Jacobian ``J`` (``err`` from Woodbury or the dense Gram check):
    NaN/Inf in ``J``, or ``JJᵀ`` overflowing.  Any other ``ValueError`` is a
    bug and is raised again."""
    if not backend.all_finite(J):
        return rejection(loss, "the model's Jacobian (model.jacobian)", outputs.step)
    if "overflow" not in str(err):
        raise err
    info = rejection(loss, "the Gram matrix JJᵀ", outputs.step)
    info["message"] = (
        f"the model's Jacobian is too large at step {outputs.step}: its Gram matrix overflows in {J.dtype}; "
        "no step taken (params and the optimiser state are unchanged)"
    )
    return info


def nonfinite_update(
    loss: float, params: Any, direction: Any, new_params: Any, outputs: Outputs | None = None
) -> dict[str, Any] | None:
    """None when the step is finite, else the rejection ``info`` naming the culprit.

    Only ``new_params`` is checked on the way through (one host
    synchronisation); the cause — the model output seen during the step that
    has NaN/Inf, else the direction, else an overflow of the update — is
    looked up only after a failure.
    """
    step = None if outputs is None else outputs.step
    if not math.isfinite(loss):
        return rejection(loss, "the loss", step)
    if backend.all_finite(new_params):
        return None
    if not backend.all_finite(params):
        return rejection(loss, "params", step)
    if outputs is not None:
        culprit = outputs.culprit("")
        if culprit:
            return rejection(loss, culprit, step)
    if not backend.all_finite(direction):
        return rejection(loss, "the direction", step)
    return rejection(loss, "the updated params (an overflow)", step)


def take_step(
    params: Any,
    d: Any,
    model: Any,
    batch: Any,
    loss0: float,
    kind: str,
    *,
    lr: float | None,
    line_search: bool,
    outputs: Outputs | None = None,
) -> tuple[Any, dict[str, Any], bool]:
    """``params − η d`` with ``η`` from the grid line search or the fixed ``lr``.

    Returns ``(params, info, finite)``: ``finite`` is False when the loss,
    ``d``, every loss of the line search or the new parameters have NaN/Inf,
    in which case no step is taken and the caller must leave its state
    unchanged; ``info["message"]`` then names the culprit (the model output
    seen during the step, through ``outputs``, when it is one).  A line
    search that finds no decrease among finite losses also takes no step,
    but its direction was finite.
    """
    xp = backend.namespace(params=params, direction=d)
    step = None if outputs is None else outputs.step
    if not math.isfinite(loss0):
        return params, rejection(loss0, "the loss", step), False
    norm = backend.to_float(scaled_norm(xp, d))
    if not math.isfinite(norm):  # NaN/Inf in d shows in its norm: no extra sync
        culprit = "the direction" if outputs is None else outputs.culprit("the direction")
        return params, {**rejection(loss0, culprit, step), "direction_norm": norm}, False
    info: dict[str, Any] = {"loss": loss0, "direction_norm": norm}
    top = 1.0 if lr is None else lr
    if line_search:
        grid = [top * g for g in LINE_SEARCH_GRID]
        eta, loss1, evals = grid_line_search(model, params, d, batch, loss0, kind, grid, outputs)
        info["line_search_evaluations"] = evals
        if eta is None and loss1 is None:
            info.update(rejection(loss0, "the model's loss along the direction (every step size of the line "
                                         "search)", step))
            return params, info, False
        if eta is None:
            info.update(lr=0.0, step_taken=False, reason="no_decrease",
                        message="no step size on the grid decreased the loss: no step taken")
            return params, info, True
        info["loss_after"] = loss1
    else:
        eta = top
    new_params = params - eta * d
    bad = nonfinite_update(loss0, params, d, new_params, outputs)
    if bad is not None:
        return params, {**info, **bad}, False
    info.update(lr=eta, step_taken=True)
    return new_params, info, True


def check_state_shape(who: str, key: str, value: Any, params: Any) -> None:
    """A state vector loaded from elsewhere must fit the parameters it meets."""
    if value is not None and tuple(value.shape) != tuple(params.shape):
        raise ValueError(
            f"{who}'s state {key!r} has shape {tuple(value.shape)} but params have shape "
            f"{tuple(params.shape)}: the state belongs to another model (call reset() to start afresh)"
        )


# ---------------------------------------------------------------------------
# the optimiser state as data
# ---------------------------------------------------------------------------

#: The kinds of value a state entry may hold (see :class:`Stateful`).
STATE_KINDS = ("count", "positive", "vector", "param_vector", "vector_list", "count_list", "key_list")


def plain_key(value: Any) -> bool:
    """True for None, a bool, int, float or str, or a list/tuple of them: a
    batch key that a state dict can hold as plain data."""
    if value is None or isinstance(value, (bool, Integral, Real, str)):
        return True
    return isinstance(value, (list, tuple)) and all(plain_key(v) for v in value)


def _as_key(value: Any) -> Any:
    """A batch key back from JSON: lists become (hashable) tuples."""
    return tuple(_as_key(v) for v in value) if isinstance(value, (list, tuple)) else value


def _check_entry(who: str, key: str, kind: str, value: Any) -> Any:
    """One entry of a state dict, checked against its kind; returns it converted."""
    where = f"{who}.load_state_dict: state[{key!r}]"
    if kind == "count":
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{where} must be an int ≥ 0, got {value!r}")
        return int(value)
    if kind == "positive":
        if not isinstance(value, Real) or isinstance(value, bool) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{where} must be a finite positive number, got {value!r}")
        return float(value)
    if kind == "key":
        if not plain_key(value):
            raise ValueError(f"{where} must be None, a number, a str or a list of them, got {value!r}")
        return _as_key(value)
    if kind in ("vector", "param_vector"):
        if value is not None and not (backend.is_array(value) and value.ndim == 1):
            shape = tuple(value.shape) if backend.is_array(value) else type(value).__name__
            raise ValueError(f"{where} must be a 1-D array or None, got {shape}")
        return value
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where} must be a list, got {type(value).__name__}")
    items = [_check_entry(who, f"{key}[{i}]", kind[: -len("_list")], v) for i, v in enumerate(value)]
    if kind == "vector_list" and any(v is None for v in items):
        raise ValueError(f"{where} must hold 1-D arrays, got None at index {items.index(None)}")
    return items


class Stateful:
    """The ``state_dict``/``load_state_dict``/``reset`` protocol of the optimisers.

    A subclass declares its state in ``STATE`` (entry name → kind) and
    returns the fresh state from ``_fresh_state()``.  Kinds: ``"count"`` (an
    int ≥ 0), ``"positive"`` (a float > 0), ``"vector"`` (a 1-D array or
    None), ``"param_vector"`` (a 1-D array of the parameters' shape or None;
    all of one optimiser share a length), and lists of counts, vectors or
    batch keys.  The entries are attributes of the same name unless the
    subclass overrides ``_export_state``/``_import_state``.  A step commits
    its new state with one ``self.__dict__.update(...)`` at its end, so an
    exception (Ctrl-C included) anywhere before leaves the state as it was.
    """

    STATE: ClassVar[dict[str, str]] = {}

    def _fresh_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _export_state(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.STATE}

    def _import_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes to set for a checked state dict."""
        return dict(state)

    def _commit(self, **attributes: Any) -> None:
        # One dict update: nothing of a step's new state lands unless all of it does.
        self.__dict__.update(attributes)

    def reset(self) -> None:
        """Forget the state (momentum, caches, step count, adapted damping).

        Also forgets which warnings this optimiser has shown (see
        :func:`warn_once_per_optimizer`): each is shown once again.
        """
        self._commit(**self._fresh_state(), _warnings_seen={})

    def state_dict(self) -> dict[str, Any]:
        """The optimiser's state as plain data.

        Returns
        -------
        dict
            ``"optimizer"`` (the class name) and one entry per state item:
            arrays (the parameters' library and device; shared, not copied —
            natgrad never writes into them), Python numbers, strings, None and
            lists of them.  Hyper-parameters that do not change during
            training are not included: they belong to the constructor.

        Examples
        --------
        >>> from natgrad.optim import Adam
        >>> Adam().state_dict()
        {'optimizer': 'Adam', 'm': None, 'v': None, 'steps': 0}
        """
        state = {key: (list(v) if isinstance(v, list) else v) for key, v in self._export_state().items()}
        return {"optimizer": type(self).__name__, **state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state saved by :meth:`state_dict` (of the same optimiser class).

        Parameters
        ----------
        state : mapping
            As returned by :meth:`state_dict`.  The arrays are used as they
            are (not copied).

        Raises
        ------
        ValueError
            ``state`` comes from another optimiser class, misses an entry or
            has an unknown one, or an entry has the wrong type or shape (the
            message names the entry); nothing is changed then.
        TypeError
            ``state`` is not a mapping.

        Examples
        --------
        >>> from natgrad.optim import Adam, SPRING
        >>> opt = Adam(lr=1e-2)
        >>> opt.load_state_dict(Adam().state_dict())
        >>> opt.load_state_dict(SPRING().state_dict())
        Traceback (most recent call last):
            ...
        ValueError: Adam.load_state_dict: state['optimizer'] is 'SPRING'; this is the state of another optimiser
        """
        who = type(self).__name__
        if not isinstance(state, Mapping):
            raise TypeError(f"{who}.load_state_dict: state must be a dict, got {type(state).__name__}")
        if state.get("optimizer") != who:
            raise ValueError(
                f"{who}.load_state_dict: state['optimizer'] is {state.get('optimizer')!r}; "
                f"this is the state of another optimiser"
            )
        expected = set(self.STATE) | {"optimizer"}
        missing, unknown = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unknown:
            raise ValueError(f"{who}.load_state_dict: missing entries {missing}, unknown entries {unknown}")
        checked = {key: _check_entry(who, key, kind, state[key]) for key, kind in self.STATE.items()}
        vectors = {k: v for k, v in checked.items() if self.STATE[k] == "param_vector" and v is not None}
        lengths = {k: tuple(v.shape) for k, v in vectors.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{who}.load_state_dict: the state vectors differ in shape: {lengths}")
        if vectors:
            backend.namespace(**vectors)  # one library and device, or a clear error naming them
        self._commit(**self._import_state(checked))
