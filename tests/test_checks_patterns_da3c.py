"""The checkers of notebooks 05 (distributed patterns) and 06 (DA3C) pass correct solutions, name
what is wrong with typical incorrect ones, refuse the library's own answer and recognise the
untouched template."""

import numpy as np
import pytest

from rlteach import checks
from rlteach.distributed import patterns
from rlteach.distributed.ray_backend import ActorParams
from rlteach.distributed.server import Server, ServerConfig


def template(*args):
    raise NotImplementedError


# ----------------------------------------------------------------------------- 05.1


def round_loop(theta, slots, arrival, drop, lr):
    """The round written as a loop: sum the first W − D arrivals, divide, step."""
    total, members = np.zeros(len(theta)), 0
    for worker in arrival:
        if members == len(slots) - drop:
            break
        total += slots[worker]
        members += 1
    return [t - lr * g / members for t, g in zip(theta, total, strict=True)]


def test_sync_round_passes_a_loop():
    result = checks.check_sync_round(round_loop)
    assert result.passed and "agrees" in result.message


@pytest.mark.parametrize(
    "wrong, named",
    [
        (lambda t, s, a, d, lr: t - lr * s.mean(0), "you averaged all W pushes"),
        (lambda t, s, a, d, lr: t - lr * s[: len(s) - d].mean(0), "first W − D workers of"),
        (lambda t, s, a, d, lr: t - lr * s[a[: len(s) - d]].sum(0) / len(s), "divided"),
        (lambda t, s, a, d, lr: t + lr * s[a[: len(s) - d]].mean(0), "up the gradient"),
    ],
    ids=["every-push", "by-worker-number", "divided-by-W", "ascent"],
)
def test_sync_round_names_the_usual_slips(wrong, named):
    result = checks.check_sync_round(wrong)
    assert not result.passed
    assert named in result.message and "expected" in result.message


def test_sync_round_refuses_the_server_and_recognises_the_template():
    def via_the_server(theta, slots, arrival, drop, lr):
        store = ActorParams(theta, len(slots))
        server = Server(store, ServerConfig(optimizer="sgd", lr=lr, drop_stragglers=drop))
        for worker in arrival:
            np.copyto(store.slot(worker), slots[worker])
            server.on_push(worker, 0)
        return store.params

    refused = checks.check_sync_round(via_the_server)
    assert not refused and "Server.on_push" in refused.message
    assert "write it yourself" in refused.message
    assert checks.check_sync_round(template).status == "not attempted"


# ----------------------------------------------------------------------------- 05.2

SCALING = dict(serial_fraction=0.09, workers=4, measured=3.0, fitted_fraction=0.11)


def test_speedup_prediction_passes_amdahls_law_and_shows_the_measurement():
    result = checks.check_speedup_prediction(lambda: 1 / (0.09 + 0.91 / 4), **SCALING)
    assert result.passed
    assert "measured: 3" in result.message and "the runs fall short" in result.message


@pytest.mark.parametrize(
    "prediction, named",
    [
        (1 / (0.11 + 0.89 / 4), "the fitted s"),
        (4 - 0.09 * 3, "Gustafson's (5.3)"),
        (1 / 0.09, "the ceiling 1/s"),
    ],
    ids=["fitted-s", "gustafson", "ceiling"],
)
def test_speedup_prediction_names_the_usual_slips(prediction, named):
    result = checks.check_speedup_prediction(lambda: prediction, **SCALING)
    assert not result.passed and named in result.message


def test_speedup_prediction_refuses_the_library_law_and_recognises_the_template():
    refused = checks.check_speedup_prediction(
        lambda: float(patterns.amdahl_speedup(0.09, 4)), **SCALING
    )
    assert not refused and "amdahl_speedup" in refused.message
    assert checks.check_speedup_prediction(template, **SCALING).status == "not attempted"


# ----------------------------------------------------------------------------- 05.3 and 06.3


@pytest.mark.parametrize(
    "check, right, wrongs",
    [
        (checks.check_parameter_averaging, "da", ["A", "ABCD"]),
        (checks.check_hogwild, ["C", "A", "D"], ["B", "ACDE"]),
    ],
    ids=["05.3", "06.3"],
)
def test_choices_pass_the_right_letters_and_explain_every_option_only_then(check, right, wrongs):
    passed = check(lambda: right)
    assert passed and all(f"  {letter}: " in passed.message for letter in "ABCD")
    for wrong in wrongs:
        result = check(lambda wrong=wrong: wrong)
        assert not result.passed and "not this choice" in result.message
        assert not any(f"  {letter}: " in result.message for letter in "ABCDE")  # no answer key
    assert "letters" in check(lambda: "Z").message
    assert check(template).status == "not attempted"


# ----------------------------------------------------------------------------- 06.1


def staleness_loop(log):
    """For each push, count the pushes logged between its worker's latest pull and it."""
    staleness = []
    for i, (worker, event) in enumerate(log):
        if event == "push":
            pulled = max(j for j in range(i) if log[j] == [worker, "pull"])
            staleness.append(sum(e == "push" for _, e in log[pulled:i]))
    return staleness


def test_push_staleness_passes_a_loop():
    assert checks.check_push_staleness(staleness_loop).passed


@pytest.mark.parametrize(
    "wrong, named",
    [
        (lambda log: [k + 1 for k in staleness_loop(log)], "1 too large"),
        (lambda log: list(range(len(staleness_loop(log)))), "subtract the version"),
        (lambda log: [0] * len(log), "one per push"),
    ],
    ids=["own-push-counted", "version-only", "per-event"],
)
def test_push_staleness_names_the_usual_slips(wrong, named):
    result = checks.check_push_staleness(wrong)
    assert not result.passed and named in result.message


def test_push_staleness_refuses_the_server_and_recognises_the_template():
    def via_the_server(log):
        store = ActorParams(np.zeros(1, np.float32), 1 + max(w for w, _ in log))
        server, pulled, out = Server(store, ServerConfig(mode="async")), {}, []
        for worker, event in log:
            if event == "pull":
                pulled[worker] = server.stats.version
            else:
                out.append(server.on_push(worker, pulled[worker])[0][1][3])
        return out

    refused = checks.check_push_staleness(via_the_server)
    assert not refused and "Server.on_push" in refused.message
    assert "the library's own answer" in refused.message
    assert checks.check_push_staleness(template).status == "not attempted"


# ----------------------------------------------------------------------------- 06.2


def test_staleness_prediction_passes_w_minus_one_and_explains_a_lower_measurement():
    result = checks.check_staleness_prediction(lambda: 3, workers=4, measured=1.9)
    assert result.passed and "measured: 1.9" in result.message and "ceiling" in result.message


@pytest.mark.parametrize(
    "prediction, named", [(4, "the worker's own push"), (0, "sync mode")], ids=["W", "zero"]
)
def test_staleness_prediction_names_the_usual_slips(prediction, named):
    result = checks.check_staleness_prediction(lambda: prediction, workers=4, measured=1.9)
    assert not result.passed and named in result.message


def test_staleness_prediction_recognises_the_template():
    result = checks.check_staleness_prediction(template, workers=2, measured=0.9)
    assert result.status == "not attempted"


def test_speedup_prediction_recognises_the_measured_speedup_typed_in():
    result = checks.check_speedup_prediction(lambda: SCALING["measured"], **SCALING)
    assert not result and "the value measured" in result.message
