"""The four ways to distribute training of seed §2.3, each run for real (notebook 05).

1. data parallelism — :func:`data_parallel_gradients`: W processes, each the gradient on its shard,
   averaged by the parameter server;
2. model parallelism — :class:`TwoProcessMLP`: one network split across two processes,
   activations forward and gradients back through a pipe;
3. parameter server — :mod:`rlteach.distributed.runtime` itself, driven by hand in the notebook;
4. multi-agent parallelism — :func:`sampling_throughput`: W workers explore their own environment
   instances and the experience is pooled centrally. :func:`measure_scaling` times rounds of such
   sampling with a serial learner update between them, for a fixed amount of work (Amdahl's law,
   :func:`fit_amdahl`) or work that grows with W (Gustafson's law, :func:`fit_gustafson`), and
   measures the serial fraction directly to check the fitted one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from rlteach.distributed.runtime import ClusterResult, process_context, run_cluster
from rlteach.distributed.server import ServerConfig
from rlteach.distributed.worker import WorkerContext
from rlteach.envs import EnvFn, check_delay, env_factory, make_vector_env

# torch is imported inside the functions that use it: the numpy-only workers (least squares) then
# start in a fraction of a second instead of importing torch in every process.
if TYPE_CHECKING:
    from torch import nn

    from rlteach.rollout import Collector
# ----------------------------------------------------------------------------- 1. data parallel


def regression_mlp(inputs: int, hidden: int = 16, seed: int = 0) -> nn.Sequential:
    """A small MLP ``[B, inputs] → [B, 1]`` with seeded initial weights (same in every process)."""
    import torch
    from torch import nn

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def mse_gradient(model: nn.Module, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``∇θ (1/B) Σ_b (f_θ(x_b) − y_b)²`` as a flat vector ``[P]``."""
    import torch

    from rlteach.nets import flat_gradient

    model.zero_grad()
    pred = model(torch.as_tensor(X, dtype=torch.float32)).squeeze(-1)
    ((pred - torch.as_tensor(y, dtype=torch.float32)) ** 2).mean().backward()
    return flat_gradient(model)


def _shard_gradient_worker(
    ctx: WorkerContext, X: np.ndarray, y: np.ndarray, shards: list, hidden: int
) -> np.ndarray:
    """Worker: pull θ, compute the gradient on shard ``ctx.worker_id``, push it; return it too."""
    from rlteach.nets import set_flat_parameters

    model = regression_mlp(X.shape[1], hidden)
    theta, version = ctx.pull()
    set_flat_parameters(model, theta)
    rows = shards[ctx.worker_id]
    grad = mse_gradient(model, X[rows], y[rows])
    ctx.push(grad, version)
    return grad


def data_parallel_gradients(X: np.ndarray, y: np.ndarray, shards: list, hidden: int = 16) -> dict:
    """One synchronous round of data parallelism with ``len(shards)`` worker processes.

    Each worker computes the mean-squared-error gradient ``g_w`` on its rows ``shards[w]`` and
    pushes it; the server, running SGD with α = 1, applies ``θ ← θ − mean_w g_w``, so the change of
    θ *is* the averaged gradient. Returns ``averaged`` (θ0 − θ1), ``full`` (the full-batch
    gradient, computed here in one process), ``per_worker`` ``[W, P]`` and the shard ``sizes``.
    """
    from rlteach.nets import flat_parameters

    model = regression_mlp(X.shape[1], hidden)
    theta0 = flat_parameters(model)
    result = run_cluster(
        _shard_gradient_worker,
        workers=len(shards),
        params=theta0,
        server=ServerConfig(optimizer="sgd", lr=1.0),
        args=(X, y, shards, hidden),
    )
    return {
        "averaged": theta0 - result.params,
        "full": mse_gradient(model, X, y),
        "per_worker": np.stack(result.results),
        "sizes": np.array([len(np.arange(len(X))[rows]) for rows in shards]),
    }


# ----------------------------------------------------------------------------- 2. model parallel


