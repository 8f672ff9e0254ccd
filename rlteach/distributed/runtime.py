"""A parameter server and worker processes on one machine (seed §2.3, notebook 05).

``Cluster(worker_fn, workers=W, params=θ0, server=ServerConfig(...))`` starts one **server** process
that owns the flat float32 parameter vector θ, its optimizer and a version counter, and ``W`` **worker**
processes that each run ``worker_fn(ctx, *args)``. Inside a worker, ``ctx.pull()`` returns the newest
θ and its version; ``ctx.push(vector, version)`` hands the server a gradient (or, when the server
averages parameters, the worker's parameters) computed from that version, ``weight=n`` making it
count ``n`` times in the mean (:meth:`~rlteach.distributed.server.Server.apply`); ``ctx.report(...)``
sends metrics to the notebook without blocking.

The pieces, one module each: what the processes share (:mod:`rlteach.distributed.shared`: θ, the
push slots and the mailboxes in shared memory), the server (:mod:`rlteach.distributed.server`: its
modes and rules) and the workers (:mod:`rlteach.distributed.worker`: the ``ctx`` API). This module
starts and stops them. Metrics and errors go through one queue to the parent.

Lifecycle: processes are forked from a fork server that has imported torch once, or spawned where
there is none (:func:`process_context`); ``multiprocess`` pickles with dill, so notebook-defined
functions travel by value. A worker that raises, or dies without a word, makes :meth:`Cluster.run`
raise :class:`WorkerError` naming the worker (with its traceback) within a second, after stopping
every process; a ``KeyboardInterrupt`` (the kernel's ■) stops everything and returns the partial
result. Every wait has a timeout; leaving the ``with`` block always ends every process.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dill
import multiprocess as mp
import numpy as np
from multiprocess.connection import wait as wait_any
from numpy.typing import ArrayLike

from rlteach.distributed.server import ServerConfig, serve
from rlteach.distributed.shared import POLL, Mailboxes, SharedParams
from rlteach.distributed.worker import worker_main


class WorkerError(RuntimeError):
    """A worker (or the server) failed; ``worker`` is its id (``"server"`` for the server)."""

    def __init__(self, worker: int | str, message: str, remote_traceback: str = ""):
        self.worker = worker
        self.remote_traceback = remote_traceback
        name = "the parameter server" if worker == "server" else f"worker {worker}"
        text = f"{name} {message}"
        if remote_traceback:
            text += f"\n\n--- traceback in {name} ---\n{remote_traceback}"
        super().__init__(text)


@dataclass
class ClusterResult:
    """A finished (or interrupted) run: the final ``params`` and their ``version``, each worker's
    return value (``None`` if it was stopped), every report ``(worker, dict)`` in arrival order, the
    server's statistics, and whether a kernel interrupt ended the run."""

    params: np.ndarray
    version: int
    results: list
    reports: list
    server: dict
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def staleness(self) -> np.ndarray:
        """Staleness of every push the server received, in order."""
        return np.array([p[2] for p in self.server.get("pushes", [])], dtype=int)


