"""The pieces every figure and table is made of, in every notebook: a new figure, the palette, a
table that renders in a notebook, table cells with a centre and a range, and a function's source."""

from __future__ import annotations

import html
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Literal, overload

import numpy as np
from IPython.display import Code
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from numpy.typing import ArrayLike

Palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


@overload
def figure(
    ncols: Literal[1] = 1, nrows: Literal[1] = 1, width: float = 5.0, height: float = 3.6
) -> tuple[Figure, Axes]: ...
@overload
def figure(
    ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6
) -> tuple[Figure, np.ndarray]: ...
def figure(
    ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6
) -> tuple[Figure, Axes | np.ndarray]:
    """A new ``Figure`` with a grid of axes, ``(fig, axes)``; ``axes`` is flat when the grid is."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, (axes[0, 0] if nrows == ncols == 1 else axes.ravel())


def _axis(ax: Axes | None, **figure_kwargs: Any) -> tuple[Figure | SubFigure, Axes]:
    if ax is not None:
        return ax.figure, ax
    return figure(**figure_kwargs)


def _legend_if_labelled(ax: Axes) -> None:
    """A legend once something labelled is drawn: a live plot's first frame may have nothing yet,
    and matplotlib warns about an empty legend."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


class Table:
    """A small table that renders as HTML in a notebook and as aligned text elsewhere."""

    def __init__(
        self, rows: Iterable[Iterable[object]], headers: Iterable[str], digits: int = 6
    ) -> None:
        self.rows = [[self._cell(v, digits) for v in row] for row in rows]
        self.headers = list(headers)

    @staticmethod
    def _cell(value: object, digits: int) -> str:
        if isinstance(value, (float, np.floating)):
            return f"{value:.{digits}g}"
        return str(value)

    def __repr__(self) -> str:
        widths = [
            max(len(r[i]) for r in [self.headers, *self.rows]) for i in range(len(self.headers))
        ]
        lines = ["  ".join(h.rjust(w) for h, w in zip(self.headers, widths, strict=True))]
        lines += [
            "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in self.rows
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def source(obj: Callable) -> Code:
    """The source code of a library function or class, syntax-highlighted in a notebook, so a
    student reads the real loop rather than a copy of it."""
    return Code(inspect.getsource(obj), language="python")


def mean_range(values: ArrayLike, digits: int = 3) -> str:
    """``"mean [min, max]"`` of ``values`` with ``digits`` significant digits: a table cell."""
    return _center_and_range(np.mean, values, digits)


def median_range(values: ArrayLike, digits: int = 3) -> str:
    """``"median [min, max]"`` of ``values`` with ``digits`` significant digits: a table cell."""
    return _center_and_range(np.median, values, digits)


def _center_and_range(center: Callable[[np.ndarray], Any], values: ArrayLike, digits: int) -> str:
    array = np.asarray(values, dtype=float)
    low, mid, high = array.min(), center(array), array.max()
    return f"{mid:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"
