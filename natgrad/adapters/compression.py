r"""Compress a network's layers under an error budget, framework-free.

:func:`plan_compression` takes the layers' weight matrices (any supported
array library), optional references ``W₀`` and a way to evaluate the
network, and chooses a representation for every layer with
:func:`natgrad.hmatrix.compress_matrix`.  The PyTorch and JAX faces
(:func:`natgrad.adapters.torch.compress`, :func:`natgrad.adapters.jax.compress`)
build on it; it is also the entry point for a network written in anything
else.

Budgets:

* ``budget="layer"``: every layer meets ``‖Ŵ_l − W_l‖_F ≤ eps ‖W_l‖_F``.
* ``budget="output"``: the network's output on a probe set changes by at
  most ``eps`` relative (``‖f̂(X) − f(X)‖_F ≤ eps ‖f(X)‖_F``), measured.

References
----------
S. Mango, J. Katende, *Adaptive Error-Bounded Hierarchical Matrices for
Efficient Neural Network Compression*, arXiv 2409.07028 (2024).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .. import backend, validation
from ..hmatrix.compress import CompressedMatrix, compress_matrix

__all__ = ["plan_compression", "CompressionReport", "LayerReport", "BUDGETS"]

#: what ``budget`` accepts
BUDGETS = ("layer", "output")
#: ``budget="output"`` searches the common per-layer bound in
#: ``[eps · _LOW, _HIGH]`` (log scale)
_LOW, _HIGH = 1e-3, 0.9


@dataclass
class LayerReport:
    """One layer of a :class:`CompressionReport`.

    Parameters
    ----------
    name : str
    kind : str
        ``"dense"``, ``"svd"`` or ``"hmatrix"``.
    ranks : list of int
    nbytes : int
        Stored bytes (:attr:`natgrad.hmatrix.CompressedMatrix.nbytes`).
    dense_nbytes : int
    error : float
        Measured ``‖Ŵ − W‖_F / ‖W‖_F``.
    eps : float
        The layer's bound.
    update : bool
        True when the update ``W − W₀`` was compressed.

    Notes
    -----
    A plain record; the numbers are those of the layer's
    :class:`~natgrad.hmatrix.CompressedMatrix` (Mango & Katende, arXiv
    2409.07028, report the same per layer).

    Examples
    --------
    >>> LayerReport("fc1", "svd", [4], 512, 4096, 1e-3, 1e-2, False).ratio
    0.125
    """

    name: str
    kind: str
    ranks: list[int]
    nbytes: int
    dense_nbytes: int
    error: float
    eps: float
    update: bool

    @property
    def ratio(self) -> float:
        return self.nbytes / self.dense_nbytes


@dataclass
class CompressionReport:
    """What :func:`plan_compression` chose, per layer and in total.

    Parameters
    ----------
    layers : list of LayerReport
    budget : str
        ``"layer"`` or ``"output"``.
    eps : float
        The requested bound.
    layer_eps : float
        The per-layer bound the layers were compressed with (``eps`` for
        ``budget="layer"``; found by the search for ``budget="output"``).
    output_error : float or None
        Measured ``‖f̂(X) − f(X)‖_F / ‖f(X)‖_F`` on the probe, when the
        network could be evaluated.
    info : dict
        ``evaluations`` (network evaluations made), ``search`` (the per-layer
        bounds tried, with their output error and storage) and
        ``fallback`` (``"dense"`` when no compression met the output budget).

    Attributes
    ----------
    total_nbytes, total_dense_nbytes : int
    compression_ratio : float

    Notes
    -----
    ``str(report)`` is a table: layer, representation, ranks, storage,
    dense storage, their ratio and the measured error; then the totals and
    the output error.

    Examples
    --------
    >>> r = CompressionReport([LayerReport("fc1", "svd", [4], 512, 4096, 1e-3, 1e-2, False)],
    ...                       "layer", 1e-2, 1e-2, None)
    >>> r.compression_ratio
    0.125
    >>> print(r)  # doctest: +NORMALIZE_WHITESPACE
    layer  kind  ranks  storage (B)  dense (B)  ratio   error
    fc1    svd   [4]            512       4096  12.5%  1.0e-03
    total                       512       4096  12.5%
    budget: layer, eps 1e-02 per layer
    """

    layers: list[LayerReport]
    budget: str
    eps: float
    layer_eps: float
    output_error: float | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def total_nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)

    @property
    def total_dense_nbytes(self) -> int:
        return sum(layer.dense_nbytes for layer in self.layers)

    @property
    def compression_ratio(self) -> float:
        return self.total_nbytes / self.total_dense_nbytes

    def __str__(self) -> str:
        head = ["layer", "kind", "ranks", "storage (B)", "dense (B)", "ratio", "error"]
        rows = [[layer.name + (" (ΔW)" if layer.update else ""), layer.kind, _ranks(layer.ranks),
                 str(layer.nbytes), str(layer.dense_nbytes), f"{layer.ratio:.1%}", f"{layer.error:.1e}"]
                for layer in self.layers]
        rows.append(["total", "", "", str(self.total_nbytes), str(self.total_dense_nbytes),
                     f"{self.compression_ratio:.1%}", ""])
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        right = {3, 4, 5, 6}

        def line(r: list[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths))).rstrip()

        out = [line(head)] + [line(r) for r in rows]
        if self.budget == "layer":
            tail = f"budget: layer, eps {self.eps:.0e} per layer"
        else:
            tail = f"budget: output, eps {self.eps:.0e} on the probe; per-layer eps {self.layer_eps:.2e}"
        if self.output_error is not None:
            tail += f"; output error on the probe {self.output_error:.2e}"
        if self.info.get("fallback"):
            tail += f" (fallback: {self.info['fallback']})"
        return "\n".join(out + [tail])


def _ranks(ranks: list[int]) -> str:
    if not ranks:
        return "-"
    if len(ranks) <= 3:
        return str(ranks)
    return f"{len(ranks)} blocks, max {max(ranks)}"


def plan_compression(
    weights: Sequence[Any],
    *,
    eps: float,
    budget: str = "layer",
    evaluate: Callable[[list[CompressedMatrix | None]], Any] | None = None,
    verify: Callable[[list[CompressedMatrix | None]], Any] | None = None,
    names: Sequence[str] | None = None,
    references: Sequence[Any] | None = None,
    reference_stored: bool = True,
    method: str = "auto",
    relative_to: str = "weight",
    seed: int = 0,
    search_steps: int = 6,
    probe_share: float = 0.9,
    **hmatrix_kwargs: Any,
) -> tuple[list[CompressedMatrix], CompressionReport]:
    r"""Choose a compressed representation for every layer within an error budget.

    Parameters
    ----------
    weights : sequence of arrays, each (m_l, n_l)
        The layers' weight matrices (detached from autodiff).
    eps : float
        The budget, in (0, 1): per layer (``budget="layer"``) or on the
        network's output (``budget="output"``).
    budget : {"layer", "output"}, default "layer"
    evaluate : callable, optional
        ``evaluate(layers) -> array``: the network's output on a probe set
        when layer ``l`` uses ``layers[l]`` (a
        :class:`~natgrad.hmatrix.CompressedMatrix`, or ``None`` for its
        original weights).  Required for ``budget="output"``; with
        ``budget="layer"`` it adds the measured output error to the report.
    verify : callable, optional
        Like ``evaluate``, called once on the chosen layers to measure the
        reported output error, when ``evaluate`` takes a shortcut (the
        framework faces search with dense reconstructions ``Ŵ``, which give
        the same output up to rounding at a fraction of the cost, and
        verify with the compressed operators themselves).  Default:
        ``evaluate``.
    names : sequence of str, optional
        Layer names for the report (default ``layer0``, ``layer1``, ...).
    references : sequence of arrays or None, optional
        ``W₀`` per layer (``None`` entries: compress ``W`` itself); see
        :func:`~natgrad.hmatrix.compress_matrix`.
    reference_stored : bool, default True
        Whether the references count in the storage (False when they are
        regenerated from a seed).
    method : {"auto", "hmatrix", "svd", "dense"}, default "auto"
        The representation of every layer; ``"auto"``: per layer, the
        fewest stored bytes within the layer's bound.
    relative_to : {"weight", "delta"}, default "weight"
        See :func:`~natgrad.hmatrix.compress_matrix`.
    seed : int, default 0
    search_steps : int, default 6
        Bisection steps of the ``budget="output"`` search (each halves the
        log-width of the bracket: 6 steps leave a factor of about 1.07 on
        ``ε_l`` for ``eps = 10⁻²``).
    probe_share : float, default 0.9
        ``budget="output"`` searches for an output error ``≤ probe_share ·
        eps`` on the probe: the rest of the budget is a margin for inputs
        outside the probe.  In (0, 1].
    **hmatrix_kwargs
        Passed to :meth:`natgrad.hmatrix.HMatrix.from_dense`.

    Returns
    -------
    compressed : list of CompressedMatrix
        One per layer.
    report : CompressionReport

    Raises
    ------
    ValueError
        If ``weights`` is empty, ``eps`` is not in (0, 1), ``probe_share``
        not in (0, 1], ``budget`` is unknown, ``budget="output"`` comes without ``evaluate``, ``names``
        or ``references`` have another length than ``weights``, a weight or
        reference is invalid (see :func:`~natgrad.hmatrix.compress_matrix`;
        the message names the layer), or the network's output with the
        original weights holds NaN or Inf.
    TypeError
        If ``evaluate`` or ``verify`` is not callable or returns something
        other than an array.
    Exception
        An exception raised by ``evaluate`` passes through unchanged.

    Notes
    -----
    **Output budget.**  The per-layer errors of a network propagate through
    its Lipschitz constants, which are unknown, so the rule is a measured
    search: one common per-layer bound ``ε_l`` for all layers, tried first
    at ``ε_l = probe_share · eps``, then bisected on a log scale in the half
    of ``[10⁻³ probe_share · eps, 0.9]`` that this first trial leaves open,
    for ``search_steps`` steps, each trial compressing every layer within
    ``ε_l`` and evaluating the network on the probe.  Among the trials
    whose output error is ``≤ probe_share · eps`` the one with the least
    total storage is kept (storage need not fall monotonically with
    ``ε_l``).  If even the bracket's lower end misses it, every layer is
    kept dense (``info["fallback"]``).  Compressions are cached per layer
    and bound; each trial costs one network evaluation.

    **Guarantee.**  ``report.output_error`` is the relative change of the
    output on the probe, measured on the chosen layers (by ``verify`` when
    given), and is ``≤ eps``: the search keeps ``≤ probe_share · eps``, and
    should the verification exceed ``eps`` every layer is kept dense.  On
    inputs outside the probe it is an estimate, which the margin
    ``(1 − probe_share) eps`` covers when the probe samples the inputs the
    network will see (``tests/test_compress_frameworks.py`` checks held-out
    points).

    A common bound is the rule of Mango & Katende (arXiv 2409.07028), who
    give every layer the same ``eps``; allocating by layer sensitivity could
    store less and is not done.

    Examples
    --------
    A two-layer linear "network" ``x ↦ W₂ W₁ x`` of nearly low-rank layers:

    >>> import numpy as np
    >>> from natgrad.adapters.compression import plan_compression
    >>> rng = np.random.default_rng(0)
    >>> W1 = rng.standard_normal((64, 4)) @ rng.standard_normal((4, 48)) + 1e-4 * rng.standard_normal((64, 48))
    >>> W2 = rng.standard_normal((32, 64)) / 8.0
    >>> X = rng.standard_normal((48, 20))
    >>> def evaluate(layers):
    ...     A, B = [W if C is None else C for W, C in zip((W1, W2), layers)]
    ...     return B @ (A @ X)
    >>> compressed, report = plan_compression([W1, W2], eps=1e-2, budget="output", evaluate=evaluate,
    ...                                       names=["fc1", "fc2"])
    >>> [c.kind for c in compressed], report.output_error <= 1e-2
    (['svd', 'dense'], True)
    """
    weights = list(weights)
    if not weights:
        raise ValueError("weights must hold at least one matrix")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
    eps = float(eps)
    budget = validation.choice(budget, BUDGETS, "budget")
    validation.callable_arg(evaluate, "evaluate", optional=True)
    validation.callable_arg(verify, "verify", optional=True)
    search_steps = validation.positive_int(search_steps, "search_steps")
    if not isinstance(probe_share, (int, float)) or isinstance(probe_share, bool) or not 0.0 < probe_share <= 1.0:
        raise ValueError(f"probe_share must be a number in (0, 1], got {probe_share!r}")
    if budget == "output" and evaluate is None:
        raise ValueError("budget='output' needs evaluate (the network's output on a probe set)")
    L = len(weights)
    names = [f"layer{i}" for i in range(L)] if names is None else [str(n) for n in names]
    if len(names) != L:
        raise ValueError(f"names must have one entry per layer ({L}), got {len(names)}")
    references = [None] * L if references is None else list(references)
    if len(references) != L:
        raise ValueError(f"references must have one entry per layer ({L}), got {len(references)}")

    cache: dict[tuple[int, float], CompressedMatrix] = {}

    def layer(i: int, e: float) -> CompressedMatrix:
        if (i, e) not in cache:
            try:
                cache[(i, e)] = compress_matrix(
                    weights[i], eps=e, method=method, reference=references[i],
                    reference_stored=reference_stored, relative_to=relative_to, seed=seed, **hmatrix_kwargs)
            except ValueError as err:
                if budget == "output" and method == "hmatrix" and e < _hmatrix_floor(weights[i]):
                    # the search went below what an H-matrix can guarantee in
                    # this dtype: that trial is infeasible, not an error
                    raise _TooTight from err
                raise ValueError(f"layer {names[i]!r}: {err}") from err
        return cache[(i, e)]

    info: dict[str, Any] = {"evaluations": 0, "search": []}
    reference_out = None
    if evaluate is not None:
        reference_out = _output(evaluate, [None] * L, info)
        if not backend.all_finite(reference_out):
            raise ValueError("evaluate: the network's output with the original weights contains NaN or Inf")

    def output_error(layers: list[CompressedMatrix], fn: Callable[..., Any] | None = None) -> float:
        out = _output(evaluate if fn is None else fn, layers, info)
        if tuple(out.shape) != tuple(reference_out.shape):
            raise ValueError(f"evaluate returned shape {tuple(out.shape)}, first {tuple(reference_out.shape)}")
        return _relative_change(out, reference_out)

    def dense(i: int) -> CompressedMatrix:
        return compress_matrix(weights[i], eps=eps, method="dense")

    if budget == "layer":
        chosen = [layer(i, eps) for i in range(L)]
        layer_eps = eps
    else:
        chosen, layer_eps, _ = _search(layer, dense, output_error, L, float(probe_share) * eps,
                                       search_steps, info)
    out_err = None
    if evaluate is not None:
        measure = evaluate if verify is None else verify
        out_err = output_error(chosen, measure)
        if budget == "output" and out_err > eps and "fallback" not in info:
            # the verification disagrees with the search beyond the margin: keep every layer dense
            info["fallback"], info["rejected_output_error"] = "dense", out_err
            chosen, layer_eps = [dense(i) for i in range(L)], 0.0
            out_err = output_error(chosen, measure)
    report = CompressionReport(
        [LayerReport(names[i], c.kind, list(c.ranks), c.nbytes, c.dense_nbytes, c.error, layer_eps,
                     c.reference is not None)
         for i, c in enumerate(chosen)],
        budget, eps, layer_eps, out_err, info)
    return chosen, report


class _TooTight(Exception):
    """A trial's per-layer bound is below what ``method="hmatrix"`` can guarantee."""


