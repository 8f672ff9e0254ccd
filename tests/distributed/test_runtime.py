"""The parameter server and its worker processes: the rules they follow and their lifecycle."""

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import multiprocess as mp
import numpy as np
import psutil
import pytest
import torch

from rlteach.distributed import Cluster, ServerConfig, WorkerError, run_cluster
from rlteach.distributed.runtime import held_interrupt, process_context
from rlteach.distributed.server import Optimizer, Server
from rlteach.distributed.shared import SharedParams
from tests.distributed import workers as W

SGD1 = ServerConfig(optimizer="sgd", lr=1.0)
HELPERS = re.compile(r"resource_tracker|forkserver")


def child_pids():
    """Live processes this one started, directly or not, except multiprocess's two helpers, each
    started once per parent process and kept for its lifetime: the resource tracker, whose job is
    to remove semaphores and shared memory should everything else crash, and the fork server
    (``runtime.process_context``), which runs no work itself. The workers forked from the fork
    server are its children, so they are counted here."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and not HELPERS.search(
                " ".join(proc.cmdline())
            ):
                out.append(proc.pid)
        except psutil.NoSuchProcess:  # ended while we looked
            continue
    return sorted(out)


def shm_entries():
    return sorted(os.listdir("/dev/shm"))


def leaked_shm_entries(before, grace=2.0):
    """Entries of /dev/shm created since ``before`` that no live process has mapped: left behind.
    (Entries other programs on the machine create and still use are mapped by them.) An entry is
    counted only if it is still there, unmapped, ``grace`` seconds later: a process of another
    test or program that is ending can hold an entry for a moment between closing and removing
    it, and a leak does not go away."""
    unmapped = _unmapped_new_entries(before)
    if unmapped:
        time.sleep(grace)
        unmapped &= _unmapped_new_entries(before)
    return unmapped


def _unmapped_new_entries(before):
    maps = ""
    for path in Path("/proc").glob("[0-9]*/maps"):
        try:
            maps += path.read_text()
        except OSError:
            continue
    return {name for name in set(shm_entries()) - set(before) if name not in maps}


def test_sync_rounds_average_gradients_before_one_optimizer_step():
    """SGD with α = 1: every round moves θ by minus the mean of the pushed gradients (1 and 2)."""
    result = run_cluster(
        W.push_constant_gradients, workers=2, params=np.zeros(7), server=SGD1, args=(4,)
    )
    np.testing.assert_allclose(result.params, -4 * 1.5)
    assert result.version == 4 and result.server["applied"] == 8
    for versions in result.results:  # every push of round v was answered with version v + 1
        assert [(v, after) for v, after, _, _ in versions] == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_sync_rounds_can_average_parameters_instead():
    """Workers push θ + (id + 1); the server replaces θ by their mean: θ grows by 2 per round."""
    result = run_cluster(
        W.push_parameters,
        workers=3,
        params=np.zeros(4),
        server=ServerConfig(average="parameters"),
        args=(5,),
    )
    np.testing.assert_allclose(result.params, 5 * 2.0)


def test_async_applies_every_push_and_records_its_staleness():
    result = run_cluster(
        W.push_constant_gradients,
        workers=3,
        params=np.zeros(3),
        server=ServerConfig(mode="async", optimizer="sgd", lr=1.0),
        args=(20,),
    )
    assert result.version == 60 and result.server["applied"] == 60
    np.testing.assert_allclose(result.params, -20 * (1 + 2 + 3))  # every push applied once
    for versions in result.results:  # staleness = server version at arrival − version pulled
        for pulled, after, applied, staleness in versions:
            assert applied and staleness == after - 1 - pulled >= 0
    assert sorted(result.staleness.tolist()) == sorted(
        s for versions in result.results for *_, s in versions
    )


def test_straggler_pushes_are_dropped_when_the_round_takes_the_first_w_minus_d():
    """Workers 1 and 2 push every 20 ms for 3 s; worker 0 takes 0.15 s per push. Rounds close with
    the first W − D = 2 pushes, so the slow worker's gradients arrive stale and are dropped."""
    result = run_cluster(
        W.slow_for_worker_zero,
        workers=3,
        params=np.zeros(2),
        server=ServerConfig(drop_stragglers=1),
        args=(6, 0.15, 150, 0.02),
    )
    assert sum(result.results[0]) < 6
    dropped = [p[0] for p in result.server["pushes"] if not p[3]]
    assert result.server["dropped"] == len(dropped) > 0
    assert dropped.count(0) > len(dropped) / 2


