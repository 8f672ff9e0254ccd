"""What the parameter server's processes share (notebook 05): θ and one push slot per worker in
shared memory (:class:`SharedParams`), the mailboxes through which a push reaches the server and
its answer the worker (:class:`Mailboxes`), and the timeouts that bound every wait.

How the vectors travel: θ and one push slot per worker live in shared memory (a ``RawArray`` of
float32 that all processes map; nothing is pickled per step). A worker can write its gradient
straight into its slot and push that, saving a copy. A push's few numbers (version, weight,
progress) and the server's answer sit in a small shared header per worker, and processes wake each
other with semaphores: no pipe, no pickling, a few µs per wake-up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import multiprocess as mp
import numpy as np

POLL = 0.05  # seconds between checks of the stop flag while waiting
ACK_TIMEOUT = 600.0  # a worker never waits longer than this for the server's answer
LOCK_TIMEOUT = 30.0  # nobody holds a lock longer than a copy of θ; longer means a process died
SPIN = 0.01  # a worker polls for its answer this long, yielding the CPU, before it blocks
yield_cpu = getattr(os, "sched_yield", lambda: time.sleep(0))  # sched_yield: not on Windows


class StopRun(Exception):
    """Raised inside a worker's ``pull``/``push`` when the run is being stopped."""


def parent_gone() -> bool:
    """True once the process that started this one has ended without stopping the run (killed,
    or its kernel restarted): nobody is left to read the reports or to set the stop flag. The
    server then sets it itself (:func:`~rlteach.distributed.server.serve`), so no worker or
    server outlives its notebook."""
    parent = mp.parent_process()
    return parent is not None and not parent.is_alive()


class SharedParams:
    """θ and one push slot per worker in one shared float32 buffer, plus the version counter.

    Layout ``[θ | slot_0 | … | slot_{W−1} | state_0 | … | state_{S−1}]``, each ``size`` floats;
    the ``state_rows = S`` rows hold an optimizer's state for workers that update θ themselves
    (Hogwild A3C, :mod:`rlteach.distributed.hogwild`). ``lock`` guards θ and the version (the
    server writes both under it, workers copy both under it). Pass the object to the processes
    when they start; numpy views are made on first use in each process.
    """

    def __init__(self, size: int, workers: int, ctx: Any, state_rows: int = 0):
        # ctx: a multiprocess context (no stubs)
        self.size, self.workers, self.state_rows = size, workers, state_rows
        self.buffer = ctx.RawArray("f", size * (1 + workers + state_rows))
        self.version = ctx.RawValue("q", 0)
        self.lock = ctx.Lock()
        self._views: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_views"] = None
        return state

    def _all(self) -> np.ndarray:
        if self._views is None:
            self._views = np.frombuffer(self.buffer, dtype=np.float32).reshape(-1, self.size)
        return self._views

    @property
    def params(self) -> np.ndarray:
        """θ, ``[size]`` (a view: copy it under ``lock``)."""
        return self._all()[0]

    def slot(self, worker: int) -> np.ndarray:
        """Worker ``worker``'s push slot, ``[size]`` (a view)."""
        return self._all()[1 + worker]

    def state(self, row: int) -> np.ndarray:
        """Row ``row`` of the shared optimizer state, ``[size]`` (a view)."""
        if not 0 <= row < self.state_rows:
            raise IndexError(f"state row {row} does not exist: there are {self.state_rows}")
        return self._all()[1 + self.workers + row]

    def read(
        self, out: np.ndarray | None = None, timeout: float | None = 30.0
    ) -> tuple[np.ndarray, int]:
        """A consistent copy of ``(θ, version)``.

        ``timeout=None`` reads without the lock: only once every other process has ended (a
        process killed while holding the lock would otherwise block the reader for ever).
        """
        if timeout is not None and not self.lock.acquire(timeout=timeout):
            raise TimeoutError(f"the parameter lock was not released within {timeout} s")
        try:
            if out is None:
                out = self.params.copy()
            else:
                np.copyto(out, self.params)
            return out, self.version.value
        finally:
            if timeout is not None:
                self.lock.release()

    def publish(self, theta: np.ndarray, version: int) -> None:
        with self.writing() as params:
            np.copyto(params, theta)
            self.version.value = version

    def set_version(self, version: int) -> None:
        """Call inside :meth:`writing`, with θ."""
        self.version.value = version

    @contextmanager
    def writing(self) -> Iterator[np.ndarray]:
        """Hold the lock while θ (yielded, ``[size]``) and the version are changed in place: a
        reader copies θ as it was before or after, never half-updated."""
        with held(self.lock):
            yield self.params


