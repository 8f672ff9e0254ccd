"""The checkers of notebooks 07 (DPPO) and 08 (beyond one machine) pass correct solutions written
here from the notebooks' equations, name what is wrong with the usual mistakes, refuse the library's
own answer and report the untouched template as not attempted."""

import numpy as np

from rlteach import checks
from rlteach.distributed import dppo, traffic
from rlteach.distributed.dppo import DPPOConfig
from rlteach.distributed.driver import simulator_law


def template(*args):
    raise NotImplementedError()


# ----------------------------------------------------------------------------- 07.1


def weighted_loop(grads, sizes):
    """(7.1) one sample at a time: every sample of share w contributes g_w, then divide by N."""
    total, count = np.zeros(grads.shape[1]), 0
    for g, n in zip(grads, sizes, strict=True):
        for _ in range(int(n)):
            total += g
            count += 1
    return total / count


def test_round_mean_gradient_passes_a_loop_over_the_samples():
    assert checks.check_round_mean_gradient(weighted_loop)


def test_round_mean_gradient_names_the_plain_mean_and_the_missing_division():
    plain = checks.check_round_mean_gradient(lambda grads, sizes: grads.mean(0))
    assert not plain and "plain mean" in plain.message and "expected" in plain.message
    summed = checks.check_round_mean_gradient(lambda grads, sizes: sizes @ grads)
    assert not summed and "divide by the round's N" in summed.message
    over_workers = checks.check_round_mean_gradient(lambda g, n: n @ g / len(n))
    assert not over_workers and "you divide Σ n_w g_w by W" in over_workers.message


def test_round_mean_gradient_refuses_the_servers_own_mean():
    def through_the_server(grads, sizes):
        theta = np.zeros(grads.shape[1], dtype=np.float32)
        server = dppo.in_process_server(theta, DPPOConfig(workers=len(sizes)))
        for w, (g, n) in enumerate(zip(grads, sizes, strict=True)):
            np.copyto(server.shared.slot(w), n * g)
            server.on_push(w, 0, float(n))
        return weighted_loop(grads, sizes)

    refused = checks.check_round_mean_gradient(through_the_server)
    assert not refused and "Server.apply" in refused.message and "yourself" in refused.message


def test_round_mean_gradient_template_is_not_attempted():
    assert "not attempted" in checks.check_round_mean_gradient(template).message


# ----------------------------------------------------------------------------- 07.2

SCALING = {  # worker_scaling's table: 2 seeds × W = 1, 2, 4
    "workers": [1, 2, 4],
    "seconds": np.array([[11.3, 5.86, 5.92], [11.7, 5.98, 7.93]]),
    "env_steps": np.array([[7680, 6400, 6780], [8190, 6660, 9860]]),
}
LAW = [11.5, 7.25, 5.13]  # (7.2) at W = 1, 2, 4: t(1) is the median of the first column


def test_simulator_speedup_passes_the_laws_ratio_and_shows_the_measurement():
    result = checks.check_simulator_speedup(lambda: 11.5 / 5.13, SCALING, LAW, cores=2)
    assert result and "measured 1.66" in result.message
    assert "t(4) = 5.13 s" in result.message and "4 workers share 2 cores" in result.message


def test_simulator_speedup_rejects_the_measurement_and_the_worker_count():
    measured = checks.check_simulator_speedup(lambda: 11.5 / 6.92, SCALING, LAW, cores=2)
    assert not measured and "predicts a higher value" in measured.message
    ideal = checks.check_simulator_speedup(lambda: 4.0, SCALING, LAW, cores=2)
    assert not ideal and "predicts a lower value" in ideal.message


def test_simulator_speedup_explains_a_measurement_that_beats_the_law():
    fast = {**SCALING, "seconds": np.array([[11.3, 5.86, 3.0], [11.7, 5.98, 3.2]])}
    result = checks.check_simulator_speedup(lambda: 11.5 / 5.13, fast, LAW, cores=8)
    assert result and "beats the law" in result.message and "[min, max]" in result.message