def test_server_adam_matches_torch_adam():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=10).astype(np.float32)
    reference = torch.nn.Parameter(torch.tensor(theta.copy()))
    torch_adam = torch.optim.Adam([reference], lr=0.01)
    ours = Optimizer("adam", 0.01, 10)
    for _ in range(50):
        grad = rng.normal(size=10).astype(np.float32)
        ours.step(theta, grad.copy())  # the server's optimizer uses grad as scratch space
        reference.grad = torch.tensor(grad)
        torch_adam.step()
    np.testing.assert_allclose(theta, reference.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "mode, progress, step",
    [
        ("sync", (0.2, 0.6), 1 - 0.4),  # a round's step size follows its pushes' mean progress
        ("async", (0.2, 0.6), 1 - 0.6),  # an async step follows its own push
        ("sync", (1.0, 1.2), 0.0),  # a worker past its budget never makes the step size negative
    ],
)
def test_annealing_follows_the_progress_the_pushes_carry(mode, progress, step):
    """SGD with α = 1 and gradient 1 from both workers: the last step moves θ by ``α (1 − p)``,
    with ``p`` the progress the step's pushes carried, whatever the server's version count."""
    shared = SharedParams(3, 2, mp.get_context("spawn"))
    cfg = ServerConfig(mode=mode, optimizer="sgd", lr=1.0, anneal=True).validate(2)
    server = Server(shared, cfg)
    for w in range(2):
        np.copyto(shared.slot(w), np.ones(3, np.float32))
    before = server.theta.copy()
    for w, p in enumerate(progress):
        before = server.theta.copy()  # async: the second push's step is the one checked
        server.on_push(w, server.stats.version if mode == "async" else 0, progress=p)
    np.testing.assert_allclose(before - server.theta, step, atol=1e-7)


@pytest.mark.parametrize("length", [3, 11], ids=["fits-the-slot", "longer-than-the-slot"])
def test_sum_over_workers_adds_every_active_workers_vector_and_leaves_theta_alone(length):
    """Three workers sum twice; worker 2 returns after the first sum, so the second counts only
    workers 0 and 1. With 11 numbers and a 5-parameter slot the sum travels in three pieces."""
    theta0 = np.arange(5, dtype=np.float32)
    result = run_cluster(
        W.sum_twice_then_leave_early_on_worker_two, workers=3, params=theta0, args=(length,)
    )
    for worker, sums in enumerate(result.results):
        np.testing.assert_array_equal(sums[0], np.full(length, 1.0 + 2.0 + 3.0))
        if worker < 2:
            np.testing.assert_array_equal(sums[1], np.arange(length) * (1.0 + 2.0))
            np.testing.assert_array_equal(sums[2], theta0)  # a sum is not a push
    assert result.version == 0


def test_workers_get_their_seeds_from_a_seed_sequence():
    first = run_cluster(W.return_seed, workers=3, params=np.zeros(1), seed=5).results
    again = run_cluster(W.return_seed, workers=3, params=np.zeros(1), seed=5).results
    expected = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(5).spawn(3)]
    assert first == again == expected and len(set(first)) == 3


