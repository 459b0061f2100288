"""Pieces shared by the optimisers: argument checks, the model protocol, the
loss conventions and the grid line search."""

from __future__ import annotations

import math
import time
from numbers import Real
from typing import Any, Sequence

from .. import backend

LOSS_KINDS = ("squared", "mean")

#: the step sizes 2⁰, 2⁻¹, …, 2⁻³⁰ of the ENGD/SPRING grid line search
LINE_SEARCH_GRID: tuple[float, ...] = tuple(2.0**-k for k in range(31))


def positive(value: Any, name: str) -> float:
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value}")
    return value


def optional_positive(value: Any, name: str) -> float | None:
    return None if value is None else positive(value, name)


def momentum_factor(value: Any, name: str = "momentum") -> float:
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return value


def choice(value: Any, options: Sequence[str], name: str) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


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


def batch_loss(model: Any, params: Any, batch: Any, kind: str) -> float:
    xp = backend.namespace(params=params)
    return backend.to_float(loss_of(xp, model.residuals(params, batch), kind))


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
        values = [float(v) for v in along(params, direction, list(grid), batch)]
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


def take_step(
    opt: Any, params: Any, d: Any, model: Any, batch: Any, loss0: float, kind: str
) -> tuple[Any, dict[str, Any]]:
    """``params − η d`` with ``η`` from the line search or the fixed ``lr``."""
    xp = backend.namespace(params=params, direction=d)
    info: dict[str, Any] = {"loss": loss0, "direction_norm": backend.to_float(xp.linalg.vector_norm(d))}
    if not backend.all_finite(d):
        info.update(lr=0.0, step_taken=False, message="the direction has NaN/Inf entries: no step taken")
        return params, info
    if opt.line_search:
        top = 1.0 if opt.lr is None else opt.lr
        grid = [top * g for g in LINE_SEARCH_GRID]
        eta, loss1, evals = grid_line_search(model, params, d, batch, loss0, kind, grid)
        info["line_search_evaluations"] = evals
        if eta is None:
            info.update(lr=0.0, step_taken=False, message="no step size on the grid decreased the loss: no step taken")
            return params, info
        info.update(lr=eta, step_taken=True, loss_after=loss1)
        return params - eta * d, info
    eta = 1.0 if opt.lr is None else opt.lr
    info.update(lr=eta, step_taken=True)
    return params - eta * d, info
