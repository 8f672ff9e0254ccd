"""plots.seed_metrics: one row per label, each cell the mean [min, max] over seeds of a metric."""

import math

from rlteach import plots
from rlteach.history import History


def history_with(value):
    h = History()
    h.meta["x"] = value
    return h


def test_cells_are_mean_and_range_over_seeds_and_count_missing_values():
    runs = {
        "a": [history_with(1.0), history_with(2.0), history_with(6.0)],
        "b": [history_with(math.nan), history_with(4.0)],
        "c": [history_with(math.nan)],
    }
    table = plots.seed_metrics(runs, {"x": lambda h: h.meta["x"]})
    assert table.rows[0] == ["a", "3", "3 [1, 6]"]
    assert table.rows[1] == ["b", "2", "4 [4, 4] (none in 1 of 2)"]
    assert table.rows[2] == ["c", "1", "— (none in 1 of 1)"]
    assert table.headers == ["run", "seeds", "x"]
