"""Every figure the notebooks show.

Figures are plain ``matplotlib.figure.Figure`` objects (not pyplot-managed): a notebook shows one by
leaving it as the cell's last expression or by ``display(fig)``, with ``%matplotlib inline`` and
headless alike, and nothing accumulates in pyplot's figure list. Functions that draw into an axis take
an optional ``ax`` so panels can be combined.

Every name is used as ``plots.X``; the modules group them by what they show:
:mod:`~rlteach.plots.core` (figure, Table, table cells), :mod:`~rlteach.plots.gradients` (notebook
01), :mod:`~rlteach.plots.learning` (learning curves, diagnostics and seed summaries of any run),
:mod:`~rlteach.plots.live` (the live plot), :mod:`~rlteach.plots.advantages_ppo` (notebooks 03–04),
:mod:`~rlteach.plots.speedup` (notebooks 05 and 07), :mod:`~rlteach.plots.network` (notebook 08)
and :mod:`~rlteach.plots.distributed_runs` (inside distributed runs, notebooks 05–09).
"""

from rlteach.plots.advantages_ppo import (
    advantage_tradeoff,
    bias_variance,
    clip_objective,
    critic_error_kinds,
    surrogate_vs_true,
    truncation_table,
)
from rlteach.plots.core import (
    Palette,
    Table,
    figure,
    mean_range,
    median_range,
    source,
)
from rlteach.plots.distributed_runs import (
    distributed_dashboard,
    lag_histogram,
    server_activity,
    staleness_by_design,
    staleness_histogram,
    staleness_outcomes,
    staleness_sweep,
    staleness_table,
    time_split,
    worker_curves,
)
from rlteach.plots.gradients import (
    error_vs_samples,
    gamma_t_bias,
    gradient_directions,
    reinforce_variants,
    running_estimate,
    variance_bars,
)
from rlteach.plots.learning import (
    BOOKKEEPING_KEYS,
    DASHBOARD_KEYS,
    LEARNING_X,
    SEED_BANDS,
    diagnostic_bands,
    diagnostic_comparison,
    diagnostic_keys,
    diagnostics,
    learning_curves,
    learning_dashboard,
    moving_average,
    run_summary,
    seed_grid_curves,
    seed_metrics,
    seed_summary,
    seed_table,
)
from rlteach.plots.live import (
    LivePlot,
    display_data,
    in_kernel,
)
from rlteach.plots.network import (
    link_table,
    traffic,
    update_bytes,
    update_seconds,
)
from rlteach.plots.speedup import (
    scaling,
    scaling_law,
    scaling_laws,
    scaling_table,
    worker_scaling,
    worker_scaling_table,
)

__all__ = [
    "BOOKKEEPING_KEYS",
    "DASHBOARD_KEYS",
    "LEARNING_X",
    "LivePlot",
    "Palette",
    "SEED_BANDS",
    "Table",
    "advantage_tradeoff",
    "bias_variance",
    "clip_objective",
    "critic_error_kinds",
    "diagnostic_bands",
    "diagnostic_comparison",
    "diagnostic_keys",
    "diagnostics",
    "display_data",
    "distributed_dashboard",
    "lag_histogram",
    "error_vs_samples",
    "figure",
    "gamma_t_bias",
    "gradient_directions",
    "in_kernel",
    "learning_curves",
    "learning_dashboard",
    "link_table",
    "mean_range",
    "median_range",
    "moving_average",
    "reinforce_variants",
    "run_summary",
    "running_estimate",
    "scaling",
    "scaling_law",
    "scaling_laws",
    "scaling_table",
    "seed_grid_curves",
    "seed_metrics",
    "seed_summary",
    "seed_table",
    "server_activity",
    "source",
    "staleness_by_design",
    "staleness_histogram",
    "staleness_outcomes",
    "staleness_sweep",
    "staleness_table",
    "surrogate_vs_true",
    "time_split",
    "traffic",
    "truncation_table",
    "update_bytes",
    "update_seconds",
    "variance_bars",
    "worker_curves",
    "worker_scaling",
    "worker_scaling_table",
]
