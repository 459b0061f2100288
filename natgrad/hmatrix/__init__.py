"""Error-bounded hierarchical matrices on any array backend.

Cluster trees (:class:`ClusterTree`), block cluster trees with standard or
weak admissibility (:class:`BlockTree`), low-rank block compression (ACA with
partial pivoting, recompression, truncated and randomized SVD) and the
:class:`HMatrix` operator, built from a kernel on points or from a dense
matrix with ``‖H − A‖_F ≤ eps ‖A‖_F``; :func:`compress_matrix` picks the
smallest of dense, truncated SVD and H-matrix for a weight matrix (or its
update from a reference) within such a bound.

Examples
--------
>>> import numpy as np
>>> from natgrad.hmatrix import HMatrix
>>> pts = np.random.default_rng(0).random((500, 3))
>>> def kernel(X, Y):
...     d = X[:, None, :] - Y[None, :, :]
...     return np.exp(-np.sqrt(np.sum(d * d, axis=-1)))
>>> H = HMatrix.from_kernel(kernel, pts, eps=1e-6, leaf_size=32)
>>> A = kernel(pts, pts)
>>> bool(np.linalg.norm(H.to_dense() - A) <= 1e-6 * np.linalg.norm(A))
True
"""

from .blocks import Block, BlockTree, admissible
from .cluster import Cluster, ClusterTree, spectral_coordinates
from .compress import BlockLayout, CompressedMatrix, apply_layout, compress_matrix
from .hmatrix import HMatrix
from .lowrank import ACAResult, LowRank, aca, randomized_svd, recompress, truncated_svd, truncation_rank
from .plot import plot

__all__ = [
    "ClusterTree",
    "Cluster",
    "spectral_coordinates",
    "BlockTree",
    "Block",
    "admissible",
    "HMatrix",
    "aca",
    "ACAResult",
    "LowRank",
    "recompress",
    "truncated_svd",
    "randomized_svd",
    "truncation_rank",
    "plot",
    "compress_matrix",
    "CompressedMatrix",
    "BlockLayout",
    "apply_layout",
]
