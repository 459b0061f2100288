r"""JAX face of network compression: :func:`compress` and :class:`CompressedArray`.

``compress(params, eps=...)`` compresses the 2-D leaves of a parameter
pytree (dense, truncated SVD or H-matrix, chosen by
:func:`natgrad.adapters.compression.plan_compression`) and returns a pytree
of the same structure whose compressed leaves are :class:`CompressedArray`
objects: ``x @ W``, ``W @ x`` and ``W.T`` work on them, so a forward
function written with ``@`` runs unchanged, eagerly, under ``jax.jit`` and
under ``jax.grad``.

Re-exported as ``natgrad.adapters.jax.compress``.  This module imports JAX;
``import natgrad`` does not.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import validation
from ..hmatrix.compress import BlockLayout, CompressedMatrix, apply_layout
from .compression import CompressionReport, plan_compression

__all__ = ["compress", "CompressedArray"]


@jax.tree_util.register_pytree_node_class
class CompressedArray:
    r"""A compressed 2-D parameter that multiplies like the array it replaces.

    A JAX pytree: its leaves are the factor arrays (and ``W₀`` for a
    compressed update), its structure (:class:`~natgrad.hmatrix.BlockLayout`)
    is static, so it passes through ``jax.jit``, ``jax.grad`` and optax
    like any parameter.

    Parameters
    ----------
    layout : natgrad.hmatrix.BlockLayout
    factors : list of jax.Array
        In the layout's order.
    reference : jax.Array or None
        ``W₀`` (the matrix is ``W₀ + ΔŴ``); gradients do not flow into it.
    kind : str
        ``"dense"``, ``"svd"`` or ``"hmatrix"``.
    transposed : bool, default False
        The object stands for the transpose of the layout's matrix.

    Attributes
    ----------
    shape : (int, int)
    dtype : dtype
    ndim : int
        Always 2.
    T : CompressedArray
        The transpose (no copy).

    Raises
    ------
    ValueError
        From ``@`` when the operand's shape does not match.

    Notes
    -----
    ``x @ W`` (``x`` of shape ``(..., m)``), ``W @ v`` (``v`` of shape
    ``(n,)`` or ``(n, k)``) and ``.T`` are supported, through
    :func:`natgrad.hmatrix.apply_layout` with ``jax.numpy``; JAX's own
    functions (``jnp.dot``, ``jnp.matmul``, ``jnp.einsum``) do not accept
    the object: write products with ``@`` or call :meth:`to_dense`.
    Gradients with respect to the factors are those of the compressed
    network, so fine-tuning trains the factors with the structure fixed.
    H-matrices: Mango & Katende, arXiv 2409.07028.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from natgrad.hmatrix import BlockLayout
    >>> layout = BlockLayout((3, 2), (("lowrank", 0, 3, 0, 2, 1),))
    >>> W = CompressedArray(layout, [jnp.ones((3, 1)), jnp.ones((2, 1))], None, "svd")
    >>> (jnp.ones((4, 3)) @ W).shape, (W @ jnp.ones(2)).shape, W.T.shape
    ((4, 2), (3,), (2, 3))
    """

    ndim = 2
    # numpy: let ``ndarray @ W`` fall through to ``W.__rmatmul__``
    __array_ufunc__ = None

    def __init__(self, layout: BlockLayout, factors: list[Any], reference: Any, kind: str,
                 transposed: bool = False) -> None:
        self.layout, self.factors, self.reference = layout, list(factors), reference
        self.kind, self.transposed = kind, bool(transposed)

    # -- pytree ---------------------------------------------------------------
    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """Leaves: the factors, then ``W₀`` if any; static: the structure."""
        children = (*self.factors, self.reference)
        return children, (self.layout, self.kind, self.transposed)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: tuple[Any, ...]) -> "CompressedArray":
        """Rebuild from :meth:`tree_flatten`'s output."""
        layout, kind, transposed = aux
        return cls(layout, list(children[:-1]), children[-1], kind, transposed)

    # -- array-like -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        m, n = self.layout.shape
        return (n, m) if self.transposed else (m, n)

    @property
    def dtype(self) -> Any:
        arrays = [a for a in (*self.factors, self.reference) if a is not None]
        return jnp.result_type(*arrays) if arrays else jnp.float32

    @property
    def T(self) -> "CompressedArray":
        return CompressedArray(self.layout, self.factors, self.reference, self.kind, not self.transposed)

    def _rows(self, x: Any, transpose: bool) -> Any:
        """``x @ A`` (``transpose``) or ``x @ Aᵀ`` for the layout's matrix ``A``."""
        return _apply(self.factors, self.reference, x, layout=self.layout, transpose=transpose)

    def __rmatmul__(self, x: Any) -> Any:
        """``x @ W`` for ``x`` of shape ``(..., rows)``."""
        return self._rows(jnp.asarray(x), not self.transposed)

    def __matmul__(self, v: Any) -> Any:
        """``W @ v`` for ``v`` of shape ``(cols,)`` or ``(cols, k)``."""
        v = jnp.asarray(v)
        if v.ndim == 1:
            return self._rows(v, self.transposed)
        return self._rows(v.T, self.transposed).T

    def to_dense(self) -> Any:
        """The matrix as a dense ``jax.Array``."""
        return self @ jnp.eye(self.shape[1], dtype=self.dtype)

    def __repr__(self) -> str:
        return f"CompressedArray(shape={self.shape}, kind={self.kind}, update={self.reference is not None})"


