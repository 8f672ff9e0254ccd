"""The workers' side of the parameter server (notebook 05): what a worker function may call
(:class:`WorkerContext`, a protocol that the local processes and the Ray actors both implement),
its implementation for the local processes (:class:`ProcessContext`) and the function a worker
process runs (:func:`worker_main`).
"""

from __future__ import annotations

import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Protocol

import dill
import numpy as np

from rlteach.distributed.server import ServerConfig
from rlteach.distributed.shared import ACK_TIMEOUT, Mailboxes, SharedParams, StopRun, parent_gone

SENT_AT = "sent_at"  # the key of a report's send time, the worker's time.time()


def stamped(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with the time they were sent (``SENT_AT``): the parent may read a report long
    after, while it draws a live plot or evaluates θ, and dates it by when it was sent."""
    return {**metrics, SENT_AT: time.time()}


class WorkerIdentity(Protocol):
    """Who a worker is: its id in ``0 … W−1`` and the seed of its environments, actions and
    shuffles. What DPPO's worker helpers need; DD-PPO's ranks have it too."""

    @property
    def worker_id(self) -> int: ...

    @property
    def seed(self) -> int: ...


class WorkerContext(WorkerIdentity, Protocol):
    """What ``worker_fn(ctx, *args)`` may call, on every backend: the local processes
    (:class:`ProcessContext`) and Ray's actors (``RayWorkerContext``)."""

    workers: int
    server: ServerConfig

    @property
    def slot(self) -> np.ndarray: ...

    @property
    def stopping(self) -> bool: ...

    def pull(self, out: np.ndarray | None = None) -> tuple[np.ndarray, int]: ...

    def push(
        self, vector: np.ndarray, version: int, weight: float = 1.0, progress: float = 0.0
    ) -> PushReceipt: ...

    def sum_over_workers(self, vector: np.ndarray) -> np.ndarray: ...

    def report(self, **metrics: Any) -> None: ...


@dataclass
class PushReceipt:
    """The server's answer to a push: was it ``applied`` (False: dropped as a straggler), the
    server's ``version`` after it, the push's ``staleness``, and the seconds spent ``waiting``."""

    applied: bool
    version: int
    staleness: int
    waiting: float


class ParameterChange:
    """The worker's side of ``average="parameters"``: remember the θ of the last pull, and turn
    the pushed parameters ``θ'`` into the change ``Δ = θ' − θ_pulled`` that the server adds."""

    def __init__(self) -> None:
        self.pulled: np.ndarray | None = None
        self.version = -1

    def remember(self, theta: np.ndarray, version: int) -> None:
        if self.pulled is None:
            self.pulled = np.empty_like(theta)
        np.copyto(self.pulled, theta)
        self.version = version

    def change(self, params: np.ndarray, version: int, out: np.ndarray) -> np.ndarray:
        """``out ← params − θ_pulled``, ``[size]``; ``version`` must be the last pull's."""
        if version != self.version:
            raise ValueError(
                f"push(version={version}) with average='parameters' must follow the pull of that "
                f"version (the last pull was version {self.version}): the server adds θ' − θ_pulled"
            )
        assert self.pulled is not None  # set by the pull of that version
        return np.subtract(params, self.pulled, out=out)


class ProcessContext:
    """A worker process's :class:`WorkerContext`: the server through shared memory, the notebook
    through the events queue."""

    def __init__(
        self,
        worker_id: int,
        workers: int,
        seed: int,
        cfg: ServerConfig,
        shared: SharedParams,
        mail: Mailboxes,
        events: Any,  # a multiprocess Queue (no stubs)
        stop: Any,  # a multiprocess Event
    ):
        self.worker_id, self.workers, self.seed, self.server = worker_id, workers, seed, cfg
        self._shared, self._mail, self._events, self._stop = shared, mail, events, stop
        self._change = ParameterChange() if cfg.average == "parameters" else None

    @property
    def slot(self) -> np.ndarray:
        """This worker's push slot in shared memory, ``[size]`` float32: a gradient written here
        (e.g. by :func:`rlteach.nets.alias_gradients`) is pushed by ``ctx.push(ctx.slot, version)``
        without a copy."""
        return self._shared.slot(self.worker_id)

    @property
    def stopping(self) -> bool:
        """True once the run is being stopped, or the notebook that started it has gone: finish
        the current step and return. (Where there is a server it also stops the run when the
        notebook goes; a run without one, Hogwild A3C or IMPALA, relies on this check.)"""
        return self._stop.is_set() or parent_gone()

    @property
    def shared(self) -> SharedParams:
        """θ, the push slots and the optimizer state in shared memory (local processes only):
        Hogwild A3C's workers update θ here themselves."""
        return self._shared

    def pull(self, out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """The newest θ (``[size]`` float32: a fresh copy, or written into ``out`` to save an
        allocation) and its version."""
        if self.stopping:
            raise StopRun
        theta, version = self._shared.read(out)
        if self._change is not None:
            self._change.remember(theta, version)
        return theta, version

    def push(
        self, vector: np.ndarray, version: int, weight: float = 1.0, progress: float = 0.0
    ) -> PushReceipt:
        """Send a gradient (or the new parameters ``θ'``, when the server averages parameters: the
        slot then holds ``θ' − θ_pulled``) computed from ``version``, with its ``weight`` in the
        server's mean and the worker's training ``progress``
        (:meth:`~rlteach.distributed.server.Server.on_push`); returns when the server has used it
        (sync: when the round has closed)."""
        if self.stopping:
            raise StopRun
        slot = self.slot
        vector = np.asarray(vector, dtype=np.float32)
        if self._change is not None:
            self._change.change(vector, version, out=slot)
        elif vector is not slot:
            np.copyto(slot, vector)
        start = time.perf_counter()
        self._mail.post(self.worker_id, version, weight, progress)
        applied, new_version, staleness = self._mail.wait_answer(
            self.worker_id, self._stop, start + ACK_TIMEOUT
        )
        return PushReceipt(applied, new_version, staleness, time.perf_counter() - start)

    def sum_over_workers(self, vector: np.ndarray) -> np.ndarray:
        """The elementwise sum of ``vector`` (``[n]`` float32) over the workers, a new ``[n]``
        array. A barrier: every worker that has not returned must call it at the same point of its
        loop, with the same ``n`` (a worker that returned no longer counts). θ does not change.
        The vector travels through the push slot, in pieces of at most ``size`` numbers. DPPO uses
        it for the advantage statistics of its global minibatches."""
        vector = np.asarray(vector, dtype=np.float32).ravel()
        total, slot = np.empty_like(vector), self.slot
        for start in range(0, vector.size, slot.size):
            if self.stopping:
                raise StopRun
            piece = vector[start : start + slot.size]
            np.copyto(slot[: piece.size], piece)
            self._mail.post_sum(self.worker_id, piece.size)
            self._mail.wait_answer(self.worker_id, self._stop, time.perf_counter() + ACK_TIMEOUT)
            total[start : start + piece.size] = slot[: piece.size]
        return total

    def report(self, **metrics: Any) -> None:
        """Send a dict of metrics to the notebook, :func:`stamped` (does not wait)."""
        self._events.put(("report", self.worker_id, stamped(metrics)))

    def send(self, **experience: Any) -> float:
        """Send a segment of experience to the parent, where ``Cluster.run``'s ``on_report``
        receives it as a report (IMPALA's learner). Waits only while the run's bounded queue
        (``experience_slots``) is full; returns the seconds it waited."""
        waited = self._mail.take_credit(lambda: self.stopping)
        self._events.put(("experience", self.worker_id, stamped(experience)))
        return waited


def worker_main(
    payload: bytes,
    worker_id: int,
    workers: int,
    seed: int,
    cfg: ServerConfig,
    shared: SharedParams,
    mail: Mailboxes,
    events: Any,  # a multiprocess Queue (no stubs)
    stop: Any,  # a multiprocess Event
) -> None:
    """Worker process: SIGINT ignored, one torch thread, run the function and say how it ended.

    ``payload`` is ``dill.dumps((worker_fn, args), recurse=True)``: a function written in a
    notebook travels by value together with the globals it uses (``np``, a helper, …).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mail.mark_begun(worker_id)
    ctx = ProcessContext(worker_id, workers, seed, cfg, shared, mail, events, stop)
    try:
        worker_fn, args = dill.loads(payload)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        result = worker_fn(ctx, *args)
    except StopRun:
        result = None
    except BaseException:
        events.put(("error", worker_id, traceback.format_exc()))
        return
    finally:
        mail.leave(worker_id)  # sync rounds stop waiting for this worker
        if parent_gone():  # exit without flushing reports nobody will read
            events.cancel_join_thread()
    events.put(("done", worker_id, result))
