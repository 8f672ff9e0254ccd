"""The parameter server on Ray: the same workers and server rules, moved by Ray (notebook 08).

The local runtime (:mod:`rlteach.distributed.runtime`) moves vectors through shared memory and
pipes between processes it starts itself. Here Ray starts them and moves the vectors:

* the **parameter server** is a Ray actor (``ServerActor``) that owns the same
  :class:`~rlteach.distributed.server.Server` — the same sync rounds, ``W − D`` straggler rule,
  async staleness, averaging and optimizer — on θ held in its own memory;
* each **worker** is a Ray actor (``WorkerActor``, one CPU each) that runs the *same*
  ``worker_fn(ctx, *args)`` as a local worker process (``da3c_worker``, ``dppo_worker`` or a function
  written in a notebook): only ``ctx`` differs. ``ctx.pull()`` and ``ctx.push(...)`` are remote calls
  on the server actor; ``ctx.report(...)`` is a fire-and-forget call whose rows the driver collects.

The server actor is an *asyncio* actor: a sync-round push waits (``await``) for the round to close
without blocking the other workers' pushes, and an async push is applied the moment it arrives. The
driver — the notebook's kernel — waits on the workers' ``run`` calls with ``ray.wait`` and a short
timeout, so a worker that finishes, raises or dies is seen within a fraction of a second.

``address=None`` starts a local Ray instance with ``workers`` CPUs that listens on loopback only,
and shuts it down at the end. ``address="auto"`` joins the cluster this machine belongs to (started
with ``ray start --head`` / ``ray start --address=HEAD:6379``), and ``"ray://HEAD:10001"`` connects
through Ray Client; the cluster's nodes need ``rlteach`` installed (``pip install rlteach[ray]``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dill
import numpy as np

from rlteach.distributed.runtime import ClusterBase, ClusterResult, WorkerError
from rlteach.distributed.server import Server, ServerConfig, server_report
from rlteach.distributed.shared import ACK_TIMEOUT, POLL, StopRun
from rlteach.distributed.worker import ParameterChange, PushReceipt, stamped

RAY_MISSING = "Ray is not installed: pip install 'rlteach[ray]' (or: make test, which installs it)"
CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's address before ray.init is tried
CALL_TIMEOUT = 60.0  # seconds the driver waits for the server actor to answer a call
START_TIMEOUT = 120.0  # seconds for the worker actors to start
STOP_GRACE = 3.0  # seconds workers get to return after a stop, before their actors are killed


def import_ray() -> Any:  # the ray module (imported lazily)
    """``ray``, or an ``ImportError`` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(RAY_MISSING) from exc
    return ray


# ----------------------------------------------------------------------------- the actors


class ActorParams:
    """θ and one push slot per worker in the server actor's own memory, ``[1 + W, size]`` float32:
    what :class:`~rlteach.distributed.shared.SharedParams` is to the local runtime, without
    sharing (the actor's event loop is the only thread that touches it)."""

    def __init__(self, params: np.ndarray, workers: int):
        self.size, self.workers, self.version = params.size, workers, 0
        self.rows = np.zeros((1 + workers, params.size), np.float32)
        self.rows[0] = params

    @property
    def params(self) -> np.ndarray:
        return self.rows[0]

    def slot(self, worker: int) -> np.ndarray:
        return self.rows[1 + worker]

    def read(self) -> tuple[np.ndarray, int]:
        return self.params.copy(), self.version

    def publish(self, theta: np.ndarray, version: int) -> None:
        np.copyto(self.params, theta)
        self.version = version

    @contextmanager
    def writing(self) -> Iterator[np.ndarray]:
        """θ to change in place (no lock: the actor's one thread is the only reader)."""
        yield self.params

    def set_version(self, version: int) -> None:
        self.version = version