def _second_half_process(conn: Any, inputs: int, hidden: int, seed: int) -> None:  # a Pipe end
    """Child process: holds layers 2 of the MLP; for each ``(h, y)`` received it returns the loss,
    ``∂loss/∂h`` and the gradient of its own parameters."""
    import torch

    from rlteach.nets import flat_gradient

    torch.set_num_threads(1)
    second = regression_mlp(inputs, hidden, seed)[1:]
    conn.send("ready")
    while True:
        if not conn.poll(60.0):
            return  # the parent is gone or idle for a minute: end
        message = conn.recv()
        if message is None:
            return
        h_array, y = message
        h = torch.as_tensor(h_array).requires_grad_(True)
        second.zero_grad()
        loss = ((second(h).squeeze(-1) - torch.as_tensor(y)) ** 2).mean()
        loss.backward()
        conn.send((loss.item(), h.grad.numpy(), flat_gradient(second)))  # type: ignore[union-attr]


class TwoProcessMLP:
    """``regression_mlp`` split in two: the first layer in this process, the rest in a child.

    :meth:`loss_and_gradients` runs the forward pass across the pipe (activations ``h [B, hidden]``
    go over), the backward pass back (``∂loss/∂h`` comes back) and returns the loss and the full
    flat gradient — the same numbers the unsplit model gives. ``hop_seconds`` accumulates the time
    spent sending and waiting. Use as a context manager; the child always ends on exit.
    """

    def __init__(self, inputs: int, hidden: int = 16, seed: int = 0, timeout: float = 30.0):
        self.first = regression_mlp(inputs, hidden, seed)[:1]
        self.timeout, self.hop_seconds = timeout, 0.0
        ctx = process_context()
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(
            target=_second_half_process,
            args=(child_conn, inputs, hidden, seed),
            daemon=True,
            name="rlteach-model-half",
        )
        self._proc.start()
        child_conn.close()
        if not self._conn.poll(timeout) or self._conn.recv() != "ready":
            self.close()
            raise TimeoutError(f"the second half did not start within {timeout} s")

    def __enter__(self) -> TwoProcessMLP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def loss_and_gradients(self, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        import torch

        from rlteach.nets import flat_gradient

        self.first.zero_grad()
        h = self.first(torch.as_tensor(X, dtype=torch.float32))
        start = time.perf_counter()
        self._conn.send((h.detach().numpy(), np.asarray(y, dtype=np.float32)))
        if not self._conn.poll(self.timeout):
            raise TimeoutError(f"the second half did not answer within {self.timeout} s")
        loss, grad_h, grad_second = self._conn.recv()
        self.hop_seconds += time.perf_counter() - start
        h.backward(torch.as_tensor(grad_h))
        return loss, np.concatenate([flat_gradient(self.first), grad_second])

    def close(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send(None)
        self._proc.join(3.0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(1.0)
        self._proc.close()
        self._conn.close()
        self._proc = None


# ----------------------------------------------------------------------------- 3. parameter server


def least_squares_problem(
    workers: int, rows: int = 32, dim: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-worker data ``(A_w [rows, dim], b_w [rows])`` of the loss
    ``f_w(θ) = |A_w θ − b_w|² / (2·rows)`` with gradient ``A_wᵀ(A_w θ − b_w)/rows``."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(workers, rows, dim)).astype(np.float32)
    b = (A @ rng.normal(size=dim) + 0.1 * rng.normal(size=(workers, rows))).astype(np.float32)
    return A, b


def _least_squares_worker(
    ctx: WorkerContext,
    A: np.ndarray,
    b: np.ndarray,
    rounds: int,
    local_steps: int,
    local_lr: float,
    local_optimizer: str,
    compute_seconds: float = 0.0,
) -> None:
    """Worker for the averaging comparison: each round, either push ``local_steps`` gradients of
    its loss, one per server step (gradient averaging), or take ``local_steps`` local steps and
    push the new θ (parameter averaging) — the same number of optimizer steps either way. A push
    waits ``compute_seconds`` after its pull, standing in for a network's forward and backward pass."""
    from rlteach.distributed.server import Optimizer

    A_w, b_w = A[ctx.worker_id], b[ctx.worker_id]
    local = Optimizer(local_optimizer, local_lr, A_w.shape[1])
    for _ in range(rounds):
        theta, version = ctx.pull()
        if ctx.server.average == "gradients":
            for step in range(local_steps):
                if step > 0:
                    theta, version = ctx.pull()
                time.sleep(compute_seconds)
                receipt = ctx.push(A_w.T @ (A_w @ theta - b_w) / len(b_w), version)
        else:
            for _ in range(local_steps):
                local.step(theta, A_w.T @ (A_w @ theta - b_w) / len(b_w))
            time.sleep(compute_seconds)
            receipt = ctx.push(theta, version)
        ctx.report(version=version, staleness=receipt.staleness, waiting=receipt.waiting)


def averaging_comparison(
    workers: int = 2,
    rounds: int = 5,
    local_steps: int = 1,
    optimizer: str = "sgd",
    lr: float = 0.1,
    mode: str = "sync",
    seed: int = 0,
) -> dict:
    """The same least-squares problem trained two ways (seed §3.1 step 6):

    * **average gradients**: workers push ``∇f_w(θ)``, the server steps its ``optimizer``,
      ``local_steps`` rounds per round of the other arm;
    * **average parameters**: workers take ``local_steps`` steps of the same ``optimizer`` locally
      and push their θ; the server averages them.

    Held equal: the data, the optimizer, its step size and the number of its steps.

    With one plain-SGD local step the two coincide: ``mean_w(θ − α g_w) = θ − α mean_w g_w``. With
    several local steps, or Adam (whose state lives on the server in one case and on the workers in
    the other), they do not. Returns both final θ and their distance.
    """
    A, b = least_squares_problem(workers, seed=seed)
    theta0 = np.zeros(A.shape[2], dtype=np.float32)
    out: dict[str, Any] = {}
    for average in ("gradients", "parameters"):
        cfg = ServerConfig(mode=mode, average=average, optimizer=optimizer, lr=lr)
        result = run_cluster(
            _least_squares_worker,
            workers=workers,
            params=theta0,
            server=cfg,
            seed=seed,
            args=(A, b, rounds, local_steps, lr, optimizer),
        )
        out[average] = result.params
    out["distance"] = float(np.linalg.norm(out["gradients"] - out["parameters"]))
    return out


START_LINE_TIMEOUT = 120.0  # seconds a worker waits at the start line for the others to start


def _start_line(ctx: WorkerContext) -> None:
    """Wait until every worker has started: each pushes a zero change (SGD leaves θ as it is),
    then waits for the server's version to count all ``W`` of them (sync mode: the round itself).
    Without it, a worker that starts first may finish before the last one has imported torch."""
    theta, version = ctx.pull()
    ctx.push(np.zeros_like(theta), version)
    deadline = time.monotonic() + START_LINE_TIMEOUT
    while ctx.server.mode == "async" and ctx.pull()[1] < ctx.workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every worker reached the start line in {START_LINE_TIMEOUT} s")
        time.sleep(0.001)


def _staleness_worker(ctx: WorkerContext, *args: Any) -> None:
    """:func:`_least_squares_worker` from a common start line."""
    _start_line(ctx)
    _least_squares_worker(ctx, *args)


def staleness_run(
    workers: int = 2,
    rounds: int = 50,
    mode: str = "async",
    seed: int = 0,
    compute_seconds: float = 0.002,
) -> ClusterResult:
    """A gradient-averaging run on the least-squares problem, all workers starting together, each
    gradient taking ``compute_seconds`` (2 ms) between pull and push: its :class:`ClusterResult`
    carries every push's staleness (0 in sync mode), the ``W`` start-line pushes left out."""
    A, b = least_squares_problem(workers, seed=seed)
    cfg = ServerConfig(mode=mode, optimizer="sgd", lr=0.05)
    result = run_cluster(
        _staleness_worker,
        workers=workers,
        params=np.zeros(A.shape[2]),
        server=cfg,
        seed=seed,
        args=(A, b, rounds, 1, 0.05, "sgd", compute_seconds),
    )
    result.server["pushes"] = result.server["pushes"][workers:]
    return result


# ----------------------------------------------------------------------------- 4. multi-agent


def _sampling_worker(
    ctx: WorkerContext, env_fn: EnvFn, steps: int, num_envs: int, hidden: tuple[int, ...]
) -> dict[str, Any]:
    """Worker: its own env instances and a copy of the policy; wait for everyone (one sync push),
    then collect ``steps`` transitions and return them with the time they took."""
    from rlteach.nets import ActorCritic, set_flat_parameters
    from rlteach.rollout import Collector

    envs = make_vector_env("", num_envs, env_fn=env_fn)
    theta, version = ctx.pull()
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space, hidden)
    set_flat_parameters(policy, theta)
    collector = Collector(envs, policy, seed=ctx.seed)
    ctx.push(np.zeros_like(theta), version)  # a sync round: the start line for everyone
    start = time.time()
    batch = collector.collect(max(1, steps // num_envs))
    seconds = time.time() - start
    envs.close()
    data = batch.flat()
    return {
        "obs": data["obs"].numpy(),
        "actions": data["actions"].numpy(),
        "start": start,
        "seconds": seconds,
    }


def sampling_throughput(
    env_id: str,
    workers: int,
    steps_per_worker: int,
    delay: float = 0.0,
    num_envs: int = 1,
    hidden: tuple[int, ...] = (64, 64),
    seed: int = 0,
    delay_kind: str = "sleep",
) -> dict:
    """Multi-agent parallelism: ``workers`` processes explore their own ``env_id`` instances
    (``delay`` seconds per step, slept or spun: ``delay_kind``, see
    :class:`rlteach.envs.DelayWrapper`) with the same policy, and the parent pools their experience.

    Timing starts when every worker is ready (process start-up and imports are not counted).
    Returns ``samples`` (pooled transitions), ``seconds`` (first start to last finish),
    ``samples_per_second`` and the pooled ``obs [M, obs_dim]``.
    """
    from rlteach.nets import ActorCritic, flat_parameters

    factory = env_factory(env_id, delay=delay, delay_kind=delay_kind)
    probe = factory()
    policy = ActorCritic(probe.observation_space, probe.action_space, hidden)
    probe.close()
    result = run_cluster(
        _sampling_worker,
        workers=workers,
        params=flat_parameters(policy),
        server=ServerConfig(optimizer="sgd"),
        seed=seed,
        args=(factory, steps_per_worker, num_envs, hidden),
    )
    parts = result.results
    start = min(p["start"] for p in parts)
    seconds = max(p["start"] + p["seconds"] for p in parts) - start
    obs = np.concatenate([p["obs"] for p in parts])
    return dict(samples=len(obs), seconds=seconds, samples_per_second=len(obs) / seconds, obs=obs)


def fit_amdahl(workers: ArrayLike, speedups: ArrayLike) -> float:
    """Serial fraction ``s`` of Amdahl's law ``S(W) = 1 / (s + (1 − s)/W)``, least squares on
    ``1/S − 1/W = s (1 − 1/W)`` over the measured points with ``W > 1``."""
    w = np.asarray(workers, dtype=float)
    inv = 1.0 / np.asarray(speedups, dtype=float)
    keep = w > 1
    a, b = inv[keep] - 1 / w[keep], 1 - 1 / w[keep]
    if not keep.any():
        raise ValueError("fit_amdahl needs at least one measurement with more than one worker")
    return float(np.clip((a @ b) / (b @ b), 0.0, 1.0))


def amdahl_speedup(s: float, workers: ArrayLike) -> np.ndarray:
    """``S(W) = 1 / (s + (1 − s)/W)``."""
    return 1.0 / (s + (1 - s) / np.asarray(workers, dtype=float))


def fit_gustafson(workers: ArrayLike, speedups: ArrayLike) -> float:
    """Serial fraction ``s`` of Gustafson's scaled speed-up ``S(W) = W − s (W − 1)``, least
    squares on ``W − S = s (W − 1)`` over the measured points with ``W > 1``."""
    w = np.asarray(workers, dtype=float)
    keep = w > 1
    if not keep.any():
        raise ValueError("fit_gustafson needs at least one measurement with more than one worker")
    a, b = w[keep] - np.asarray(speedups, dtype=float)[keep], w[keep] - 1
    return float(np.clip((a @ b) / (b @ b), 0.0, 1.0))


def gustafson_speedup(s: float, workers: ArrayLike) -> np.ndarray:
    """``S(W) = W − s (W − 1)``: ``s`` is the serial fraction of the W-worker run's time."""
    w = np.asarray(workers, dtype=float)
    return w - s * (w - 1)


# ----------------------------------------------------------------------------- 4. scaling laws

WORK_KINDS = ("fixed", "growing")


@dataclass(frozen=True)
class Workload:
    """One scaling experiment (notebook 05, section 4): ``rounds`` rounds of parallel sampling,
    each followed by a serial learner update.

    ``work="fixed"``: ``steps`` env steps in all, split as evenly as possible over the W workers
    (Amdahl's setting: the same work, more hands). ``work="growing"``: ``steps`` env steps per
    worker, ``W · steps`` in all (Gustafson's setting: more hands, more work). Each round's steps
    are ``steps`` split evenly over the rounds. After a round's sampling, worker 0 (the learner)
    spends ``learner_seconds`` of CPU time (:func:`rlteach.envs.busy_wait`, a stand-in for a
    gradient update of fixed cost) while every other worker waits at a barrier: the serial part.
    Each env step waits ``delay`` seconds of ``delay_kind`` (:class:`rlteach.envs.DelayWrapper`).
    """

    work: str
    steps: int
    rounds: int = 1
    learner_seconds: float = 0.0
    delay: float = 0.001
    delay_kind: str = "sleep"

    def __post_init__(self) -> None:
        if self.work not in WORK_KINDS:
            raise ValueError(f"work = {self.work!r} is invalid: must be one of {WORK_KINDS}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"rounds = {self.rounds!r} is invalid: must be an integer >= 1")
        if not isinstance(self.steps, int) or self.steps < self.rounds:
            raise ValueError(f"steps = {self.steps!r} is invalid: must be an integer >= rounds")
        if not self.learner_seconds >= 0:
            raise ValueError(f"learner_seconds = {self.learner_seconds!r} is invalid: must be >= 0")
        check_delay(self.delay, self.delay_kind)

    @property
    def law(self) -> str:
        """The law that describes this kind of work: ``"Amdahl"`` (fixed) or ``"Gustafson"``."""
        return "Amdahl" if self.work == "fixed" else "Gustafson"

    def steps_of(self, worker: int, workers: int) -> list[int]:
        """Env steps worker ``worker`` collects in each round when ``workers`` take part."""
        per_round = split_evenly(self.steps, self.rounds)
        if self.work == "growing":
            return per_round
        return [split_evenly(n, workers)[worker] for n in per_round]


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers that differ by at most one and sum to ``total``."""
    return [total // parts + (i < total % parts) for i in range(parts)]


@dataclass
class Scaling:
    """What :func:`measure_scaling` measured for one :class:`Workload`: ``workers [K]`` the worker
    counts; ``samples [R, K]`` env steps collected by all workers; ``seconds [R, K]`` wall time of
    each run (R repeats), from the start line to the last barrier; ``serial_seconds [R, K]`` the
    part of it the learner update took."""

    workload: Workload
    workers: np.ndarray
    samples: np.ndarray
    seconds: np.ndarray
    serial_seconds: np.ndarray

    @property
    def rates(self) -> np.ndarray:
        """Samples per second ``[R, K]``."""
        return self.samples / self.seconds

    @property
    def speedups(self) -> np.ndarray:
        """Speed-up per repeat, ``[R, K]``, as the workload's law defines it. Fixed work (Amdahl):
        ``T(1) / T(W)``. Growing work (Gustafson's scaled speed-up): the time one worker would need
        for the W workers' work — its serial time plus W times its parallel time,
        ``T_s(1) + W (T(1) − T_s(1))`` — over ``T(W)``."""
        t1, serial1 = self.seconds[:, :1], self.serial_seconds[:, :1]
        if self.workload.work == "fixed":
            return t1 / self.seconds
        return (serial1 + self.workers * (t1 - serial1)) / self.seconds

    @property
    def measured_serial_fraction(self) -> np.ndarray:
        """``s = serial time / time`` of the 1-worker run, per repeat ``[R]``: measured directly."""
        return self.serial_seconds[:, 0] / self.seconds[:, 0]

    @property
    def fitted_serial_fraction(self) -> np.ndarray:
        """``s`` fitted to each repeat's speed-ups with the workload's law, ``[R]``."""
        fit = fit_amdahl if self.workload.work == "fixed" else fit_gustafson
        return np.array([fit(self.workers, s) for s in self.speedups])

    def predicted_speedup(self, s: float, workers: ArrayLike) -> np.ndarray:
        """The workload's law with serial fraction ``s`` at ``workers``: (5.2) or (5.3)."""
        law = amdahl_speedup if self.workload.work == "fixed" else gustafson_speedup
        return law(s, workers)


def _barrier(ctx: WorkerContext, scratch: np.ndarray) -> None:
    """Wait until every worker has reached this point (one synchronous round of empty pushes)."""
    _, version = ctx.pull(out=scratch)
    ctx.push(np.zeros_like(scratch), version)


def _scaling_run(
    ctx: WorkerContext, collector: Collector, load: Workload, active: int, scratch: np.ndarray
) -> tuple[int, float, float]:
    """One run of ``load`` with the first ``active`` workers sampling (the others only take part in
    the barriers, which cost them no CPU). Returns this worker's ``(samples, seconds, serial)``."""
    from rlteach.envs import busy_wait

    shares = load.steps_of(ctx.worker_id, active) if ctx.worker_id < active else []
    _barrier(ctx, scratch)
    start = time.perf_counter()
    samples, serial = 0, 0.0
    for round_ in range(load.rounds):
        if round_ < len(shares) and shares[round_] > 0:
            before = collector.env_steps
            collector.collect(shares[round_])
            samples += collector.env_steps - before
        _barrier(ctx, scratch)
        if load.learner_seconds > 0:
            if ctx.worker_id == 0:
                learner_start = time.perf_counter()
                busy_wait(load.learner_seconds)
                serial += time.perf_counter() - learner_start
            _barrier(ctx, scratch)
    return samples, time.perf_counter() - start, serial


def _scaling_worker(
    ctx: WorkerContext,
    factories: dict[str, EnvFn],
    workloads: dict[str, Workload],
    worker_counts: list[int],
    repeats: int,
    hidden: tuple[int, ...],
) -> list[tuple[int, str, int, int, float, float]]:
    """Worker of :func:`measure_scaling`: one env and collector per workload, then every
    (repeat, workload, worker count) run in the same order as every other worker."""
    from rlteach.nets import ActorCritic, set_flat_parameters
    from rlteach.rollout import Collector

    theta, _ = ctx.pull()
    collectors = {}
    for label, factory in factories.items():
        envs = make_vector_env("", 1, env_fn=factory)
        policy = ActorCritic(envs.single_observation_space, envs.single_action_space, hidden)
        set_flat_parameters(policy, theta)
        collectors[label] = Collector(envs, policy, seed=ctx.seed)
    records, scratch = [], np.empty_like(theta)  # the policies' weights may be views of theta
    for repeat in range(repeats):
        for label, load in workloads.items():
            for active in worker_counts:
                run = _scaling_run(ctx, collectors[label], load, active, scratch)
                records.append((repeat, label, active, *run))
    for collector in collectors.values():
        collector.envs.close()
    return records


def measure_scaling(
    workloads: dict[str, Workload],
    worker_counts: Iterable[int],
    repeats: int = 3,
    env_id: str = "CartPole-v1",
    hidden: tuple[int, ...] = (64, 64),
    seed: int = 0,
) -> dict:
    """Run every :class:`Workload` in ``workloads`` (label → Workload) with each worker count of
    ``worker_counts`` (the first must be 1), ``repeats`` times; return label → :class:`Scaling`.

    One cluster of ``max(worker_counts)`` worker processes does every run, so processes start once;
    a run with W workers lets the first W sample and the rest wait at the barriers. The runs are
    interleaved (repeat by repeat) so that a change in the machine's load spreads over all of them.
    Each worker has its own ``env_id`` instance and a copy of the same policy.
    """
    from rlteach.nets import ActorCritic, flat_parameters

    counts = [int(w) for w in worker_counts]
    increasing = all(a < b for a, b in zip(counts, counts[1:], strict=False))
    if not counts or counts[0] != 1 or not increasing:
        raise ValueError(
            f"worker_counts = {worker_counts!r} is invalid: must be increasing and start with 1"
        )
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats = {repeats!r} is invalid: must be an integer >= 1")
    factories = {
        label: env_factory(env_id, delay=load.delay, delay_kind=load.delay_kind)
        for label, load in workloads.items()
    }
    probe = next(iter(factories.values()))()
    policy = ActorCritic(probe.observation_space, probe.action_space, hidden)
    probe.close()
    result = run_cluster(
        _scaling_worker,
        workers=max(counts),
        params=flat_parameters(policy),
        server=ServerConfig(optimizer="sgd"),
        seed=seed,
        args=(factories, dict(workloads), counts, repeats, hidden),
    )
    if result.interrupted:
        raise KeyboardInterrupt("measure_scaling was interrupted")
    index = {label: i for i, label in enumerate(workloads)}
    shape = (len(workloads), repeats, len(counts))
    samples, seconds, serial = np.zeros(shape, dtype=int), np.zeros(shape), np.zeros(shape)
    for worker, records in enumerate(result.results):
        for repeat, label, active, n, run_seconds, run_serial in records:
            at = index[label], repeat, counts.index(active)
            samples[at] += n
            if worker == 0:  # the learner's clock times every run, start line to last barrier
                seconds[at], serial[at] = run_seconds, run_serial
    return {
        label: Scaling(load, np.array(counts), samples[i], seconds[i], serial[i])
        for i, (label, load) in enumerate(workloads.items())
    }
