"""What DA3C and DPPO share around their worker loops: building each worker's environments and
agent, the notebook-side record of the run, and the run itself on the parameter server.

A worker's report after each push is a dict with its ``env_steps`` so far, the ``returns`` and
``lengths`` of episodes it finished, the server ``version`` and the push's ``staleness``, its losses,
and the round's timings split into ``compute`` (collecting and differentiating), ``communication``
(copying θ in and the push out) and ``wait`` (blocked on the server, e.g. for a sync round).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import ArrayLike

from rlteach.algos.common import TrainResult, build_agent, last_callback, one_thread
from rlteach.algos.ppo import ADAM_EPS
from rlteach.distributed.configs import DA3CConfig, DPPOConfig, WorkerConfig
from rlteach.distributed.runtime import Cluster, ClusterBase
from rlteach.distributed.server import ServerConfig
from rlteach.distributed.worker import SENT_AT, WorkerContext, WorkerIdentity
from rlteach.envs import EnvFn, env_factory, make_vector_env, physics_variations
from rlteach.history import Callback, History, StopAtReturn
from rlteach.nets import ActorCritic, alias_parameters, flat_parameters, set_flat_parameters
from rlteach.rollout import Batch, Collector, evaluate


def worker_env_factories(cfg: WorkerConfig, env_fn: EnvFn | None = None) -> list[EnvFn | None]:
    """One environment constructor per worker, or ``None`` entries for the fast vectorised env.

    ``cfg.env_delay`` adds a per-step delay of ``cfg.env_delay_kind`` (sleep or busy loop);
    ``cfg.env_variation > 0`` gives every worker its own CartPole physics
    (:func:`rlteach.envs.physics_variations`); ``env_fn`` replaces ``cfg.env_id``.
    """
    if env_fn is not None:
        return [env_fn] * cfg.workers
    delay: dict[str, Any] = dict(delay=cfg.env_delay, delay_kind=cfg.env_delay_kind)
    if cfg.env_variation > 0:
        physics = physics_variations(cfg.env_id, cfg.workers, cfg.seed, cfg.env_variation)
        return [env_factory(cfg.env_id, physics=p, **delay) for p in physics]
    if cfg.env_delay > 0:
        return [env_factory(cfg.env_id, **delay)] * cfg.workers
    return [None] * cfg.workers


def worker_agent(
    ctx: WorkerIdentity, cfg: WorkerConfig, factories: list[EnvFn | None]
) -> tuple[ActorCritic, Collector]:
    """Worker side: this worker's environments, a policy of the server's architecture, and a
    collector seeded with ``ctx.seed``."""
    one_thread()
    envs = make_vector_env(cfg.env_id, cfg.envs_per_worker, env_fn=factories[ctx.worker_id])
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space, cfg.hidden)
    _ALIASED[policy] = alias_parameters(policy)  # a pull then loads θ in one copy
    return policy, Collector(envs, policy, seed=ctx.seed)


_ALIASED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # policy → its flat θ


def aliased_parameters(policy: ActorCritic) -> np.ndarray:
    """The flat θ ``[P]`` that the parameters of a policy made by :func:`worker_agent` are views
    of: writing into it sets them."""
    return _ALIASED[policy]


def pull_into(ctx: WorkerContext, policy: ActorCritic) -> tuple[int, float]:
    """Load the newest global θ into ``policy``; return its version and the seconds it took.
    A policy made by :func:`worker_agent` gets θ copied straight into the flat vector its
    parameters are views of (:func:`rlteach.nets.alias_parameters`)."""
    start = time.perf_counter()
    flat = _ALIASED.get(policy)
    if flat is None:
        theta, version = ctx.pull()
        set_flat_parameters(policy, theta)
    else:
        _, version = ctx.pull(out=flat)
    return version, time.perf_counter() - start


def slow_down(ctx: WorkerIdentity, cfg: DPPOConfig, batch: Batch) -> None:
    """Worker 0 sleeps ``slow_worker_delay`` per env step it took: a deliberately slow node."""
    if ctx.worker_id == 0 and cfg.slow_worker_delay > 0:
        time.sleep(cfg.slow_worker_delay * int(batch.valid.sum()))


def worker_optimizer(
    cfg: DA3CConfig | DPPOConfig, policy: ActorCritic
) -> torch.optim.Optimizer | None:
    """A worker's own Adam (ε = ``ADAM_EPS``, as single-process PPO and A2C) when it averages
    parameters and so updates θ itself; ``None`` with gradient averaging, where only the server
    steps. Not built when unused: a process's first ``torch.optim`` optimizer imports
    ``torch._dynamo``, about 1.7 s of every worker's start-up."""
    if cfg.average != "parameters":
        return None
    return torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=ADAM_EPS)