class ClusterBase(ABC):
    """What the local :class:`Cluster` and the Ray cluster share: arguments checked before any
    process starts (``ValueError`` naming the problem), and the ``with`` block (start, then stop).

    ``params`` is the initial θ (flattened to float32). The worker function and its arguments
    travel as ``dill.dumps((worker_fn, args), recurse=True)``; each worker's ``ctx.seed`` comes
    from ``numpy.random.SeedSequence(seed).spawn(workers)``.
    """

    def __init__(
        self,
        worker_fn: Callable[..., Any],
        *,
        workers: int,
        params: ArrayLike,
        server: ServerConfig | None = None,
        seed: int = 0,
        args: tuple = (),
    ):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers = {workers!r} is invalid: must be an integer >= 1")
        if not callable(worker_fn):
            raise ValueError(f"worker_fn must be callable, got {worker_fn!r}")
        params = np.ascontiguousarray(params, dtype=np.float32).ravel()
        if params.size == 0:
            raise ValueError("params is empty: the server needs at least one parameter")
        self.cfg = (server or ServerConfig()).validate(workers)
        self.workers, self.initial = workers, params
        try:
            self.payload = dill.dumps((worker_fn, tuple(args)), recurse=True)
        except Exception as exc:
            raise ValueError(f"worker_fn or args cannot be sent to a process: {exc}") from exc
        self.seeds = [
            int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(workers)
        ]

    def __enter__(self) -> ClusterBase:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @abstractmethod
    def start(self) -> None:
        """Start the server and the workers."""

    @abstractmethod
    def stop(self) -> None:
        """End every process of the run (idempotent)."""

    @abstractmethod
    def read_params(self) -> tuple[np.ndarray, int]:
        """The server's current ``(θ, version)``."""

    @abstractmethod
    def run(self, on_report: Callable | None = None, timeout: float | None = None) -> ClusterResult:
        """Wait for every worker to return (see :meth:`Cluster.run`)."""