class held:
    """``with held(lock):`` — acquire ``lock`` within ``timeout`` s or raise ``TimeoutError`` (a
    process killed while holding a lock would otherwise block its waiters for ever). A class
    rather than a generator: it is entered several times per push, and costs less than half as much
    (0.7 µs against 1.6 µs measured here)."""

    def __init__(self, lock: Any, timeout: float = LOCK_TIMEOUT):  # a multiprocess Lock
        self.lock, self.timeout = lock, timeout

    def __enter__(self) -> None:
        if not self.lock.acquire(timeout=self.timeout):
            raise TimeoutError(f"a lock was not released within {self.timeout} s")

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class Mailboxes:
    """How a push reaches the server and its answer the worker, without a pipe.

    Per worker, a header of float64 in shared memory: ``[state, version, weight, progress,
    applied, answered version, staleness]``. A worker writes its push's numbers and
    ``state = POSTED`` (``SUM`` with the length in ``version`` for a sum over the workers,
    ``LEFT`` when it returns) under ``lock`` and releases ``posted``, the
    semaphore the server waits on; the server takes every posted header under ``lock``, and answers
    a worker by writing the last three fields and releasing that worker's own semaphore. A
    semaphore wakes a blocked process in microseconds, where a pipe also costs a system call per
    side and pickling. Every wait is a loop of ``POLL``-long waits that checks the stop flag, so
    none outlasts a stopped run. A worker first polls its semaphore for up to ``SPIN`` seconds,
    yielding the CPU between polls (``os.sched_yield``: a worker that still computes its share of
    the round runs first): a process that blocks lets its CPU go idle, and on a virtual machine the
    next few milliseconds of work after such a wake-up run up to 1.7 times slower (measured on the
    course's 2-core machine: a 0.9 ms gradient took 1.6 ms after a 2 ms sleep).
    """

    FIELDS = 7
    IDLE, POSTED, LEFT, GONE, SUM = 0.0, 1.0, 2.0, 3.0, 4.0

    def __init__(self, workers: int, ctx: Any, experience_slots: int = 0):
        # ctx: a multiprocess context (no stubs)
        self.workers = workers
        # IMPALA's bounded queue: a worker takes a credit before it sends a segment of experience,
        # the parent gives it back once the segment is used (None: no such queue)
        self.credits = ctx.Semaphore(experience_slots) if experience_slots else None
        self.headers = ctx.RawArray("d", workers * self.FIELDS)
        self.lock = ctx.Lock()
        self.posted = ctx.Semaphore(0)
        self.answered = [ctx.Semaphore(0) for _ in range(workers)]
        self.begun = ctx.RawArray("b", workers + 1)  # 1 once worker w (the server: last) began
        self._view: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_view"] = None
        return state

    def _header(self) -> np.ndarray:
        if self._view is None:
            self._view = np.frombuffer(self.headers, dtype=np.float64).reshape(self.workers, -1)
        return self._view

    def mark_begun(self, who: int) -> None:
        """Worker ``who`` (``workers``: the server) has started: its process imported what it
        needed and runs rlteach's code. A process that ends before this failed to start."""
        self.begun[who] = 1

    def has_begun(self, who: int) -> bool:
        return bool(self.begun[who])

    # -- the worker's side

    def take_credit(self, stopping: Callable[[], bool]) -> float:
        """Wait for room in the bounded queue of experience (one credit); return the seconds
        waited. Raises :class:`StopRun` once ``stopping()`` is true."""
        assert self.credits is not None, "this run has no queue of experience"
        start = time.perf_counter()
        while not self.credits.acquire(timeout=POLL):
            if stopping():
                raise StopRun
        return time.perf_counter() - start

    def return_credit(self) -> None:
        """The parent has used a segment: its place in the queue is free again."""
        if self.credits is not None:
            self.credits.release()

    def post(self, worker: int, version: int, weight: float, progress: float) -> None:
        with held(self.lock):
            self._header()[worker, :4] = (self.POSTED, version, weight, progress)
        self.posted.release()

    def post_sum(self, worker: int, length: int) -> None:
        with held(self.lock):
            self._header()[worker, :2] = (self.SUM, length)
        self.posted.release()

    def leave(self, worker: int) -> None:
        with held(self.lock):
            self._header()[worker, 0] = self.LEFT
        self.posted.release()

    def wait_answer(
        self,
        worker: int,
        stop: Any,  # a multiprocess Event (no stubs)
        deadline: float,
    ) -> tuple[bool, int, int]:
        """``(applied, version, staleness)`` of the server's answer to ``worker``'s push; raises
        :class:`StopRun` once ``stop`` is set, ``TimeoutError`` after ``deadline``
        (``time.perf_counter`` seconds)."""
        answered = self.answered[worker]
        spin_until = time.perf_counter() + SPIN
        while not answered.acquire(False):
            if time.perf_counter() < spin_until:
                yield_cpu()  # any process with work to do runs first
                continue
            if answered.acquire(timeout=POLL):
                break
            if stop.is_set():
                raise StopRun
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no answer from the parameter server in {ACK_TIMEOUT:.0f} s")
        applied, version, staleness = self._header()[worker, 4:]
        return bool(applied), int(version), int(staleness)

    # -- the server's side

    def wait_posted(self, timeout: float) -> bool:
        return self.posted.acquire(timeout=timeout)

    def collect(self) -> list[tuple[int, tuple]]:
        """Every header posted since the last call, as ``(worker, message)``: ``("push", version,
        weight, progress)``, ``("sum", length)``, or ``("leave",)`` for a worker that left
        (reported once)."""
        header = self._header()
        messages: list[tuple[int, tuple]] = []
        with held(self.lock):
            for worker, state in enumerate(header[:, 0].tolist()):  # plain floats: a few workers
                if state not in (self.POSTED, self.SUM, self.LEFT):  # cost less than numpy calls
                    continue
                _, version, weight, progress = header[worker, :4].tolist()
                message: tuple
                if state == self.POSTED:
                    message = ("push", int(version), weight, progress)
                elif state == self.SUM:
                    message = ("sum", int(version))
                else:
                    message = ("leave",)
                header[worker, 0] = self.GONE if state == self.LEFT else self.IDLE
                messages.append((worker, message))
        return messages

    def answer(self, worker: int, applied: bool, version: int, staleness: int) -> None:
        self._header()[worker, 4:] = (applied, version, staleness)
        self.answered[worker].release()
