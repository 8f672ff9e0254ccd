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
    assert not summed and "N = Σ n_w times ḡ" in summed.message
    over_workers = checks.check_round_mean_gradient(lambda g, n: n @ g / len(n))
    assert not over_workers and "N / W times ḡ" in over_workers.message


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

SCALING = {  # worker_scaling's table, the sleep setting: 2 seeds × W = 1, 2, 4
    "workers": [1, 2, 4],
    "seconds": np.array([[11.3, 5.86, 5.92], [11.7, 5.98, 7.93]]),
    "env_steps": np.array([[7680, 6400, 6780], [8190, 6660, 9860]]),
}
C, DELAY = 1.07e-3, 1e-3  # c: what a sleep of DELAY took
T1, N = 11.5, 7935  # the medians of the 1-worker column
CEILING = T1 / (T1 - N * C)  # (7.2) as W grows: t(W) → t(1) − N c; 3.82


def ceiling_check(student, table=SCALING, cores=2):
    return checks.check_speedup_ceiling(student, table, C, DELAY, cores=cores)


def test_speedup_ceiling_passes_the_limit_and_explains_the_measurement():
    result = ceiling_check(lambda: CEILING)
    assert result and "The runs measured 1.66 at W = 4" in result.message
    assert "towards 3.82" in result.message and "2.24 at W = 4" in result.message
    assert "4 workers share 2 cores" in result.message


def test_speedup_ceiling_names_the_speedup_at_the_largest_w_and_the_inverted_fraction():
    at_four = ceiling_check(lambda: T1 / (T1 - N * C + N * C / 4))
    assert not at_four and "a higher value" in at_four.message
    assert "speed-up at W = 4" in at_four.message
    fraction = ceiling_check(lambda: (T1 - N * C) / T1)
    assert not fraction and "the ceiling is its inverse" in fraction.message
    nominal = ceiling_check(lambda: T1 / (T1 - N * DELAY))
    assert not nominal and "nominal `delay`" in nominal.message
    measured = ceiling_check(lambda: 11.5 / 6.925)
    assert not measured and "the value measured" in measured.message
    assert "3.82" not in at_four.message + fraction.message + measured.message


def test_speedup_ceiling_explains_a_measurement_that_beats_the_law():
    fast = {**SCALING, "seconds": np.array([[11.3, 5.86, 3.0], [11.7, 5.98, 3.2]])}
    result = ceiling_check(lambda: CEILING, table=fast, cores=8)
    assert result and "above (7.2)'s 2.24" in result.message and "[min, max]" in result.message


def test_speedup_ceiling_refuses_the_library_law():
    def through_the_law():
        return T1 / simulator_law(T1, N, C, [np.inf], 2, "sleep")[0]

    refused = ceiling_check(through_the_law)
    assert not refused and "simulator_law" in refused.message


def test_speedup_ceiling_template_is_not_attempted():
    assert "not attempted" in ceiling_check(template).message


# ----------------------------------------------------------------------------- 07.3


def test_round_is_ppo_step_passes_the_three_breaking_changes_and_explains_every_option():
    right = checks.check_round_is_ppo_step(lambda: "c, b, a")
    assert right and "D: no difference: this is (7.1)" in right.message
    assert "keeps Adam's state on the nodes" in right.message


def test_round_is_ppo_step_gives_a_wrong_choice_the_hint_only():
    weighted = checks.check_round_is_ppo_step(lambda: "AD")
    assert not weighted and "Re-read §4" in weighted.message
    assert "no difference" not in weighted.message and "differs" not in weighted.message
    assert "one or more of the letters" in checks.check_round_is_ppo_step(lambda: "Z").message


def test_round_is_ppo_step_template_is_not_attempted():
    assert "not attempted" in checks.check_round_is_ppo_step(template).message


# ----------------------------------------------------------------------------- 08.1


def ring_by_messages(arrays, send, phases=(True, False), to=1, whole=False):
    """The ring, a step at a time: every rank forms its message, then all are delivered, as
    simultaneous sends would be; each message goes through ``send``. ``phases`` (adding for the
    reduce-scatter), ``to`` (the receiver's offset) and ``whole`` (send the whole vector, then use
    its chunk) make the wrong rings of the tests."""
    workers = len(arrays)
    chunk = len(arrays[0]) // workers
    ranks = [a.copy() for a in arrays]

    def cut(c):
        return slice(c * chunk, (c + 1) * chunk)

    for adding in phases:
        for step in range(workers - 1):
            messages = []
            for sender in range(workers):
                c = (sender - step + (0 if adding else 1)) % workers
                values = ranks[sender].copy() if whole else ranks[sender][cut(c)].copy()
                send(sender, (sender + to) % workers, values)
                messages.append((sender, c, values[cut(c)] if whole else values))
            for sender, c, values in messages:
                receiver = ranks[(sender + 1) % workers]
                receiver[cut(c)] = receiver[cut(c)] + values if adding else values
    return ranks


