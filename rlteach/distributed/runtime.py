"""A parameter server and worker processes on one machine (seed §2.3, notebook 05).

``Cluster(worker_fn, workers=W, params=θ0, server=ServerConfig(...))`` starts one **server** process
that owns the flat float32 parameter vector θ, its optimizer and a version counter, and ``W`` **worker**
processes that each run ``worker_fn(ctx, *args)``. Inside a worker, ``ctx.pull()`` returns the newest
θ and its version; ``ctx.push(vector, version)`` hands the server a gradient (or, when the server
averages parameters, the worker's parameters) computed from that version, ``weight=n`` making it
count ``n`` times in the mean (:meth:`Server.apply`); ``ctx.report(...)`` sends
metrics to the notebook without blocking.

How the vectors travel: θ and one push slot per worker live in shared memory (a ``RawArray`` of
float32 that all processes map; nothing is pickled per step). A worker can write its gradient
straight into its slot (``ctx.slot``) and push that, saving a copy. A push's few numbers (version,
weight, progress) and the server's answer sit in a small shared header per worker, and processes
wake each other with semaphores (:class:`Mailboxes`): no pipe, no pickling, a few µs per wake-up.
Metrics and errors go through one queue to the parent.

Server modes (``ServerConfig``):

* ``sync`` — the server waits for a round of pushes computed from the current version, averages
  them, applies the result and publishes version+1; every pusher of the round waits for that. With
  ``drop_stragglers = D`` the round closes after the first ``W − D`` pushes and late pushes are
  dropped (the DPPO straggler rule).
* ``async`` — the server applies each push as it arrives (A3C style) and records its *staleness*:
  the server's version minus the version the push was computed from.
* ``average = "gradients"``: the averaged gradient ``ḡ`` goes through the server's optimizer
  (``θ ← θ − α ḡ`` for SGD, or Adam). ``average = "parameters"``: workers update locally and push
  their new parameters ``θ'``; the worker's ``ctx`` turns them into the *change*
  ``Δ = θ' − θ_pulled`` against the θ it pulled, and the server adds changes: a sync round adds their
  mean (which is the mean of the ``θ'``, since every member pulled the same θ), an async push adds
  its ``Δ`` as it arrives (Downpour SGD, Dean et al. 2012), or ``Δ/W`` with
  ``scale_async_changes=True``. Moving θ towards a stale ``θ'`` instead (``θ += (θ' − θ)/W``) would
  undo part of the other workers' progress since the pull: every push would drag θ back towards
  an old version.

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
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import dill
import multiprocess as mp
import numpy as np
from multiprocess.connection import wait as wait_any

MODES = ("sync", "async")
AVERAGING = ("gradients", "parameters")
OPTIMIZERS = ("adam", "sgd")
POLL = 0.05  # seconds between checks of the stop flag while waiting
ACK_TIMEOUT = 600.0  # a worker never waits longer than this for the server's answer
LOCK_TIMEOUT = 30.0  # nobody holds a lock longer than a copy of θ; longer means a process died
REPORT_EVERY = 0.25  # seconds between the server's reports (and its checks that the parent lives)
SPIN = 0.01  # a worker polls for its answer this long, yielding the CPU, before it blocks
yield_cpu = getattr(os, "sched_yield", lambda: time.sleep(0))  # sched_yield: not on Windows


class WorkerError(RuntimeError):
    """A worker (or the server) failed; ``worker`` is its id (``"server"`` for the server)."""

    def __init__(self, worker, message: str, remote_traceback: str = ""):
        self.worker = worker
        self.remote_traceback = remote_traceback
        name = "the parameter server" if worker == "server" else f"worker {worker}"
        text = f"{name} {message}"
        if remote_traceback:
            text += f"\n\n--- traceback in {name} ---\n{remote_traceback}"
        super().__init__(text)


class StopRun(Exception):
    """Raised inside a worker's ``pull``/``push`` when the run is being stopped."""