class ServerActor:
    """The parameter server as an asyncio Ray actor: ``pull``, ``push`` (answered when the server
    has used the vector), ``report`` and ``leave`` from workers; ``drain`` and ``stop`` from the
    driver."""

    def __init__(self, params: np.ndarray, workers: int, cfg: ServerConfig):
        self.server = Server(ActorParams(params, workers), cfg)
        self.theta_with_ack = theta_stays_until_next_push(cfg)
        self.waiting: dict[int, asyncio.Future] = {}
        self.reports: list = []
        self.sent = 0  # server push records already handed to the driver
        self.stopped = False

    async def size(self) -> int:
        """The number of parameters P."""
        return self.server.shared.size

    async def pull(self) -> tuple[np.ndarray, int, bool]:
        """``(θ, version, stopped)``."""
        theta, version = self.server.shared.read()
        return theta, version, self.stopped

    async def push(
        self,
        worker: int,
        vector: np.ndarray,
        version: int,
        weight: float = 1.0,
        progress: float = 0.0,
    ) -> tuple[tuple[str, bool, int, int], np.ndarray | None] | None:
        """Use ``vector`` computed from ``version`` (``weight``, ``progress``: see
        ``Server.on_push``); once the server has, return the ack tuple
        ``("ack", applied, version, staleness)`` and, where θ cannot change before this
        worker's next push (:func:`theta_stays_until_next_push`), θ itself, so the worker's next
        pull needs no call of its own (else ``None``). ``None`` alone if stopped."""
        if self.stopped:
            return None
        np.copyto(self.server.shared.slot(worker), vector)
        answer = asyncio.get_running_loop().create_future()
        self.waiting[worker] = answer
        self.answer(self.server.on_push(worker, version, weight, progress))
        ack = await answer
        if ack is None:
            return None
        return ack, self.server.shared.params.copy() if self.theta_with_ack else None

    async def sum_over_workers(self, worker: int, vector: np.ndarray) -> np.ndarray | None:
        """``worker``'s part of a sum (``Server.on_sum``); the elementwise total once every active
        worker has sent its part, or ``None`` if stopped."""
        if self.stopped:
            return None
        np.copyto(self.server.shared.slot(worker)[: vector.size], vector)
        answer = asyncio.get_running_loop().create_future()
        self.waiting[worker] = answer
        self.answer(self.server.on_sum(worker, vector.size))
        if await answer is None:
            return None
        return self.server.shared.slot(worker)[: vector.size].copy()

    async def leave(self, worker: int) -> None:
        """``worker`` returned: sync rounds stop waiting for it (nothing changes once stopped)."""
        if not self.stopped:
            self.answer(self.server.on_leave(worker))

    async def report(self, worker: int, metrics: dict) -> None:
        self.reports.append((worker, metrics))

    async def drain(self) -> tuple[list[tuple[int, dict]], dict]:
        """Reports since the last drain, and the server's statistics (new push records only)."""
        reports, self.reports = self.reports, []
        stats = server_report(self.server.stats, self.sent)
        self.sent = len(self.server.stats.pushes)
        return reports, stats

    async def stop(self) -> None:
        """Answer every waiting push with ``None`` (the worker stops) and refuse new ones."""
        self.stopped = True
        for answer in self.waiting.values():
            answer.set_result(None)
        self.waiting.clear()

    def answer(self, acks: list) -> None:
        for worker, ack in acks:
            future = self.waiting.pop(worker, None)
            if future is not None:
                future.set_result(ack)


def theta_stays_until_next_push(cfg: ServerConfig) -> bool:
    """True when θ, once a worker's push is answered, stays the newest θ until that worker pushes
    again: sync rounds that wait for every worker (``drop_stragglers = 0``), so no round closes
    without this worker's next push. The server actor then sends θ with the ack, and a round
    costs one remote call instead of two (a push, then a pull). Async pushes and rounds that
    close without stragglers move θ at any time: there a pull asks the server."""
    return cfg.mode == "sync" and cfg.drop_stragglers == 0


