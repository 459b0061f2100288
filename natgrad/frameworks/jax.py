"""natgrad's optimisers with explicit state, the way JAX code keeps it.

As in optax, the state is a value the caller holds and threads through the
loop::

    tx = functional(ENGD(damping=1e-6), model)      # model: a JaxModel
    state = tx.init(params)                          # params: the model's pytree
    for batch in batches:
        params, state, info = tx.update(params, state, batch)

The state is the optimiser's ``state_dict()`` (plain arrays and numbers), so
it can be saved, inspected or replaced like any other pytree of values.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

from . import check_optimizer

__all__ = ["FunctionalOptimizer", "functional"]


class FunctionalOptimizer(NamedTuple):
    """The ``init``/``update`` pair of :func:`functional`.

    Parameters
    ----------
    init : callable
        ``init(params) -> state``: the fresh state for a parameter pytree.
    update : callable
        ``update(params, state, batch) -> (params, state, info)``: one step;
        the arguments are not modified.

    Notes
    -----
    A named tuple, so ``init, update = functional(...)`` unpacks it as optax's
    ``GradientTransformation`` does.

    Examples
    --------
    >>> from natgrad.frameworks.jax import FunctionalOptimizer
    >>> pair = FunctionalOptimizer(init=lambda p: {}, update=lambda p, s, b: (p, s, {}))
    >>> pair.init(None)
    {}
    """

    init: Any
    update: Any


def functional(optimizer: Any, model: Any) -> FunctionalOptimizer:
    """A natgrad optimiser as a pure ``init``/``update`` pair over parameter pytrees.

    Parameters
    ----------
    optimizer : natgrad optimiser
        An object of :mod:`natgrad.optim` (``ENGD(...)``, ``SPRING(...)``...).
        It is copied: the pair never changes the object passed in, and the
        copy keeps no state between calls (all of it is in ``state``).
    model : JaxModel
        The model (:class:`natgrad.adapters.jax.JaxModel`) whose
        ``flatten``/``unflatten`` map the parameter pytree to the flat vector
        the optimiser works on.

    Returns
    -------
    FunctionalOptimizer
        ``init(params) -> state`` and ``update(params, state, batch) ->
        (params, state, info)``.

    Raises
    ------
    TypeError
        ``optimizer`` is not a natgrad optimiser, or ``model`` has no
        ``flatten``/``unflatten``.

    Notes
    -----
    ``update`` loads ``state`` into the private copy (checked by
    ``load_state_dict``: a state of another optimiser or of another model's
    size is refused), takes ``optimizer.step(model.flatten(params), model,
    batch)`` and returns the new parameters as a pytree with the new
    ``state_dict()``.  The result equals the flat API's step for step.  Like
    every natgrad optimiser it runs eagerly, outside ``jax.jit``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from natgrad.adapters.jax import JaxModel
    >>> from natgrad.frameworks.jax import functional
    >>> from natgrad.optim import ENGD
    >>> X = jnp.linspace(0.0, 1.0, 16)
    >>> def residuals(p, batch):
    ...     return p["a"] * jnp.tanh(p["w"] * batch) - jnp.sin(batch)
    >>> model = JaxModel(residuals, {"a": jnp.array(0.5), "w": jnp.array(1.0)})
    >>> tx = functional(ENGD(damping=1e-8), model)
    >>> params = {"a": jnp.array(0.5), "w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(5):
    ...     params, state, info = tx.update(params, state, X)
    >>> state["steps"]
    5
    >>> bool(info["loss"] < 1e-3)
    True
    """
    check_optimizer(optimizer)
    for method in ("flatten", "unflatten"):
        if not callable(getattr(model, method, None)):
            raise TypeError(f"model must have {method}() (a natgrad.adapters.jax.JaxModel); got {type(model).__name__}")
    worker = copy.deepcopy(optimizer)

    def init(params: Any) -> dict[str, Any]:
        model.flatten(params)  # a pytree of another structure fails here, naming params
        worker.reset()
        return worker.state_dict()

    def update(params: Any, state: Any, batch: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        worker.load_state_dict(state)
        flat, info = worker.step(model.flatten(params), model, batch)
        return model.unflatten(flat), worker.state_dict(), info

    return FunctionalOptimizer(init, update)
