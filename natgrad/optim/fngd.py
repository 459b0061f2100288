r"""Inverse-free fast natural gradient descent (FNGD) with reusable coefficients."""

from __future__ import annotations

import math
from typing import Any, Mapping

from .. import backend, validation
from ..linalg.woodbury import Woodbury
from . import _common

__all__ = ["FNGD"]

#: the default drift threshold ``refresh_tol`` (see :class:`FNGD`)
REFRESH_TOL = 0.3


class FNGD(_common.Stateful):
    r"""Fast natural gradient descent (Ou, Zhu, Huang, Liu, arXiv 2403.03473).

    For a model with ``loss="mean"`` the Jacobian rows are the per-sample
    gradients ``uᵢ = ∇ℓᵢ``; with ``U = Jᵀ ∈ ℝᴾˣᴺ`` the damped empirical-Fisher
    natural gradient is a weighted sum of them,

    .. math::
        (UUᵀ/N + λI)^{-1} U\mathbf 1/N = U α, \qquad α = (λN I + UᵀU)^{-1} \mathbf 1,

    and the update is ``θ ← θ − lr·U α`` (with optional heavy-ball momentum).
    The weights ``α`` — an ``N × N`` solve — are computed on refresh steps
    (every ``refresh_every`` uses of a batch, or when they have drifted) and
    reused on the others with the new per-sample gradients of the *same*
    samples, as the paper reuses them across epochs.  Weights belong to a batch: when cycling through
    several mini-batches pass ``batch_key=`` (e.g. the mini-batch index) to
    :meth:`step` so each keeps its own; without it every batch is taken to be
    the same one.

    Parameters
    ----------
    damping : float, default 1e-2
        ``λ > 0``.  The default is the best of ``{1e-3, 1e-2}`` (with
        ``lr ∈ {0.5, 1}``, refreshing every step) on the digits benchmark
        (``benchmarks/bench_fngd.py``).
    refresh_every : int, default 1
        Recompute a batch's ``α`` at least every this many uses of that batch
        (1: every step, the exact damped NGD direction).  A batch of a
        different size forces a refresh, and so does drift (``refresh_tol``).
        Stale weights multiply new per-sample gradients; without the drift
        check, reuse on the digits benchmark (``refresh_every=5``) diverged
        for ``λ ≤ 0.1`` and was stable at ``λ = 1``.  A very large value
        leaves the refreshes to the drift check alone.
    refresh_tol : float or None, default 0.3
        Refresh a batch's stale ``α`` when its drift ``ρ`` (see ``drift``)
        exceeds this; 0.3 was stable on the digits benchmark at
        ``λ = 1e-2`` and ``λ = 1`` (where fixed-count reuse diverged at
        ``λ ≤ 0.1``), 1.0 let harmful stale steps through at ``λ = 0.1``
        (``benchmarks/results/fngd.md``).  None: no drift check
        (reuse decided by ``refresh_every`` alone, as before; the cheapest
        reuse step).  Only reuse steps are checked.
    drift : {"residual", "projected"}, default "residual"
        How ``ρ`` is measured on a reuse step (maths in the notes):
        ``"residual"`` — the relative residual of the weights' equation,
        one extra JVP (with the PyTorch adapter a second reverse pass
        through the graph the VJP kept); ``"projected"`` — its component along ``α``, free
        but blind to drift orthogonal to ``α`` (on the digits benchmark it
        let harmful stale steps through at ``λ ≤ 0.1``).
    lr : float, default 0.5
        Step size; the default is the digits benchmark's best with the
        default damping.
    momentum : float, default 0.0
        Heavy-ball momentum ``β ∈ [0, 1)``: ``v ← βv + Uα``, ``θ ← θ − lr·v``
        (none by default: the paper's method has none).

    Raises
    ------
    ValueError
        Non-positive ``damping``/``lr``/``refresh_tol``, ``refresh_every``
        not an int ``≥ 1``, momentum outside ``[0, 1)``, an unknown
        ``drift``; at :meth:`step`, a model with ``loss="squared"``.
    TypeError
        ``damping``, ``lr`` or ``momentum`` not a real number; at
        :meth:`step`, a model without ``residuals`` and ``jacobian``.

    Notes
    -----
    With ``J ∈ ℝᴺˣᴾ`` the model's Jacobian (rows ``uᵢᵀ``, so ``U = Jᵀ``) the
    push-through identity ``(UUᵀ + λN I_P)⁻¹ U = U (UᵀU + λN I_N)⁻¹`` turns the
    ``P × P`` damped Fisher solve into an ``N × N`` one; on a refresh step

    .. math::  α = (JJᵀ + λN I_N)^{-1} \mathbf 1

    is computed by one Cholesky of the damped sample-space Gram matrix
    (``Woodbury(J, λN).coefficients(1)``, ``O(N²P)``), and the direction is
    ``Jᵀ α`` (``O(NP)``).  What is reused on the other steps is only the
    vector ``α`` of a batch: losses and direction are always evaluated at
    the current ``params``.  A reuse step forms no Jacobian: since
    ``Jᵀα = ∇_θ Σᵢ αᵢ ℓᵢ(θ)``, the direction is one vector–Jacobian product
    (``model.vjp(params, batch, α)``, the cost of one gradient); a model
    without ``vjp`` gets ``J`` formed and multiplied.  A model with the fused
    products of the framework adapters gets the losses, ``Jᵀα`` and (for
    the residual drift) ``J Jᵀα`` in one call,
    ``model.residuals_vjp_and_gram(params, batch, α)`` (or
    ``residuals_and_vjp``): on PyTorch one forward and two reverse passes,
    which made the reuse step on the digits MLP of
    ``benchmarks/bench_fngd.py`` 1.8× as fast as the three separate calls
    (5.0 ms against 8.9 ms, ``benchmarks/results/fngd.md``).  The cache holds one
    ``α`` per ``batch_key`` with a count of its uses; it is refreshed when
    that count is a multiple of ``refresh_every``, ``N`` changed, or the
    drift is above ``refresh_tol``.

    *Drift.*  With ``M = JJᵀ + λN I`` at the current ``params``, the fresh
    weights solve ``M α = 1``; how far the stale ``α`` is from solving it is

    .. math::
        ρ_{\text{residual}} = \frac{‖J(J^{T}α) + λNα − \mathbf 1‖}{‖\mathbf 1‖},
        \qquad
        ρ_{\text{projected}} = \left|\frac{‖J^{T}α‖^2 + λN‖α‖^2}{\mathbf 1^{T}α} − 1\right|
        = \frac{|α^{T}(Mα − \mathbf 1)|}{\mathbf 1^{T}α}.

    Both are 0 (up to rounding) on the step that computed ``α``.  The first
    needs ``J(Jᵀα)``, one JVP of the losses along the direction (about one
    more gradient's cost); the second only the direction already computed.
    Since ``α_fresh − α = M⁻¹(1 − Mα)``, ``ρ_residual`` bounds the error of
    the weights: ``‖α_fresh − α‖ ≤ ρ √N / λN``.  ``info["drift"]`` is ``ρ``
    (None on refresh steps and without a check).  A NaN ``ρ`` refreshes when
    it comes from an overflow; when the model's ``vjp`` or ``jvp`` returned
    NaN/Inf, the step is not taken and ``info["message"]`` names the method.
    ``info["loss"]`` is the mean per-sample loss *before* the step (a host
    float, which synchronises an asynchronous device; a reuse step reads it
    and ``ρ`` in one synchronisation).

    The state (:meth:`state_dict`) is the step count, the velocity ``v``,
    the weights ``α`` of the last step (``"alpha"``) and the cache as three
    lists of equal length: ``"cache_keys"`` (the batch keys: None, numbers,
    strings or lists of them — a tuple key comes back as a tuple),
    ``"cache_alphas"`` and ``"cache_uses"``.  A step whose loss, Jacobian,
    direction or new parameters have NaN/Inf leaves the state and
    ``params`` unchanged (``info["step_taken"] = False``).

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.adapters.callables import CallableModel
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    >>> per_sample = lambda p, b: 0.5 * (X @ p - y) ** 2          # ℓᵢ
    >>> grads = lambda p, b: (X @ p - y)[:, None] * X              # rows ∇ℓᵢ
    >>> model = CallableModel(residuals=per_sample, jacobian=grads,
    ...                       params=np.zeros(3), loss="mean")
    >>> opt, p = FNGD(damping=1e-3, lr=0.5), model.params
    >>> for _ in range(20):
    ...     p, info = opt.step(p, model, None)
    >>> bool(np.mean(per_sample(p, None)) < np.mean(per_sample(np.zeros(3), None)))
    True
    >>> state = opt.state_dict()
    >>> state["steps"], state["cache_keys"], state["cache_uses"]
    (20, [None], [1])
    """

    STATE = {
        "steps": "count",
        "velocity": "param_vector",
        "alpha": "vector",
        "cache_keys": "key_list",
        "cache_alphas": "vector_list",
        "cache_uses": "count_list",
    }

    def __init__(
        self,
        *,
        damping: float = 1e-2,
        refresh_every: int = 1,
        lr: float = 0.5,
        momentum: float = 0.0,
        refresh_tol: float | None = REFRESH_TOL,
        drift: str = "residual",
    ) -> None:
        self.damping = validation.positive(damping, "damping")
        self.refresh_every = validation.positive_int(refresh_every, "refresh_every")
        self.refresh_tol = validation.optional_positive(refresh_tol, "refresh_tol")
        self.drift = validation.choice(drift, ("projected", "residual"), "drift")
        self.lr = validation.positive(lr, "lr")
        self.momentum = validation.fraction(momentum, "momentum")
        self.reset()

    def _fresh_state(self) -> dict[str, Any]:
        # _cache: batch_key -> (α, uses); alpha: the weights used by the last step
        return {"steps": 0, "velocity": None, "alpha": None, "_cache": {}}

    def _export_state(self) -> dict[str, Any]:
        for key in self._cache:
            if not _common.plain_key(key):
                raise TypeError(
                    f"FNGD.state_dict: batch_key {key!r} is not None, a number, a str or a tuple of them, "
                    "so the state cannot be saved as plain data"
                )
        return {
            "steps": self.steps,
            "velocity": self.velocity,
            "alpha": self.alpha,
            "cache_keys": [list(k) if isinstance(k, tuple) else k for k in self._cache],
            "cache_alphas": [a for a, _ in self._cache.values()],
            "cache_uses": [u for _, u in self._cache.values()],
        }

    def _import_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        keys, alphas, uses = state["cache_keys"], state["cache_alphas"], state["cache_uses"]
        if not len(keys) == len(alphas) == len(uses):
            raise ValueError(
                f"FNGD.load_state_dict: cache_keys, cache_alphas and cache_uses must have one length, "
                f"got {len(keys)}, {len(alphas)}, {len(uses)}"
            )
        if len(set(keys)) != len(keys):
            raise ValueError(f"FNGD.load_state_dict: cache_keys has repeated keys: {keys}")
        cache = {k: (a, u) for k, a, u in zip(keys, alphas, uses)}
        return {"steps": state["steps"], "velocity": state["velocity"], "alpha": state["alpha"], "_cache": cache}

    @_common.warn_once_per_optimizer
    def step(self, params: Any, model: Any, batch: Any, *, batch_key: Any = None) -> tuple[Any, dict[str, Any]]:
        """One FNGD step.

        Parameters
        ----------
        params, model, batch
            As for :meth:`ENGD.step`; ``model.loss`` must be ``"mean"``.
        batch_key : hashable, optional
            Identifies the batch whose weights ``α`` may be reused (see the
            class notes); ``None`` means "the one batch".

        Returns
        -------
        params : array
        info : dict
            ``loss``, ``refreshed`` (whether ``α`` was recomputed), ``drift``
            (the relative residual ``ρ`` of the reused weights, see the class
            notes; None when not measured), ``lr``, ``direction_norm``,
            ``time`` and, as for :meth:`ENGD.step`, ``warnings`` when the step
            raised some (shown once per optimiser).
        """
        params, xp = _common.begin(params)
        _common.require_kind(model, "mean", "FNGD")
        _common.require(model, ("residuals", "jacobian"), "FNGD")
        _common.check_state_shape("FNGD", "velocity", self.velocity, params)
        timer = _common.Timer()
        out = _common.Outputs("FNGD", self.steps + 1, params)
        alpha, uses = self._cache.get(batch_key, (None, 0))
        refresh, drift, loss = True, None, math.nan
        if alpha is not None and uses % self.refresh_every != 0:
            stale = self._stale_direction(params, model, batch, alpha, out, xp)
            if stale is not None:  # None: the batch size changed
                loss, direction, drift = stale
                if not math.isfinite(loss):
                    return params, {**_common.loss_rejection(loss, out, "mean"), "time": timer.total()}
                culprit = "" if drift is None or math.isfinite(drift) else out.culprit("")
                if culprit:  # NaN/Inf from the model's vjp or jvp: its fault, not drift
                    return params, {**_common.rejection(loss, culprit, out.step), "refreshed": False,
                                    "drift": drift, "time": timer.total()}
                # a NaN drift from an overflow in Jd is not a reason to trust α
                refresh = drift is not None and not drift <= self.refresh_tol
                timer.lap("reuse")
        if refresh:
            out = _common.Outputs("FNGD", self.steps + 1, params)  # the refresh's outputs only
            fresh = self._fresh_direction(params, model, batch, out, xp)
            if "step_taken" in fresh:  # a rejection
                return params, {**fresh, "time": timer.total()}
            loss, direction, alpha, uses = fresh["loss"], fresh["direction"], fresh["alpha"], 0
            timer.lap("direction")
        velocity = self.velocity
        if self.momentum > 0:
            velocity = direction if velocity is None else self.momentum * velocity + direction
            direction = velocity
        new_params = params - self.lr * direction
        bad = _common.nonfinite_update(loss, params, direction, new_params, out)
        if bad is not None:
            return params, {**bad, "refreshed": refresh, "drift": drift, "time": timer.total()}
        cache = {**self._cache, batch_key: (alpha, uses + 1)}
        self._commit(_cache=cache, alpha=alpha, velocity=velocity, steps=self.steps + 1)
        info = {
            "loss": loss,
            "refreshed": refresh,
            "drift": drift,
            "lr": self.lr,
            "step_taken": True,
            "direction_norm": backend.to_float(_common.scaled_norm(xp, direction)),
        }
        timer.lap("update")
        info["time"] = timer.total()
        return new_params, info

    def _fresh_direction(
        self, params: Any, model: Any, batch: Any, out: _common.Outputs, xp: Any
    ) -> dict[str, Any]:
        """The refresh: ``J``, ``α = (JJᵀ + λN I)⁻¹ 1`` and ``Jᵀα``; a dict
        with ``loss``, ``direction``, ``alpha``, or a rejection ``info``."""
        losses, J = _losses_and_gradients(model, params, batch, out)
        loss = backend.to_float(xp.mean(losses))
        if not math.isfinite(loss):
            return _common.loss_rejection(loss, out, "mean")
        N = J.shape[0]
        ones = xp.ones((N,), dtype=J.dtype, device=backend.device(J))
        try:
            alpha = Woodbury(J, self.damping * N).coefficients(ones)
        except ValueError as err:
            # Woodbury refuses a J with NaN/Inf or an overflowing JJᵀ (read off
            # its diagonal): no step
            return _common.factor_rejection(err, J, loss, out)
        return {"loss": loss, "direction": xp.matrix_transpose(J) @ alpha, "alpha": alpha}

    def _stale_direction(
        self, params: Any, model: Any, batch: Any, alpha: Any, out: _common.Outputs, xp: Any
    ) -> tuple[float, Any, float | None] | None:
        """A reuse step's ``(loss, Jᵀα, ρ)`` without forming ``J`` when the
        model has ``vjp`` (and ``jvp`` for ``ρ``); None if ``N`` changed."""
        N = alpha.shape[0]
        check = self.refresh_tol is not None
        jvp_needed = check and self.drift == "residual"
        fused = "residuals_vjp_and_gram" if jvp_needed else "residuals_and_vjp"
        fast = callable(getattr(model, "vjp", None)) and (not jvp_needed or callable(getattr(model, "jvp", None)))
        Jd = None
        # copies: a model that writes into its argument must not touch the cached α or the step
        if callable(getattr(model, fused, None)):  # one forward pass for all of it
            try:
                outs = getattr(model, fused)(params, batch, xp.asarray(alpha, copy=True))
            except ValueError:
                # α has the old batch's length: refresh if the batch size changed, else it is the model's error
                if model.residuals(params, batch).shape[0] != N:
                    return None
                raise
            out.n = N  # the call accepted α of length N: losses of another length are its fault
            losses = out.residuals(outs[0], fused, "the model's per-sample losses")
            d = out.array(outs[1], fused, (params.shape[0],), f"the model's weighted per-sample gradients Jᵀα (model.{fused})")
            if jvp_needed:
                Jd = out.array(outs[2], fused, (N,), f"the model's Gram-matrix product J Jᵀα (model.{fused})")
        elif fast:
            losses = out.residuals(model.residuals(params, batch), "residuals", "the model's per-sample losses")
            if losses.shape[0] != N:
                return None
            d = model.vjp(params, batch, xp.asarray(alpha, copy=True))
            d = out.array(d, "vjp", (params.shape[0],), "the model's weighted per-sample gradients Jᵀα (model.vjp)")
            if jvp_needed:
                Jd = out.array(model.jvp(params, batch, xp.asarray(d, copy=True)), "jvp", (N,),
                               "the model's Jacobian-vector product J Jᵀα (model.jvp)")
        else:
            losses, J = _losses_and_gradients(model, params, batch, out)
            if losses.shape[0] != N:
                return None
            d = xp.matrix_transpose(J) @ alpha
            Jd = J @ d if jvp_needed else None
        if not check:
            return backend.to_float(xp.mean(losses)), d, None
        lam_n = self.damping * N
        if Jd is not None:
            # ρ = ‖(JJᵀ + λN I)α − 1‖ / ‖1‖
            rho = xp.linalg.vector_norm(Jd + lam_n * alpha - 1.0) / math.sqrt(N)  # Inf/NaN: a refresh
        else:
            # ρ = |αᵀ(JJᵀ + λN I)α / 1ᵀα − 1| = |(‖Jᵀα‖² + λN‖α‖²) / 1ᵀα − 1|
            rho = xp.abs((backend.vecdot(xp, d, d) + lam_n * backend.vecdot(xp, alpha, alpha)) / xp.sum(alpha) - 1.0)
        # read with the loss in one synchronisation
        (loss, rho), _ = _common.read(xp, [xp.mean(losses), rho])
        return loss, d, rho


def _losses_and_gradients(model: Any, params: Any, batch: Any, out: _common.Outputs) -> tuple[Any, Any]:
    """The per-sample losses ``(N,)`` and gradients ``J`` ``(N, P)``, in one
    model call where the adapter shares the forward pass, checked."""
    method = "residuals_and_jacobian" if callable(getattr(model, "residuals_and_jacobian", None)) else "jacobian"
    losses, J = _common.residuals_and_jacobian(model, params, batch)
    method_r = method if method != "jacobian" else "residuals"
    losses = out.residuals(losses, method_r, "the model's per-sample losses")
    J = out.jacobian(J, losses.shape[0], method, "the model's per-sample gradients")
    return losses, J