class Cluster(ClusterBase):
    """A parameter server and ``workers`` processes running ``worker_fn(ctx, *args)``.

    Use as ``with Cluster(...) as cluster: result = cluster.run()`` (arguments: see
    :class:`ClusterBase`). ``on_report(worker, metrics)`` is called from the calling thread for
    every report, as it arrives.

    For the architectures without a parameter server (notebook 09): ``serve=False`` starts no
    server process (the workers, or the parent, change θ themselves); ``state_rows`` adds that
    many ``[P]`` float32 rows of shared optimizer state (``ctx.shared.state(i)``, Hogwild A3C);
    ``experience_slots = K > 0`` gives the workers ``ctx.send(**segment)``, which reaches
    ``on_report`` like a report but waits while ``K`` sent segments are not yet handled (IMPALA's
    bounded queue; the parent publishes θ with :meth:`publish`).
    """

    def __init__(
        self,
        worker_fn: Callable[..., Any],
        *,
        serve: bool = True,
        state_rows: int = 0,
        experience_slots: int = 0,
        **arguments: Any,
    ):
        super().__init__(worker_fn, **arguments)
        for name, value in (("state_rows", state_rows), ("experience_slots", experience_slots)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} = {value!r} is invalid: must be an integer >= 0")
        self.serve, self.state_rows, self.experience_slots = serve, state_rows, experience_slots
        self._procs: list = []
        self._server_proc: Any = None  # a multiprocess Process once started
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the shared buffers and start the server and the workers."""
        if self._started:
            raise RuntimeError("this Cluster was already started; make a new one")
        self._started = True
        ctx = process_context()
        self.shared = SharedParams(self.initial.size, self.workers, ctx, self.state_rows)
        self.shared.publish(self.initial, 0)
        self.mail = Mailboxes(self.workers, ctx, self.experience_slots)
        self.events = ctx.Queue()
        self.stop_event = ctx.Event()
        with _one_thread_children():
            if self.serve:
                self._server_proc = ctx.Process(
                    target=serve,
                    name="rlteach-server",
                    daemon=True,
                    args=(self.shared, self.mail, self.cfg, self.events, self.stop_event),
                )
                self._server_proc.start()
            for w in range(self.workers):
                proc = ctx.Process(
                    target=worker_main,
                    name=f"rlteach-worker-{w}",
                    daemon=True,
                    args=(
                        self.payload,
                        w,
                        self.workers,
                        self.seeds[w],
                        self.cfg,
                        self.shared,
                        self.mail,
                        self.events,
                        self.stop_event,
                    ),
                )
                proc.start()
                self._procs.append(proc)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop every process: ask, wait up to ``timeout`` s, then terminate, then kill."""
        if not self._started or getattr(self, "_stopped", False):
            return
        self._stopped = True
        self.stop_event.set()
        procs = [p for p in [*self._procs, self._server_proc] if p is not None]
        deadline = time.monotonic() + timeout
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            self._drain()  # a child exits only once its queue has been flushed
            wait_any([p.sentinel for p in procs if p.is_alive()], timeout=POLL)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(10.0)  # SIGKILL cannot be ignored, but a loaded machine reaps slowly
        self._drain()
        self.events.close()
        self.events.join_thread()
        for proc in procs:
            if not proc.is_alive():  # close() raises on a process the kernel has not reaped yet
                proc.close()

    def read_params(self) -> tuple[np.ndarray, int]:
        """The server's current ``(θ, version)``."""
        return self.shared.read()

    def publish(self, theta: np.ndarray, version: int) -> None:
        """Make ``theta`` (``[P]``) the θ that workers pull, as ``version``: for a run without a
        server, whose parent learns (IMPALA)."""
        self.shared.publish(theta, version)

    # -- running --------------------------------------------------------------------------------

    def run(self, on_report: Callable | None = None, timeout: float | None = None) -> ClusterResult:
        """Wait for every worker to return, passing reports to ``on_report(worker, metrics)``.

        Raises :class:`WorkerError` when a worker or the server fails or dies, ``TimeoutError``
        after ``timeout`` seconds. A ``KeyboardInterrupt`` stops the run and returns what there is,
        with ``interrupted=True``.
        """
        if not self._started:
            self.start()
        start = time.perf_counter()
        self._results = [None] * self.workers
        self._done: set[int] = set()
        self._reports: list = []
        self._server_stats = {"version": 0, "applied": 0, "dropped": 0, "pushes": []}
        self._on_report = on_report
        interrupted = False
        try:
            while len(self._done) < self.workers:
                self._handle_events(block=POLL)
                self._check_processes()
                if timeout is not None and time.perf_counter() - start > timeout:
                    raise TimeoutError(f"the run did not finish within {timeout} s")
        except KeyboardInterrupt:
            interrupted = True
        except BaseException:
            self.stop()
            raise
        self.stop()
        params, version = self.shared.read(timeout=None)
        return ClusterResult(
            params,
            version,
            self._results,
            self._reports,
            self._server_stats,
            interrupted,
            time.perf_counter() - start,
        )

    def _handle_events(self, block: float) -> None:
        deadline = time.perf_counter() + block
        while True:
            try:
                with held_interrupt():  # an event read whole, or not at all
                    kind, worker, payload = self.events.get(
                        timeout=max(0.0, deadline - time.perf_counter())
                    )
            except (queue.Empty, EOFError, OSError, ValueError):
                return
            self._dispatch(kind, worker, payload)

    def _dispatch(self, kind: str, worker: Any, payload: Any) -> None:
        # worker: a worker's id, "server" for the server's error, None for its statistics
        if kind == "report":
            self._reports.append((worker, payload))
            if self._on_report is not None:
                self._on_report(worker, payload)
        elif kind == "experience":
            try:
                if self._on_report is not None:
                    self._on_report(worker, payload)
            finally:
                self.mail.return_credit()  # the segment is used: its place in the queue is free
        elif kind == "done":
            self._results[worker] = payload
            self._done.add(worker)
        elif kind == "server":
            pushes = self._server_stats["pushes"] + payload["pushes"]
            self._server_stats = {**payload, "pushes": pushes}
        elif kind == "error":
            raise WorkerError(worker, "raised an exception", payload)

    def _check_processes(self) -> None:
        """A process that ended without saying so is an error (killed, segfault, os._exit). The
        server ends by itself, with exit code 0, once every worker has left its rounds: a worker
        leaves just before it sends its result, so the parent may see the server gone first. An
        exception in the server arrives as an ``"error"`` event; only an exit code other than 0
        means that it died."""
        for w, proc in enumerate(self._procs):
            if w not in self._done and proc.exitcode is not None:
                self._handle_events(block=0.2)  # its last words may still be in the queue
                if w not in self._done:
                    raise WorkerError(w, self._silent_end(w, "died without a word"))
        server = self._server_proc
        if (
            server is not None
            and server.exitcode not in (None, 0)
            and len(self._done) < self.workers
        ):
            self._handle_events(block=0.2)
            if len(self._done) < self.workers:
                raise WorkerError("server", self._silent_end(self.workers, "died"))

    def _silent_end(self, who: int, died: str) -> str:
        """What to say of worker ``who`` (``self.workers``: the server) that ended unannounced."""
        proc = self._procs[who] if who < self.workers else self._server_proc
        if self.mail.has_begun(who):
            return f"{died} (exit code {proc.exitcode})"
        return f"exited (code {proc.exitcode}) before it started: {NOT_STARTED}"

    def _drain(self) -> None:
        """Read what is queued (so children's feeder threads can exit), keeping reports and
        results but not raising: used while stopping."""
        while True:
            try:
                with held_interrupt():
                    kind, worker, payload = self.events.get_nowait()
            except (queue.Empty, EOFError, OSError, ValueError):
                return
            # experience is not learned from once the run stops
            if kind not in ("error", "experience") and hasattr(self, "_results"):
                self._dispatch(kind, worker, payload)