@dataclass(frozen=True)
class ServerConfig:
    """How the parameter server combines pushes (see the module docstring)."""

    mode: str = "sync"
    average: str = "gradients"
    optimizer: str = "adam"
    lr: float = 1e-3
    drop_stragglers: int = 0
    anneal: bool = False  # the step size decays linearly to 0 with the progress pushes carry
    scale_async_changes: bool = False  # async "parameters": add Δ/W per push instead of Δ
    max_grad_norm: float = 0.0  # > 0: clip the norm of the (averaged) gradient before the step
    adam_eps: float = 1e-8  # Adam's ε (torch's default; PPO implementations use 1e-5)

    def validate(self, workers: int) -> ServerConfig:
        if self.mode not in MODES:
            raise ValueError(f"mode = {self.mode!r} is invalid: must be one of {', '.join(MODES)}")
        if self.average not in AVERAGING:
            raise ValueError(
                f"average = {self.average!r} is invalid: must be one of {', '.join(AVERAGING)}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer = {self.optimizer!r} is invalid: must be one of {', '.join(OPTIMIZERS)}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr = {self.lr!r} is invalid: must be > 0")
        if not 0 <= self.drop_stragglers < workers:
            raise ValueError(
                f"drop_stragglers = {self.drop_stragglers!r} is invalid with {workers} workers: "
                f"W − D must be >= 1, so D must be in [0, {workers - 1}]"
            )
        if self.drop_stragglers and self.mode != "sync":
            raise ValueError("drop_stragglers only applies to mode='sync'")
        if self.scale_async_changes and (self.mode, self.average) != ("async", "parameters"):
            raise ValueError(
                "scale_async_changes only applies to mode='async', average='parameters'"
            )
        if not self.max_grad_norm >= 0:
            raise ValueError(f"max_grad_norm = {self.max_grad_norm!r} is invalid: must be >= 0")
        if self.max_grad_norm and self.average != "gradients":
            raise ValueError("max_grad_norm only applies to average='gradients'")
        if not self.adam_eps > 0:
            raise ValueError(f"adam_eps = {self.adam_eps!r} is invalid: must be > 0")
        return self


# ----------------------------------------------------------------------------- shared memory


class SharedParams:
    """θ and one push slot per worker in one shared float32 buffer, plus the version counter.

    Layout ``[θ | slot_0 | … | slot_{W−1}]``, each ``size`` floats. ``lock`` guards θ and the
    version (the server writes both under it, workers copy both under it). Pass the object to the
    processes when they start; numpy views are made on first use in each process.
    """

    def __init__(self, size: int, workers: int, ctx):
        self.size, self.workers = size, workers
        self.buffer = ctx.RawArray("f", size * (1 + workers))
        self.version = ctx.RawValue("q", 0)
        self.lock = ctx.Lock()
        self._views = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_views"] = None
        return state

    def _all(self) -> np.ndarray:
        if self._views is None:
            self._views = np.frombuffer(self.buffer, dtype=np.float32).reshape(1 + self.workers, -1)
        return self._views

    @property
    def params(self) -> np.ndarray:
        """θ, ``[size]`` (a view: copy it under ``lock``)."""
        return self._all()[0]

    def slot(self, worker: int) -> np.ndarray:
        """Worker ``worker``'s push slot, ``[size]`` (a view)."""
        return self._all()[1 + worker]

    def read(self, out: np.ndarray | None = None, timeout: float = 30.0) -> tuple[np.ndarray, int]:
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
    def writing(self):
        """Hold the lock while θ (yielded, ``[size]``) and the version are changed in place: a
        reader copies θ as it was before or after, never half-updated."""
        with held(self.lock):
            yield self.params


