"""Layer 2: autodiff frameworks → arrays.

An adapter wraps a user's function, written in JAX, PyTorch or any other
autodiff system, into a *model*: an object that hands the core flat parameter
vectors, residuals, Jacobians, Jacobian-vector products, Hessian-vector
products and Gauss-Newton products (see :class:`natgrad.adapters.base.Model`).

=====================================  =========================================
module                                 model
=====================================  =========================================
:mod:`natgrad.adapters.jax`            :class:`~natgrad.adapters.jax.JaxModel`
:mod:`natgrad.adapters.torch`          :class:`~natgrad.adapters.torch.TorchModel`
:mod:`natgrad.adapters.callables`      :class:`~natgrad.adapters.callables.CallableModel`
=====================================  =========================================

Importing this package imports neither PyTorch nor JAX; only the framework
modules do, so import the one you need explicitly::

    from natgrad.adapters.torch import TorchModel
"""

from __future__ import annotations

from .base import LOSSES, Model

__all__ = ["LOSSES", "Model"]