def test_simulator_speedup_refuses_the_library_law():
    def through_the_law():
        law = simulator_law(11.5, 7935, 1.07e-3, [1, 4], 2, "sleep")
        return law[0] / law[1]

    refused = checks.check_simulator_speedup(through_the_law, SCALING, LAW, cores=2)
    assert not refused and "simulator_law" in refused.message


def test_simulator_speedup_template_is_not_attempted():
    result = checks.check_simulator_speedup(template, SCALING, LAW, cores=2)
    assert "not attempted" in result.message


# ----------------------------------------------------------------------------- 07.3


def test_round_is_ppo_step_passes_the_three_breaking_changes_and_explains_others():
    assert checks.check_round_is_ppo_step(lambda: "c, b, a")
    weighted = checks.check_round_is_ppo_step(lambda: "AD")
    assert not weighted and "D: no difference: this is (7.1)" in weighted.message
    adam = checks.check_round_is_ppo_step(lambda: "ABCE")
    assert not adam and "keeps Adam's state on the nodes" in adam.message
    assert "one or more of the letters" in checks.check_round_is_ppo_step(lambda: "Z").message


def test_round_is_ppo_step_template_is_not_attempted():
    assert "not attempted" in checks.check_round_is_ppo_step(template).message


# ----------------------------------------------------------------------------- 08.1


def ring_by_messages(arrays):
    """The ring as a list of messages per step: (sender, chunk, values), delivered after all of
    the step's messages are formed, as simultaneous sends would be."""
    workers = len(arrays)
    chunk = len(arrays[0]) // workers
    ranks = [a.copy() for a in arrays]
    sent = [0] * workers

    def cut(c):
        return slice(c * chunk, (c + 1) * chunk)

    for adding in (True, False):
        for step in range(workers - 1):
            messages = []
            for sender in range(workers):
                c = (sender - step + (0 if adding else 1)) % workers
                messages.append((sender, c, ranks[sender][cut(c)].copy()))
                sent[sender] += chunk
            for sender, c, values in messages:
                receiver = ranks[(sender + 1) % workers]
                receiver[cut(c)] = receiver[cut(c)] + values if adding else values
    assert len(set(sent)) == 1
    return ranks, sent[0]


def test_ring_allreduce_passes_a_message_by_message_ring():
    assert checks.check_ring_allreduce(ring_by_messages)


def test_ring_allreduce_names_the_mean_a_missing_all_gather_and_a_half_count():
    def mean(arrays):
        ranks, sent = ring_by_messages(arrays)
        return [r / len(arrays) for r in ranks], sent

    result = checks.check_ring_allreduce(mean)
    assert not result and "holds the mean" in result.message

    def reduce_scatter_only(arrays):
        workers, ranks = len(arrays), [np.split(a.copy(), len(arrays)) for a in arrays]
        for step in range(workers - 1):
            for r in range(workers):
                c = (r - step) % workers
                ranks[(r + 1) % workers][c] = ranks[(r + 1) % workers][c] + ranks[r][c]
        return [np.concatenate(r) for r in ranks], ring_by_messages(arrays)[1]

    result = checks.check_ring_allreduce(reduce_scatter_only)
    assert not result and "all-gather" in result.message and "chunk(s)" in result.message

    def half_count(arrays):
        ranks, sent = ring_by_messages(arrays)
        return ranks, sent // 2

    result = checks.check_ring_allreduce(half_count)
    assert not result and "reduce-scatter alone" in result.message

    def whole_vectors(arrays):
        return ring_by_messages(arrays)[0], 2 * (len(arrays) - 1) * len(arrays[0])

    assert "whole vectors" in checks.check_ring_allreduce(whole_vectors).message
    assert "pair" in checks.check_ring_allreduce(lambda arrays: sum(arrays)).message


