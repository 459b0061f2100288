r"""JAX adapter: :class:`JaxModel`, jit-compiled once per model and batch structure.

The parameters are any pytree of JAX (or NumPy) arrays, held as one flat
vector through ``jax.flatten_util.ravel_pytree``.  Every derivative is a
jitted JAX transformation created once per model; JAX's compilation cache
then compiles each once per batch structure (tree, shapes, dtypes).

This module imports JAX; ``import natgrad.adapters`` does not.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import validation
from . import base
from ._jax_laplacian import forward_laplacian, laplacian
from .jax_compress import CompressedArray, compress  # noqa: F401  (network compression)

__all__ = ["JaxModel", "laplacian", "forward_laplacian", "compress", "CompressedArray"]


def _signature(batch: Any) -> Any:
    leaves, tree = jax.tree_util.tree_flatten(batch)
    return tree, tuple((np.shape(x), getattr(x, "dtype", type(x))) for x in leaves)


class JaxModel(base.FlatModel):
    r"""A JAX function ``fn(params, batch) -> (N,)`` as a natgrad model.

    Parameters
    ----------
    fn : callable
        ``fn(params, batch)`` with ``params`` a pytree shaped like ``params``
        below; returns a 1-D array: residuals (``loss="squared"``) or
        per-sample losses (``loss="mean"``).  Must be traceable by ``jax.jit``.
    params : pytree of arrays
        The initial parameters: JAX or NumPy floating arrays of one dtype.
    loss : {"squared", "mean"}
        ``"squared"``: ``L = ½‖r‖²``, ``∇L = Jᵀr``, GGN ``JᵀJ``;
        ``"mean"``: ``L = mean ℓᵢ``, ``∇L = Jᵀ1/N``, Fisher ``JᵀJ/N``.
    array_namespace : {None, "numpy", "cupy"}
        Hand out flat vectors as JAX arrays (None) or NumPy/CuPy arrays
        through DLPack.
    chunk_size : int, optional
        Rows (outputs or points) per vmapped chunk of the Jacobian; default:
        as many as fit ``memory_budget``.
    memory_budget : int
        Bytes the Jacobian's vmapped intermediates may take (default 512 MiB).

    Raises
    ------
    TypeError
        If ``fn`` is not callable or ``params`` has leaves that are not
        floating JAX/NumPy arrays of one dtype.
    ValueError
        If ``loss`` or ``array_namespace`` is unknown.

    Notes
    -----
    *Jacobian.* ``N ≤ P``: reverse mode, one forward pass and the VJP mapped
    over the unit cotangents in chunks (``lax.map`` with ``batch_size``);
    ``N > P``: forward mode over the unit tangents.  Pointwise models
    (:meth:`from_pointwise`) map ``value_and_grad`` of the per-point term
    over chunks of points.  Chunk sizes come from the memory budget and the
    size of the forward pass's intermediates.

    *HVP.* Forward-over-reverse ``jvp(grad(L))`` (Pearlmutter 1994), exact.

    *GGN.* ``vjp(jvp(v))``: ``JᵀJv`` or ``JᵀJv/N`` (Müller & Zeinhofer 2023;
    Guzmán-Cordero et al., arXiv 2505.12149).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> A = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> model = JaxModel(lambda p, b: A @ p["w"] - b, {"w": jnp.zeros(2)})
    >>> b = jnp.array([1.0, 0.0, 1.0])
    >>> bool(jnp.array_equal(model.jacobian(model.params, b), A))
    True
    >>> loss, g = model.loss_and_grad(model.params, b)
    >>> float(loss), g.tolist()
    (1.0, [-6.0, -8.0])

    The round trip back to JAX: ``unflatten`` returns the parameter pytree.

    >>> tree = model.unflatten(model.params - g)
    >>> tree["w"].tolist()
    [6.0, 8.0]
    >>> bool(jnp.array_equal(model.flatten(tree), model.params - g))
    True
    """

    framework = "JAX"
    _native_xp = jnp

    def __init__(
        self,
        fn: Callable[[Any, Any], Any],
        params: Any,
        *,
        loss: str = "squared",
        array_namespace: str | None = None,
        chunk_size: int | None = None,
        memory_budget: int = base.DEFAULT_MEMORY_BUDGET,
    ) -> None:
        super().__init__(loss, array_namespace)
        self._fn = validation.callable_arg(fn, "fn")
        self._chunk_size = validation.optional_positive_int(chunk_size, "chunk_size")
        self._memory_budget = validation.positive_int(memory_budget, "memory_budget")
        leaves, self._tree = jax.tree_util.tree_flatten(params)
        if not leaves:
            raise TypeError(f"params must be a non-empty pytree of arrays, got {params!r}")
        dtypes = set()
        for i, leaf in enumerate(leaves):
            if not isinstance(leaf, (jax.Array, np.ndarray)) or not jnp.issubdtype(
                leaf.dtype, jnp.floating
            ):
                what = f"{leaf.dtype} array" if hasattr(leaf, "dtype") else type(leaf).__name__
                raise TypeError(
                    f"params must be a pytree of floating JAX or NumPy arrays; leaf {i} is {what}"
                )
            dtypes.add(jnp.dtype(leaf.dtype))
        if len(dtypes) != 1:
            raise TypeError(f"params must share one dtype, got {sorted(map(str, dtypes))}")
        self._shapes = tuple(np.shape(x) for x in leaves)
        theta0, self._unravel = ravel_pytree(params)
        self._theta0 = jnp.asarray(theta0)
        # from_pointwise passes its _Pointwise as fn: the per-point Jacobian
        # path is chosen here, at construction, not patched in afterwards
        self._pointwise = fn if isinstance(fn, _Pointwise) else None
        self._out_shapes: dict[Any, Any] = {}
        self._row_bytes: dict[Any, int] = {}
        self._compile()

    def _compile(self) -> None:
        """The jitted transformations, once per model (called by ``__init__`` only)."""
        f, loss = self._f, self._loss
        self._j_res = jax.jit(f)
        self._j_jvp = jax.jit(lambda th, b, v: jax.jvp(lambda t: f(t, b), (th,), (v,))[1])
        self._j_lag = jax.jit(jax.value_and_grad(loss))
        self._j_hvp = jax.jit(
            lambda th, b, v: jax.jvp(lambda t: jax.grad(loss)(t, b), (th,), (v,))[1]
        )
        mean = self.loss == "mean"

        def ggn(th: Any, b: Any, v: Any) -> Any:
            r, pullback = jax.vjp(lambda t: f(t, b), th)
            out = pullback(jax.jvp(lambda t: f(t, b), (th,), (v,))[1])[0]
            return out / r.shape[0] if mean else out

        self._j_ggn = jax.jit(ggn)

        def residuals_vjp(th: Any, b: Any, u: Any, gram: bool) -> Any:
            # one compiled function: XLA shares the forward pass of the VJP and the JVP
            r, pullback = jax.vjp(lambda t: f(t, b), th)
            g = pullback(u)[0]
            return r, g, (jax.jvp(lambda t: f(t, b), (th,), (g,))[1] if gram else None)

        self._j_rvg = jax.jit(residuals_vjp, static_argnames=("gram",))
        self._j_jac = jax.jit(self._batched_jacobian, static_argnames=("mode", "k"))
        if self._pointwise is not None:
            self._j_point_jac = jax.jit(
                functools.partial(self._pointwise.jacobian, unravel=self._unravel),
                static_argnames=("k",),
            )
        self._j_along = jax.jit(
            lambda th, d, etas, b: jax.lax.map(lambda e: loss(th - e * d, b), etas, batch_size=8)
        )

    # -- constructors ------------------------------------------------------
    @classmethod
    def from_pointwise(
        cls,
        terms: Sequence[Callable[[Any, Any], Any]],
        params: Any,
        *,
        weights: str | Sequence[float] = "mean",
        loss: str = "squared",
        array_namespace: str | None = None,
        chunk_size: int | None = None,
        memory_budget: int = base.DEFAULT_MEMORY_BUDGET,
    ) -> "JaxModel":
        r"""A model whose outputs are per-point terms, in groups.

        Parameters
        ----------
        terms : list of callables
            ``term(params, x) -> scalar``: the residual (or loss) at ONE point.
        params : pytree of arrays
        weights : "mean", "sum" or list of float
            Loss weights ``w_k`` per group: ``L = Σ_k w_k Σ_i φ(r_ki)`` with
            ``φ = ½(·)²`` (``"squared"``) or the identity (``"mean"``);
            ``"mean"`` (default) is ``w_k = 1/N_k`` (``L = ½ Σ_k mean_i r_ki²``),
            ``"sum"`` is 1.
        loss, array_namespace, chunk_size, memory_budget
            As for :class:`JaxModel`; ``chunk_size`` counts points.

        Returns
        -------
        JaxModel
            Its batch is a sequence of arrays of points, one per term (a
            single array for a single term).  The outputs are the weighted
            groups concatenated: ``r_ki √w_k`` (squared) or ``ℓ_ki N w_k`` (mean).

        Raises
        ------
        TypeError
            If ``terms`` is not a list of callables.
        ValueError
            If ``weights`` is invalid; at call time, if a term is not scalar
            or the batch does not hold one array of points per term.

        Notes
        -----
        The Jacobian maps ``value_and_grad(term)`` over chunks of points
        (``lax.map`` with ``batch_size``), inside one compiled function.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> interior = lambda p, x: p["a"][0] * jnp.sum(x)
        >>> boundary = lambda p, x: p["a"][0] - 1.0
        >>> model = JaxModel.from_pointwise([interior, boundary], {"a": jnp.array([2.0])})
        >>> X, Y = jnp.ones((4, 3)), jnp.zeros((1, 3))
        >>> model.jacobian(model.params, (X, Y)).ravel().tolist()
        [1.5, 1.5, 1.5, 1.5, 1.0]
        """
        return cls(
            _Pointwise(terms, weights, loss),
            params,
            loss=loss,
            array_namespace=array_namespace,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
        )

    # -- flat vectors ------------------------------------------------------
    def _is_native(self, x: Any) -> bool:
        return isinstance(x, jax.Array)

    def _data_dtype(self, x: Any) -> Any:
        # A NumPy array is compared by the dtype JAX computes it in: without
        # x64, float64 NumPy data becomes float32 and agrees with float32
        # parameters; under x64 it stays float64 and would promote the outputs.
        # A weakly typed array (a Python float made an array) does not promote.
        if getattr(x, "weak_type", False):
            return None
        if isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
            return jax.dtypes.canonicalize_dtype(x.dtype)
        return None

    def _dtype_advice(self, data: Any) -> str:
        return (
            f"convert the data with jnp.asarray(x, dtype=jnp.{self.dtype}) or build the model "
            f"from {data} parameters (JAX would promote the outputs and Jacobians to "
            f"{jnp.promote_types(data, self.dtype)})"
        )

    def _unflatten(self, theta: Any) -> Any:
        return self._unravel(theta)

    def _flatten(self, structure: Any) -> Any:
        leaves, tree = jax.tree_util.tree_flatten(structure)
        if tree != self._tree:
            raise ValueError(f"structure must have the tree structure {self._tree}, got {tree}")
        for i, (leaf, shape) in enumerate(zip(leaves, self._shapes)):
            if np.shape(leaf) != shape:
                raise ValueError(f"structure leaf {i} must have shape {shape}, got {np.shape(leaf)}")
            dtype = leaf.dtype if hasattr(leaf, "dtype") else jnp.asarray(leaf).dtype
            if jnp.dtype(dtype) != self.dtype:
                raise TypeError(f"structure leaf {i} must have dtype {self.dtype}, got {dtype}")
        return ravel_pytree(structure)[0]

    # -- the function on flat vectors --------------------------------------
    def _f(self, theta: Any, batch: Any) -> Any:
        out = self._fn(self._unravel(theta), batch)
        if not isinstance(out, jax.Array) or out.ndim != 1:
            shape = getattr(out, "shape", type(out).__name__)
            raise ValueError(f"fn must return a 1-D JAX array of shape (N,), got {shape}")
        return out

    def _loss(self, theta: Any, batch: Any) -> Any:
        return self._loss_of(self._f(theta, batch))

    def _out_len(self, theta: Any, batch: Any) -> int:
        key = _signature(batch)
        n = self._out_shapes.get(key)
        if n is None:
            n = self._out_shapes[key] = int(jax.eval_shape(self._f, theta, batch).shape[0])
        return n

    def _residuals(self, theta: Any, batch: Any) -> Any:
        return self._j_res(theta, batch)

    def _jvp(self, theta: Any, batch: Any, v: Any) -> Any:
        return self._j_jvp(theta, batch, v)

    def _vjp(self, theta: Any, batch: Any, u: Any) -> Any:
        return self._residuals_vjp(theta, batch, u, gram=False)[1]

    def _residuals_vjp(self, theta: Any, batch: Any, u: Any, gram: bool) -> tuple[Any, Any, Any]:
        u = self._import(u, "u", size=self._out_len(theta, batch))
        return self._j_rvg(theta, batch, u, gram=gram)

    def _loss_and_grad(self, theta: Any, batch: Any) -> tuple[Any, Any]:
        return self._j_lag(theta, batch)

    def _hvp(self, theta: Any, batch: Any, v: Any) -> Any:
        return self._j_hvp(theta, batch, v)

    def _ggn_vp(self, theta: Any, batch: Any, v: Any) -> Any:
        return self._j_ggn(theta, batch, v)

    def losses_along(self, flat: Any, direction: Any, etas: Sequence[float], batch: Any) -> Any:
        """The loss at ``flat − η·direction`` for each ``η``, in one compiled call.

        Parameters
        ----------
        flat, direction : array, shape (P,)
        etas : sequence of float
        batch

        Returns
        -------
        list of float
            One loss per step size, as for
            :meth:`natgrad.adapters.torch.TorchModel.losses_along`.
        """
        theta = self._import(flat, "flat")
        d = self._import(direction, "direction")
        self._check_batch(batch)
        etas = jnp.asarray(etas, dtype=self.dtype)
        # one device-to-host copy of all the losses (a host synchronisation),
        # rather than one per step size
        return np.asarray(self._j_along(theta, d, etas, batch)).tolist()

    # -- Jacobians -----------------------------------------------------------
    def _jacobian(self, theta: Any, batch: Any) -> tuple[Any, Any]:
        P = self.n_params
        if self._pointwise is not None:
            batch = self._pointwise.check_batch(batch)
            N = sum(int(X.shape[0]) for X in batch)
            k = base.point_chunk(N, P, theta.dtype.itemsize, self._chunk_size, self._memory_budget)
            return self._j_point_jac(theta, batch, k=k)
        N = self._out_len(theta, batch)
        mode = "reverse" if N <= P else "forward"
        key = _signature(batch)
        if key not in self._row_bytes:
            self._row_bytes[key] = _intermediate_bytes(self._f, theta, batch) + P * theta.dtype.itemsize
        k = base.chunk_rows(N if mode == "reverse" else P, self._row_bytes[key], self._chunk_size,
                            self._memory_budget)
        return self._j_jac(theta, batch, mode=mode, k=k)

    def _batched_jacobian(self, theta: Any, batch: Any, mode: str, k: int) -> tuple[Any, Any]:
        fb = lambda t: self._f(t, batch)  # noqa: E731
        if mode == "reverse":
            r, pullback = jax.vjp(fb, theta)
            n = r.shape[0]
            row = lambda i: pullback(jax.nn.one_hot(i, n, dtype=r.dtype))[0]  # noqa: E731
            J = jax.lax.map(row, jnp.arange(n), batch_size=k)
            return r, J
        P = theta.shape[0]
        col = lambda j: jax.jvp(fb, (theta,), (jax.nn.one_hot(j, P, dtype=theta.dtype),))[1]  # noqa: E731
        return fb(theta), jax.lax.map(col, jnp.arange(P), batch_size=k).T


class _Pointwise(base.PointwiseTerms):
    """The batched residual of a pointwise model and its per-point Jacobian."""

    def is_native(self, x: Any) -> bool:
        return isinstance(x, jax.Array)

    def __call__(self, params: Any, batch: Any) -> Any:
        batch = self.check_batch(batch)
        outs = []
        for k, (X, c) in enumerate(zip(batch, self.scales(batch))):
            outs.append(jax.vmap(self.point(k), in_axes=(None, 0))(params, X) * c)
        return jnp.concatenate(outs)

    def jacobian(self, theta: Any, batch: Any, k: int, unravel: Callable[[Any], Any]) -> tuple[Any, Any]:
        """``value_and_grad`` of each term mapped over chunks of ``k`` points (traced once)."""
        rs, Js = [], []
        for i, (X, c) in enumerate(zip(batch, self.scales(batch))):
            vg = jax.value_and_grad(self.point(i, unravel))
            r, J = jax.lax.map(lambda x: vg(theta, x), X, batch_size=min(k, X.shape[0]))
            rs.append(r * c)
            Js.append(J * c)
        return jnp.concatenate(rs), jnp.concatenate(Js)


def _intermediate_bytes(f: Callable[..., Any], theta: Any, batch: Any) -> int:
    """Bytes of the intermediates of ``f``'s forward pass (top-level jaxpr)."""
    jaxpr = jax.make_jaxpr(f)(theta, batch).jaxpr
    total = 0
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            aval = getattr(v, "aval", None)
            if aval is not None and hasattr(aval, "shape"):
                total += int(np.prod(aval.shape)) * jnp.dtype(aval.dtype).itemsize
    return total
