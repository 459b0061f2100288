"""Layer 0: array namespaces, devices, dtypes, host synchronisations, random
numbers and the linear algebra the array API standard lacks.

This package (with the autodiff adapters and the H-matrix's optional numba
kernels) is the only part of natgrad that may name NumPy, SciPy, CuPy,
PyTorch, JAX or dask, and it imports nothing from the layers above it.
Everything above it receives arrays, asks :func:`namespace` for their
array-API namespace ``xp`` and computes with ``xp`` alone; where the standard
has no function (Cholesky solves, triangular solves, a symmetric rank-k
product) it calls the dispatcher here, which uses the native library of the
arrays it is given:

=================  ==========================================================
arrays             native library used
=================  ==========================================================
NumPy              ``numpy.linalg`` and NumPy's BLAS (Cholesky, ``eigh``,
                   QR, SVD, ``U Uᵀ``); ``scipy.linalg`` for the triangular
                   and Cholesky solves NumPy lacks
CuPy               ``cupy.linalg`` and ``cupyx.scipy.linalg``
                   (cuSOLVER / cuBLAS)
PyTorch            ``torch.linalg``
JAX                ``jax.numpy.linalg`` and ``jax.scipy.linalg``
dask               ``dask.array.linalg`` (blocked Cholesky and triangular
                   solves, TSQR for QR and SVD); ``eigh`` of matrices up to
                   ``lazy.CLIENT_MAX_SIZE`` on the client, larger ones
                   refused with :class:`DistributedUnsupportedError`
anything else      a generic fallback built on ``xp.linalg``
=================  ==========================================================

Optional libraries are imported lazily, only when arrays of that library are
seen, so ``import natgrad`` never imports PyTorch, JAX, CuPy or dask.

One concern a module; every public name is re-exported here, so callers write
``backend.cholesky``, never the module path:

=====================  ====================================================
module                 concern
=====================  ====================================================
``_namespaces``        :func:`namespace`, :func:`device`, the library tests
                       (:func:`is_numpy`, ...), :func:`to_namespace`,
                       :func:`numpy_namespace`, and the refusal of JAX
                       tracers (:class:`TracedArrayError`)
``dtypes``             :func:`float_dtype`, :func:`eps`,
                       :func:`is_low_precision`
``sync``               every host synchronisation: :func:`to_float`,
                       :func:`to_bool`, :func:`to_int`, :func:`to_list`,
                       :func:`all_finite`,
                       and :func:`sync_interval`, how often to pay for one
``dense``              :func:`cholesky`, :func:`cho_solve`,
                       :func:`solve_triangular`, :func:`eigh`, :func:`qr`,
                       :func:`pivoted_qr` (and :func:`has_pivoted_qr`),
                       :func:`truncated_pivoted_qr` (and
                       :func:`has_truncated_pivoted_qr`),
                       :func:`svd`, :func:`svdvals`,
                       :func:`add_identity`
``syrk``               :func:`gram` (``U Uᵀ`` by BLAS ``syrk``) and the
                       BLAS thread-pool rules
``threads``            :func:`blas_threads`, a limit on the BLAS pools for
                       work made of many small products, and
                       :func:`quiet_floating_point` for the solvers
``norms``              :func:`scaled_norm`, a 2-norm whose squares cannot
                       overflow or underflow, and :func:`vecdot`, inner
                       products with dask's graph kept small
``random``             :func:`normal`, reproducible across backends
``segments``           :func:`segment_bounds`, the boxes of many row
                       segments in a few operations (a cluster tree's level)
``lazy``               dask arrays: :func:`persist` (cut a task graph at a
                       solver's sync point), :func:`is_lazy`,
                       :func:`require_eager` (refuse what cannot run
                       distributed), and the dask branches of the dense
                       dispatchers
``update``             :func:`assign`: a write into a buffer natgrad owns,
                       in place where the library allows, functional on JAX;
                       :func:`stack_padded`: matrices of nearly one shape
                       as one zero-padded stack
``io``                 checkpoint files (``.npz`` plus JSON, never pickled,
                       written atomically); not re-exported: ``from
                       natgrad.backend import io``
=====================  ====================================================

Every host synchronisation of natgrad (a device value read as a Python
number) goes through :mod:`natgrad.backend.sync`; the core never writes a bare
``bool(xp.…)``, ``int(xp.…)``, ``float(xp.…)`` or ``.item()``.

Examples
--------
>>> import numpy as np
>>> from natgrad import backend
>>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
>>> xp = backend.namespace(A)
>>> L = backend.cholesky(A)
>>> x = backend.cho_solve(L, np.array([1.0, 2.0]))
>>> bool(np.allclose(A @ x, [1.0, 2.0]))
True
"""

from __future__ import annotations

from ._namespaces import (
    TracedArrayError,
    device,
    is_array,
    is_cupy,
    is_dask,
    is_jax,
    is_numpy,
    is_scipy_operator,
    is_torch,
    library_name,
    namespace,
    numpy_namespace,
    to_namespace,
)
from .dense import (
    CholeskyError,
    add_identity,
    cho_solve,
    cholesky,
    GramPivotedQR,
    PivotedQR,
    eigh,
    has_pivoted_qr,
    has_truncated_pivoted_qr,
    pivoted_qr,
    truncated_pivoted_qr,
    qr,
    solve_triangular,
    svd,
    svdvals,
)
from .dtypes import eps, float_dtype, is_low_precision
from .lazy import DistributedUnsupportedError, is_lazy, persist, require_eager
from .norms import scaled_norm, vecdot
from .random import normal
from .segments import segment_bounds
from .sync import all_finite, sync_interval, to_bool, to_float, to_int, to_list
from .syrk import gram
from .threads import blas_threads, quiet_floating_point
from .update import assign, stack_padded

__all__ = [
    "CholeskyError",
    "TracedArrayError",
    "namespace",
    "device",
    "is_array",
    "is_numpy",
    "is_cupy",
    "is_torch",
    "is_jax",
    "is_dask",
    "is_lazy",
    "persist",
    "require_eager",
    "DistributedUnsupportedError",
    "library_name",
    "float_dtype",
    "eps",
    "is_low_precision",
    "sync_interval",
    "to_float",
    "to_bool",
    "to_int",
    "to_list",
    "all_finite",
    "add_identity",
    "cholesky",
    "cho_solve",
    "solve_triangular",
    "eigh",
    "qr",
    "GramPivotedQR",
    "PivotedQR",
    "has_pivoted_qr",
    "has_truncated_pivoted_qr",
    "pivoted_qr",
    "truncated_pivoted_qr",
    "svd",
    "svdvals",
    "gram",
    "blas_threads",
    "quiet_floating_point",
    "normal",
    "scaled_norm",
    "segment_bounds",
    "vecdot",
    "to_namespace",
    "is_scipy_operator",
    "numpy_namespace",
    "assign",
    "stack_padded",
]
