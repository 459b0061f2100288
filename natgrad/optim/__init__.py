"""Layer 3: optimisers built on natgrad.linalg and the adapters.

Every optimiser has ``step(params, model, batch) -> (params, info)`` on flat
parameter vectors and keeps its own state (momentum, cached coefficients).
"""

from .adam import Adam
from .engd import ENGD, gauss_newton_direction
from .fit import History, fit
from .flow import GradientFlow
from .fngd import FNGD
from .sfn import SaddleFreeNewton
from .spring import SPRING

__all__ = [
    "ENGD",
    "SPRING",
    "FNGD",
    "SaddleFreeNewton",
    "GradientFlow",
    "Adam",
    "fit",
    "History",
    "gauss_newton_direction",
]