class held_interrupt:
    """``with held_interrupt():`` — a SIGINT (the kernel's ■) that arrives inside the block is held
    until the block ends and raised there as ``KeyboardInterrupt``. It guards the reading of one
    message from a queue: an interrupt in the middle of the read would leave the pipe half read
    and every later message garbled (an ``UnpicklingError`` while the run stops). The message read
    when the interrupt is raised is dropped: the run is being interrupted. Outside the main
    thread, where no signal handler can be set, it does nothing."""

    def __enter__(self) -> held_interrupt:
        self.caught, self.installed = False, threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum: int, frame: object) -> None:
        self.caught = True

    def __exit__(self, *exc: object) -> None:
        if self.installed:  # a handler set outside Python reads as None: Python's own replaces it
            signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)
        if self.caught:
            raise KeyboardInterrupt


NOT_STARTED = (
    "its traceback is on stderr. The usual cause is a script that starts the run at its top "
    "level: each new process first imports the script that started the run, which would start "
    'the run again; put the call under `if __name__ == "__main__":`.'
)
PRELOAD = ("numpy", "dill", "torch", "gymnasium")  # what every worker imports; rlteach is not
# among them, so a worker always runs the library's code as it is on disk when the run starts


def process_context() -> Any:  # a multiprocess context (no stubs)
    """How worker processes start: ``forkserver`` where the OS has it (Linux, macOS), else
    ``spawn`` (Windows). The fork server is one fresh interpreter, started at the first run and
    kept for the life of this process (it does no work itself), that imports ``PRELOAD`` once; each
    worker is forked from it and so starts in milliseconds instead of importing torch again (1–2 s
    of CPU per worker with ``spawn``). Either way a worker starts from a clean interpreter, not a
    copy of the notebook's process: its arguments are pickled, as with ``spawn``."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


class _one_thread_children:
    """Children inherit the environment at spawn: ask their math libraries for one thread each."""

    KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

    def __enter__(self) -> None:
        self.saved = {k: os.environ.get(k) for k in self.KEYS}
        os.environ.update({k: "1" for k in self.KEYS})

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_cluster(
    worker_fn: Callable[..., Any],
    *,
    workers: int,
    params: ArrayLike,
    server: ServerConfig | None = None,
    seed: int = 0,
    args: tuple = (),
    on_report: Callable | None = None,
    timeout: float | None = None,
) -> ClusterResult:
    """Start a :class:`Cluster`, run it to the end and stop it: the one-call form."""
    with Cluster(
        worker_fn, workers=workers, params=params, server=server, seed=seed, args=args
    ) as cluster:
        return cluster.run(on_report=on_report, timeout=timeout)
