"""A figure that follows a run as it trains, in every notebook that trains: :class:`LivePlot`, the
trainer callback that redraws a dashboard in place, and what it needs to know about the kernel it
runs in."""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import IPython
from IPython.display import DisplayHandle, display
from matplotlib.figure import Figure

from rlteach.plots.learning import learning_dashboard

if TYPE_CHECKING:
    from ipywidgets import Output

    from rlteach.history import History


def in_kernel() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a ``kernel``), where figures can be
    displayed; False in plain Python, pytest or a terminal IPython."""
    shell = IPython.get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LivePlot:
    """A trainer callback that keeps a :func:`learning_dashboard` of the run up to date (or the
    figure of another ``draw(history, title=...)``, e.g. :func:`~rlteach.plots.distributed_dashboard`).

    ``live = LivePlot(title="PPO", min_interval=0.5)``; ``train_ppo(callback=live)`` calls
    ``live(history)`` after every update, and ``live.close(history)`` draws the final state.
    Drawing happens in the calling (main) thread and updates one IPython display handle
    (``display(fig, display_id=True)``, then ``handle.update(fig)``), so ``%matplotlib inline`` is
    enough. Outside a kernel nothing is displayed; the figures are still drawn and counted.

    Inside a widget pass ``output``, an ``ipywidgets.Output``: each redraw then replaces its content
    by setting its ``outputs``. A display handle does not work there: JupyterLab's Output widget
    drops display updates (only the first figure would show), and drawing under ``with output:``
    would let that block swallow a kernel interrupt that lands while the figure is rendered.

    Throttling keeps training fast: a call redraws only when ``min_interval`` seconds have passed
    since the last redraw *and* the time since then is at least ``last_cost / max_share`` (so at
    most a ``max_share`` fraction of wall time goes to drawing). Measured cost of one redraw of a
    dashboard with 200 updates and 2,000 episodes, on one core of a shared server CPU: about
    0.4 s in a kernel (building the figure, ~25 ms, plus rendering it to PNG for the display,
    which dominates), ~25 ms headless. So with the defaults a kernel redraws about every 4 s and
    drawing takes at most 10% of the run.

    ``redraws`` counts the redraws, ``figure`` is the last figure (None before the first),
    ``drawing_seconds`` the total time spent drawing.
    """

    def __init__(
        self,
        title: str = "",
        min_interval: float = 0.5,
        max_share: float = 0.1,
        draw: Callable[..., Figure] | None = None,
        output: Output | None = None,
    ) -> None:
        if not min_interval >= 0:
            raise ValueError(f"min_interval = {min_interval!r} is not allowed: must be >= 0")
        if not 0 < max_share <= 1:
            raise ValueError(f"max_share = {max_share!r} is not allowed: must be in (0, 1]")
        self.title = title
        self.draw = draw or learning_dashboard  # draw(history, title=...) -> Figure
        self.min_interval = min_interval
        self.max_share = max_share
        self.output = output  # an ipywidgets.Output to draw into, or None: a display handle
        self.redraws = 0
        self.figure: Figure | None = None
        self.drawing_seconds = 0.0
        self._handle: DisplayHandle | None = None
        self._last_start = -math.inf
        self._last_cost = 0.0

    def __call__(self, history: History) -> None:
        """Redraw from ``history`` if the throttle allows it (see the class docstring)."""
        waited = time.perf_counter() - self._last_start
        if waited >= max(self.min_interval, self._last_cost / self.max_share):
            self.redraw(history)

    def close(self, history: History) -> None:
        """Draw the final state of ``history``, whatever the throttle says."""
        self.redraw(history)

    def redraw(self, history: History) -> None:
        """Draw the dashboard now and show it in place of the previous one (in a kernel)."""
        self._last_start = time.perf_counter()
        self.figure = self.draw(history, title=self.title)
        if in_kernel():
            self._show(self.figure)
        self._last_cost = time.perf_counter() - self._last_start
        self.drawing_seconds += self._last_cost
        self.redraws += 1

    def _show(self, fig: Figure) -> None:
        if self.output is not None:
            self.output.outputs = (display_data(fig),)
        elif self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)


def display_data(obj: object) -> dict[str, Any]:
    """The ``display_data`` output (nbformat) the kernel would send for ``display(obj)``: its
    representations from IPython's formatters (e.g. ``image/png`` for a Figure under
    ``%matplotlib inline``), binary ones base64-encoded as in a notebook file."""
    data, metadata = IPython.get_ipython().display_formatter.format(obj)
    data = {
        mime: base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
        for mime, value in data.items()
    }
    return {"output_type": "display_data", "data": data, "metadata": metadata}
