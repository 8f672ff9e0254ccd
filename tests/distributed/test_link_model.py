"""Seconds per update in the α–β model (notebook 08, eqs. 8.3–8.6): the closed forms against
plain loops over the messages, and the figures and the panel built on them."""

import numpy as np
import pytest

from rlteach import plots, widgets
from rlteach.distributed.traffic import (
    SCHEMES,
    link_seconds,
    link_table,
    ring_latency_crossover,
    traffic_per_update,
)

ALPHA, BETA = 10e-6, 1.25e9


def looped_ring_seconds(workers, params, alpha, beta, duplex):
    """A ring all-reduce step by step: in each of the W − 1 reduce-scatter and W − 1 all-gather
    steps rank r sends chunk (r − step) mod W (shifted by one in the all-gather) to rank r + 1 and
    receives its left neighbour's. A step lasts until the slowest rank is done: α plus its bytes
    over β, sent and received at once (duplex) or one after the other."""
    chunk_bytes = [4 * c.size for c in np.array_split(np.zeros(params), workers)]
    total = 0.0
    for phase in ("reduce-scatter", "all-gather"):
        for step in range(workers - 1):
            sent = [
                chunk_bytes[(r - step + (phase == "all-gather")) % workers] for r in range(workers)
            ]
            received = [sent[(r - 1) % workers] for r in range(workers)]
            busiest = max(
                max(s, g) if duplex else s + g for s, g in zip(sent, received, strict=True)
            )
            total += alpha + busiest / beta
    return total


def looped_server_seconds(workers, params, alpha, beta):
    """The synchronous server's link message by message: the W gradients queue on its incoming
    direction (each takes 4P/β once the link is free, the last arrives α after it left), then
    the W copies of θ queue on the outgoing direction the same way."""
    clock = 0.0
    for _phase in ("gather gradients", "send θ back"):
        link_free = clock
        for _worker in range(workers):
            link_free += 4 * params / beta
        clock = link_free + alpha
    return clock


@pytest.mark.parametrize("duplex", [True, False])
@pytest.mark.parametrize("workers", [2, 3, 7, 16])
def test_the_ring_formula_is_the_sum_over_its_steps(workers, duplex):
    params = 1_000 * workers  # equal chunks: the loop and (8.4) must agree to float rounding
    looped = looped_ring_seconds(workers, params, ALPHA, BETA, duplex)
    assert link_seconds("all-reduce", workers, params, ALPHA, BETA, duplex)["seconds"] == (
        pytest.approx(looped, rel=1e-12)
    )


def test_unequal_chunks_cost_at_most_one_float_per_step_more_than_the_formula():
    """P = 10,001 over 7 ranks: chunks of 1,429 and 1,428 floats; the slowest rank of a step may
    carry one float (4 bytes, twice on a half-duplex link) more than 4P/W."""
    workers, params = 7, 10_001
    for duplex in (True, False):
        looped = looped_ring_seconds(workers, params, ALPHA, BETA, duplex)
        formula = link_seconds("all-reduce", workers, params, ALPHA, BETA, duplex)["seconds"]
        slack = 2 * (workers - 1) * 4 * (1 if duplex else 2) / BETA
        assert 0 <= looped - formula <= slack


@pytest.mark.parametrize("duplex", [True, False])
@pytest.mark.parametrize("workers", [2, 10, 1000])
def test_the_server_formula_is_the_queue_of_its_messages(workers, duplex):
    looped = looped_server_seconds(workers, 5_000, ALPHA, BETA)
    got = link_seconds("parameter server", workers, 5_000, ALPHA, BETA, duplex)
    assert got["seconds"] == pytest.approx(looped, rel=1e-12)
    assert got["latency"] == 2 * ALPHA  # duplex does not help: the phases cannot overlap


def test_duplex_halves_the_rings_transfer_and_the_transfer_is_the_bytes_over_beta():
    for workers in (2, 5, 100):
        full = link_seconds("all-reduce", workers, 40_000, ALPHA, BETA, duplex=True)
        half = link_seconds("all-reduce", workers, 40_000, ALPHA, BETA, duplex=False)
        assert half["transfer"] == pytest.approx(2 * full["transfer"], rel=1e-12)
        assert half["latency"] == full["latency"] == 2 * (workers - 1) * ALPHA
        # half duplex: everything a rank sends and receives passes one after the other
        bytes_moved = traffic_per_update("all-reduce", workers, 40_000)["per_worker"]
        assert half["transfer"] == pytest.approx(bytes_moved / BETA, rel=1e-12)


@pytest.mark.parametrize("params", [9_155, 1_000_000, 25_000_000])
def test_the_latency_term_dominates_the_ring_beyond_the_crossover(params):
    crossover = ring_latency_crossover(params, ALPHA, BETA)
    assert crossover == pytest.approx(4 * params / (ALPHA * BETA))
    below, above = int(crossover * 0.99), int(np.ceil(crossover * 1.01))  # 1% either side
    if below >= 2:
        at = link_seconds("all-reduce", below, params, ALPHA, BETA)
        assert at["latency"] <= at["transfer"]
    at = link_seconds("all-reduce", above, params, ALPHA, BETA)
    assert at["latency"] > at["transfer"]


