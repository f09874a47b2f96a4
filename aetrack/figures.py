"""aetrack's one way to make a matplotlib figure: the object API on an Agg canvas, never pyplot.

So no GUI backend is imported and no window can open, whatever MPLBACKEND says, nothing global is
set, and a figure is freed with its last reference (no `plt.close`). Run figures (tracking/plots.py),
sweep figures and `aetrack compare`'s loss curves all start here.
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


def new_figure(width: float, height: float) -> Figure:
    """A figure of `width` x `height` inches drawn by the Agg (file-only) renderer."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: str) -> None:
    """Write the figure as a PNG file (tight bounding box, so long labels stay inside)."""
    figure.savefig(path, format="png", bbox_inches="tight")