@functools.partial(jax.jit, static_argnames=("layout", "transpose"))
def _apply(factors: list[Any], reference: Any, x: Any, *, layout: BlockLayout, transpose: bool) -> Any:
    # compiled once per layout and shapes: eager JAX would compile each of
    # the blocks' small operations separately (inside an outer jit it is inlined)
    y = apply_layout(jnp, layout, factors, x, transpose=transpose)
    if reference is not None:
        W0 = jax.lax.stop_gradient(reference)
        y = y + x @ (W0 if transpose else W0.T)
    return y


def _default_select(path: str, leaf: Any) -> bool:
    return getattr(leaf, "ndim", 0) == 2 and jnp.issubdtype(leaf.dtype, jnp.floating) and min(leaf.shape) >= 2


def _leaf(C: CompressedMatrix, dtype: Any) -> CompressedArray:
    layout, factors = C.layout()
    ref = None if C.reference is None else jnp.asarray(np.asarray(C.reference), dtype=dtype)
    return CompressedArray(layout, [jnp.asarray(np.asarray(f), dtype=dtype) for f in factors], ref, C.kind)


def compress(
    params: Any,
    *,
    eps: float,
    budget: str = "layer",
    forward: Callable[[Any, Any], Any] | None = None,
    probe: Any = None,
    method: str = "auto",
    reference: Any = None,
    reference_stored: bool | None = None,
    select: Callable[[str, Any], bool] | None = None,
    relative_to: str = "weight",
    seed: int = 0,
    **kwargs: Any,
) -> tuple[Any, CompressionReport]:
    r"""Compress the 2-D leaves of a JAX parameter pytree within an error budget.

    Parameters
    ----------
    params : pytree
        The trained parameters (not modified; JAX arrays are immutable).
    eps : float
        The budget in (0, 1), per layer or on the output.
    budget : {"layer", "output"}, default "layer"
        As in :func:`~natgrad.adapters.compression.plan_compression`.
    forward : callable, optional
        ``forward(params, probe) -> array``, the network, written with
        ``x @ W`` / ``W @ x`` for the compressed leaves.  Required (with
        ``probe``) for ``budget="output"``.
    probe : array, optional
        Inputs for ``forward``.
    method : {"auto", "hmatrix", "svd", "dense"}, default "auto"
    reference : pytree or callable, optional
        ``W₀`` with the structure of ``params`` (*stored*: counts in the
        storage), or a zero-argument callable returning it (*regenerated*,
        e.g. ``lambda: init(jax.random.key(0))``: costs no storage).
    reference_stored : bool, optional
        Override what ``reference`` implies.
    select : callable, optional
        ``select(path, leaf) -> bool`` with ``path`` as
        ``jax.tree_util.keystr`` writes it (``"['W1']"``); default: floating
        2-D leaves with both sides ``≥ 2``.
    relative_to : {"weight", "delta"}, default "weight"
    seed : int, default 0
    **kwargs
        ``search_steps``, ``probe_share`` and H-matrix options (``leaf_size``, ...).

    Returns
    -------
    params : pytree
        The same structure with :class:`CompressedArray` leaves where
        compressed (in the leaf's dtype).
    report : CompressionReport

    Raises
    ------
    ValueError
        If no leaf is selected, ``reference`` lacks a selected leaf or has
        another shape, a leaf holds NaN/Inf (naming it), ``budget="output"``
        comes without ``forward`` and ``probe``, or as
        :func:`~natgrad.adapters.compression.plan_compression`.
    TypeError
        If ``forward`` or ``select`` is not callable.
    Exception
        An exception raised by ``forward`` passes through.

    Notes
    -----
    What is supported: eager evaluation, ``jax.jit`` (the layout is static
    data; the factors are traced) and ``jax.grad`` / optax fine-tuning of
    the factors (``W₀`` is wrapped in ``stop_gradient``) for every kind,
    H-matrices included (their blocks are applied with slices, matmuls and
    concatenation).  Not supported: ``jnp`` functions on the compressed
    leaves (only ``@`` and ``.T``), and compressing inside ``jit`` (the
    build runs in NumPy on the host, on a copy of each leaf).  Error-bounded
    H-matrices: Mango & Katende, arXiv 2409.07028.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from natgrad.adapters.jax import compress
    >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    >>> params = {"W1": jax.random.normal(k1, (4, 32)), "W2": jax.random.normal(k2, (32, 1)) / 6}
    >>> def forward(p, x):
    ...     return jnp.tanh(x @ p["W1"]) @ p["W2"]
    >>> X = jax.random.normal(k3, (50, 4))
    >>> small, report = compress(params, eps=0.05, budget="output", forward=forward, probe=X)
    >>> report.output_error <= 0.05, forward(small, X).shape
    (True, (50, 1))
    """
    validation.callable_arg(select, "select", optional=True)
    validation.callable_arg(forward, "forward", optional=True)
    if budget == "output" and (forward is None or probe is None):
        raise ValueError("budget='output' needs forward and probe (forward(params, probe) -> output)")
    select = _default_select if select is None else select
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [jax.tree_util.keystr(p) for p, _ in flat]
    leaves = [leaf for _, leaf in flat]
    chosen = [i for i, (path, leaf) in enumerate(zip(paths, leaves)) if select(path, leaf)]
    if not chosen:
        raise ValueError("params has no 2-D leaf to compress" + (" (after select)" if select is not _default_select else ""))
    weights = []
    for i in chosen:
        W = np.asarray(leaves[i])
        if W.ndim != 2:
            raise ValueError(f"leaf {paths[i]}: select chose an array of shape {W.shape}; only 2-D leaves compress")
        if not np.all(np.isfinite(W)):
            raise ValueError(f"leaf {paths[i]}: contains NaN or Inf")
        weights.append(W)
    refs, stored = _references(reference, treedef, paths, leaves, chosen)
    if reference_stored is not None:
        stored = bool(reference_stored)

    def assemble(layers: list[CompressedMatrix | None]) -> Any:
        new = list(leaves)
        for i, C in zip(chosen, layers):
            if C is not None:
                new[i] = _leaf(C, leaves[i].dtype)
        return jax.tree_util.tree_unflatten(treedef, new)

    evaluate = verify = None
    if forward is not None and probe is not None:
        def dense(layers: list[CompressedMatrix | None]) -> Any:
            new = list(leaves)
            for i, C in zip(chosen, layers):
                if C is not None:
                    new[i] = jnp.asarray(np.asarray(C.to_dense()), dtype=leaves[i].dtype)
            return jax.tree_util.tree_unflatten(treedef, new)

        # the search runs forward with the reconstructed weights (same shapes
        # every trial: eager JAX compiles once); the chosen pytree is verified
        def evaluate(layers: list[CompressedMatrix | None]) -> Any:
            return forward(dense(layers), probe)

        def verify(layers: list[CompressedMatrix | None]) -> Any:
            return forward(assemble(layers), probe)

    compressed, report = plan_compression(
        weights, eps=eps, budget=budget, evaluate=evaluate, verify=verify, names=[paths[i] for i in chosen],
        references=refs, reference_stored=stored, method=method, relative_to=relative_to, seed=seed,
        **kwargs)
    return assemble(compressed), report


def _references(reference: Any, treedef: Any, paths: list[str], leaves: list[Any],
                chosen: list[int]) -> tuple[list[Any] | None, bool]:
    if reference is None:
        return None, True
    stored = not callable(reference)
    if not stored:
        reference = reference()
    flat, tdef = jax.tree_util.tree_flatten_with_path(reference)
    by_path = {jax.tree_util.keystr(p): leaf for p, leaf in flat}
    out = []
    for i in chosen:
        ref = by_path.get(paths[i])
        if ref is None or tuple(np.shape(ref)) != tuple(leaves[i].shape):
            got = "nothing" if ref is None else f"shape {tuple(np.shape(ref))}"
            raise ValueError(f"reference must have a leaf {paths[i]} of shape {tuple(leaves[i].shape)}, got {got}")
        out.append(np.asarray(ref, dtype=np.asarray(leaves[i]).dtype))
    return out, stored
