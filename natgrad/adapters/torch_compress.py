r"""PyTorch face of network compression: :func:`compress` and :class:`CompressedLinear`.

``compress(module, eps=...)`` returns a copy of the module in which every
``nn.Linear`` is a :class:`CompressedLinear` applying a dense, truncated-SVD
or H-matrix representation of its weight (or of the weight's update from a
reference network), chosen by :func:`natgrad.adapters.compression.plan_compression`,
and a :class:`~natgrad.adapters.compression.CompressionReport`.

Re-exported as ``natgrad.adapters.torch.compress``.  This module imports
PyTorch; ``import natgrad`` does not.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import array_api_compat.torch as _torch_xp
import numpy as np
import torch
from torch import nn

from .. import validation
from ..hmatrix.compress import CompressedMatrix, apply_layout
from .compression import CompressionReport, plan_compression

__all__ = ["compress", "CompressedLinear"]

#: how a CompressedLinear applies its weight
PRODUCTS = ("blocks", "weight")


class CompressedLinear(nn.Module):
    r"""A linear layer ``y = x Ŵᵀ + b`` applying a compressed weight ``Ŵ``.

    Parameters
    ----------
    compressed : natgrad.hmatrix.CompressedMatrix
        The weight (``out_features × in_features``), any representation.
    bias : torch.Tensor or None
        Copied (a parameter, trainable or not with the factors).
    trainable : bool, default False
        Hold the factors (and bias) as ``nn.Parameter`` so that the layer
        can be fine-tuned; otherwise as buffers.
    reference_persistent : bool, default True
        Whether ``W₀`` (for a compressed update) is in the ``state_dict``;
        False when it is regenerated from a seed.
    device, dtype : optional
        Of the factors (default: those of ``bias``, else float32 / CPU).
    product : {"blocks", "weight"}, default "blocks"
        ``"blocks"``: apply the blocks to ``x`` (the compressed operator:
        ``O(stored entries)`` per row of ``x``, no dense matrix).
        ``"weight"``: form ``Ŵ`` from the blocks at each call
        (differentiably) and multiply densely: the blocks' many small
        operations then act on the weights only, not on ``x``'s batch --
        faster for large batches, and far faster under ``torch.func``
        transforms that carry several streams through every operation (a
        PINN's forward Laplacian), at the cost of a dense ``Ŵ`` during the
        call.  An attribute: it can be switched later.

    Attributes
    ----------
    kind : str
    weight : torch.Tensor
        ``Ŵ`` formed densely on access (for code that reads ``.weight``,
        e.g. ``nn.MultiheadAttention``'s ``out_proj``).
    layout : natgrad.hmatrix.BlockLayout
    ranks : list of int
    in_features, out_features : int

    Raises
    ------
    TypeError
        If ``compressed`` is not a :class:`~natgrad.hmatrix.CompressedMatrix`.
    ValueError
        If ``product`` is not ``"blocks"`` or ``"weight"``.

    Notes
    -----
    The factors are those of :meth:`CompressedMatrix.layout`: one tensor
    ``W`` (dense), ``U``, ``V`` (truncated SVD: ``x ↦ (x V) Uᵀ``), or each
    H-matrix block's dense matrix or ``U_b``, ``V_b``, applied by
    :func:`natgrad.hmatrix.apply_layout` with PyTorch operations (index
    gathers for the H-matrix's permutations, slices, matmuls and
    concatenation), so autograd and ``torch.func`` differentiate through
    them.  With a reference, ``W₀`` is a buffer (never trained) and
    ``y = x W₀ᵀ + x ΔŴᵀ + b``.  Fine-tuning trains the factors: the
    structure (ranks, blocks) stays.  H-matrices: Mango & Katende, arXiv
    2409.07028.

    Examples
    --------
    >>> import torch
    >>> from natgrad.hmatrix import compress_matrix
    >>> W = torch.outer(torch.arange(1.0, 5.0, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    >>> layer = CompressedLinear(compress_matrix(W.numpy(), eps=1e-6, method="svd"), None, dtype=torch.float64)
    >>> layer.kind, layer.ranks, tuple(layer(torch.ones(2, 3, dtype=torch.float64)).shape)
    ('svd', [1], (2, 4))
    """

    def __init__(self, compressed: CompressedMatrix, bias: torch.Tensor | None, *, trainable: bool = False,
                 reference_persistent: bool = True, device: Any = None, dtype: Any = None,
                 product: str = "blocks") -> None:
        super().__init__()
        if not isinstance(compressed, CompressedMatrix):
            raise TypeError(f"compressed must be a natgrad.hmatrix.CompressedMatrix, got {type(compressed).__name__}")
        self.product = validation.choice(product, PRODUCTS, "product")
        if dtype is None:
            dtype = bias.dtype if bias is not None else torch.float32
        if device is None:
            device = bias.device if bias is not None else torch.device("cpu")
        self.kind = compressed.kind
        self.ranks = list(compressed.ranks)
        self.out_features, self.in_features = compressed.shape
        self.layout, factors = compressed.layout()
        self.n_factors = len(factors)

        def tensor(a: Any) -> torch.Tensor:
            return torch.tensor(np.asarray(a), dtype=dtype, device=device)

        for i, f in enumerate(factors):
            if trainable:
                self.register_parameter(f"factor{i}", nn.Parameter(tensor(f)))
            else:
                self.register_buffer(f"factor{i}", tensor(f))
        ref = compressed.reference
        self.register_buffer("reference", None if ref is None else tensor(ref),
                             persistent=bool(reference_persistent))
        if bias is None:
            self.bias = None
        else:
            b = bias.detach().clone().to(device=device, dtype=dtype)
            self.bias = nn.Parameter(b, requires_grad=bool(trainable))

    def factors(self) -> list[torch.Tensor]:
        """The factor tensors, in the layout's order."""
        return [getattr(self, f"factor{i}") for i in range(self.n_factors)]

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        y = apply_layout(_torch_xp, self.layout, self.factors(), x)
        return y if self.reference is None else y + x @ self.reference.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x Ŵᵀ + b`` for ``x`` of shape ``(..., in_features)``."""
        if self.product == "weight":
            return torch.nn.functional.linear(x, self.weight, self.bias)
        y = self._rows(x)
        return y if self.bias is None else y + self.bias

    @property
    def weight(self) -> torch.Tensor:
        """``Ŵ`` as a dense ``(out_features, in_features)`` tensor, formed on
        each access (differentiable), for code that reads ``layer.weight``."""
        f = self.factors()
        like = f[0] if f else self.reference
        if like is None:  # W = 0 compressed to rank 0 without a reference: no tensors held
            like = self.bias if self.bias is not None else torch.zeros(())
        eye = torch.eye(self.in_features, dtype=like.dtype, device=like.device)
        return self._rows(eye).T

    def extra_repr(self) -> str:
        ranks = self.ranks if len(self.ranks) <= 4 else f"{len(self.ranks)} blocks, max {max(self.ranks)}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, kind={self.kind}, "
                f"ranks={ranks}, update={self.reference is not None}, product={self.product}")


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    # add_module replaces the child of that name (nn.Module's own API, not a patch)
    (root.get_submodule(parent) if parent else root).add_module(child, new)


def _host(t: torch.Tensor) -> np.ndarray:
    # the build is a host-driven loop (cluster tree, per-block SVDs): the
    # weights are copied to the host once, the factors go back to the device
    return t.detach().to("cpu").numpy()


def compress(
    module: nn.Module,
    *,
    eps: float,
    budget: str = "layer",
    probe: torch.Tensor | None = None,
    method: str = "auto",
    reference: nn.Module | Callable[[], nn.Module] | None = None,
    reference_stored: bool | None = None,
    trainable: bool = False,
    relative_to: str = "weight",
    select: Callable[[str, nn.Linear], bool] | None = None,
    seed: int = 0,
    product: str = "blocks",
    **kwargs: Any,
) -> tuple[nn.Module, CompressionReport]:
    r"""Compress every ``nn.Linear`` of a PyTorch module within an error budget.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network; never modified (a deep copy is compressed).
    eps : float
        The budget in (0, 1), per layer or on the output (see ``budget``).
    budget : {"layer", "output"}, default "layer"
        ``"layer"``: every layer's ``‖Ŵ − W‖_F ≤ eps ‖W‖_F``; ``"output"``:
        ``‖f̂(probe) − f(probe)‖_F ≤ eps ‖f(probe)‖_F``, measured (see
        :func:`~natgrad.adapters.compression.plan_compression`).
    probe : torch.Tensor, optional
        Inputs the module is evaluated on (a copy is passed), in eval mode
        and without gradients; required for ``budget="output"``, optional
        for ``"layer"`` (the report then gives the output error).
    method : {"auto", "hmatrix", "svd", "dense"}, default "auto"
    reference : nn.Module or callable, optional
        The reference network ``W₀`` (e.g. the initialisation): compress the
        updates ``W − W₀``.  A module with the same structure is *stored*:
        its weights count in the storage and are saved in the
        ``state_dict``.  A zero-argument callable returning such a module
        (``lambda: make_net(seed)``) *regenerates* it: its weights cost no
        storage and are not saved in the ``state_dict`` (rebuild the network
        with the same call to load one).
    reference_stored : bool, optional
        Override what ``reference`` implies.
    trainable : bool, default False
        Make the factors and biases ``nn.Parameter``\ s, to fine-tune the
        compressed network (Adam, or :class:`natgrad.adapters.torch.TorchModel`
        with natgrad's optimisers).
    relative_to : {"weight", "delta"}, default "weight"
        See :func:`natgrad.hmatrix.compress_matrix`.
    select : callable, optional
        ``select(name, linear) -> bool``: compress only these ``nn.Linear``
        (default: all).
    seed : int, default 0
    product : {"blocks", "weight"}, default "blocks"
        How the layers apply their weight (see :class:`CompressedLinear`):
        ``"weight"`` is faster to train through ``torch.func`` transforms
        (a PINN's Laplacian) and with large batches.
    **kwargs
        ``search_steps``, ``probe_share`` and H-matrix options (``leaf_size``, ...), passed on.

    Returns
    -------
    module : torch.nn.Module
        The compressed copy, with :class:`CompressedLinear` layers on the
        weights' device and dtype.
    report : CompressionReport

    Raises
    ------
    TypeError
        If ``module`` is not an ``nn.Module``, ``reference`` is neither a
        module nor a callable returning one, or ``probe`` is not a tensor.
    ValueError
        If the module has no ``nn.Linear`` to compress, ``reference`` lacks
        one of them or has another shape, a weight holds NaN/Inf (naming
        the layer), ``budget="output"`` comes without ``probe``, or as
        :func:`~natgrad.adapters.compression.plan_compression`.
    Exception
        An exception raised by the module's forward passes through.

    Notes
    -----
    The compression runs in NumPy on the host (a copy of each weight; the
    H-matrix build is a sequential, host-driven loop); the factors are then
    put on the weight's device in its dtype.  In float32 an H-matrix cannot
    guarantee relative bounds below about ``1.2e-4``; ``auto`` then skips
    it.  Error-bounded H-matrices for network weights: Mango & Katende,
    arXiv 2409.07028.

    Examples
    --------
    >>> import torch
    >>> from natgrad.adapters.torch import compress
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    >>> small, report = compress(net, eps=0.05, budget="output", probe=torch.randn(64, 8))
    >>> report.output_error <= 0.05
    True
    >>> type(small[0]).__name__, type(net[0]).__name__
    ('CompressedLinear', 'Linear')
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if probe is not None and not isinstance(probe, torch.Tensor):
        raise TypeError(f"probe must be a torch.Tensor, got {type(probe).__name__}")
    if budget == "output" and probe is None:
        raise ValueError("budget='output' needs probe (inputs to measure the output change on)")
    validation.callable_arg(select, "select", optional=True)
    work = copy.deepcopy(module)
    linears = [(n, m) for n, m in work.named_modules()
               if isinstance(m, nn.Linear) and (select is None or select(n, m))]
    if not linears:
        raise ValueError("module has no nn.Linear to compress" + (" (after select)" if select else ""))
    ref_layers, stored = _references(reference, linears)
    if reference_stored is not None:
        stored = bool(reference_stored)
    weights = []
    for name, lin in linears:
        W = _host(lin.weight)
        if not np.all(np.isfinite(W)):
            raise ValueError(f"layer {name!r}: weight contains NaN or Inf")
        weights.append(W)

    product = validation.choice(product, PRODUCTS, "product")

    def build(i: int, C: CompressedMatrix, trainable: bool) -> CompressedLinear:
        lin = linears[i][1]
        return CompressedLinear(C, lin.bias, trainable=trainable, reference_persistent=stored,
                                device=lin.weight.device, dtype=lin.weight.dtype, product=product)

    def dense(i: int, C: CompressedMatrix) -> nn.Linear:
        lin = copy.deepcopy(linears[i][1])
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(np.asarray(C.to_dense())))
        return lin

    def run(layers: list[CompressedMatrix | None], replacement: Callable[[int, CompressedMatrix], nn.Module]) -> Any:
        for i, (C, (name, lin)) in enumerate(zip(layers, linears)):
            _replace(work, name, lin if C is None else replacement(i, C))
        mode = work.training
        work.eval()
        try:
            with torch.no_grad():
                return work(probe.clone())
        finally:
            work.train(mode)

    evaluate = verify = None
    if probe is not None:
        # the search runs the network with the reconstructed weights (the
        # same output up to rounding, without building the blocks each
        # trial); the chosen layers are verified as CompressedLinear
        def evaluate(layers: list[CompressedMatrix | None]) -> Any:
            return run(layers, dense)

        def verify(layers: list[CompressedMatrix | None]) -> Any:
            return run(layers, lambda i, C: build(i, C, False))

    compressed, report = plan_compression(
        weights, eps=eps, budget=budget, evaluate=evaluate, verify=verify, names=[n for n, _ in linears],
        references=ref_layers, reference_stored=stored, method=method, relative_to=relative_to,
        seed=seed, **kwargs)
    for i, (C, (name, lin)) in enumerate(zip(compressed, linears)):
        layer = build(i, C, bool(trainable))
        layer.train(lin.training)  # a new module starts in training mode: it takes the one it replaces
        _replace(work, name, layer)
    return work, report


def _references(reference: Any, linears: list[tuple[str, nn.Linear]]) -> tuple[list[Any] | None, bool]:
    """The reference weights per compressed layer (host arrays) and whether they are stored."""
    if reference is None:
        return None, True
    stored = isinstance(reference, nn.Module)
    if not stored:
        if not callable(reference):
            raise TypeError("reference must be an nn.Module or a callable returning one, "
                            f"got {type(reference).__name__}")
        reference = reference()
        if not isinstance(reference, nn.Module):
            raise TypeError(f"reference() must return an nn.Module, got {type(reference).__name__}")
    mods = dict(reference.named_modules())
    out = []
    for name, lin in linears:
        ref = mods.get(name)
        if not isinstance(ref, nn.Linear) or tuple(ref.weight.shape) != tuple(lin.weight.shape):
            got = "nothing" if ref is None else (
                f"weight of shape {tuple(ref.weight.shape)}" if isinstance(ref, nn.Linear) else type(ref).__name__)
            raise ValueError(f"reference must have an nn.Linear {name!r} with weight shape "
                             f"{tuple(lin.weight.shape)}, got {got}")
        out.append(_host(ref.weight).astype(_host(lin.weight).dtype))
    return out, stored
