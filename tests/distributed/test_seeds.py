"""run_seeds: independent seeds in worker processes give the runs that sequential calls give, name
the seed that fails, keep the finished seeds on an interrupt, and leave nothing behind."""

import os
import signal
import threading
import time

import pytest
import torch

import rlteach
from rlteach.distributed import WorkerError
from rlteach.distributed.seeds import SeedError, print_finished, run_seeds
from tests.distributed.test_runtime import child_pids, leaked_shm_entries, shm_entries

NOTEBOOK_CELL = """
import os
import torch

offset = 100

def where_am_i(seed):
    return seed + offset, os.getpid(), torch.get_num_threads()
"""


def notebook_function(name):
    """The function ``name``, defined the way a notebook cell defines it: in ``__main__``,
    importable by no module, so it can only travel by value."""
    namespace = {"__name__": "__main__"}
    exec(NOTEBOOK_CELL, namespace)
    return namespace[name]


def without_wall_time(rows):
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in rows]


@pytest.mark.parametrize(
    "train, config",
    [
        (rlteach.train_ppo, dict(total_steps=1024, epochs=4)),
        (rlteach.train_a2c, dict(total_steps=1024)),
        (rlteach.train_reinforce, dict(total_steps=2048, num_envs=4, rollout_steps=64)),
    ],
    ids=["ppo", "a2c", "reinforce"],
)
def test_each_seed_gives_the_run_a_sequential_call_gives(train, config):
    """Both sides run the trainer with one torch thread (every trainer sets it, in this process
    too), so the runs are the same to the bit: every update row and episode row (wall times aside)
    and the final parameters. One process runs both seeds, one after the other: the second run
    does not depend on the first."""
    seeds = [1, 0]
    parallel = run_seeds(train, seeds, processes=1, **config)
    for seed, result in zip(seeds, parallel, strict=True):
        alone = train(seed=seed, **config)
        assert result.config == alone.config
        assert without_wall_time(result.history.updates) == without_wall_time(alone.history.updates)
        assert without_wall_time(result.history.episodes) == without_wall_time(
            alone.history.episodes
        )
        for mine, theirs in zip(result.policy.parameters(), alone.policy.parameters(), strict=True):
            assert torch.equal(mine, theirs)


def test_a_notebook_function_runs_each_seed_once_in_its_process_with_one_torch_thread(capsys):
    """Three seeds on two processes: process 0 runs seeds[0] and seeds[2], process 1 seeds[1];
    the results come back in the order of the seeds, and a line says when each finished."""
    results = run_seeds(
        notebook_function("where_am_i"), [5, 3, 8], processes=2, on_result=print_finished
    )
    assert [value for value, _, _ in results] == [105, 103, 108]
    assert [threads for _, _, threads in results] == [1, 1, 1]
    pids = [pid for _, pid, _ in results]
    assert pids[0] == pids[2] != pids[1] and os.getpid() not in pids
    out = capsys.readouterr().out
    assert all(f"seed {s} finished in" in out for s in (5, 3, 8))


def wait_for(path, timeout=30.0):
    """Wait until the file ``path`` exists (another seed's process created it)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def flaky(seed, started):
    """Seed 1 creates the file ``started`` and runs for a minute; seed 2 waits for that file, then
    raises; any other seed returns at once."""
    if seed == 1:
        open(started, "w").close()
        time.sleep(60)
    if seed == 2:
        wait_for(started)
        raise ValueError("seed two is broken on purpose")
    return seed


def test_a_failing_seed_is_named_and_stops_every_process(tmp_path):
    """Process 0 runs seed 0, then seed 2, which raises once process 1 is busy with seed 1. The
    error names seed 2 (not the first seed of its process) and comes within the runtime's stop
    (3 s for a process to end by itself, then terminate) plus a margin for a loaded machine. The
    error holds no frame of the run, so the run's semaphores are gone while it is still held."""
    shm_before = shm_entries()
    start = time.monotonic()
    with pytest.raises(SeedError, match="seed 2 failed: worker 0 raised") as info:
        run_seeds(flaky, [0, 1, 2], processes=2, on_result=None, started=tmp_path / "started")
    assert time.monotonic() - start < 3 + 10
    assert isinstance(info.value, WorkerError) and info.value.seed == 2
    assert "broken on purpose" in info.value.remote_traceback
    assert child_pids() == []
    assert leaked_shm_entries(shm_before) == set()


def test_an_interrupt_keeps_the_finished_seeds_and_stops_every_process(tmp_path, capsys):
    """SIGINT to this process (the kernel's ■) once seed 0 has finished, while process 1 runs
    seed 1 and process 0 has seed 2 still to run: the call returns seed 0's result and says which
    seeds are left out."""
    shm_before = shm_entries()
    started = tmp_path / "started"

    def interrupt_soon(seed, result, seconds):
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()

    def quick_then_slow(seed):  # defined here: it travels by value
        if seed == 0:
            wait_for(started)
            return seed
        open(started, "w").close()
        time.sleep(60)

    start = time.monotonic()
    results = run_seeds(quick_then_slow, [0, 1, 2], processes=2, on_result=interrupt_soon)
    assert results == [0]
    assert time.monotonic() - start < 3 + 10
    assert "seeds [1, 2] did not finish" in capsys.readouterr().out
    assert child_pids() == []
    assert leaked_shm_entries(shm_before) == set()


@pytest.mark.parametrize(
    "seeds, kwargs, message",
    [
        ([0], dict(processes=0), "processes = 0"),
        ([0], dict(processes=1.5), "processes = 1.5"),
        ([], {}, r"seeds = \[\] is invalid"),
        (3, {}, "seeds = 3 is invalid"),
        ([0, 0.5], {}, r"seeds = \[0, 0.5\] is invalid"),
        ([0, True], {}, r"seeds = \[0, True\] is invalid"),
        ([1, 2, 1], {}, r"seeds = \[1, 2, 1\] repeats a seed"),
        ([0], dict(seed=3), "seed = 3 is invalid here"),
    ],
)
def test_bad_arguments_raise_before_any_process_starts(seeds, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_seeds(flaky, seeds, started="unused", **kwargs)
    assert child_pids() == []
