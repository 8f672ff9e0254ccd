"""Bytes per update of a parameter server and of a ring all-reduce: the arithmetic against a
simulation of the ring, and against what the sockets carried."""

import sys

import numpy as np
import pytest

from rlteach import plots
from rlteach.distributed.traffic import SCHEMES, measure_traffic, traffic_per_update


def simulated_ring_bytes(workers: int, params: int) -> np.ndarray:
    """Sent + received bytes per rank in a ring all-reduce, by moving the chunks one step at a
    time: W − 1 reduce-scatter steps then W − 1 all-gather steps; in every step rank r sends
    chunk (r − step) mod W to rank r + 1. Also checks that the sums come out right."""
    chunks = np.array_split(np.arange(params, dtype=np.float64), workers)
    data = [[c * (rank + 1) for c in chunks] for rank in range(workers)]  # rank r holds (r+1)·v
    moved = np.zeros(workers)
    for phase in ("reduce-scatter", "all-gather"):
        for step in range(workers - 1):
            sends = []
            for rank in range(workers):
                index = (rank - step + (phase == "all-gather")) % workers
                sends.append((rank, (rank + 1) % workers, index, data[rank][index].copy()))
            for src, dst, index, chunk in sends:
                moved[src] += 4 * chunk.size
                moved[dst] += 4 * chunk.size
                if phase == "reduce-scatter":
                    data[dst][index] = data[dst][index] + chunk
                else:
                    data[dst][index] = chunk
    total = sum(range(1, workers + 1))
    for rank in range(workers):
        np.testing.assert_allclose(np.concatenate(data[rank]), total * np.arange(params))
    return moved


@pytest.mark.parametrize("workers", [2, 3, 5, 8])
def test_ring_arithmetic_matches_a_simulated_ring(workers):
    params = 1000 * workers  # chunks of equal size
    moved = simulated_ring_bytes(workers, params)
    expected = traffic_per_update("all-reduce", workers, params)
    np.testing.assert_allclose(moved, expected["per_worker"])
    assert moved.max() == pytest.approx(expected["busiest"])


def test_the_server_moves_w_times_a_workers_traffic():
    for workers in (2, 10, 1000):
        counts = traffic_per_update("parameter server", workers, 500)
        assert counts["per_worker"] == 2 * 4 * 500
        assert counts["busiest"] == workers * counts["per_worker"]


def test_bad_scheme_and_too_few_workers_are_refused():
    with pytest.raises(ValueError, match="scheme = 'gossip' is invalid"):
        traffic_per_update("gossip", 2, 10)
    with pytest.raises(ValueError, match="workers = 1 is invalid"):
        measure_traffic("all-reduce", 1, 10)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO counters: Linux only")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_sockets_carry_what_the_arithmetic_says(scheme):
    """Three workers, 100k floats, gloo over loopback. TCP/IP headers are not counted by the
    socket counters; gloo's own framing adds a few dozen bytes per message: 1% covers it."""
    run = measure_traffic(scheme, 3, 100_000, updates=3)
    expected = traffic_per_update(scheme, 3, 100_000)
    assert run["busiest"] == pytest.approx(expected["busiest"], rel=0.01)
    workers = run["per_process"][1:] if scheme == "parameter server" else run["per_process"]
    np.testing.assert_allclose(workers, expected["per_worker"], rtol=0.01)
    fig = plots.traffic({scheme: [dict(run, workers=3)]}, params=100_000)
    assert fig.axes[0].get_ylabel().startswith("MB per update")
