"""Which block store an H-matrix uses: numba's compiled one, when it can.

The compiled store (:mod:`natgrad.hmatrix._numba_store`) needs numba and
threadpoolctl, optional dependencies, and works on NumPy arrays only; this
module looks it up on first use, so ``import natgrad`` never imports numba.

Examples
--------
>>> import array_api_strict
>>> compiled_block_store(array_api_strict) is None  # not NumPy: the array-API path
True
"""

from __future__ import annotations

import os
from types import ModuleType

from .. import backend

__all__ = ["compiled_block_store"]


def compiled_block_store(xp: ModuleType) -> type | None:
    """The numba-compiled H-matrix block store for NumPy arrays, if usable.

    Parameters
    ----------
    xp : module
        Array namespace of the blocks.

    Returns
    -------
    type or None
        :class:`natgrad.hmatrix._numba_store.FlatBlocks` when ``xp`` is NumPy, numba
        and threadpoolctl can be imported and ``NATGRAD_DISABLE_NUMBA`` is
        unset (or ``0``);
        otherwise ``None``, and the caller uses its array-API path.

    Raises
    ------
    AttributeError
        If ``xp`` is not a module (see :func:`natgrad.backend.is_numpy`).

    Notes
    -----
    numba and threadpoolctl are optional dependencies (the ``numba`` extra)
    and are imported here, on first use, never by ``import natgrad``.  Setting
    ``NATGRAD_DISABLE_NUMBA=1`` selects the array-API path on NumPy too
    (for comparisons, or where numba's first compilation, a few seconds, is
    unwelcome).

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad import backend
    >>> store = compiled_block_store(backend.namespace(np.ones(2)))
    >>> store is None or store.__name__ == "FlatBlocks"
    True
    """
    if not backend.is_numpy(xp) or os.environ.get("NATGRAD_DISABLE_NUMBA", "") not in ("", "0"):
        return None
    try:
        from ._numba_store import FlatBlocks
    except ImportError:
        return None
    return FlatBlocks
