"""Layer 4: each framework's own face over natgrad's optimisers.

PyTorch users drive an optimiser as ``opt = X(module.parameters(), ...)``
and ``opt.step(closure)``; JAX users keep the state explicit (``init``, then
``update`` returning the new state, as in optax).  These modules give
:mod:`natgrad.optim`'s optimisers those two faces, over the same code:
:class:`natgrad.frameworks.torch.Optimizer` and
:func:`natgrad.frameworks.jax.functional`.  Neither is imported here, so
``import natgrad.frameworks`` imports no framework.
"""

from typing import Any


def check_optimizer(optimizer: Any) -> None:
    """``optimizer`` must be one of natgrad's optimisers (an object, not a class).

    Raises
    ------
    TypeError
        Naming what was passed; a ``torch.optim`` optimiser has ``step`` too,
        so the check is on natgrad's state protocol, not on method names.
    """
    from ..optim._common import Stateful

    if not isinstance(optimizer, Stateful):
        raise TypeError(
            "optimizer must be a natgrad optimiser object (ENGD(...), SPRING(...), Adam(...), ...); "
            f"got {optimizer!r}"
        )