def _hmatrix_floor(W: Any) -> float:
    """The smallest relative bound an H-matrix guarantees in ``W``'s dtype
    (as :meth:`natgrad.hmatrix.HMatrix.from_dense` checks it)."""
    xp = backend.namespace(W=W)
    return 1e3 * backend.eps(backend.float_dtype(xp, W), xp)


@backend.quiet_floating_point
def _relative_change(out: Any, ref: Any) -> float:
    """``‖out − ref‖_F / ‖ref‖_F`` (absolute when ``ref = 0``); ``inf`` for a
    non-finite output (the trial is then infeasible, without a warning)."""
    xp = backend.namespace(out=out, ref=ref)
    diff = backend.to_float(backend.scaled_norm(xp, out - ref))
    size = backend.to_float(backend.scaled_norm(xp, ref))
    err = diff / size if size > 0.0 else diff
    return err if math.isfinite(err) else math.inf


def _output(evaluate: Callable[..., Any], layers: list[Any], info: dict[str, Any]) -> Any:
    out = evaluate(list(layers))
    info["evaluations"] += 1
    if not backend.is_array(out):
        raise TypeError(f"evaluate must return an array (the network's output), got {type(out).__name__}")
    return out


def _search(layer: Callable[[int, float], CompressedMatrix], dense: Callable[[int], CompressedMatrix],
            output_error: Callable[[list], float], L: int, target: float, steps: int,
            info: dict[str, Any]) -> tuple[list[CompressedMatrix], float, float]:
    """The common per-layer bound with the least storage whose output error is
    ``≤ target``; every layer dense when none is found."""
    best: tuple[int, list[CompressedMatrix], float, float] | None = None

    def trial(e: float) -> bool:
        nonlocal best
        try:
            layers = [layer(i, e) for i in range(L)]
        except _TooTight:
            info["search"].append({"layer_eps": e, "output_error": math.inf, "nbytes": None,
                                   "skipped": "below what an H-matrix can guarantee in this dtype"})
            return False
        err = output_error(layers)
        total = sum(c.nbytes for c in layers)
        info["search"].append({"layer_eps": e, "output_error": err, "nbytes": total})
        ok = err <= target
        if ok and (best is None or total < best[0]):
            best = (total, layers, e, err)
        return ok

    # first guess: every layer gets the output's bound; it fixes which half
    # of [target · 1e-3, 0.9] to bisect (in log scale)
    if trial(target):
        lo, hi = math.log(target), math.log(_HIGH)
        search = True
    else:
        lo, hi = math.log(target * _LOW), math.log(target)
        search = trial(target * _LOW)
    for _ in range(steps if search else 0):
        mid = 0.5 * (lo + hi)
        if trial(math.exp(mid)):
            lo = mid
        else:
            hi = mid
    if best is None:
        info["fallback"] = "dense"
        return [dense(i) for i in range(L)], 0.0, 0.0
    return best[1], best[2], best[3]