class held:
    """``with held(lock):`` — acquire ``lock`` within ``timeout`` s or raise ``TimeoutError`` (a
    process killed while holding a lock would otherwise block its waiters for ever). A class
    rather than a generator: it is entered several times per push, and costs less than half as much
    (0.7 µs against 1.6 µs measured here)."""

    def __init__(self, lock, timeout: float = LOCK_TIMEOUT):
        self.lock, self.timeout = lock, timeout

    def __enter__(self) -> None:
        if not self.lock.acquire(timeout=self.timeout):
            raise TimeoutError(f"a lock was not released within {self.timeout} s")

    def __exit__(self, *exc) -> None:
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

    def __init__(self, workers: int, ctx):
        self.workers = workers
        self.headers = ctx.RawArray("d", workers * self.FIELDS)
        self.lock = ctx.Lock()
        self.posted = ctx.Semaphore(0)
        self.answered = [ctx.Semaphore(0) for _ in range(workers)]
        self.begun = ctx.RawArray("b", workers + 1)  # 1 once worker w (the server: last) began
        self._view = None

    def __getstate__(self):
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

    def wait_answer(self, worker: int, stop, deadline: float) -> tuple[bool, int, int]:
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
        messages = []
        with held(self.lock):
            for worker, state in enumerate(header[:, 0].tolist()):  # plain floats: a few workers
                if state not in (self.POSTED, self.SUM, self.LEFT):  # cost less than numpy calls
                    continue
                _, version, weight, progress = header[worker, :4].tolist()
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


# ----------------------------------------------------------------------------- the server


@dataclass
class ServerStats:
    """What the server saw: versions published, pushes applied and dropped, and per push the
    worker, the version it was computed from and its staleness."""

    version: int = 0
    applied: int = 0
    dropped: int = 0
    pushes: list = field(default_factory=list)  # (worker, from_version, staleness, applied)


class Optimizer:
    """Adam or SGD on a flat float32 vector, in numpy: ``θ ← θ − α · step(g)``.

    Adam: ``m ← β1 m + (1−β1) g``, ``v ← β2 v + (1−β2) g²``, ``θ ← θ − α m̂ / (√v̂ + ε)`` with the
    bias corrections ``m̂ = m/(1−β1^t)``, ``v̂ = v/(1−β2^t)`` (β1 = 0.9, β2 = 0.999, and ε = ``eps``,
    1e-8 by default, as ``torch.optim.Adam``).
    """

    def __init__(self, name: str, lr: float, size: int, eps: float = 1e-8):
        self.name, self.lr, self.t, self.eps = name, lr, 0, eps
        if name == "adam":
            self.m = np.zeros(size, np.float32)
            self.v = np.zeros(size, np.float32)

    def step(self, theta: np.ndarray, grad: np.ndarray) -> None:
        """Update ``theta`` in place; ``grad`` is used as scratch space and may be overwritten."""
        if self.name == "sgd":
            grad *= self.lr  # grad is the server's scratch buffer: scaling it in place is free
            theta -= grad
            return
        b1, b2, eps = 0.9, 0.999, self.eps
        self.t += 1
        # m ← β1 m + (1−β1) g, written (m − g) β1 + g: three in-place passes, no temporary
        self.m -= grad
        self.m *= b1
        self.m += grad
        np.multiply(grad, grad, out=grad)  # v ← β2 v + (1−β2) g², the same way with g²
        self.v -= grad
        self.v *= b2
        self.v += grad
        # θ −= α m̂ / (√v̂ + ε), computed in the scratch buffer ``grad``
        np.multiply(self.v, 1 / (1 - b2**self.t), out=grad)
        np.sqrt(grad, out=grad)
        grad += eps
        np.divide(self.m, grad, out=grad)
        grad *= self.lr / (1 - b1**self.t)
        theta -= grad


