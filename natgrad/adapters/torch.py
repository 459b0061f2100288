r"""PyTorch adapter: :class:`TorchModel` built on ``torch.func``.

The parameters are a dict ``name -> tensor`` (e.g.
``dict(module.named_parameters())``), held as one flat vector ``θ`` of
length ``P``; ``unflatten`` hands the function views of ``θ``.  All
derivatives come from ``torch.func`` (``functional_call``, ``vjp``, ``jvp``,
``jacrev``-style vmapped VJPs, ``grad``), so tensors stay on their device
(CUDA included) and nothing is copied to the host.

This module imports PyTorch; ``import natgrad.adapters`` does not.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch.func import functional_call, grad, grad_and_value, jvp, vjp, vmap
from torch.utils._pytree import tree_leaves

import array_api_compat.torch as _torch_xp

from .. import backend, validation
from . import base
from ._torch_laplacian import forward_laplacian, laplacian
from .torch_compress import CompressedLinear, compress  # noqa: F401  (network compression)

__all__ = ["TorchModel", "laplacian", "forward_laplacian", "compress", "CompressedLinear"]


class TorchModel(base.FlatModel):
    r"""A PyTorch function ``fn(params, batch) -> (N,)`` as a natgrad model.

    Parameters
    ----------
    fn : callable
        ``fn(params, batch)`` with ``params`` a dict of tensors shaped like
        ``params`` below; returns a 1-D tensor: the residuals
        (``loss="squared"``) or the per-sample losses (``loss="mean"``).
        Write it with ``torch.func``-compatible operations (no in-place
        updates of the parameters, no ``.item()``).
    params : dict of str to torch.Tensor, or torch.Tensor
        The initial parameters; all floating, of one dtype and one device.
        A single tensor is treated as the only parameter.
    loss : {"squared", "mean"}
        ``"squared"``: ``L = ½‖r‖²``, ``∇L = Jᵀr``, GGN ``JᵀJ``;
        ``"mean"``: ``L = mean ℓᵢ``, ``∇L = Jᵀ1/N``, Fisher ``JᵀJ/N``.
    array_namespace : {None, "numpy", "cupy"}
        Hand out flat vectors as tensors (None) or as NumPy/CuPy arrays
        through DLPack (zero-copy on the same device).  Flat vectors given
        to the model may be of either kind.
    chunk_size : int, optional
        Rows (outputs or points) per vmapped chunk of the Jacobian; default:
        as many as fit ``memory_budget``.
    memory_budget : int
        Bytes the Jacobian's vmapped intermediates may take (default 512 MiB).

    Attributes
    ----------
    loss : str
    n_params : int
    dtype : torch.dtype
    device : torch.device

    Raises
    ------
    TypeError
        If ``fn`` is not callable or ``params`` is not a dict of floating
        tensors (or a tensor) of one dtype and device.
    ValueError
        If ``loss`` or ``array_namespace`` is unknown.

    Notes
    -----
    *Jacobian.* For a batched ``fn`` the forward pass runs once; then, when
    ``N ≤ P``, the VJP is vmapped over chunks of unit cotangents (reverse
    mode, one row each), otherwise the JVP over chunks of unit tangents
    (forward mode, one column each).  :meth:`from_pointwise` models vmap the
    per-point gradient over chunks of points instead, which is much cheaper
    for PINNs since each point's graph is tiny.

    *HVP.* ``hvp`` is forward-over-reverse, ``jvp(grad(L))`` (Pearlmutter
    1994): the exact Hessian of the loss, including ``Σ rᵢ∇²rᵢ``.

    *GGN.* ``ggn_vp`` is ``vjp(jvp(v))``: ``JᵀJv`` (or ``JᵀJv/N``), the
    matrix of ENGD (Müller & Zeinhofer 2023; Guzmán-Cordero et al.,
    arXiv 2505.12149) and of the empirical Fisher.

    Examples
    --------
    >>> import torch
    >>> A = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=torch.float64)
    >>> fn = lambda p, b: A @ p["w"] - b
    >>> model = TorchModel(fn, {"w": torch.zeros(2, dtype=torch.float64)})
    >>> b = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    >>> bool(torch.equal(model.jacobian(model.params, b), A))
    True
    >>> loss, g = model.loss_and_grad(model.params, b)
    >>> float(loss), g.tolist()          # ½‖b‖², Aᵀ(−b)
    (1.0, [-6.0, -8.0])
    """

    framework = "PyTorch"
    _native_xp = _torch_xp

    def __init__(
        self,
        fn: Callable[[Any, Any], Any],
        params: Mapping[str, torch.Tensor] | torch.Tensor,
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
        self._single = isinstance(params, torch.Tensor)
        if self._single:
            params = {"": params}
        if not isinstance(params, Mapping) or len(params) == 0:
            raise TypeError(
                "params must be a non-empty dict of name -> torch.Tensor (e.g. "
                f"dict(module.named_parameters())) or a tensor, got {type(params).__name__}"
            )
        for name, t in params.items():
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                what = f"{t.dtype} tensor" if isinstance(t, torch.Tensor) else type(t).__name__
                raise TypeError(f"params[{name!r}] must be a floating torch.Tensor, got {what}")
        first = next(iter(params.values()))
        for name, t in params.items():
            if t.dtype != first.dtype or t.device != first.device:
                raise TypeError(
                    f"params[{name!r}] is {t.dtype} on {t.device} but the first parameter is "
                    f"{first.dtype} on {first.device}; all parameters must share dtype and device"
                )
        self._names = tuple(params)
        self._shapes = tuple(tuple(params[k].shape) for k in self._names)
        self._numels = tuple(int(params[k].numel()) for k in self._names)
        with torch.no_grad():
            self._theta0 = torch.cat([params[k].detach().reshape(-1) for k in self._names])
        # from_pointwise passes its _Pointwise as fn: the per-point Jacobian
        # path is chosen here, at construction, not patched in afterwards
        self._pointwise = fn if isinstance(fn, _Pointwise) else None
        self._row_bytes: dict[Any, int] = {}
        self._modes: dict[Any, str] = {}

    # -- constructors ------------------------------------------------------
    @classmethod
    def from_pointwise(
        cls,
        terms: Sequence[Callable[[Any, Any], Any]],
        params: Mapping[str, torch.Tensor] | torch.Tensor,
        *,
        weights: str | Sequence[float] = "mean",
        loss: str = "squared",
        array_namespace: str | None = None,
        chunk_size: int | None = None,
        memory_budget: int = base.DEFAULT_MEMORY_BUDGET,
    ) -> "TorchModel":
        r"""A model whose outputs are per-point terms, in groups.

        Parameters
        ----------
        terms : list of callables
            ``term(params, x) -> 0-d tensor``: the residual (or loss) at ONE
            point ``x`` (e.g. an interior PDE residual and a boundary residual).
        params : dict of str to torch.Tensor, or torch.Tensor
        weights : "mean", "sum" or list of float
            Loss weights ``w_k`` per group: the loss is
            ``Σ_k w_k Σ_i φ(r_ki)`` with ``φ = ½(·)²`` (``"squared"``) or
            ``φ = identity`` (``"mean"``).  ``"mean"`` (default) is
            ``w_k = 1/N_k``, so ``L = ½ Σ_k mean_i r_ki²``; ``"sum"`` is 1.
        loss, array_namespace, chunk_size, memory_budget
            As for :class:`TorchModel`; ``chunk_size`` counts points.

        Returns
        -------
        TorchModel
            Its ``batch`` is a sequence of tensors, one per term, each of
            shape ``(N_k, ...)`` (points along axis 0); a single tensor is
            accepted for a single term.  The outputs are the concatenated,
            weighted groups: ``r_ki √w_k`` (squared) or ``ℓ_ki N w_k`` (mean).

        Raises
        ------
        TypeError
            If ``terms`` is not a list of callables.
        ValueError
            If ``weights`` is not "mean", "sum" or one non-negative float per term;
            at call time, if a term does not return a scalar or the batch
            does not hold one array of points per term.

        Notes
        -----
        The Jacobian is ``vmap(grad_and_value(term))`` over chunks of points:
        each point's graph is tiny, so this avoids the huge batched
        reverse-mode graph (measured for the 5-D Poisson PINN of
        arXiv 2505.12149: 1–2 s instead of 30 s for ``jacrev`` of the batched
        residual).  Residuals, JVPs, VJPs and HVPs use the vmapped residual.

        Examples
        --------
        >>> import torch
        >>> p = {"a": torch.tensor([2.0], dtype=torch.float64)}
        >>> interior = lambda p, x: p["a"][0] * x.sum()
        >>> boundary = lambda p, x: p["a"][0] - 1.0
        >>> model = TorchModel.from_pointwise([interior, boundary], p)
        >>> X, Y = torch.ones(4, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)
        >>> model.jacobian(model.params, (X, Y)).flatten().tolist()   # 3/√4, 1/√1
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

    @classmethod
    def from_module(
        cls,
        module: torch.nn.Module,
        fn: Callable[[Any, Any], Any],
        *,
        loss: str = "squared",
        array_namespace: str | None = None,
        chunk_size: int | None = None,
        memory_budget: int = base.DEFAULT_MEMORY_BUDGET,
    ) -> "TorchModel":
        """A model of an ``nn.Module``'s parameters where ``fn`` sees its output.

        Parameters
        ----------
        module : torch.nn.Module
            Its parameters (``named_parameters``) become the model's
            parameters; buffers stay the module's own.
        fn : callable
            ``fn(output, batch) -> (N,)`` where ``output = module(batch[0])``
            for a tuple/list batch such as ``(inputs, targets)``, and
            ``output = module(batch)`` for a tensor batch.
        loss, array_namespace, chunk_size, memory_budget
            As for :class:`TorchModel`.

        Returns
        -------
        TorchModel

        Raises
        ------
        TypeError
            If ``module`` is not an ``nn.Module`` or has no parameters.

        Examples
        --------
        >>> import torch
        >>> net = torch.nn.Linear(3, 1, dtype=torch.float64)
        >>> model = TorchModel.from_module(net, lambda out, b: out[:, 0] - b[1])
        >>> X, y = torch.ones(5, 3, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
        >>> model.jacobian(model.params, (X, y)).shape
        torch.Size([5, 4])
        """
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        params = {k: v.detach() for k, v in module.named_parameters()}
        if not params:
            raise TypeError("module has no parameters")
        fn = validation.callable_arg(fn, "fn")

        def module_fn(p: Any, batch: Any) -> Any:
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            return fn(functional_call(module, p, (inputs,)), batch)

        return cls(
            module_fn,
            params,
            loss=loss,
            array_namespace=array_namespace,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
        )

    # -- flat vectors ------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """The device of the parameters."""
        return self._theta0.device

    def _is_native(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def _prepare_export(self, x: Any) -> Any:
        return x.detach()

    def _data_dtype(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return x.dtype
        return None

    def _dtype_advice(self, data: Any) -> str:
        model = {torch.float64: ".double()", torch.float32: ".float()"}.get(data, f".to({data})")
        return (
            f"convert the data with .to({self.dtype}) or the model with {model} "
            "(before building the TorchModel)"
        )

    def _copy(self, x: Any) -> Any:
        return x.clone()

    def _unflatten(self, theta: torch.Tensor) -> Any:
        parts = torch.split(theta, self._numels)
        if self._single:
            return parts[0].view(self._shapes[0])
        return {k: t.view(s) for k, t, s in zip(self._names, parts, self._shapes)}

    def _flatten(self, structure: Any) -> torch.Tensor:
        if self._single:
            structure = {"": structure}
        if not isinstance(structure, Mapping) or set(structure) != set(self._names):
            got = sorted(structure) if isinstance(structure, Mapping) else type(structure).__name__
            raise ValueError(
                f"structure must be a dict with the model's parameter names {list(self._names)}, got {got}"
            )
        parts = []
        for k, shape in zip(self._names, self._shapes):
            t = structure[k]
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"structure[{k!r}] must be a tensor of shape {shape}, got {got}")
            parts.append(t.detach().reshape(-1))
        flat = torch.cat(parts)
        if flat.dtype != self.dtype:
            raise TypeError(f"structure must have dtype {self.dtype}, got {flat.dtype}")
        return flat

    def load_into(self, module: torch.nn.Module, flat: Any) -> torch.nn.Module:
        """Write a flat parameter vector into ``module``'s parameters, in place.

        The round trip back into PyTorch: after training on flat vectors,
        ``model.load_into(net, params)`` makes ``net``'s own forward compute
        with the trained parameters.  Each of the model's parameters is
        written into the module parameter of the same name
        (``module.named_parameters()``).

        Parameters
        ----------
        module : torch.nn.Module
            Must have a parameter of each of the model's names, of the same
            shape; it may have others, which are left as they are.
        flat : array, shape (P,)
            The parameters as one flat vector (a tensor, or a NumPy/CuPy
            array for a model built with ``array_namespace``), of the model's
            dtype.

        Returns
        -------
        torch.nn.Module
            ``module`` itself.  Its parameter objects are kept (only their
            values change), so a ``torch.optim`` optimiser or hooks that
            hold them stay valid; ``requires_grad`` is unchanged.

        Raises
        ------
        TypeError
            If ``module`` is not an ``nn.Module``, or ``flat`` is not a
            vector of the model's framework and dtype.
        ValueError
            If ``flat`` does not have length ``P``, the model was built from a
            single tensor (it has no parameter names), or ``module`` lacks a
            parameter of the model or has it in another shape (the message
            names it).  Nothing is written then: all names and shapes are
            checked before the first write.

        Notes
        -----
        The values are copied under ``torch.no_grad()`` with ``Tensor.copy_``,
        which converts them to each module parameter's own dtype and device:
        a float64 model writes into a float32 module (rounding each value to
        float32), and a model on the CPU into a module on a GPU.  This is the
        one place where the adapter moves data between devices, because the
        module's device is where the user asked the values to go.

        Examples
        --------
        >>> import torch
        >>> net = torch.nn.Linear(2, 1, dtype=torch.float64)
        >>> model = TorchModel.from_module(net, lambda out, b: out[:, 0] - b[1])
        >>> theta = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)  # weight (1, 2), bias (1,)
        >>> _ = model.load_into(net, theta)
        >>> net.weight.tolist(), net.bias.tolist()
        ([[1.0, 2.0]], [3.0])
        >>> bool(torch.equal(model.flatten(dict(net.named_parameters())), theta))
        True
        """
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if self._single:
            raise ValueError(
                "load_into needs parameter names, but this model was built from a single tensor; "
                "build it from dict(module.named_parameters()) or with TorchModel.from_module"
            )
        values = self._unflatten(self._import(flat, "flat"))
        targets = dict(module.named_parameters())
        for name in self._names:
            if name not in targets:
                raise ValueError(
                    f"module has no parameter {name!r} (the model's parameters are "
                    f"{list(self._names)}, the module's {list(targets)})"
                )
            if tuple(targets[name].shape) != tuple(values[name].shape):
                raise ValueError(
                    f"module parameter {name!r} has shape {tuple(targets[name].shape)}, "
                    f"but the model's {name!r} has shape {tuple(values[name].shape)}"
                )
        with torch.no_grad():
            for name in self._names:
                targets[name].copy_(values[name])
        return module

    # -- the function on flat vectors --------------------------------------
    def _f(self, theta: torch.Tensor, batch: Any) -> torch.Tensor:
        return self._check_output(self._fn(self._unflatten(theta), batch))

    def _residuals(self, theta: torch.Tensor, batch: Any) -> torch.Tensor:
        return self._f(theta, batch).detach()

    def _jvp(self, theta: torch.Tensor, batch: Any, v: torch.Tensor) -> torch.Tensor:
        if self._pointwise is not None:
            return self._pointwise.jvp(theta, batch, v, self._unflatten)
        return jvp(lambda th: self._f(th, batch), (theta,), (v,))[1]

    def _vjp(self, theta: torch.Tensor, batch: Any, u: Any) -> torch.Tensor:
        return self._residuals_vjp(theta, batch, u, gram=False)[1]

    def _residuals_vjp(self, theta: torch.Tensor, batch: Any, u: Any, gram: bool) -> tuple[Any, Any, Any]:
        r, pullback = vjp(lambda th: self._f(th, batch), theta)
        u = self._import(u, "u", size=r.shape[0])
        if not gram:
            return r.detach(), pullback(u)[0], None
        # the pullback is linear in u, so its VJP with cotangent g is J g: a second
        # reverse pass through the kept graph, cheaper on the CPU than forward mode
        g, transpose = vjp(lambda w: pullback(w)[0], u)
        return r.detach(), g, transpose(g)[0]

    def _loss(self, theta: torch.Tensor, batch: Any) -> torch.Tensor:
        return self._loss_of(self._f(theta, batch))

    def _loss_and_grad(self, theta: torch.Tensor, batch: Any) -> tuple[Any, Any]:
        g, value = grad_and_value(self._loss)(theta, batch)
        return value.detach(), g

    def _hvp(self, theta: torch.Tensor, batch: Any, v: torch.Tensor) -> torch.Tensor:
        return jvp(lambda th: grad(self._loss)(th, batch), (theta,), (v,))[1]

    def _ggn_vp(self, theta: torch.Tensor, batch: Any, v: torch.Tensor) -> torch.Tensor:
        r, pullback = vjp(lambda th: self._f(th, batch), theta)
        Jv = jvp(lambda th: self._f(th, batch), (theta,), (v,))[1]
        out = pullback(Jv)[0]
        return out / r.shape[0] if self.loss == "mean" else out

    # -- Jacobians -----------------------------------------------------------
    def _jacobian(self, theta: torch.Tensor, batch: Any) -> tuple[Any, Any]:
        if self._pointwise is not None:
            return self._pointwise.jacobian(
                theta, batch, self._unflatten, self._chunk_size, self._memory_budget
            )
        key = _signature(batch)
        if self._modes.get(key) != "forward":
            r, pullback = vjp(lambda th: self._f(th, batch), theta)
            n = r.shape[0]
            if n <= self.n_params:
                k = self._rows_per_chunk(key, theta, batch, n)
                return r.detach(), _stack_units(lambda E: vmap(pullback)(E)[0], n, k, theta)
            self._modes[key] = "forward"
            del pullback
            r = r.detach()
        else:
            r = self._f(theta, batch).detach()
        n, P = r.shape[0], self.n_params
        k = self._rows_per_chunk(key, theta, batch, P)
        push = lambda E: vmap(lambda e: jvp(lambda th: self._f(th, batch), (theta,), (e,))[1])(E)  # noqa: E731
        return r, _stack_units(push, P, k, theta, transpose_to=n)

    def _rows_per_chunk(self, key: Any, theta: torch.Tensor, batch: Any, count: int) -> int:
        """Rows per vmapped chunk: each row of a batched VJP/JVP touches about
        as many bytes as the forward pass saves for backward, plus one row."""
        if self._chunk_size is None and key not in self._row_bytes:
            self._row_bytes[key] = _saved_bytes(self, theta, batch) + self.n_params * theta.element_size()
        per_row = self._row_bytes.get(key, 1)
        return base.chunk_rows(count, per_row, self._chunk_size, self._memory_budget)

    def losses_along(self, flat: Any, direction: Any, etas: Sequence[float], batch: Any) -> list[float]:
        """The loss at ``flat − η·direction`` for each step size ``η``.

        Parameters
        ----------
        flat, direction : array, shape (P,)
        etas : sequence of float
        batch

        Returns
        -------
        list of float

        Notes
        -----
        One no-grad loss evaluation per step size.  Batching the grid with
        ``torch.func.vmap`` over the stacked parameter vectors was measured
        and is slower on the CPU: for the 5-D Poisson PINN (31 step sizes)
        0.69 s against 0.59 s at P = 10,065, N = 3500 and 0.086 s against
        0.047 s at P = 1281, N = 1250, because the per-step-size weights turn
        each layer's one large matrix product into many small batched ones.
        (The JAX adapter compiles each call's step sizes into one call, where
        XLA fuses them; the line search asks for four at a time.)
        """
        theta = self._import(flat, "flat")
        d = self._import(direction, "direction")
        self._check_batch(batch)
        with torch.no_grad():
            return [backend.to_float(self._loss(theta - eta * d, batch)) for eta in etas]


class _Pointwise(base.PointwiseTerms):
    """The batched residual of a pointwise model and its per-point Jacobian."""

    def is_native(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def __call__(self, params: Any, batch: Any) -> torch.Tensor:
        batch = self.check_batch(batch)
        outs = []
        for k, (X, c) in enumerate(zip(batch, self.scales(batch))):
            outs.append(vmap(self.point(k), in_dims=(None, 0))(params, X) * c)
        return torch.cat(outs)

    def jvp(
        self, theta: torch.Tensor, batch: Any, v: torch.Tensor, unflatten: Callable[[torch.Tensor], Any]
    ) -> torch.Tensor:
        """``J v`` as the vmapped per-point JVP: forward mode through each
        point's tiny graph, about twice as fast on the CPU as through the
        vmapped batch (digits MLP, N = 128, P = 4810: 4.5 ms against 9.8 ms)."""
        batch = self.check_batch(batch)
        outs = []
        for i, (X, c) in enumerate(zip(batch, self.scales(batch))):
            point = self.point(i, unflatten)
            along = lambda x, point=point: jvp(lambda th: point(th, x), (theta,), (v,))[1]  # noqa: E731
            outs.append(vmap(along)(X) * c)
        return torch.cat(outs)

    def jacobian(
        self,
        theta: torch.Tensor,
        batch: Any,
        unflatten: Callable[[torch.Tensor], Any],
        chunk_size: int | None,
        memory_budget: int,
    ) -> tuple[Any, Any]:
        batch = self.check_batch(batch)
        N, P = sum(int(X.shape[0]) for X in batch), theta.shape[0]
        J = torch.empty((N, P), dtype=theta.dtype, device=theta.device)
        r = torch.empty((N,), dtype=theta.dtype, device=theta.device)
        k = base.point_chunk(N, P, theta.element_size(), chunk_size, memory_budget)
        row = 0
        for i, (X, c) in enumerate(zip(batch, self.scales(batch))):
            per_point = vmap(grad_and_value(self.point(i, unflatten)), in_dims=(None, 0))
            for chunk in torch.split(X, k):
                G, v = per_point(theta, chunk)
                n = chunk.shape[0]
                torch.mul(G, c, out=J[row : row + n])
                torch.mul(v, c, out=r[row : row + n])
                row += n
        return r, J


def _signature(batch: Any) -> Any:
    """Cache key of a batch: the shapes and dtypes of its tensors."""
    return tuple(
        (tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else type(x).__name__
        for x in tree_leaves(batch)
    )


def _saved_bytes(model: TorchModel, theta: torch.Tensor, batch: Any) -> int:
    """Bytes the forward pass saves for backward (plain autograd, once per batch shape)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model._f(theta.detach().requires_grad_(True), batch)
    except Exception:  # torch.func inside fn refuses hooks: assume 64 floats per output
        return 64 * theta.element_size()
    return total


def _stack_units(
    apply: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    k: int,
    like: torch.Tensor,
    transpose_to: int | None = None,
) -> torch.Tensor:
    """``apply`` on the unit vectors e_0 … e_{n-1}, k at a time, stacked.

    With ``transpose_to`` the results are columns (forward mode) and the
    ``(transpose_to, n)`` matrix is returned.
    """
    if transpose_to is None:
        out = torch.empty((n, like.shape[0]), dtype=like.dtype, device=like.device)
    else:
        out = torch.empty((transpose_to, n), dtype=like.dtype, device=like.device)
    for start in range(0, n, k):
        stop = min(n, start + k)
        E = torch.zeros((stop - start, n), dtype=like.dtype, device=like.device)
        E[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        block = apply(E)
        if transpose_to is None:
            out[start:stop] = block
        else:
            out[:, start:stop] = block.T
    return out