def test_a_worker_defined_at_run_time_travels_by_value_and_runs_one_torch_thread():
    """What a notebook relies on: a function written in the caller (a closure over its locals,
    importable by no module) runs in the workers, each computing with one torch thread. Where the
    OS has a fork server, the workers are forked from it (their parent is not this process) with
    torch already imported; elsewhere they are spawned by this process."""
    offset = 10.0

    def report(ctx):  # a closure: dill ships it, and ``offset``, by value
        preloaded = "torch" in sys.modules
        import torch

        return offset + ctx.worker_id, torch.get_num_threads(), os.getppid(), preloaded

    results = run_cluster(report, workers=2, params=np.zeros(1)).results
    assert [r[:2] for r in results] == [(10.0, 1), (11.0, 1)]
    forked = "forkserver" in mp.get_all_start_methods()
    for _, _, parent, preloaded in results:
        assert (parent != os.getpid()) == forked and preloaded == forked


# ----------------------------------------------------------------------------- lifecycle


def test_a_worker_that_raises_stops_the_run_with_its_id_and_traceback():
    start = time.monotonic()
    with pytest.raises(WorkerError, match="worker 1 raised") as info:
        run_cluster(W.raise_on_worker_one, workers=3, params=np.zeros(3))
    assert time.monotonic() - start < 5
    assert info.value.worker == 1 and "broken on purpose" in info.value.remote_traceback
    assert child_pids() == []


def test_a_worker_that_dies_without_a_word_is_detected():
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"worker 1 died without a word \(exit code 3\)"):
        run_cluster(W.die_silently_on_worker_one, workers=2, params=np.zeros(3))
    assert time.monotonic() - start < 5
    assert child_pids() == []


def test_a_killed_worker_is_detected():
    with Cluster(W.run_until_stopped, workers=2, params=np.zeros(3)) as cluster:
        victim = cluster._procs[0].pid
        threading.Timer(1.0, os.kill, (victim, signal.SIGKILL)).start()
        start = time.monotonic()
        with pytest.raises(WorkerError, match="worker 0 died without a word"):
            cluster.run()
        assert time.monotonic() - start < 5
    assert child_pids() == []


def test_a_kernel_interrupt_stops_everything_and_keeps_the_partial_result():
    """SIGINT to this process (what the kernel's ■ does) while workers are busy."""
    seen = []
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    result = run_cluster(
        W.run_until_stopped, workers=2, params=np.zeros(3), on_report=lambda w, m: seen.append(m)
    )
    assert result.interrupted and seen and result.version > 0
    assert time.monotonic() - start < 1.0 + 5
    assert child_pids() == []


ORPHANED_RUN = """
import numpy as np
from rlteach.distributed import run_cluster
from tests.distributed import workers as W

if __name__ == "__main__":
    run_cluster(W.run_until_stopped, workers=2, params=np.zeros(3))
"""


def kill_the_parent_of(script_source: str, tmp_path: Path, processes: int) -> None:
    """Run ``script_source`` as a script, wait until it has ``processes`` descendants, SIGKILL it
    mid-run (what a kernel restart does to a notebook) and assert that every descendant ends
    within 10 s and that no shared memory is left behind."""
    script = tmp_path / "orphaned_run.py"
    script.write_text(script_source)
    root = Path(__file__).resolve().parents[2]
    shm_before = shm_entries()
    parent = subprocess.Popen(
        [sys.executable, str(script)], cwd=root, env={**os.environ, "PYTHONPATH": str(root)}
    )
    descendants = []
    try:
        deadline = time.monotonic() + 60
        while len(descendants) < processes and time.monotonic() < deadline:
            time.sleep(0.2)
            descendants = psutil.Process(parent.pid).children(recursive=True)
        assert len(descendants) >= processes, descendants
        time.sleep(1.0)  # the workers are at work
        parent.kill()
        parent.wait(timeout=10)
        _, alive = psutil.wait_procs(descendants, timeout=10)
        assert alive == []
    finally:
        for proc in [parent, *descendants]:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                proc.kill()
    assert leaked_shm_entries(shm_before) == set()


