"""Picture of an H-matrix's block structure (matplotlib, optional)."""

from __future__ import annotations

from typing import Any

__all__ = ["plot"]


#: the colour of the dense (inadmissible) blocks
DENSE_COLOUR = (0.85, 0.2, 0.2)


def plot(H: Any, ax: Any = None, *, cmap: str = "viridis") -> Any:
    """Draw the block partition of an :class:`HMatrix`, low-rank blocks
    coloured by rank, dense blocks in red, in the permuted (clustered) order,
    with a colour bar for the ranks and a legend entry for the dense blocks.

    Parameters
    ----------
    H : HMatrix
    ax : matplotlib Axes, optional
        Drawn into a new figure when omitted.
    cmap : str
        Colormap for the ranks.

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    TypeError
        If ``H`` is not an HMatrix.

    Notes
    -----
    Block structure as in Hackbusch (2015), Fig. 5.6: rows and columns in
    cluster order, so admissible blocks grow away from the diagonal.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from natgrad.hmatrix import HMatrix, plot
    >>> H = HMatrix.from_dense(np.eye(64) + 0.01, eps=1e-6, leaf_size=8, tree="index")
    >>> ax = plot(H)
    >>> len(ax.patches) == len(H.blocks())
    True
    >>> ax.figure.axes[-1].get_ylabel()        # the colour key
    'rank of a low-rank block'
    """
    from .hmatrix import HMatrix

    if not isinstance(H, HMatrix):
        raise TypeError(f"H must be an HMatrix, got {type(H).__name__}")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5 * H.shape[0] / max(H.shape[1], 1)))
    blocks = H.blocks()
    top = max([b["rank"] for b in blocks if b["rank"] is not None] + [1])
    colours = plt.get_cmap(cmap)
    # symmetric storage: a mirrored block is drawn at both of its places
    places = [(b, b["row0"], b["col0"], b["m"], b["n"]) for b in blocks]
    places += [(b, b["col0"], b["row0"], b["n"], b["m"]) for b in blocks if b["mirrored"]]
    for b, row0, col0, m, n in places:
        if b["kind"] == "dense":
            face = DENSE_COLOUR
        else:
            face = colours(b["rank"] / top)
        ax.add_patch(Rectangle((col0, row0), n, m, facecolor=face, edgecolor="white", linewidth=0.3))
        if b["kind"] != "dense" and min(m, n) >= H.shape[0] / 16:
            ax.text(col0 + n / 2, row0 + m / 2, str(b["rank"]),
                    ha="center", va="center", fontsize=7, color="white")
    ax.set_xlim(0, H.shape[1])
    ax.set_ylim(H.shape[0], 0)
    ax.set_aspect("equal")
    ax.set_title(f"H-matrix, eps={H.eps:g}, storage {H.compression_ratio:.1%} of dense")
    _colour_key(ax, colours, top, DENSE_COLOUR)
    return ax


def _colour_key(ax: Any, colours: Any, top: int, dense: tuple[float, float, float]) -> None:
    """A colour bar for the ranks and a legend entry for the dense blocks."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    mappable = ScalarMappable(norm=Normalize(0, top), cmap=colours)
    ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04, label="rank of a low-rank block")
    ax.legend(handles=[Patch(facecolor=dense, label="dense block")], loc="upper right",
              bbox_to_anchor=(1.0, -0.02), frameon=False, fontsize=8)