class RayWorkerContext:
    """The ``ctx`` a worker function gets on Ray: the same methods as the local
    :class:`~rlteach.distributed.worker.WorkerContext`, each one a call on the server actor, except
    a pull right after a sync push, which reads the θ that the push's answer brought
    (:func:`theta_stays_until_next_push`)."""

    def __init__(
        self, ray: Any, server: Any, worker_id: int, workers: int, seed: int, cfg: ServerConfig
    ):  # ray: the module; server: the server actor's handle
        self._ray, self._server = ray, server
        self.worker_id, self.workers, self.seed, self.server = worker_id, workers, seed, cfg
        self._stopping = False
        self._change = ParameterChange() if cfg.average == "parameters" else None
        self._slot: np.ndarray | None = None
        self._acked: tuple[np.ndarray, int] | None = None  # θ and version the last ack carried

    @property
    def slot(self) -> np.ndarray:
        """A push buffer, ``[P]`` float32, in this worker's memory (Ray copies what is pushed)."""
        if self._slot is None:
            self._slot = np.zeros(self._call(self._server.size.remote()), np.float32)
        return self._slot

    @property
    def stopping(self) -> bool:
        """True once the server said the run is stopping (seen at the last pull or push)."""
        return self._stopping

    def pull(self, out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        if self._acked is not None:  # still the newest θ (see theta_stays_until_next_push)
            theta, version = self._acked
        else:
            theta, version, stopped = self._call(self._server.pull.remote())
            if stopped:
                self._stopping = True
                raise StopRun
        if out is None:
            out = np.array(theta)  # Ray hands out a read-only view
        else:
            np.copyto(out, theta)
        if self._change is not None:
            self._change.remember(out, version)
        return out, version

    def push(
        self, vector: np.ndarray, version: int, weight: float = 1.0, progress: float = 0.0
    ) -> PushReceipt:
        start = time.perf_counter()
        vector = np.asarray(vector, dtype=np.float32)
        if self._change is not None:  # the server adds θ' − θ_pulled, as on the local runtime
            vector = self._change.change(vector, version, out=np.empty_like(vector))
        self._acked = None
        answer = self._call(
            self._server.push.remote(self.worker_id, vector, version, weight, progress)
        )
        if answer is None:
            self._stopping = True
            raise StopRun
        (_, applied, new_version, staleness), theta = answer
        if theta is not None:
            self._acked = theta, new_version
        return PushReceipt(applied, new_version, staleness, time.perf_counter() - start)

    def sum_over_workers(self, vector: np.ndarray) -> np.ndarray:
        vector = np.asarray(vector, dtype=np.float32).ravel()
        total, size = np.empty_like(vector), self.slot.size
        for start in range(0, vector.size, size):  # in slot-sized pieces, as the local ctx
            piece = vector[start : start + size]
            summed = self._call(self._server.sum_over_workers.remote(self.worker_id, piece))
            if summed is None:
                self._stopping = True
                raise StopRun
            total[start : start + piece.size] = summed
        return total

    def report(self, **metrics: Any) -> None:
        self._server.report.remote(self.worker_id, stamped(metrics))

    def _call(self, ref: Any) -> Any:  # ref: a Ray object reference
        try:
            return self._ray.get(ref, timeout=ACK_TIMEOUT)
        except self._ray.exceptions.GetTimeoutError:
            raise TimeoutError(
                f"no answer from the parameter server in {ACK_TIMEOUT:.0f} s"
            ) from None


class WorkerActor:
    """One worker: one CPU, one torch thread, running ``worker_fn(ctx, *args)``."""

    def __init__(self, server: Any, worker_id: int, workers: int, seed: int, cfg: ServerConfig):
        import ray
        import torch

        torch.set_num_threads(1)  # Ray also sets OMP_NUM_THREADS=1 for a one-CPU actor
        self.ctx = RayWorkerContext(ray, server, worker_id, workers, seed, cfg)
        self.server = server

    def pid(self) -> int:
        return os.getpid()

    def run(self, payload: bytes) -> Any:
        """Run the function (``payload = dill.dumps((worker_fn, args))``, as the local runtime
        sends it); return its result, or ``None`` when the run was stopped."""
        try:
            worker_fn, args = dill.loads(payload)
            return worker_fn(self.ctx, *args)
        except StopRun:
            return None
        finally:
            self.server.leave.remote(self.ctx.worker_id)


# ----------------------------------------------------------------------------- the driver


class RayCluster(ClusterBase):
    """The Ray counterpart of :class:`~rlteach.distributed.runtime.Cluster`: same arguments
    (:class:`~rlteach.distributed.runtime.ClusterBase`), same
    ``run(on_report, timeout) -> ClusterResult``, same errors, plus ``address`` (``None``: a local
    Ray instance with ``workers`` CPUs on loopback; ``"auto"`` or ``"ray://host:port"``: a cluster).

    ``worker_pids`` lists the worker actors' process ids once started.
    """

    def __init__(
        self, worker_fn: Callable[..., Any], *, address: str | None = None, **arguments: Any
    ):
        self.ray = import_ray()
        super().__init__(worker_fn, **arguments)
        self.address = address
        self.started_ray = False
        self.actors: list = []
        self.server_actor: Any = None  # a Ray actor handle once started
        self.worker_pids: list[int] = []

    def start(self) -> None:
        """Connect to (or start) Ray, then create the server actor and the worker actors."""
        self.started_ray = connect(self.ray, self.address, self.workers)
        cpus = self.ray.cluster_resources().get("CPU", 0)
        if cpus < self.workers:
            self.stop()
            raise RuntimeError(
                f"{self.workers} workers need {self.workers} CPUs; the Ray cluster has {cpus:g} "
                f"(one CPU per worker actor)"
            )
        remote = self.ray.remote
        self.server_actor = remote(num_cpus=0)(ServerActor).remote(
            self.initial, self.workers, self.cfg
        )
        worker_class = remote(num_cpus=1)(WorkerActor)
        self.actors = [
            worker_class.remote(self.server_actor, w, self.workers, self.seeds[w], self.cfg)
            for w in range(self.workers)
        ]
        try:
            self.worker_pids = self.ray.get(
                [actor.pid.remote() for actor in self.actors], timeout=START_TIMEOUT
            )
        except self.ray.exceptions.GetTimeoutError:
            self.stop()
            raise RuntimeError(
                f"the {self.workers} worker actors did not start within {START_TIMEOUT:.0f} s: "
                f"are {self.workers} of the cluster's CPUs free?"
            ) from None

    def stop(self) -> None:
        """Kill every actor; shut Ray down if this cluster started (or connected) it."""
        for actor in [*self.actors, self.server_actor]:
            if actor is not None:
                self.ray.kill(actor)
        self.actors, self.server_actor = [], None
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False

    def read_params(self) -> tuple[np.ndarray, int]:
        """The server's current ``(θ, version)``."""
        theta, version, _ = self.ray.get(self.server_actor.pull.remote(), timeout=CALL_TIMEOUT)
        return np.array(theta), version

    def run(self, on_report: Callable | None = None, timeout: float | None = None) -> ClusterResult:
        """Wait for every worker's ``run`` (``ray.wait``), passing reports to ``on_report``;
        errors, timeout and interrupt behave as in the local :meth:`Cluster.run`."""
        if self.server_actor is None:
            self.start()
        start = time.perf_counter()
        calls = {actor.run.remote(self.payload): w for w, actor in enumerate(self.actors)}
        self.results: list = [None] * self.workers
        self.reports: list = []
        self.stats = {"version": 0, "applied": 0, "dropped": 0, "pushes": []}
        interrupted = False
        try:
            while calls:
                self.collect_finished(calls, POLL)
                self.drain(on_report)
                if timeout is not None and time.perf_counter() - start > timeout:
                    raise TimeoutError(f"the run did not finish within {timeout} s")
        except KeyboardInterrupt:
            interrupted = True
            self.ray.get(self.server_actor.stop.remote(), timeout=CALL_TIMEOUT)
            self.ray.wait(list(calls), num_returns=len(calls), timeout=STOP_GRACE)
        except BaseException:
            self.stop()
            raise
        self.drain(on_report)
        params, version = self.read_params()
        return ClusterResult(
            params,
            version,
            self.results,
            self.reports,
            self.stats,
            interrupted,
            time.perf_counter() - start,
        )

    def collect_finished(self, calls: dict, wait: float) -> None:
        """Take the result of every worker whose ``run`` ended; a failure raises
        :class:`WorkerError` naming the worker."""
        ready, _ = self.ray.wait(list(calls), num_returns=len(calls), timeout=wait)
        for ref in ready:
            worker = calls.pop(ref)
            try:
                self.results[worker] = self.ray.get(ref)
            except self.ray.exceptions.RayTaskError as exc:
                raise WorkerError(worker, "raised an exception", str(exc)) from None
            except self.ray.exceptions.RayActorError as exc:
                raise WorkerError(worker, f"died without a word ({type(exc).__name__})") from None

    def drain(self, on_report: Callable | None) -> None:
        """Fetch the reports and server statistics gathered by the server actor."""
        try:
            reports, stats = self.ray.get(self.server_actor.drain.remote(), timeout=CALL_TIMEOUT)
        except self.ray.exceptions.RayActorError as exc:
            raise WorkerError("server", f"died ({type(exc).__name__})") from None
        self.stats = {**stats, "pushes": self.stats["pushes"] + stats["pushes"]}
        for worker, metrics in reports:
            self.reports.append((worker, metrics))
            if on_report is not None:
                on_report(worker, metrics)


def connect(ray: Any, address: str | None, cpus: int) -> bool:
    """Make sure Ray is initialised; return True if this call did it (and so must shut it down).

    ``address=None`` starts a local instance with ``cpus`` CPUs, no dashboard, every port on
    loopback. Ray already initialised by the caller is used as it is.
    """
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        loopback_only(ray)
        # Ray turns token authentication on for a new local instance and warns that it did: keep
        # the token, not the warning (a line in every notebook cell that starts Ray)
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR
        )
        # "local": a new instance even if Ray's address file names another one (a cluster started
        # with `ray start`, or a stale file one left behind)
        ray.init(address="local", num_cpus=cpus, object_store_memory=256 * 2**20, **quiet)
    else:
        check_reachable(ray, address)
        ray.init(address=address, **quiet)
    return True


