r"""The model protocol and the flat-vector handling shared by every adapter.

A *model* turns a user's function ``fn(params, batch) -> (N,)`` into the
quantities the solvers and optimisers of natgrad consume, all on flat
parameter vectors ``θ`` of length ``P``:

=================================  =============================================
``model.residuals(θ, batch)``      ``r = fn(θ, batch)``, shape ``(N,)``
``model.jacobian(θ, batch)``       ``J = ∂r/∂θ``, shape ``(N, P)``
``model.jvp(θ, batch, v)``         ``J v``, shape ``(N,)``
``model.vjp(θ, batch, u)``         ``Jᵀ u``, shape ``(P,)``
``model.loss_and_grad(θ, batch)``  ``(L(θ), ∇L(θ))``
``model.hvp(θ, batch, v)``         ``∇²L(θ) v`` (the exact Hessian)
``model.ggn_vp(θ, batch, v)``      ``G v`` (Gauss-Newton / empirical Fisher)
=================================  =============================================

Two loss conventions (``model.loss``):

* ``"squared"``: the outputs are residuals, ``L = ½‖r‖²``, ``∇L = Jᵀr`` and
  ``G = JᵀJ`` (the Gauss-Newton matrix of energy natural gradient descent,
  Müller & Zeinhofer, ICML 2023);
* ``"mean"``: the outputs are per-sample losses ``ℓᵢ``, ``L = (1/N) Σ ℓᵢ``,
  the Jacobian rows are the per-sample gradients ``∇ℓᵢ``, ``∇L = Jᵀ1/N`` and
  ``G = JᵀJ/N`` (the empirical Fisher used by inverse-free NGD).
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from .. import backend, validation

__all__ = [
    "LOSSES",
    "Model",
    "FlatModel",
    "check_loss",
    "check_array_namespace",
    "check_terms",
    "check_point_batch",
    "PointwiseTerms",
    "group_scales",
    "chunk_rows",
    "DEFAULT_MEMORY_BUDGET",
    "POINT_ROW_FACTOR",
    "point_chunk",
    "untracked",
    "batch_arrays",
]

#: the two loss conventions a model's ``loss`` may take: ``"squared"``
#: (outputs are residuals, ``L = ½‖r‖²``, Gauss-Newton ``G = JᵀJ``) and
#: ``"mean"`` (outputs are per-sample losses, ``L = mean ℓᵢ``, empirical
#: Fisher ``G = JᵀJ/N``)
LOSSES: tuple[str, ...] = ("squared", "mean")

#: bytes the chunked Jacobians may use for their intermediates (512 MiB)
DEFAULT_MEMORY_BUDGET: int = 2**29

#: parameter-sized arrays one point of a pointwise Jacobian is charged for
#: (its gradient row plus the per-point weight gradients and temporaries of
#: the vmapped backward pass); 32 gives chunks of ~200 points for the
#: 10k-parameter PINN at the default budget, where CPU timings were best
POINT_ROW_FACTOR: int = 32


@runtime_checkable
class Model(Protocol):
    """What the optimisers of :mod:`natgrad.optim` need from a model.

    Every adapter (:class:`~natgrad.adapters.jax.JaxModel`,
    :class:`~natgrad.adapters.torch.TorchModel`,
    :class:`~natgrad.adapters.callables.CallableModel`) satisfies it; so may any
    object written by hand.  A protocol is not instantiated: the parameters
    below are the arguments its methods share.

    Parameters
    ----------
    flat : array, shape (P,)
        First argument of every method but ``flatten``: the parameters as
        one flat vector (of the model's framework, or of the namespace asked
        for with ``array_namespace``), of the model's length and dtype.
    batch : object
        The data, passed on to the user's function unchanged (for pointwise
        models: one array of points per term).
    v : array, shape (P,)
        The tangent of ``jvp``, ``hvp`` and ``ggn_vp``.
    u : array, shape (N,)
        The cotangent of ``vjp``.
    structure : object
        The argument of ``flatten``: parameters in the framework's own
        structure (a pytree, a dict of tensors).

    Attributes
    ----------
    loss : {"squared", "mean"}
        How the output vector is reduced to the loss (one of ``LOSSES``).
    params : array, shape (P,)
        The initial parameters as one flat vector.

    Raises
    ------
    TypeError
        ``Model()`` itself: a protocol cannot be instantiated (build an
        adapter).  The adapters raise it for a flat vector that is not an
        array of their framework (or of ``array_namespace``) or has another
        dtype.
    ValueError
        By the adapters, for a ``loss`` not in ``LOSSES``, a flat vector
        whose length is not ``P``, or a user function whose output does not
        have the expected shape.
    NotImplementedError
        By ``CallableModel``, for a method it was given no function for and
        cannot derive.

    Notes
    -----
    The outputs ``o = fn(θ, batch) ∈ ℝᴺ`` and their Jacobian
    ``J = ∂o/∂θ ∈ ℝᴺˣᴾ`` are reduced by ``loss``:

    * ``"squared"``: ``o = r`` are residuals, ``L = ½‖r‖²``, ``∇L = Jᵀr`` and
      ``ggn_vp`` multiplies by ``G = JᵀJ``, the Gauss-Newton matrix (the
      generalised Gauss-Newton of the squared loss; the Gram matrix of
      energy natural gradient descent, Müller & Zeinhofer, ICML 2023).
    * ``"mean"``: ``oᵢ = ℓᵢ`` are per-sample losses, ``L = (1/N) Σ ℓᵢ``, the
      rows of ``J`` are the per-sample gradients ``∇ℓᵢᵀ``, ``∇L = Jᵀ1/N``
      and ``G = JᵀJ/N`` is the empirical Fisher (the uncentred second
      moment of the per-sample gradients), as used by inverse-free NGD.

    ``hvp`` is the exact Hessian ``∇²L`` in both cases, which differs from
    ``G`` by the second derivatives of ``fn``.  ``isinstance(obj, Model)``
    checks only that the members exist (``typing.runtime_checkable``), not
    their signatures.

    Examples
    --------
    A least-squares model ``r = Aθ − y`` and the same data as per-sample
    losses ``ℓᵢ = ½(aᵢᵀθ − yᵢ)²``, from plain NumPy functions:

    >>> import numpy as np
    >>> from natgrad.adapters import Model
    >>> from natgrad.adapters.callables import CallableModel
    >>> A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> y, v = np.array([1.0, 0.0, -1.0]), np.array([1.0, -1.0])
    >>> sq = CallableModel(residuals=lambda p, y: A @ p - y,
    ...                    jacobian=lambda p, y: A, params=np.zeros(2))
    >>> isinstance(sq, Model), sq.loss
    (True, 'squared')
    >>> loss, grad = sq.loss_and_grad(sq.params, y)
    >>> bool(np.isclose(loss, 0.5 * np.sum(y**2))), bool(np.allclose(grad, -A.T @ y))
    (True, True)
    >>> bool(np.allclose(sq.ggn_vp(sq.params, y, v), A.T @ A @ v))
    True
    >>> mean = CallableModel(residuals=lambda p, y: 0.5 * (A @ p - y) ** 2,
    ...                      jacobian=lambda p, y: (A @ p - y)[:, None] * A,
    ...                      params=np.ones(2), loss="mean")
    >>> theta = mean.params
    >>> J = mean.jacobian(theta, y)
    >>> loss, grad = mean.loss_and_grad(theta, y)
    >>> bool(np.isclose(loss, np.mean(mean.residuals(theta, y)))), bool(np.allclose(grad, J.mean(axis=0)))
    (True, True)
    >>> bool(np.allclose(mean.ggn_vp(theta, y, v), J.T @ (J @ v) / 3))
    True
    """

    loss: str

    @property
    def params(self) -> Any: ...

    def flatten(self, structure: Any) -> Any: ...

    def unflatten(self, flat: Any) -> Any: ...

    def residuals(self, flat: Any, batch: Any) -> Any: ...

    def jacobian(self, flat: Any, batch: Any) -> Any: ...

    def jvp(self, flat: Any, batch: Any, v: Any) -> Any: ...

    def vjp(self, flat: Any, batch: Any, u: Any) -> Any: ...

    def loss_and_grad(self, flat: Any, batch: Any) -> tuple[Any, Any]: ...

    def hvp(self, flat: Any, batch: Any, v: Any) -> Any: ...

    def ggn_vp(self, flat: Any, batch: Any, v: Any) -> Any: ...


# ---------------------------------------------------------------------------
# argument checks (each names the argument)
# ---------------------------------------------------------------------------


def untracked(x: Any) -> Any:
    """``x`` without autodiff tracking: the tracked-input policy of the models
    and optimisers.

    Parameters
    ----------
    x : any
        Typically a flat parameter vector.

    Returns
    -------
    any
        A PyTorch tensor with ``requires_grad=True`` (e.g.
        ``torch.nn.utils.parameters_to_vector(module.parameters())``) comes
        back detached: the same memory, no autograd history, so nothing
        natgrad computes from it is recorded in the user's graph and a later
        ``loss.backward()`` of the user's own is unaffected.  Anything else
        comes back unchanged; a JAX tracer is left for
        :func:`natgrad.backend.namespace` to refuse with
        :class:`~natgrad.backend.TracedArrayError`.

    Notes
    -----
    natgrad computes every derivative it needs through the model (the
    adapter), so the autograd record of its inputs is never needed, and
    natgrad never writes into an input, so sharing the memory is safe.  The
    tensor is recognised by its type's module and ``requires_grad``
    attribute, without importing PyTorch.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.ones(3)
    >>> untracked(a) is a
    True
    """
    if getattr(x, "requires_grad", False) and type(x).__module__.startswith("torch"):
        return x.detach()
    return x


def batch_arrays(batch: Any, name: str = "batch") -> Any:
    """The arrays of a batch with the names an error message gives them.

    Parameters
    ----------
    batch : any
        A single array, or tuples, lists and dicts of them, nested (the
        batches the adapters document).  Other objects (None, Python
        numbers, a custom container) are not entered.
    name : str
        The name of ``batch`` itself.

    Yields
    ------
    (str, object)
        ``("batch", x)``, ``("batch[1]", x)``, ``("batch['y']", x)``, ...:
        each non-container leaf, named by its path.  The caller decides which
        leaves are arrays of its framework.

    Examples
    --------
    >>> import numpy as np
    >>> [n for n, _ in batch_arrays((np.ones(2), {"y": np.zeros(1)}))]
    ['batch[0]', "batch[1]['y']"]
    """
    if isinstance(batch, (tuple, list)):
        for i, item in enumerate(batch):
            yield from batch_arrays(item, f"{name}[{i}]")
    elif isinstance(batch, dict):
        for key, item in batch.items():
            yield from batch_arrays(item, f"{name}[{key!r}]")
    elif batch is not None:
        yield name, batch


def check_loss(loss: Any) -> str:
    """``loss`` must be one of :data:`LOSSES`."""
    return validation.choice(loss, LOSSES, "loss")


_NAMESPACES = {"numpy": "array_api_compat.numpy", "cupy": "array_api_compat.cupy"}


def check_array_namespace(array_namespace: Any) -> ModuleType | None:
    """The namespace flat vectors are handed out in: None (the framework's own)."""
    if array_namespace is None:
        return None
    validation.choice(array_namespace, tuple(_NAMESPACES), "array_namespace")
    try:
        return importlib.import_module(_NAMESPACES[array_namespace])
    except ImportError as err:
        raise ValueError(f"array_namespace={array_namespace!r} is not installed: {err}") from None


def check_terms(terms: Any) -> tuple[Callable[..., Any], ...]:
    """``terms`` must be a non-empty sequence of callables."""
    if callable(terms):
        terms = [terms]
    if not isinstance(terms, Sequence) or isinstance(terms, str) or len(terms) == 0:
        raise TypeError(
            "terms must be a non-empty list of callables term(params, x) -> scalar, "
            f"got {type(terms).__name__}"
        )
    return tuple(validation.callable_arg(term, f"terms[{k}]") for k, term in enumerate(terms))


def check_point_batch(batch: Any, n_terms: int, is_native: Callable[[Any], bool]) -> tuple[Any, ...]:
    """A pointwise batch: one array of points (leading axis = points) per term.

    A single array is accepted for a single term.
    """
    if n_terms == 1 and is_native(batch):
        batch = (batch,)
    if not isinstance(batch, (tuple, list)) or len(batch) != n_terms:
        raise ValueError(
            f"batch must be a sequence of {n_terms} arrays of points (one per term), "
            f"got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )
    for k, X in enumerate(batch):
        if not is_native(X):
            raise TypeError(
                f"batch[{k}] must be an array of the model's framework, got {type(X).__name__}"
            )
        if X.ndim < 1 or X.shape[0] < 1:
            raise ValueError(
                f"batch[{k}] must hold at least one point along axis 0, got shape {tuple(X.shape)}"
            )
    return tuple(batch)


def check_weights(weights: Any, n_terms: int) -> str | tuple[float, ...]:
    """``weights``: "mean", "sum", or one non-negative finite float per term."""
    if isinstance(weights, str):
        if weights not in ("mean", "sum"):
            raise ValueError(f"weights must be 'mean', 'sum' or a list of floats, got {weights!r}")
        return weights
    if not isinstance(weights, Sequence) or len(weights) != n_terms:
        raise ValueError(
            f"weights must be 'mean', 'sum' or a list of {n_terms} floats (one per term), "
            f"got {weights!r}"
        )
    return tuple(validation.nonnegative(w, f"weights[{k}]") for k, w in enumerate(weights))


def group_scales(weights: str | tuple[float, ...], sizes: Sequence[int], loss: str) -> list[float]:
    r"""The factor ``c_k`` each group's outputs are multiplied by.

    The weighted loss is ``L = Σ_k w_k Σ_i φ(o_ki)`` with ``φ(o) = ½o²``
    (``"squared"``) or ``φ(o) = o`` (``"mean"``), ``w_k = 1/N_k`` for
    ``weights="mean"`` and ``w_k = 1`` for ``"sum"``.  Scaling the outputs by
    ``c_k = √w_k`` (squared) or ``c_k = N w_k`` (mean, ``N = Σ N_k``) makes the
    model's plain loss (``½‖r‖²`` or the mean of the outputs) equal to ``L``.
    """
    if weights == "mean":
        w = [1.0 / n for n in sizes]
    elif weights == "sum":
        w = [1.0] * len(sizes)
    else:
        w = list(weights)
    if loss == "squared":
        return [math.sqrt(wk) for wk in w]
    total = sum(sizes)
    return [total * wk for wk in w]


class PointwiseTerms:
    """The per-point terms of a pointwise model, their loss weights and batch checks.

    ``from_pointwise`` of each framework adapter builds a subclass of this
    (which adds ``__call__``, the batched residual, and ``jacobian``, the
    per-point Jacobian) and hands it to the model's constructor as ``fn``.

    Parameters
    ----------
    terms : callable or sequence of callables
        ``term(params, x) -> scalar`` at one point ``x``.
    weights : "mean", "sum" or sequence of float
        The loss weight of each group (see :func:`group_scales`).
    loss : {"squared", "mean"}

    Raises
    ------
    TypeError
        If ``terms`` is not a non-empty list of callables.
    ValueError
        If ``weights`` or ``loss`` is invalid.
    """

    def __init__(self, terms: Any, weights: Any, loss: str) -> None:
        self.terms = check_terms(terms)
        self.weights = check_weights(weights, len(self.terms))
        self.loss = check_loss(loss)

    def is_native(self, x: Any) -> bool:  # pragma: no cover - abstract
        """Whether ``x`` is an array of the framework (a traced one included)."""
        raise NotImplementedError

    def check_batch(self, batch: Any) -> tuple[Any, ...]:
        """One array of points per term (see :func:`check_point_batch`)."""
        return check_point_batch(batch, len(self.terms), self.is_native)

    def scales(self, batch: tuple[Any, ...]) -> list[float]:
        """The factor each group's outputs are multiplied by (:func:`group_scales`)."""
        return group_scales(self.weights, [int(X.shape[0]) for X in batch], self.loss)

    def point(self, k: int, unflatten: Callable[[Any], Any] | None = None) -> Callable[..., Any]:
        """``terms[k]`` as ``(params, x) -> scalar``, checked to return a 0-d array.

        With ``unflatten`` the returned function takes the flat parameter
        vector and unflattens it first.  The check reads only ``ndim``, so it
        works on traced and vmapped arrays.
        """
        term = self.terms[k]

        def point(params: Any, x: Any) -> Any:
            out = term(params if unflatten is None else unflatten(params), x)
            if not self.is_native(out) or out.ndim != 0:
                got = tuple(out.shape) if self.is_native(out) else type(out).__name__
                raise ValueError(f"terms[{k}] must return a scalar (0-d array) at one point, got {got}")
            return out

        return point


def chunk_rows(n: int, bytes_per_row: int, chunk_size: int | None, memory_budget: int) -> int:
    """Rows per chunk: ``chunk_size`` if given, else as many as fit the budget."""
    if chunk_size is not None:
        return max(1, min(n, chunk_size))
    return max(1, min(n, memory_budget // max(1, bytes_per_row)))


def point_chunk(n_points: int, n_params: int, itemsize: int, chunk_size: int | None,
                memory_budget: int) -> int:
    """Points per vmapped chunk of a pointwise Jacobian."""
    return chunk_rows(n_points, POINT_ROW_FACTOR * n_params * itemsize, chunk_size, memory_budget)


# ---------------------------------------------------------------------------
# the shared base class
# ---------------------------------------------------------------------------


class FlatModel:
    """Shared machinery of the framework adapters.

    Subclasses hold the parameters as a flat vector of their framework and
    implement the private hooks ``_residuals``, ``_jacobian``, ``_jvp``,
    ``_vjp``, ``_loss_and_grad``, ``_hvp``, ``_ggn_vp``, ``_flatten`` and
    ``_unflatten`` on framework arrays.  This class validates the flat vectors
    it is given (type, shape ``(P,)``, dtype) and converts to and from NumPy or
    CuPy when ``array_namespace`` asks for it, through DLPack.

    The checks are attribute reads only (no host synchronisation), so the
    overhead over the raw framework call is a few microseconds.
    """

    #: the framework's name in error messages
    framework: str = "framework"

    loss: str
    _theta0: Any
    _export_xp: ModuleType | None
    _native_xp: ModuleType

    def __init__(self, loss: str, array_namespace: str | None) -> None:
        self.loss = check_loss(loss)
        self._export_xp = check_array_namespace(array_namespace)
        self.array_namespace = array_namespace

    # -- subclass hooks ----------------------------------------------------
    def _is_native(self, x: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare_export(self, x: Any) -> Any:
        return x

    def _data_dtype(self, x: Any) -> Any:  # pragma: no cover - abstract
        """The dtype a floating data array ``x`` computes in, None for anything else."""
        raise NotImplementedError

    def _dtype_advice(self, data: Any) -> str:
        """How to bring data of dtype ``data`` and the parameters together."""
        return f"convert the data to {self.dtype}, or build the model from {data} parameters"

    # -- conversion and validation -----------------------------------------
    def _check_batch(self, batch: Any) -> Any:
        """``batch``, after checking that its floating arrays have the model's dtype.

        A float64 batch for float32 parameters (or the reverse) would
        otherwise surface as the framework's own error from deep inside the
        user's function (PyTorch: ``mat1 and mat2 must have the same
        dtype``), or be silently promoted (JAX under x64, elementwise PyTorch
        operations) into outputs and Jacobians of another dtype than the
        parameters.  Integer and boolean arrays (labels, indices) and
        non-arrays pass.  Reads ``dtype`` attributes only: no host
        synchronisation, a few microseconds per call.
        """
        for name, x in batch_arrays(batch):
            data = self._data_dtype(x)
            if data is not None and data != self.dtype:
                raise TypeError(
                    f"{name} is {data} but the model's parameters are {self.dtype}; "
                    + self._dtype_advice(data)
                )
        return batch

    @property
    def n_params(self) -> int:
        """Number of parameters ``P``."""
        return int(self._theta0.shape[0])

    @property
    def dtype(self) -> Any:
        """The framework dtype of the parameters (and of every flat vector)."""
        return self._theta0.dtype

    def _export(self, x: Any) -> Any:
        if self._export_xp is None:
            return x
        return backend.to_namespace(self._prepare_export(x), self._export_xp)

    def _import(self, x: Any, name: str, size: int | None = None, *, detach: bool = True) -> Any:
        """``x`` as a framework vector of length ``size`` (default P) and the
        model dtype, detached from autograd (:func:`untracked`) unless
        ``detach=False`` (``unflatten``, a reshaping the user may differentiate)."""
        if detach:
            x = untracked(x)
        if not self._is_native(x):
            if self._export_xp is not None and backend.is_array(x):
                x = backend.to_namespace(x, self._native_xp)
            else:
                raise TypeError(
                    f"{name} must be a {self.framework} array"
                    + (f" or a {self.array_namespace} array" if self._export_xp is not None else "")
                    + f", got {type(x).__name__}"
                )
        n = self.n_params if size is None else size
        if tuple(x.shape) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {tuple(x.shape)}")
        if x.dtype != self._theta0.dtype:
            raise TypeError(f"{name} must have dtype {self._theta0.dtype}, got {x.dtype}")
        return x

    def _check_output(self, r: Any, what: str = "fn") -> Any:
        if not self._is_native(r) or r.ndim != 1:
            shape = tuple(getattr(r, "shape", ())) if self._is_native(r) else type(r).__name__
            raise ValueError(
                f"{what} must return a 1-D {self.framework} array of shape (N,), got {shape}"
            )
        return r

    # -- the public contract -------------------------------------------------
    @property
    def params(self) -> Any:
        """The initial parameters as one flat vector, shape ``(P,)``.

        Returns
        -------
        array, shape (P,)
            A framework array, or a NumPy/CuPy array when the model was built
            with ``array_namespace``.  A fresh copy: updating it in place does
            not change the model.
        """
        return self._export(self._copy(self._theta0))

    def _copy(self, x: Any) -> Any:  # pragma: no cover - overridden
        return x

    def flatten(self, structure: Any) -> Any:
        """The framework's parameter structure as one flat vector ``(P,)``.

        Parameters
        ----------
        structure
            Parameters in the structure the model was built from (a pytree of
            the same tree structure and leaf shapes, or a dict with the same
            names and shapes).

        Returns
        -------
        array, shape (P,)
            A new vector (with PyTorch, detached from autograd), bit for bit
            the values of ``structure``: ``flatten(unflatten(θ))`` equals
            ``θ`` exactly.

        Raises
        ------
        ValueError, TypeError
            If ``structure`` does not match the model's parameters.
        """
        return self._export(self._flatten(structure))

    def unflatten(self, flat: Any) -> Any:
        """A flat vector back in the framework's parameter structure.

        Parameters
        ----------
        flat : array, shape (P,)

        Returns
        -------
        pytree or dict of tensors
            The round trip back into the framework.  ``JaxModel``: the
            parameter pytree, of the tree structure, leaf shapes and dtype
            the model was built from, its leaves JAX arrays (NumPy leaves come
            back as JAX arrays) holding the values of ``flat`` bit for bit.
            ``TorchModel``: a dict of name → tensor, views of ``flat``; to
            write them into an ``nn.Module`` use
            :meth:`~natgrad.adapters.torch.TorchModel.load_into`.

        Raises
        ------
        TypeError, ValueError
            If ``flat`` is not a vector of the model's framework, length and dtype.
        """
        return self._unflatten(self._import(flat, "flat", detach=False))

    def residuals(self, flat: Any, batch: Any) -> Any:
        """The outputs of ``fn`` on the batch: residuals or per-sample losses.

        Parameters
        ----------
        flat : array, shape (P,)
        batch
            Passed to ``fn`` unchanged.  Its floating arrays (a single array,
            or inside tuples, lists and dicts) must have the parameters'
            dtype; integer and boolean arrays may be anything.

        Returns
        -------
        array, shape (N,)

        Raises
        ------
        TypeError, ValueError
            If ``flat`` has the wrong type, length or dtype, or ``fn`` does not
            return a vector.  ``TypeError`` also for a floating array of the
            batch whose dtype is not the parameters' (the message names both
            dtypes and the array, e.g. ``batch[0]``); every method that takes
            a batch checks it the same way.
        """
        return self._export(self._residuals(self._import(flat, "flat"), self._check_batch(batch)))

    def jacobian(self, flat: Any, batch: Any) -> Any:
        """The Jacobian ``J = ∂r/∂θ`` of the outputs, shape ``(N, P)``.

        Parameters
        ----------
        flat : array, shape (P,)
        batch

        Returns
        -------
        array, shape (N, P)
            For ``loss="mean"`` the rows are the per-sample gradients.

        Notes
        -----
        Batched functions are differentiated in reverse mode (one backward
        pass per output, vmapped over chunks of rows) when ``N ≤ P`` and in
        forward mode (one tangent per parameter, in chunks of columns)
        otherwise; pointwise models vmap the per-point gradient over chunks
        of points.  Chunks are sized to the model's memory budget.
        """
        return self._export(self._jacobian(self._import(flat, "flat"), self._check_batch(batch))[1])

    def residuals_and_jacobian(self, flat: Any, batch: Any) -> tuple[Any, Any]:
        """``(residuals, jacobian)`` sharing the forward pass.

        Parameters
        ----------
        flat : array, shape (P,)
        batch

        Returns
        -------
        r : array, shape (N,)
        J : array, shape (N, P)
        """
        r, J = self._jacobian(self._import(flat, "flat"), self._check_batch(batch))
        return self._export(r), self._export(J)

    def jvp(self, flat: Any, batch: Any, v: Any) -> Any:
        """The Jacobian-vector product ``J v`` (forward mode).

        Parameters
        ----------
        flat : array, shape (P,)
        batch
        v : array, shape (P,)

        Returns
        -------
        array, shape (N,)
        """
        theta = self._import(flat, "flat")
        return self._export(self._jvp(theta, self._check_batch(batch), self._import(v, "v")))

    def vjp(self, flat: Any, batch: Any, u: Any) -> Any:
        """The vector-Jacobian product ``Jᵀ u`` (reverse mode).

        Parameters
        ----------
        flat : array, shape (P,)
        batch
        u : array, shape (N,)

        Returns
        -------
        array, shape (P,)

        Raises
        ------
        ValueError
            If ``u`` does not have the length ``N`` of the outputs.
        """
        theta = self._import(flat, "flat")
        return self._export(self._vjp(theta, self._check_batch(batch), u))

    def residuals_and_vjp(self, flat: Any, batch: Any, u: Any) -> tuple[Any, Any]:
        """``(r, Jᵀu)``: the outputs and a vector-Jacobian product from one forward pass.

        Parameters
        ----------
        flat : array, shape (P,)
        batch
        u : array, shape (N,)

        Returns
        -------
        r : array, shape (N,)
            As :meth:`residuals`.
        vjp : array, shape (P,)
            As :meth:`vjp`.

        Raises
        ------
        ValueError
            If ``u`` does not have the length ``N`` of the outputs.

        Notes
        -----
        :meth:`residuals` followed by :meth:`vjp` runs ``fn`` forward twice;
        the PyTorch adapter keeps the one forward pass of the VJP and the
        JAX adapter compiles both into one function (FNGD's reuse step needs
        both, ``benchmarks/bench_fngd.py``).

        Examples
        --------
        >>> import torch
        >>> from natgrad.adapters.torch import TorchModel
        >>> X = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=torch.float64)
        >>> model = TorchModel(lambda p, X: X @ p["w"], {"w": torch.ones(2, dtype=torch.float64)})
        >>> u = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
        >>> r, g = model.residuals_and_vjp(model.params, X, u)
        >>> r.tolist(), g.tolist()  # r = X w, Jᵀu = Xᵀu
        ([3.0, 7.0, 11.0], [-4.0, -4.0])
        """
        r, g, _ = self._residuals_vjp(self._import(flat, "flat"), self._check_batch(batch), u, gram=False)
        return self._export(r), self._export(g)

    def residuals_vjp_and_gram(self, flat: Any, batch: Any, u: Any) -> tuple[Any, Any, Any]:
        r"""``(r, Jᵀu, J(Jᵀu))``: the outputs, a VJP and the product of the Gram matrix ``JJᵀ`` with ``u``.

        Parameters
        ----------
        flat : array, shape (P,)
        batch
        u : array, shape (N,)

        Returns
        -------
        r : array, shape (N,)
        vjp : array, shape (P,)
            ``Jᵀu``.
        gram : array, shape (N,)
            ``JJᵀu`` (for ``loss="mean"`` the per-sample gradients' Gram
            matrix, the empirical NTK, times ``u``).

        Raises
        ------
        ValueError
            If ``u`` does not have the length ``N`` of the outputs.

        Notes
        -----
        The PyTorch adapter computes all three from one forward pass: the
        VJP ``u ↦ Jᵀu`` is linear in ``u``, so its own VJP with the cotangent
        ``w`` is ``J w`` — a second reverse pass through the graph the first
        one kept (the transpose trick, e.g. Griewank & Walther, *Evaluating
        Derivatives*, 2008, §5.4).  On the digits MLP of
        ``benchmarks/bench_fngd.py`` (``N = 128``, ``P = 4810``) it took
        3.9 ms against 7.9 ms for :meth:`residuals`, :meth:`vjp` and a
        forward-mode :meth:`jvp` timed alone in the same run
        (``benchmarks/results/fngd.md``).  The JAX adapter compiles the VJP and the
        JVP into one function (XLA shares their forward pass); other
        adapters run those three methods.

        Examples
        --------
        A linear model ``r = X w``: ``J = X``, so the Gram product is ``XXᵀu``.

        >>> import torch
        >>> from natgrad.adapters.torch import TorchModel
        >>> X = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=torch.float64)
        >>> model = TorchModel(lambda p, X: X @ p["w"], {"w": torch.ones(2, dtype=torch.float64)})
        >>> u = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
        >>> r, g, Jg = model.residuals_vjp_and_gram(model.params, X, u)
        >>> g.tolist(), Jg.tolist(), (X @ (X.T @ u)).tolist()
        ([-4.0, -4.0], [-12.0, -28.0, -44.0], [-12.0, -28.0, -44.0])
        """
        r, g, Jg = self._residuals_vjp(self._import(flat, "flat"), self._check_batch(batch), u, gram=True)
        return self._export(r), self._export(g), self._export(Jg)

    def loss_and_grad(self, flat: Any, batch: Any) -> tuple[Any, Any]:
        """The loss and its gradient.

        Parameters
        ----------
        flat : array, shape (P,)
        batch

        Returns
        -------
        loss : 0-d array
            ``½‖r‖²`` (``"squared"``) or ``mean ℓᵢ`` (``"mean"``).
        grad : array, shape (P,)
            ``Jᵀ r`` or ``Jᵀ 1 / N``.
        """
        loss, grad = self._loss_and_grad(self._import(flat, "flat"), self._check_batch(batch))
        return self._export(loss), self._export(grad)

    def hvp(self, flat: Any, batch: Any, v: Any) -> Any:
        """The exact Hessian-vector product ``∇²L(θ) v`` of the loss.

        Parameters
        ----------
        flat : array, shape (P,)
        batch
        v : array, shape (P,)

        Returns
        -------
        array, shape (P,)

        Notes
        -----
        Forward-over-reverse (Pearlmutter 1994): the directional derivative
        of the gradient, ``d/dt ∇L(θ + t v)|_{t=0}``, at the cost of about
        two gradients.  Unlike :meth:`ggn_vp` it includes the second
        derivatives of ``fn``: for ``"squared"``,
        ``∇²L = JᵀJ + Σᵢ rᵢ ∇²rᵢ``.
        """
        theta = self._import(flat, "flat")
        return self._export(self._hvp(theta, self._check_batch(batch), self._import(v, "v")))

    def ggn_vp(self, flat: Any, batch: Any, v: Any) -> Any:
        """The Gauss-Newton product ``JᵀJ v`` (``"squared"``) or ``JᵀJ v / N``
        (``"mean"``, the empirical Fisher).

        Parameters
        ----------
        flat : array, shape (P,)
        batch
        v : array, shape (P,)

        Returns
        -------
        array, shape (P,)

        Notes
        -----
        One JVP followed by one VJP; ``J`` is never formed.
        """
        theta = self._import(flat, "flat")
        return self._export(self._ggn_vp(theta, self._check_batch(batch), self._import(v, "v")))

    # -- shared derivations on framework arrays ----------------------------
    def _loss_of(self, r: Any) -> Any:
        if self.loss == "squared":
            return 0.5 * (r * r).sum()
        return r.mean()

    # subclasses implement these
    def _residuals(self, theta: Any, batch: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _jacobian(self, theta: Any, batch: Any) -> tuple[Any, Any]:  # pragma: no cover
        raise NotImplementedError

    def _jvp(self, theta: Any, batch: Any, v: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _vjp(self, theta: Any, batch: Any, u: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _residuals_vjp(self, theta: Any, batch: Any, u: Any, gram: bool) -> tuple[Any, Any, Any]:
        """``(r, Jᵀu, J(Jᵀu) if gram else None)``; adapters that can share the
        forward pass override this composition of the other hooks."""
        r = self._residuals(theta, batch)
        g = self._vjp(theta, batch, u)
        return r, g, (self._jvp(theta, batch, g) if gram else None)

    def _loss_and_grad(self, theta: Any, batch: Any) -> tuple[Any, Any]:  # pragma: no cover
        raise NotImplementedError

    def _hvp(self, theta: Any, batch: Any, v: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _ggn_vp(self, theta: Any, batch: Any, v: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _flatten(self, structure: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _unflatten(self, theta: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(P={self.n_params}, loss={self.loss!r}, "
            f"dtype={self.dtype}, array_namespace={self.array_namespace!r})"
        )
