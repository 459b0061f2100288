"""Pieces shared by the optimisers: the model protocol, the loss conventions,
the grid line search, the step-or-reject rule and the state as data."""

from __future__ import annotations

import math
import time
from numbers import Integral, Real
from typing import Any, ClassVar, Mapping, Sequence

from .. import backend

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
        return 0.5 * xp.vecdot(outputs, outputs)
    return xp.mean(outputs)


def residuals_and_jacobian(model: Any, params: Any, batch: Any) -> tuple[Any, Any]:
    """Residuals and Jacobian in one call when the adapter can share the work."""
    both = getattr(model, "residuals_and_jacobian", None)
    if callable(both):
        return both(params, batch)
    return model.residuals(params, batch), model.jacobian(params, batch)


def grid_line_search(
    model: Any,
    params: Any,
    direction: Any,
    batch: Any,
    loss0: float,
    kind: str,
    grid: Sequence[float] = LINE_SEARCH_GRID,
) -> tuple[float | None, float, int]:
    """Best step size on a grid for ``params − η·direction``.

    Every ``η`` in ``grid`` is tried on the batch loss and the best kept (the
    ENGD line search of Müller & Zeinhofer 2023).  When the adapter offers
    ``model.losses_along(params, direction, etas, batch)`` the grid is
    evaluated in one vectorised call.

    Returns
    -------
    eta : float or None
        The best step size, or None when no step size decreases the loss.
    loss : float
        The loss at the chosen step (``loss0`` when None).
    evaluations : int
        Loss evaluations made.
    """
    xp = backend.namespace(params=params, direction=direction)
    along = getattr(model, "losses_along", None)
    if callable(along):
        values = [backend.to_float(v) for v in along(params, direction, list(grid), batch)]
    else:
        values = []
        for eta in grid:
            r = model.residuals(params - eta * direction, batch)
            values.append(backend.to_float(loss_of(xp, r, kind)))
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if not finite:
        return None, loss0, len(values)
    best, index = min(finite)
    if not best < loss0:
        return None, loss0, len(values)
    return float(grid[index]), best, len(values)


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
# a step is taken only when everything about it is finite
# ---------------------------------------------------------------------------


def rejection(loss: float, what: str) -> dict[str, Any]:
    """``info`` of a step that is not taken because ``what`` is not finite."""
    return {
        "loss": loss,
        "lr": 0.0,
        "step_taken": False,
        "message": f"{what} has NaN/Inf entries: no step taken (the optimiser state is unchanged)",
    }


def nonfinite_update(loss: float, params: Any, direction: Any, new_params: Any) -> dict[str, Any] | None:
    """None when the step is finite, else the rejection ``info`` naming the culprit.

    Only ``new_params`` is checked on the way through (one host
    synchronisation); the cause is looked up only after a failure.
    """
    if not math.isfinite(loss):
        return rejection(loss, "the loss")
    if backend.all_finite(new_params):
        return None
    if not backend.all_finite(params):
        return rejection(loss, "params")
    if not backend.all_finite(direction):
        return rejection(loss, "the direction")
    return rejection(loss, "the updated params (an overflow)")


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
) -> tuple[Any, dict[str, Any], bool]:
    """``params − η d`` with ``η`` from the grid line search or the fixed ``lr``.

    Returns ``(params, info, finite)``: ``finite`` is False when the loss,
    ``d`` or the new parameters have NaN/Inf, in which case no step is taken
    and the caller must leave its state unchanged.  A line search that finds
    no decrease also takes no step, but its direction was finite.
    """
    xp = backend.namespace(params=params, direction=d)
    norm = backend.to_float(xp.linalg.vector_norm(d))
    if not math.isfinite(loss0):
        return params, rejection(loss0, "the loss"), False
    if not math.isfinite(norm):  # NaN/Inf in d shows in its norm: no extra sync
        return params, {**rejection(loss0, "the direction"), "direction_norm": norm}, False
    info: dict[str, Any] = {"loss": loss0, "direction_norm": norm}
    top = 1.0 if lr is None else lr
    if line_search:
        grid = [top * g for g in LINE_SEARCH_GRID]
        eta, loss1, evals = grid_line_search(model, params, d, batch, loss0, kind, grid)
        info["line_search_evaluations"] = evals
        if eta is None:
            info.update(lr=0.0, step_taken=False, message="no step size on the grid decreased the loss: no step taken")
            return params, info, True
        info["loss_after"] = loss1
    else:
        eta = top
    new_params = params - eta * d
    bad = nonfinite_update(loss0, params, d, new_params)
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
        """Forget the state (momentum, caches, step count, adapted damping)."""
        self._commit(**self._fresh_state())

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
