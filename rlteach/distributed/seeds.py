"""Independent seeds of one single-process trainer, run side by side in worker processes (the
multi-seed comparisons of notebooks 02–04): :func:`run_seeds`.

On a 2-core machine 3 processes finish 3 seeds sooner than 2: each run has one torch thread, and
with 2 processes one of them runs two seeds in turn, while 3 processes share the 2 cores and end
together. Measured with default PPO on CartPole (benchmarks/run_seeds.py, table in
benchmarks/README.md): 0.58 × the sequential time with 3 processes, 0.79 × with 2. By default there
is therefore one process per seed, at most 2 per core.

Implementation: a :class:`~rlteach.distributed.runtime.Cluster` whose parameter server stays idle. Worker
``w`` of ``P`` runs its share of the seeds, ``seeds[w::P]``, one after the other, and reports each
finished result at once (``ctx.report``), so an interrupt keeps every seed that finished, also on a
worker that still had seeds to run. Why a Cluster rather than a pool of its own: the Cluster
already has everything a pool would need, tested — workers forked from the fork server that has
imported torch (a worker's first run still imports what torch loads lazily, about 2 s of CPU),
one torch thread each, notebook-defined functions sent by value
(dill), a worker's exception or silent death turned into a :class:`WorkerError` with its
traceback, the kernel interrupt turned into a partial result, every process stopped (ask,
terminate, kill) and its queue drained, a timeout on every wait. What it costs: one server
process that sleeps on a semaphore (it wakes every 50 ms) and a one-number θ. What it gives up:
the split is fixed in advance, where a pool would hand the next seed to whichever process is free;
the two are the same when the runs take equally long, as runs of one config with different seeds
do (to within the noise of the machine).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from numbers import Integral
from typing import Any, TypeVar

import numpy as np

from rlteach.distributed.runtime import WorkerError, run_cluster
from rlteach.distributed.worker import WorkerContext

R = TypeVar("R")  # what train_fn returns: a TrainResult for rlteach's trainers
OnResult = Callable[[int, Any, float], None]  # on_result(seed, result, seconds)
PROCESSES_PER_CORE = 2  # the default's cap: beyond it, more processes only share the same cores


class SeedError(WorkerError):
    """The run of one seed failed: ``seed`` names it; ``worker`` and ``remote_traceback`` are
    those of the :class:`WorkerError` of the process that ran it."""

    def __init__(self, seed: int, error: WorkerError):
        self.seed, self.worker, self.remote_traceback = seed, error.worker, error.remote_traceback
        RuntimeError.__init__(self, f"seed {seed} failed: {error}")


def print_finished(seed: int, result: object, seconds: float) -> None:
    """An ``on_result`` that prints one line per finished seed."""
    print(f"seed {seed} finished in {seconds:.1f} s", flush=True)


def run_seeds(
    train_fn: Callable[..., R],
    seeds: Iterable[int],
    processes: int | None = None,
    timeout: float | None = None,
    on_result: OnResult | None = None,
    **config: Any,
) -> list[R]:
    """Run ``train_fn(seed=s, **config)`` for every seed ``s``, side by side in worker processes;
    return the results in the order of ``seeds``::

        results = rlteach.run_seeds(rlteach.train_ppo, [0, 1, 2], total_steps=20_000, clip_eps=0.1)
        histories = [r.history for r in results]   # what the plotting helpers draw as a band

    Each run is the same as ``train_fn(seed=s, **config)`` called here (same history but for the
    wall times): it runs in a process of its own with one torch thread. ``train_fn`` may be
    defined in the notebook: it travels by value, with the globals it uses. It must train in that
    one process (``train_ppo``, ``train_a2c``, ``train_reinforce``): a worker process cannot start
    processes of its own, so ``run_dppo`` and ``run_da3c`` fail there (run them in turn).

    ``processes``: how many runs at once (default: one per seed, at most 2 per CPU core; see the
    module docstring). Process ``w`` runs ``seeds[w::processes]`` one after the other. Each
    process spends a second or two on imports before its first run: for runs of a few seconds, a
    plain loop is as fast.
    ``on_result(seed, result, seconds)`` is called here as each seed finishes (default: nothing;
    :func:`print_finished` prints a line). ``timeout``: seconds before the whole call stops every process and
    raises ``TimeoutError``.

    A run that raises, or whose process dies, stops every process and raises :class:`SeedError`
    (a :class:`WorkerError`) naming the seed, with the traceback of the run. Interrupting the kernel
    (■) stops every process (a run in progress is given 3 s, then ended) and returns the results
    of the seeds that had finished, still in the order of ``seeds``: the list is then shorter than
    ``seeds`` (a printed line names the seeds left out), so a plot of
    ``[r.history for r in results]`` shows the finished seeds.
    Every process has ended when this returns or raises.
    """
    seeds = checked_seeds(seeds)
    processes = process_count(processes, len(seeds))
    if "seed" in config:
        raise ValueError(
            f"seed = {config['seed']!r} is invalid here: run_seeds gives each run its seed from "
            "seeds"
        )
    runs = SeedRuns(seeds, processes, on_result)
    try:
        outcome = run_cluster(
            _run_share,
            workers=processes,
            params=np.zeros(1),  # the server is idle: the runs share nothing
            args=(train_fn, seeds, config),
            on_report=runs.record,
            timeout=timeout,
        )
    except WorkerError as error:
        # raised without the run's frames (its traceback): the run's semaphores go now, not when
        # the notebook lets go of the error
        raise runs.failure(error.with_traceback(None)) from None
    if outcome.interrupted:
        print(runs.interruption(), flush=True)
    return runs.finished()


def checked_seeds(seeds: Iterable[int]) -> list[int]:
    """``seeds`` as a list of ints; ``ValueError`` unless it is a non-empty collection of distinct
    integers."""
    allowed = "must be a non-empty list of distinct integers, e.g. [0, 1, 2] or range(3)"
    if isinstance(seeds, Integral | str) or not isinstance(seeds, Iterable):
        raise ValueError(f"seeds = {seeds!r} is invalid: {allowed}")
    listed = list(seeds)
    if not listed or any(isinstance(s, bool) or not isinstance(s, Integral) for s in listed):
        raise ValueError(f"seeds = {listed!r} is invalid: {allowed}")
    if len(set(listed)) < len(listed):
        raise ValueError(f"seeds = {listed!r} repeats a seed: {allowed}")
    return [int(s) for s in listed]


def process_count(processes: int | None, runs: int) -> int:
    """How many processes run ``runs`` seeds: ``processes`` (an integer >= 1, else
    ``ValueError``), or by default one per run, at most ``PROCESSES_PER_CORE`` per core; never
    more than ``runs``, since a process without a seed would have nothing to do."""
    if processes is None:
        return min(runs, PROCESSES_PER_CORE * (os.cpu_count() or 1))
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes = {processes!r} is invalid: must be an integer >= 1 or None")
    return min(processes, runs)


def share(seeds: list[int], worker: int, workers: int) -> list[int]:
    """The seeds worker ``worker`` of ``workers`` runs, in this order: ``seeds[worker::workers]``."""
    return seeds[worker::workers]


def _run_share(
    ctx: WorkerContext, train_fn: Callable[..., Any], seeds: list[int], config: dict[str, Any]
) -> None:
    """Worker: run ``train_fn(seed=s, **config)`` for each seed of this worker's :func:`share`,
    reporting ``seed``, ``result`` and ``seconds`` as soon as each run returns."""
    for seed in share(seeds, ctx.worker_id, ctx.workers):
        if ctx.stopping:
            return
        start = time.perf_counter()
        result = train_fn(seed=seed, **config)
        ctx.report(seed=seed, result=result, seconds=time.perf_counter() - start)


class SeedRuns:
    """The parent's record of a :func:`run_seeds` call: which seed each process runs, and the
    results reported so far."""

    def __init__(self, seeds: list[int], processes: int, on_result: OnResult | None):
        self.seeds, self.processes, self.on_result = seeds, processes, on_result
        self.results: dict[int, Any] = {}

    def record(self, worker: int, report: dict[str, Any]) -> None:
        """``Cluster.run``'s ``on_report``: keep a finished seed's result and pass it on."""
        self.results[report["seed"]] = report["result"]
        if self.on_result is not None:
            self.on_result(report["seed"], report["result"], report["seconds"])

    def failure(self, error: WorkerError) -> WorkerError:
        """The error to raise for ``error``: a worker runs its share in order and reports every
        seed it finishes, so the seed it failed on is the first of its share without a result.
        The server's errors, and a process that died after its last seed, name no seed."""
        if not isinstance(error.worker, int):
            return error
        mine = share(self.seeds, error.worker, self.processes)
        seed = next((s for s in mine if s not in self.results), None)
        return error if seed is None else SeedError(seed, error)

    def finished(self) -> list[Any]:
        """The results of the finished seeds, in the order of ``seeds``."""
        return [self.results[s] for s in self.seeds if s in self.results]

    def interruption(self) -> str:
        """What an interrupted call says: which seeds finished and which are left out."""
        missing = [s for s in self.seeds if s not in self.results]
        kept = [s for s in self.seeds if s in self.results]
        return (
            f"run_seeds interrupted: returning the results of seeds {kept} ({len(kept)} of "
            f"{len(self.seeds)}); seeds {missing} did not finish and are left out"
        )