def test_a_killed_parent_leaves_no_process_or_shared_memory_behind(tmp_path):
    """Nothing is left to stop the run, yet the server, both workers, the fork server and the
    resource tracker all end within seconds, and the tracker removes the run's semaphores."""
    kill_the_parent_of(
        ORPHANED_RUN, tmp_path, processes=5
    )  # tracker, fork server, server, 2 workers


UNGUARDED_RUN = """
import numpy as np
from rlteach.distributed import run_cluster
from tests.distributed import workers as W

run_cluster(W.run_until_stopped, workers=2, params=np.zeros(3))
"""


def test_a_script_without_the_main_guard_gets_an_error_that_says_so(tmp_path):
    """Each new process imports the script that started the run; unguarded, the import starts
    the run again and the process dies before it begins. The error says what to do."""
    script = tmp_path / "unguarded_run.py"
    script.write_text(UNGUARDED_RUN)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1
    assert last.startswith("rlteach.distributed.runtime.WorkerError: ")
    assert "before it started" in last and 'if __name__ == "__main__":' in last


def test_twenty_start_stop_cycles_leak_no_process_shared_memory_or_semaphore():
    shm_before, kids_before = shm_entries(), child_pids()
    for i in range(20):
        result = run_cluster(
            W.push_constant_gradients,
            workers=2,
            params=np.zeros(100),
            server=SGD1,
            args=(2,),
            seed=i,
        )
        assert result.version == 2
    assert leaked_shm_entries(shm_before) == set()
    assert child_pids() == kids_before == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(workers=0), "workers = 0"),
        (dict(workers=2, server=ServerConfig(drop_stragglers=2)), "W − D must be >= 1"),
        (dict(workers=2, server=ServerConfig(mode="hogwild")), "mode = 'hogwild'"),
        (dict(workers=2, server=ServerConfig(average="votes")), "average = 'votes'"),
        (dict(workers=2, server=ServerConfig(lr=0)), "lr = 0"),
        (dict(workers=2, params=np.zeros(0)), "params is empty"),
    ],
)
def test_bad_arguments_raise_before_any_process_starts(kwargs, message):
    kwargs = {"params": np.zeros(3), **kwargs}
    with pytest.raises(ValueError, match=message):
        Cluster(W.return_seed, **kwargs)
    assert child_pids() == []


def test_an_interrupt_inside_a_held_read_is_raised_when_the_read_has_ended():
    before = signal.getsignal(signal.SIGINT)
    ended = False
    with pytest.raises(KeyboardInterrupt):
        with held_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal has been handled by now, and held
            ended = True
    assert ended and signal.getsignal(signal.SIGINT) is before


def test_interrupts_while_events_are_read_never_garble_the_queue():
    """The kernel's ■ lands at any moment, also while the parent reads an event from the queue.
    SIGINTs every 2 ms for the first second while 8 MB messages (a read of several ms each) are
    read: every message that is read arrives whole, and the queue stays readable to its end.
    Without the held read, an interrupt between a message's length and its bytes garbles every
    later message. (Outside the reads, this test's own handler only counts the signals, so none
    lands in pytest.)"""
    events, payload, count = process_context().Queue(), np.arange(1_000_000), 12
    for i in range(count):
        events.put((i, payload))
    done, outside = threading.Event(), []

    def interrupt_often():
        end = time.monotonic() + 1.0
        while not done.is_set() and time.monotonic() < end:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.002)

    interrupter = threading.Thread(target=interrupt_often)
    received, held = [], 0
    previous = signal.signal(signal.SIGINT, lambda *_: outside.append(1))
    interrupter.start()
    try:
        while True:
            try:
                with held_interrupt():
                    i, array = events.get(timeout=2)
                received.append(i)
                assert np.array_equal(array, payload)
            except KeyboardInterrupt:  # raised when a read that a signal landed in has ended
                held += 1
            except queue.Empty:
                break
    finally:
        done.set()
        interrupter.join()
        signal.signal(signal.SIGINT, previous)
    assert held > 0 and received == sorted(received) and set(received) <= set(range(count))
    events.close()
    events.join_thread()