def steps_per_worker(cfg: WorkerConfig) -> int:
    """Each worker's share of ``cfg.total_steps``."""
    return -(-cfg.total_steps // cfg.workers)


class ParameterSource(Protocol):
    """Where the recorder reads the global θ to evaluate it: a cluster, or DD-PPO's rank 0."""

    def read_params(self) -> tuple[np.ndarray, int]: ...


class RunRecorder:
    """Parent side: turns worker reports into :class:`History` rows, evaluates the global policy
    every ``cfg.eval_interval`` seconds (and, through :func:`run_on_parameter_server`, once more
    at the end), and calls the user's ``callback(history)``."""

    def __init__(
        self,
        cfg: WorkerConfig,
        history: History,
        policy: ActorCritic,
        callback: Callback | None = None,
    ):
        self.cfg, self.history, self.policy, self.callback = cfg, history, policy, callback
        self.worker_steps = np.zeros(cfg.workers, dtype=np.int64)
        self.cluster: ParameterSource | None = None  # a Cluster or RayCluster, once started
        self.last_eval = time.perf_counter()

    @property
    def env_steps(self) -> int:
        return int(self.worker_steps.sum())

    def __call__(self, worker: int, report: dict) -> None:
        report = self.record_episodes(worker, report)
        self.history.log_update(worker=worker, env_steps=self.env_steps, **report)
        self.after_report()

    def record_episodes(self, worker: int, report: dict) -> dict:
        """Log the episodes a report brings and the worker's env steps; return the rest, with
        its ``wall_time`` (:meth:`sent_time`)."""
        report = dict(report)
        wall_time = self.sent_time(report.pop(SENT_AT, None))
        # start-up (spawning processes, importing torch) ends with the first report
        self.history.meta.setdefault("startup_seconds", wall_time)
        self.worker_steps[worker] = report.pop("env_steps")
        returns, lengths = report.pop("returns"), report.pop("lengths")
        self.history.log_episodes(
            returns, lengths, self.env_steps, wall_time=wall_time, worker=worker
        )
        return {**report, "wall_time": wall_time}

    def sent_time(self, sent_at: float | None) -> float:
        """When a report was sent, in seconds since the run started: now, less the time it waited
        since ``sent_at`` (the worker's ``time.time()``; clamped to [0, now], against clocks of
        different machines). While this process draws a live plot or evaluates θ, reports wait
        in the queue: dated when read, they would pile up at one instant. Unstamped reports
        (DD-PPO's rank 0 records its own) are dated now."""
        now = self.history.elapsed()
        if sent_at is None:
            return now
        return now - min(max(time.time() - sent_at, 0.0), now)

    def after_report(self) -> None:
        """Evaluate the global θ when ``eval_interval`` has passed; call the user's callback."""
        if (
            self.cfg.eval_interval
            and time.perf_counter() - self.last_eval >= self.cfg.eval_interval
        ):
            self.evaluate_global()
        if self.callback is not None:
            self.callback(self.history)

    def evaluate_global(self) -> None:
        """Greedy return of the server's current θ on the plain task (no delay, standard physics)."""
        if self.cluster is not None:
            self.evaluate(*self.cluster.read_params())

    def evaluate(self, theta: np.ndarray, version: int) -> None:
        """Record the greedy return of ``theta`` ``[P]`` (server version ``version``)."""
        set_flat_parameters(self.policy, theta)
        returns = evaluate(
            self.policy, self.cfg.env_id, episodes=self.cfg.eval_episodes, seed=10_000
        )
        self.history.evaluations.append(
            {
                "env_steps": self.env_steps,
                "wall_time": self.history.elapsed(),
                "version": version,
                "return": float(np.mean(returns)),
            }
        )
        self.last_eval = time.perf_counter()


BACKENDS = ("local", "ray")  # where the parameter server and its workers can run


def check_backend(backend: str, allowed: tuple = BACKENDS) -> None:
    """``ValueError`` naming ``backend`` and the ``allowed`` ones unless it is one of them."""
    if backend not in allowed:
        raise ValueError(
            f"backend = {backend!r} is invalid: must be one of {', '.join(map(repr, allowed))}"
        )


def parameter_server_cluster(backend: str, address: str | None, **arguments: Any) -> ClusterBase:
    """A :class:`Cluster` (``backend="local"``: processes on this machine) or a
    :class:`~rlteach.distributed.ray_backend.RayCluster` (``"ray"``), from the same arguments."""
    check_backend(backend)
    if backend == "local":
        if address is not None:
            raise ValueError(f"address = {address!r} needs backend='ray'; 'local' has no address")
        return Cluster(**arguments)
    from rlteach.distributed.ray_backend import RayCluster

    return RayCluster(address=address, **arguments)


def run_on_parameter_server(
    algorithm: str,
    worker_fn: Callable[..., Any],
    cfg: WorkerConfig,
    server: ServerConfig | None,
    callback: Callback | None = None,
    env_fn: EnvFn | None = None,
    backend: str = "local",
    address: str | None = None,
    recorder_class: type[RunRecorder] = RunRecorder,
    **cluster_options: Any,
) -> TrainResult:
    """Start the server and ``cfg.workers`` workers running ``worker_fn(ctx, cfg, factories)``
    on ``backend`` (``"local"`` or ``"ray"``, see :func:`parameter_server_cluster`), record the
    run, and return the global policy as a :class:`TrainResult`.

    ``server=None`` starts no server (Hogwild A3C, IMPALA: local processes only);
    ``recorder_class`` handles the reports (IMPALA's is its learner); ``cluster_options`` go to
    :class:`~rlteach.distributed.runtime.Cluster`.
    A worker failure raises :class:`rlteach.distributed.WorkerError`; a kernel interrupt returns
    the partial result with ``interrupted=True``. Every process has ended when this returns.
    """
    one_thread()
    factories = worker_env_factories(cfg, env_fn)
    agent = build_agent(cfg.env_id, 1, cfg.seed, cfg.hidden, env_fn)  # θ0, seeded like train_*
    agent.close()
    policy = agent.policy
    history = History(
        meta={
            "algorithm": algorithm,
            "backend": backend,
            "config": asdict(cfg),
            "server": None if server is None else asdict(server),
        }
    )
    recorder = recorder_class(cfg, history, policy, callback)
    if server is None:
        check_backend(backend, ("local",))
        cluster_options["serve"] = False
    with parameter_server_cluster(
        backend,
        address,
        worker_fn=worker_fn,
        workers=cfg.workers,
        params=flat_parameters(policy),
        server=server,
        seed=cfg.seed,
        args=(cfg, factories),
        **cluster_options,
    ) as cluster:
        recorder.cluster = cluster
        outcome = cluster.run(on_report=recorder)
    with torch.no_grad():
        set_flat_parameters(policy, outcome.params)
    history.meta.update(
        versions=outcome.version,
        seconds=outcome.seconds,
        pushes_applied=outcome.server.get("applied", 0),
        pushes_dropped=outcome.server.get("dropped", 0),
        dropped_by_worker=np.bincount(
            [w for w, _, _, applied in outcome.server.get("pushes", []) if not applied],
            minlength=cfg.workers,
        ).tolist(),
        staleness=outcome.staleness.tolist(),
    )
    if cfg.eval_interval:  # the final θ too: a run shorter than eval_interval still gets one
        recorder.evaluate(outcome.params, outcome.version)
    last_callback(callback, history)
    return TrainResult(policy, history, cfg, interrupted=outcome.interrupted)


# ----------------------------------------------------------------------------- scaling with W
# Notebook 07 and benchmarks/distributed_cartpole.py: does a run get faster with more workers?


def worker_scaling(
    run: Callable[..., TrainResult],
    workers: tuple[int, ...],
    seeds: Iterable[int],
    *,
    target: float,
    delay: float,
    kind: str = "sleep",
    total_envs: int | None = None,
    **overrides: Any,
) -> dict:
    """Seconds and env steps until a run first reaches ``target``, for each worker count.

    For each ``W`` in ``workers`` and each seed ``s``, calls ``run(workers=W, seed=s,
    env_delay=delay, env_delay_kind=kind, eval_interval=0, callback=StopAtReturn(target),
    **overrides)`` (``run``: :func:`rlteach.run_dppo` or :func:`rlteach.run_da3c`); with
    ``total_envs = N`` each worker steps ``N / W`` environments, so every W collects the same
    global batch (``N`` must be a multiple of every W). The run stops once the mean of the last 20
    training returns reaches ``target`` (what follows would not change the numbers). Seeds are the
    outer loop, so a change of load hits every W alike.

    Returns ``{"workers": [W], "seconds": [S, W], "env_steps": [S, W], "first_report": [S, W]}``
    (arrays over seeds × worker counts; NaN where a run never reached ``target``): seconds from
    the call to the episode at which the mean reached it, its env steps, and the seconds to the
    first worker report (process start-up plus one batch)."""
    if total_envs is not None and any(total_envs % w for w in workers):
        raise ValueError(f"total_envs = {total_envs} must be a multiple of every W in {workers}")
    seeds = list(seeds)
    shape = (len(seeds), len(workers))
    table = {key: np.full(shape, np.nan) for key in ("seconds", "env_steps", "first_report")}
    for i, seed in enumerate(seeds):
        for j, w in enumerate(workers):
            split = {} if total_envs is None else {"envs_per_worker": total_envs // w}
            history = run(
                workers=w,
                seed=seed,
                env_delay=delay,
                env_delay_kind=kind,
                eval_interval=0.0,
                callback=StopAtReturn(target),
                **split,
                **overrides,
            ).history
            reached = history.first_reaching(target)
            if reached is not None:
                table["seconds"][i, j] = reached["wall_time"]
                table["env_steps"][i, j] = reached["env_steps"]
            if history.updates:
                table["first_report"][i, j] = history.updates[0]["wall_time"]
    return {"workers": list(workers), **table}


def simulator_law(
    seconds_one: float,
    env_steps: float,
    step_seconds: float,
    workers: ArrayLike,
    cores: int,
    kind: str,
) -> np.ndarray:
    """Predicted seconds to the target with ``W`` workers, from the 1-worker run: its
    ``seconds_one``, of which ``env_steps × step_seconds`` waited on the simulator (
    :func:`rlteach.envs.delay_seconds`). The rest (the network, the updates, start-up) is taken
    as fixed, and the simulator part divides among the workers that can run it at once: all ``W``
    for a sleeping simulator, at most ``cores`` for a computing one,

        t(W) = t(1) − N c + N c / W_eff,   W_eff = W (sleep) or min(W, cores) (busy),

    with the same env steps ``N`` for every W (the global batch is fixed). Returns ``[len(workers)]``
    seconds."""
    simulated = env_steps * step_seconds
    w = np.asarray(workers, dtype=float)
    effective = w if kind == "sleep" else np.minimum(w, cores)
    return seconds_one - simulated + simulated / effective