def test_a_ranks_bytes_stay_flat_while_its_time_grows_with_w_for_a_small_model():
    """The point of eq. 8.4: bytes per rank grow by less than 2× from W = 2 to 1000, but for
    the CartPole policy the ring's time grows ~100× from W = 10 to 1000, all of it latency."""
    small = 9_155
    b = [traffic_per_update("all-reduce", w, small)["busiest"] for w in (2, 1000)]
    assert b[1] / b[0] < 2
    t10, t1000 = (link_seconds("all-reduce", w, small, ALPHA, BETA) for w in (10, 1000))
    assert t1000["seconds"] > 50 * t10["seconds"]
    assert t1000["latency"] > 0.99 * t1000["seconds"]


def test_the_table_rows_are_the_formulas_in_megabytes_and_milliseconds():
    rows = link_table(9_155, workers=(10, 1000), duplex=False)
    assert [row["W"] for row in rows] == [10, 1000]
    for row in rows:
        w = row["W"]
        ring = link_seconds("all-reduce", w, 9_155, ALPHA, BETA, duplex=False)
        assert row["server MB"] == 2 * w * 4 * 9_155 / 1e6
        assert row["ring MB per rank"] == pytest.approx(4 * (w - 1) / w * 4 * 9_155 / 1e6)
        assert row["ring ms"] == pytest.approx(ring["seconds"] * 1e3)
        assert row["server ms"] == pytest.approx((2 * ALPHA + 2 * w * 4 * 9_155 / BETA) * 1e3)
        assert row["ring: latency share"] == pytest.approx(ring["latency"] / ring["seconds"])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="scheme = 'tree' is invalid"):
        link_seconds("tree", 4, 10)
    with pytest.raises(ValueError, match="workers = 1 is invalid"):
        link_seconds("all-reduce", 1, 10)
    with pytest.raises(ValueError, match="beta = 0"):
        link_seconds("all-reduce", 4, 10, beta=0)


def test_the_seconds_plot_draws_the_formula_for_each_scheme_and_size():
    workers = [2, 10, 100]
    fig = plots.update_seconds({"small": 1_000, "big": 10**8}, ALPHA, BETA, workers=workers, at=10)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    for label, size in (("small", 1_000), ("big", 10**8)):
        for scheme in SCHEMES:
            expected = [link_seconds(scheme, w, size, ALPHA, BETA)["seconds"] for w in workers]
            np.testing.assert_allclose(lines[f"{label}: {scheme}"].get_ydata(), expected)
    np.testing.assert_allclose(
        lines["ring latency term 2(W−1)α"].get_ydata(), [2 * (w - 1) * ALPHA for w in workers]
    )
    assert "W = 10" in lines


def test_the_bytes_plot_draws_the_arithmetic():
    fig = plots.update_bytes(1_000, workers=[2, 4], at=4)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    for scheme in SCHEMES:
        expected = [traffic_per_update(scheme, w, 1_000)["busiest"] / 1e6 for w in (2, 4)]
        np.testing.assert_allclose(lines[scheme].get_ydata(), expected)


def test_the_link_panel_redraws_with_the_numbers_of_the_formula(monkeypatch):
    shown = []
    monkeypatch.setattr(widgets, "display", shown.append)
    panel = widgets.link_explorer(params=1_000_000, workers=100)
    controls = panel.children[1].children
    controls[0].value = 500  # workers
    controls[3].value = False  # half duplex
    fig = shown[-1]
    ring = link_seconds("all-reduce", 500, 1_000_000, ALPHA, BETA, duplex=False)
    server = link_seconds("parameter server", 500, 1_000_000, ALPHA, BETA, duplex=False)
    title = fig._suptitle.get_text()
    assert title.startswith(f"W = 500: ring {ring['seconds'] * 1e3:.3g} ms")
    assert f"server {server['seconds'] * 1e3:.3g} ms" in title
    assert len(shown) == 3  # drawn at creation and once per change


def test_the_printed_table_shows_the_rows_in_readable_units():
    table = plots.link_table({"small": 9_155, "big": 25_000_000}, workers=(10, 1000))
    assert table.headers[-1] == "ring: latency share"
    small_1000, big_1000 = table.rows[1], table.rows[3]
    ring = link_seconds("all-reduce", 1000, 9_155, ALPHA, BETA)
    assert small_1000[:3] == ["small", "9,155", "1000"]
    assert small_1000[-1] == f"{ring['latency'] / ring['seconds']:.1%}"
    assert big_1000[3] == "200,000"  # 2 · 1000 · 4 · 25M bytes = 200 GB, in MB
    assert big_1000[5] == "160,000"  # (8.6): 2α + 2 · 1000 · 10^8 / 1.25e9 s ≈ 160 s, in ms