def test_ring_allreduce_refuses_the_librarys_count():
    def counted_by_the_library(arrays):
        workers, size = len(arrays), len(arrays[0])
        sent = traffic.traffic_per_update("all-reduce", workers, size)["per_worker"] / 16
        return ring_by_messages(arrays)[0], sent

    refused = checks.check_ring_allreduce(counted_by_the_library)
    assert not refused and "traffic_per_update" in refused.message


def test_ring_allreduce_template_is_not_attempted():
    assert "not attempted" in checks.check_ring_allreduce(template).message


# ----------------------------------------------------------------------------- 08.2

P = 100_000
MEASURED = [  # measure_traffic's parameter-server runs, with a few bytes of gloo's own
    {"workers": 2, "server": 1_600_120.0},
    {"workers": 3, "server": 2_400_170.0},
]


def test_server_bytes_passes_eq_8_1_and_shows_the_extended_measurement():
    result = checks.check_server_bytes(lambda: 2 * 100 * 4 * P / 1e6, params=P, measured=MEASURED)
    assert (
        result and "measured 80" in result.message and "1.584 MB for a ring rank" in result.message
    )


def test_server_bytes_rejects_a_ring_ranks_bytes_and_values_for_bytes():
    ring = checks.check_server_bytes(lambda: 4 * 0.99 * 4 * P / 1e6, params=P, measured=MEASURED)
    assert not ring and "predicts a higher value" in ring.message
    values = checks.check_server_bytes(lambda: 2 * 100 * P / 1e6, params=P, measured=MEASURED)
    assert not values and "predicts a higher value" in values.message


def test_server_bytes_refuses_the_librarys_arithmetic():
    def from_the_library():
        return traffic.traffic_per_update("parameter server", 100, P)["busiest"] / 1e6

    refused = checks.check_server_bytes(from_the_library, params=P, measured=MEASURED)
    assert not refused and "traffic_per_update" in refused.message


def test_server_bytes_template_is_not_attempted():
    result = checks.check_server_bytes(template, params=P, measured=MEASURED)
    assert "not attempted" in result.message


# ----------------------------------------------------------------------------- 08.3


def crossover_by_bisection(W, P, beta):
    """The α at which (8.6) and (8.4), written out here, are equal: bisection on their difference."""

    def ring_minus_server(alpha):
        ring = 2 * (W - 1) * alpha + 2 * (W - 1) / W * 4 * P / beta
        return ring - (2 * alpha + 2 * W * 4 * P / beta)

    low, high = 0.0, 1.0
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (low, middle) if ring_minus_server(middle) > 0 else (middle, high)
    return (low + high) / 2


def test_server_wins_above_passes_a_bisection_of_the_two_times():
    assert checks.check_server_wins_above(crossover_by_bisection)


def test_server_wins_above_names_a_missing_server_latency_bytes_and_units():
    no_server_latency = checks.check_server_wins_above(
        lambda W, P, beta: (W - (W - 1) / W) * 4 * P / ((W - 1) * beta)
    )
    assert not no_server_latency and "server's own 2α" in no_server_latency.message
    values = checks.check_server_wins_above(lambda W, P, b: crossover_by_bisection(W, P, b) / 4)
    assert not values and "4P bytes" in values.message
    microseconds = checks.check_server_wins_above(
        lambda W, P, b: crossover_by_bisection(W, P, b) * 1e6
    )
    assert not microseconds and "not microseconds" in microseconds.message


def test_server_wins_above_refuses_the_librarys_link_model():
    def bisect_the_library(W, P, beta):
        low, high = 0.0, 1.0
        for _ in range(60):
            middle = (low + high) / 2
            times = [
                traffic.link_seconds(s, W, P, middle, beta)["seconds"] for s in traffic.SCHEMES
            ]
            low, high = (low, middle) if times[0] < times[1] else (middle, high)
        return low

    refused = checks.check_server_wins_above(bisect_the_library)
    assert not refused and "link_seconds" in refused.message


def test_server_wins_above_template_is_not_attempted():
    assert "not attempted" in checks.check_server_wins_above(template).message