def check_reachable(ray: Any, address: str) -> None:
    """``ConnectionError`` unless something accepts a TCP connection where ``address`` points
    (``"auto"``: the cluster named by ``RAY_ADDRESS`` or by the address file ``ray start`` leaves)
    within ``CONNECT_TIMEOUT`` seconds: ``ray.init`` itself retries an absent cluster for minutes.
    """
    target = address.removeprefix("ray://")
    if address == "auto":
        target = ray._private.services.get_ray_address_from_environment("auto", None)
        if target is None:
            raise ConnectionError(
                "address='auto' found no Ray cluster on this machine: start one with "
                "`ray start --head`, or give its address"
            )
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except (OSError, ValueError) as exc:
        raise ConnectionError(
            f"no Ray cluster answers at {target!r} (address={address!r}) within "
            f"{CONNECT_TIMEOUT:g} s: {exc}"
        ) from None


def loopback_only(ray: Any) -> None:
    """Make a local Ray instance bind its servers to 127.0.0.1 rather than every interface.

    Ray binds to all interfaces when it runs as a (potential) multi-node cluster, which is its
    default on Linux; the switch below, meant for single-node Windows and macOS, keeps it on
    loopback. The environment variable reaches Ray's own processes; the constant is read by
    this process (it was set from the variable when ``ray`` was imported).
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