def test_ring_allreduce_passes_a_message_by_message_ring():
    result = checks.check_ring_allreduce(ring_by_messages)
    assert result and "each rank sent 6 messages" in result.message  # the last case: W = 4


def test_ring_allreduce_names_a_mean_and_a_missing_all_gather():
    def mean(arrays, send):
        return [r / len(arrays) for r in ring_by_messages(arrays, send)]

    result = checks.check_ring_allreduce(mean)
    assert not result and "holds the mean" in result.message
    reduce_scatter_only = checks.check_ring_allreduce(
        lambda arrays, send: ring_by_messages(arrays, send, phases=(True,))
    )
    assert not reduce_scatter_only and "chunk(s)" in reduce_scatter_only.message
    assert "all-gather" in reduce_scatter_only.message


def numpy_sum(arrays, send, fake=None):
    """Every rank gets ``np.sum`` of the arrays; ``fake(rank, chunk)`` is sent as each of the
    ring's messages, to the right neighbour."""
    workers = len(arrays)
    if fake:
        for _ in range(2 * (workers - 1)):
            for rank in range(workers):
                send(rank, (rank + 1) % workers, fake(arrays, rank))
    return [np.sum(arrays, axis=0) for _ in arrays]


def test_ring_allreduce_sees_through_a_numpy_sum_with_fake_or_no_messages():
    silent = checks.check_ring_allreduce(numpy_sum)
    assert not silent and "your ranks sent nothing" in silent.message

    def zeros(arrays, rank):
        return np.zeros(len(arrays[0]) // len(arrays))

    zero = checks.check_ring_allreduce(lambda a, send: numpy_sum(a, send, zeros))
    assert not zero and "neither the sender's chunk nor" in zero.message

    def own_chunk(arrays, rank):
        return np.split(arrays[rank], len(arrays))[rank].copy()

    own = checks.check_ring_allreduce(lambda a, send: numpy_sum(a, send, own_chunk))
    assert not own and "must come from what its neighbour sends" in own.message

    def full_sum(arrays, rank):
        return np.split(np.sum(arrays, axis=0), len(arrays))[rank]

    early = checks.check_ring_allreduce(lambda a, send: numpy_sum(a, send, full_sum))
    assert not early and "can pass on only what it holds" in early.message


def test_ring_allreduce_names_half_the_messages_whole_vectors_and_the_wrong_neighbour():
    def half(arrays, send):
        ranks = ring_by_messages(arrays, send, phases=(True,))
        return ring_by_messages(ranks, lambda *message: None, phases=(False,))

    result = checks.check_ring_allreduce(half)
    assert not result and "the reduce-scatter's W − 1" in result.message
    whole = checks.check_ring_allreduce(lambda a, send: ring_by_messages(a, send, whole=True))
    assert not whole and "(a whole vector)" in whole.message and "one chunk" in whole.message
    left = checks.check_ring_allreduce(lambda a, send: ring_by_messages(a, send, to=-1))
    assert not left and "right neighbour" in left.message


def test_ring_allreduce_asks_for_the_list_of_ranks():
    result = checks.check_ring_allreduce(lambda arrays, send: numpy_sum(arrays, send)[0])
    assert not result and "sent nothing" in result.message
    single = checks.check_ring_allreduce(lambda a, send: ring_by_messages(a, send)[0])
    assert not single and "list of the W ranks' arrays" in single.message


def test_ring_allreduce_template_is_not_attempted():
    assert "not attempted" in checks.check_ring_allreduce(template).message


# ----------------------------------------------------------------------------- 08.2

P = 100_000
MEASURED = [  # measure_traffic's parameter-server runs, with a few bytes of gloo's own
    {"workers": 2, "server": 1_600_120.0},
    {"workers": 3, "server": 2_400_170.0},
]


def test_server_bytes_passes_eq_8_1_and_shows_the_extrapolated_bytes():
    result = checks.check_server_bytes(lambda: 2 * 100 * 4 * P / 1e6, params=P, measured=MEASURED)
    assert result and "That 80.01 MB is extrapolated, not measured" in result.message
    assert "1.584 MB for a ring rank" in result.message


def test_server_bytes_names_a_ring_ranks_bytes_values_for_bytes_and_one_direction():
    ring = checks.check_server_bytes(lambda: 4 * 0.99 * 4 * P / 1e6, params=P, measured=MEASURED)
    assert not ring and "a higher value" in ring.message and "ring rank's" in ring.message
    values = checks.check_server_bytes(lambda: 2 * 100 * P / 1e6, params=P, measured=MEASURED)
    assert not values and "values, not bytes" in values.message
    one_way = checks.check_server_bytes(lambda: 100 * 4 * P / 1e6, params=P, measured=MEASURED)
    assert not one_way and "one direction only" in one_way.message
    assert "80" not in ring.message + values.message + one_way.message


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