def clip_norm(grad: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale ``grad`` ``[size]`` in place by ``min(1, max_norm / (‖grad‖₂ + 1e-6))``, the rule of
    ``torch.nn.utils.clip_grad_norm_``; returns ``grad``."""
    norm = float(np.sqrt(np.dot(grad, grad)))
    if norm + 1e-6 > max_norm:
        grad *= max_norm / (norm + 1e-6)
    return grad


class Server:
    """The server's state and rules; :func:`_serve` runs it in its own process."""

    def __init__(self, shared: SharedParams, cfg: ServerConfig):
        self.shared, self.cfg = shared, cfg
        self._mean = np.empty_like(shared.params)  # reused: no allocation per push
        self.optimizer = Optimizer(cfg.optimizer, cfg.lr, shared.size, cfg.adam_eps)
        self.weights = np.ones(shared.workers)  # each worker's weight in the mean (see on_push)
        self.progress = np.zeros(shared.workers)  # each worker's training progress (see on_push)
        self.stats = ServerStats()
        self.round: list[int] = []  # workers whose push is part of the current sync round
        self.summing: list[tuple[int, int]] = []  # (worker, length) of the current sum
        self.active = set(range(shared.workers))

    @property
    def theta(self) -> np.ndarray:
        """θ, ``[size]``: the shared vector itself, which :meth:`apply` updates in place."""
        return self.shared.params

    def round_size(self) -> int:
        return max(1, min(self.shared.workers - self.cfg.drop_stragglers, len(self.active)))

    def apply(self, workers: list[int]) -> None:
        """Average the pushes in ``workers``' slots and update θ; publish version + 1.

        The mean is ``Σ_w v_w / Σ_w n_w`` over the pushed vectors ``v_w`` and their weights ``n_w``
        (1 unless the push gave one, so by default the plain mean). Gradients ``ḡ``: clipped to
        ``max_grad_norm`` when set, then one optimizer step, with step size ``α (1 − p̄)`` under
        ``anneal`` (``p̄``: the mean progress the pushes carried). Parameter changes ``Δ̄``: ``θ ← θ + Δ̄``
        (``Δ̄/W`` for an async push with ``scale_async_changes``). θ is changed in place, under the
        lock that pulls take (:meth:`SharedParams.writing`): no private copy to publish.
        """
        total = float(sum(self.weights[w] for w in workers))
        if len(workers) == 1:  # its pusher waits for the ack: the slot itself is scratch space
            mean = self.shared.slot(workers[0])
            if total != 1.0:
                mean /= total
        else:
            mean = self._mean
            np.copyto(mean, self.shared.slot(workers[0]))
            for w in workers[1:]:
                mean += self.shared.slot(w)
            mean /= total
        if self.cfg.average == "gradients":
            if self.cfg.max_grad_norm:
                clip_norm(mean, self.cfg.max_grad_norm)
            if self.cfg.anneal:
                progress = float(np.mean(self.progress[workers]))
                self.optimizer.lr = self.cfg.lr * max(0.0, 1.0 - progress)
        elif self.cfg.scale_async_changes:
            mean /= self.shared.workers
        self.stats.version += 1
        self.stats.applied += len(workers)
        with self.shared.writing() as theta:
            if self.cfg.average == "gradients":
                self.optimizer.step(theta, mean)
            else:
                theta += mean
            self.shared.set_version(self.stats.version)

    def on_push(
        self, worker: int, from_version: int, weight: float = 1.0, progress: float = 0.0
    ) -> list[tuple[int, tuple]]:
        """Handle one push; return the acknowledgements to send as ``(worker, message)``.

        ``weight`` ``n_w`` is the push's weight in the mean (see :meth:`apply`): a worker that
        pushes the gradient of its loss *summed* over ``n_w`` samples, with weight ``n_w``, makes
        the round's mean the per-sample mean over all the round's samples (DPPO, notebook 07).
        ``progress`` is the fraction of its env-step budget the worker had spent when it started
        the batch behind the push; with ``anneal`` the step size follows it, as a single-process
        learner's does (counting server versions instead would assume a number of rounds the
        workers do not keep to: episode resets and stragglers change it)."""
        self.weights[worker] = weight
        self.progress[worker] = progress
        staleness = self.stats.version - from_version
        if self.cfg.mode == "async":
            self.apply([worker])
            self.stats.pushes.append((worker, from_version, staleness, True))
            return [(worker, ("ack", True, self.stats.version, staleness))]
        if staleness != 0:  # a straggler of a round that already closed
            self.stats.dropped += 1
            self.stats.pushes.append((worker, from_version, staleness, False))
            return [(worker, ("ack", False, self.stats.version, staleness))]
        self.round.append(worker)
        self.stats.pushes.append((worker, from_version, 0, True))
        return self.close_round_if_complete()

    def close_round_if_complete(self) -> list[tuple[int, tuple]]:
        if not self.round or len(self.round) < self.round_size():
            return []
        members, self.round = self.round, []
        self.apply(members)
        return [(w, ("ack", True, self.stats.version, 0)) for w in members]

    def on_sum(self, worker: int, length: int) -> list[tuple[int, tuple]]:
        """``worker``'s part of a sum over the workers (:meth:`WorkerContext.sum_over_workers`):
        the first ``length`` floats of its slot. Once every active worker has sent its part, each
        gets the elementwise total in its slot; θ and the version do not change."""
        self.summing.append((worker, length))
        return self.close_sum_if_complete()

    def close_sum_if_complete(self) -> list[tuple[int, tuple]]:
        if not self.summing or len(self.summing) < len(self.active):
            return []
        members, self.summing = self.summing, []
        lengths = sorted({length for _, length in members})
        if len(lengths) > 1:
            raise ValueError(f"the workers summed vectors of different lengths {lengths}")
        total = self._mean[: lengths[0]]
        np.copyto(total, self.shared.slot(members[0][0])[: lengths[0]])
        for w, _ in members[1:]:
            total += self.shared.slot(w)[: lengths[0]]
        for w, _ in members:
            np.copyto(self.shared.slot(w)[: lengths[0]], total)
        return [(w, ("ack", True, self.stats.version, 0)) for w, _ in members]

    def on_leave(self, worker: int) -> list[tuple[int, tuple]]:
        """A worker finished: rounds and sums no longer wait for it."""
        self.active.discard(worker)
        return self.close_round_if_complete() + self.close_sum_if_complete()


def _serve(shared: SharedParams, mail: Mailboxes, cfg: ServerConfig, events, stop) -> None:
    """Server process: answer pushes until every worker has left or the run is stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    mail.mark_begun(mail.workers)
    server = Server(shared, cfg)
    handlers = {"push": server.on_push, "sum": server.on_sum, "leave": server.on_leave}
    last_report = time.perf_counter()
    reported = 0
    try:
        while server.active and not stop.is_set():
            if mail.wait_posted(POLL):
                for worker, (kind, *fields) in mail.collect():
                    acks = handlers[kind](worker, *fields)
                    for target, (_, applied, version, staleness) in acks:
                        mail.answer(target, applied, version, staleness)
            if time.perf_counter() - last_report > REPORT_EVERY:
                if parent_gone():
                    stop.set()  # every worker stops at its next push, pull or wait
                    events.cancel_join_thread()  # nobody will read the reports
                    return
                events.put(("server", None, server_report(server.stats, reported)))
                reported = len(server.stats.pushes)
                last_report = time.perf_counter()
        events.put(("server", None, server_report(server.stats, reported)))
    except Exception:
        events.put(("error", "server", traceback.format_exc()))


def server_report(stats: ServerStats, since: int) -> dict:
    return {
        "version": stats.version,
        "applied": stats.applied,
        "dropped": stats.dropped,
        "pushes": stats.pushes[since:],
    }


# ----------------------------------------------------------------------------- the workers


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

    def __init__(self):
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
        return np.subtract(params, self.pulled, out=out)


class WorkerContext:
    """What ``worker_fn(ctx, *args)`` uses to talk to the server and the notebook."""

    def __init__(
        self,
        worker_id: int,
        workers: int,
        seed: int,
        cfg: ServerConfig,
        shared: SharedParams,
        mail: Mailboxes,
        events,
        stop,
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
        """True once the run is being stopped: finish the current step and return."""
        return self._stop.is_set()

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
        server's mean and the worker's training ``progress`` (:meth:`Server.on_push`); returns when
        the server has used it (sync: when the round has closed)."""
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

    def report(self, **metrics) -> None:
        """Send a dict of metrics to the notebook (does not wait)."""
        self._events.put(("report", self.worker_id, metrics))


def _worker_main(payload, worker_id, workers, seed, cfg, shared, mail, events, stop):
    """Worker process: SIGINT ignored, one torch thread, run the function and say how it ended.

    ``payload`` is ``dill.dumps((worker_fn, args), recurse=True)``: a function written in a
    notebook travels by value together with the globals it uses (``np``, a helper, …).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mail.mark_begun(worker_id)
    ctx = WorkerContext(worker_id, workers, seed, cfg, shared, mail, events, stop)
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


def parent_gone() -> bool:
    """True once the process that started this one has ended without stopping the run (killed,
    or its kernel restarted): nobody is left to read the reports or to set the stop flag. The
    server then sets it itself (:func:`_serve`), so no worker or server outlives its notebook."""
    parent = mp.parent_process()
    return parent is not None and not parent.is_alive()


# ----------------------------------------------------------------------------- the parent


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


class ClusterBase:
    """What the local :class:`Cluster` and the Ray cluster share: arguments checked before any
    process starts (``ValueError`` naming the problem), and the ``with`` block (start, then stop).

    ``params`` is the initial θ (flattened to float32). The worker function and its arguments
    travel as ``dill.dumps((worker_fn, args), recurse=True)``; each worker's ``ctx.seed`` comes
    from ``numpy.random.SeedSequence(seed).spawn(workers)``.
    """

    def __init__(
        self,
        worker_fn: Callable,
        *,
        workers: int,
        params,
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

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Cluster(ClusterBase):
    """A parameter server and ``workers`` processes running ``worker_fn(ctx, *args)``.

    Use as ``with Cluster(...) as cluster: result = cluster.run()`` (arguments: see
    :class:`ClusterBase`). ``on_report(worker, metrics)`` is called from the calling thread for
    every report, as it arrives.
    """

    def __init__(self, worker_fn: Callable, **arguments):
        super().__init__(worker_fn, **arguments)
        self._procs: list = []
        self._server_proc = None
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the shared buffers and start the server and the workers."""
        if self._started:
            raise RuntimeError("this Cluster was already started; make a new one")
        self._started = True
        ctx = process_context()
        self.shared = SharedParams(self.initial.size, self.workers, ctx)
        self.shared.publish(self.initial, 0)
        self.mail = Mailboxes(self.workers, ctx)
        self.events = ctx.Queue()
        self.stop_event = ctx.Event()
        with _one_thread_children():
            self._server_proc = ctx.Process(
                target=_serve,
                name="rlteach-server",
                daemon=True,
                args=(self.shared, self.mail, self.cfg, self.events, self.stop_event),
            )
            self._server_proc.start()
            for w in range(self.workers):
                proc = ctx.Process(
                    target=_worker_main,
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
                kind, worker, payload = self.events.get(
                    timeout=max(0.0, deadline - time.perf_counter())
                )
            except (queue.Empty, EOFError, OSError, ValueError):
                return
            self._dispatch(kind, worker, payload)

    def _dispatch(self, kind, worker, payload) -> None:
        if kind == "report":
            self._reports.append((worker, payload))
            if self._on_report is not None:
                self._on_report(worker, payload)
        elif kind == "done":
            self._results[worker] = payload
            self._done.add(worker)
        elif kind == "server":
            pushes = self._server_stats["pushes"] + payload["pushes"]
            self._server_stats = {**payload, "pushes": pushes}
        elif kind == "error":
            raise WorkerError(worker, "raised an exception", payload)

    def _check_processes(self) -> None:
        """A process that ended without saying so is an error (killed, segfault, os._exit)."""
        for w, proc in enumerate(self._procs):
            if w not in self._done and proc.exitcode is not None:
                self._handle_events(block=0.2)  # its last words may still be in the queue
                if w not in self._done:
                    raise WorkerError(w, self._silent_end(w, "died without a word"))
        if self._server_proc.exitcode is not None and len(self._done) < self.workers:
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
                kind, worker, payload = self.events.get_nowait()
            except (queue.Empty, EOFError, OSError, ValueError):
                return
            if kind != "error" and hasattr(self, "_results"):
                self._dispatch(kind, worker, payload)


NOT_STARTED = (
    "its traceback is on stderr. The usual cause is a script that starts the run at its top "
    "level: each new process first imports the script that started the run, which would start "
    'the run again; put the call under `if __name__ == "__main__":`.'
)
PRELOAD = ("numpy", "dill", "torch", "gymnasium")  # what every worker imports; rlteach is not
# among them, so a worker always runs the library's code as it is on disk when the run starts


def process_context():
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

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.KEYS}
        os.environ.update({k: "1" for k in self.KEYS})

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_cluster(
    worker_fn: Callable,
    *,
    workers: int,
    params,
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
