"""DD-PPO: DPPO as decentralised data parallelism over ``torch.distributed`` (notebook 08).

**All-reduce.** ``W`` processes (*ranks*) each hold a vector ``x_r`` of the same length; after
``all_reduce(x, SUM)`` every rank holds ``Σ_r x_r``. In a *ring* all-reduce the vector is cut into
``W`` pieces: in ``W − 1`` reduce-scatter steps each rank passes one piece to its neighbour and adds
the piece it receives, after which each rank owns the full sum of one piece; ``W − 1`` all-gather
steps pass the summed pieces round the ring. Every rank sends (and receives) ``2(W − 1)/W · 4P``
bytes for ``P`` float32 values — at most twice the vector, however many ranks there are, and no
rank is a hot spot. (gloo picks ring or another schedule by size; the byte count is the ring's.)

**DD-PPO versus the parameter-server DPPO** (:mod:`rlteach.distributed.dppo`, Wijmans et al.
2020). There is no server. Every rank holds θ, collects its own rollout with its own environments,
and for each minibatch step computes its clipped gradient ``g_r = clip(∇L_r(θ))``; one all-reduce
gives every rank ``ḡ = (1/W) Σ_r g_r``, which it applies with its own Adam. All ranks start from the
same θ0 (broadcast from rank 0) and apply the same ``ḡ`` with the same optimizer state and step
size, so θ stays identical on every rank without ever being sent. Per update each rank moves
``≈ 2(W − 1)/W · 4P`` bytes; the parameter server receives ``W · 4P`` (the gradients) and sends
``W · 4P`` (θ back to every worker), so its link is the bottleneck as ``W`` grows.

**Lock-step.** A collective returns only when every rank has called it, so every rank must make
the same collective calls in the same order. The number of batches is therefore fixed before the
first one, ``B = ⌈(total_steps / W) / (N · T)⌉`` (:func:`batches_per_rank`), not decided by a
local step count; every batch takes ``epochs × minibatches`` steps, each rank splitting its own
batch into exactly ``minibatches`` pieces; and the step size is annealed by ``b / B``, the same on
every rank.

**Stragglers: DD-PPO's preemption.** With ``preempt_fraction = p > 0``, once ``⌈p · W⌉`` ranks have
collected their full rollout of ``T`` steps, the others stop early, after at least 25% of it
(DD-PPO used ``p = 0.6``; with ``W = 2`` that needs both ranks, so nothing is preempted: use 0.5).
A rank that finished counts itself with ``store.add`` on the process group's TCP store; the others
read the count every 4 vector steps. Batches then differ in size. DD-PPO averages the ranks'
gradients with equal weights — habitat-lab wraps the model in ``DistributedDataParallel``, whose
all-reduce takes the plain mean — so each sample of a short rollout weighs more. This module does
the same (weighting by sample counts would down-weight exactly the slow environments, which may be
the hard ones) and reports each rank's ``samples``, ``collected_steps`` and ``preempted``. Without
preemption, ``slow_worker_delay`` makes rank 0 a straggler that everyone waits for.

**What a run records** — the same :class:`~rlteach.history.History` as the local backend's, kept
by rank 0, which gathers every rank's report once per batch (``all_gather_object``): per rank and
batch an update row with ``worker``, ``env_steps`` (all ranks'), ``version`` (optimizer steps so
far), the losses, ``compute`` (collecting and differentiating), ``wait`` (the batch's first
all-reduce, where the ranks that finished collecting first wait for the last — rank 0's recording
and evaluating between batches shows up here too), ``communication`` (the other all-reduces),
``collected_steps``, ``samples`` and ``preempted``; each rank's episodes; evaluations of θ (rank 0,
every ``eval_interval`` s); and in ``meta`` the config, ``world_size``, ``versions``, ``seconds``,
``startup_seconds`` and ``parameter_digests``, one fingerprint of θ per rank: all equal.

**Launching.** On one machine::

    torchrun --standalone --nproc-per-node 2 -m rlteach.distributed.allreduce \\
        --total_steps 20000 --out runs/ddppo.json --save runs/ddppo.pt

From a notebook, :func:`rlteach.distributed.launcher.run_dppo_torchrun` runs that command, shows a
live plot and returns a :class:`rlteach.TrainResult`. On several machines, each runs
(``HOST:29400`` on one of them)::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        --rdzv-id ID -m rlteach.distributed.allreduce --total_steps 1000000

(``GLOO_SOCKET_IFNAME`` names the network interface gloo should use.) Every option is a field of
:class:`~rlteach.distributed.configs.DPPOConfig` (``--total_steps`` or ``--total-steps``) or of
:class:`~rlteach.distributed.configs.LaunchOptions`: ``--preempt_fraction``, ``--timeout``
(seconds a collective waits for the other ranks, default 60) and ``--env_fn module:callable`` (an
importable environment constructor instead of ``env_id``).

**When a rank fails.** Its traceback goes to the error file torchrun gives it (the entry point is
decorated with ``@record``); torchrun sees the exit, stops the other ranks and exits non-zero, and
:func:`~rlteach.distributed.launcher.run_dppo_torchrun` raises
:class:`~rlteach.distributed.WorkerError` naming that rank.
Without torchrun (ranks started by hand with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``) nobody stops the survivors: their next collective fails — at once when the
failed rank's process is gone, after ``--timeout`` seconds when it hangs — and raises
:class:`PeerFailure`, naming the rank that noticed and saying that another rank probably failed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from rlteach import checkpoint
from rlteach.algos.common import (
    Samples,
    TrainResult,
    annealed,
    build_agent,
    clipped_flat_gradient,
    one_thread,
    set_learning_rate,
)
from rlteach.algos.ppo import ADAM_EPS, gae_data, ppo_update, shuffled_minibatches
from rlteach.config import add_options, make_config, overrides_from
from rlteach.distributed.configs import DPPOConfig, LaunchOptions
from rlteach.distributed.driver import (
    RunRecorder,
    slow_down,
    steps_per_worker,
    worker_agent,
    worker_env_factories,
)
from rlteach.envs import EnvFn
from rlteach.history import Callback, History
from rlteach.nets import ActorCritic, flat_parameters, set_flat_parameters
from rlteach.progress import ProgressBar
from rlteach.rollout import Batch, Collector

MIN_ROLLOUT = 0.25  # DD-PPO: a straggler collects at least this share of T before it may stop
CHECK_EVERY = 4  # vector steps between a possible straggler's looks at the store
PUBLISH_EVERY = 1.0  # seconds between rank 0's writes of the history and checkpoint files


# --- the process group ------------------------------------------------------------------------


class PeerFailure(RuntimeError):
    """A collective or store call failed on this rank: another rank crashed or stalled."""


@dataclass
class Ranks:
    """This process among the ``world`` ranks of the process group, and the collectives DD-PPO
    uses. ``seed`` seeds this rank's environments, actions and minibatch shuffling; ``worker_id``
    (the rank) lets DPPO's worker helpers (``worker_agent``, ``slow_down``) take a ``Ranks`` as
    their ``ctx``. A failed call raises :class:`PeerFailure` naming this rank."""

    rank: int
    world: int
    seed: int
    store: dist.Store
    timeout: float

    @property
    def worker_id(self) -> int:
        return self.rank

    def sum_(self, tensor: torch.Tensor) -> None:
        """``tensor ← Σ_r tensor_r`` in place, on every rank: one all-reduce."""
        with self._collective("all_reduce"):
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def broadcast_(self, tensor: torch.Tensor) -> None:
        """Overwrite ``tensor`` with rank 0's, on every rank."""
        with self._collective("broadcast"):
            dist.broadcast(tensor, src=0)

    def gather(self, obj: object) -> list:
        """Every rank's picklable ``obj``, in rank order, on every rank."""
        out = [None] * self.world
        with self._collective("all_gather_object"):
            dist.all_gather_object(out, obj)
        return out

    def count(self, key: str, add: int = 0) -> int:
        """Add ``add`` to the store's counter ``key`` (0: only read it) and return its value."""
        with self._collective(f"store.add({key!r})"):
            return self.store.add(key, add)

    @contextlib.contextmanager
    def _collective(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        except RuntimeError as exc:
            raise PeerFailure(
                f"rank {self.rank}: {name} failed after {time.perf_counter() - start:.1f} s "
                f"(the process group's timeout is {self.timeout:g} s): another rank probably "
                f"failed or stalled, and its own error is the root cause ({exc})"
            ) from exc


def join_process_group(timeout: float, seed: int) -> Ranks:
    """Join the gloo process group that torchrun's environment describes (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) with ``timeout`` seconds per collective,
    and open a client of its TCP store under a prefix of this attempt (torchrun can restart a
    group). Rank ``r``'s seed is the ``r``-th of ``numpy.random.SeedSequence(seed).spawn(W)``."""
    limit = timedelta(seconds=timeout)
    dist.init_process_group(backend="gloo", timeout=limit)
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    client = dist.TCPStore(host, port, is_master=False, timeout=limit)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.PrefixStore(f"rlteach/dd-ppo/attempt-{attempt}/", client)
    rank, world = dist.get_rank(), dist.get_world_size()
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(world)]
    return Ranks(rank, world, seeds[rank], store, timeout)


# --- one averaged gradient step -----------------------------------------------------------------


def averaged_step(
    policy: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    max_grad_norm: float,
    ranks: Ranks,
) -> float:
    """One DD-PPO step on this rank; returns the seconds spent in the all-reduce.

    ``g_r = clip(∇_θ loss_r, max_grad_norm)`` on each rank ``r`` (0: no clipping; clipped before
    averaging, where the parameter-server DPPO clips the average, notebook 07 §4), then
    ``ḡ = (1/W) Σ_r g_r`` by one all-reduce of the flat ``[P]`` gradient, written back to
    ``p.grad`` and applied by this rank's ``optimizer``. ``ranks`` needs ``world`` and
    ``sum_(tensor)`` (see :class:`Ranks`).
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    flat = torch.from_numpy(clipped_flat_gradient(policy, max_grad_norm))
    start = time.perf_counter()
    ranks.sum_(flat)
    seconds = time.perf_counter() - start
    flat /= ranks.world
    load_gradient(policy, flat)
    optimizer.step()
    return seconds


def load_gradient(model: torch.nn.Module, flat: torch.Tensor) -> None:
    """Set each parameter's ``.grad`` to its slice of the flat ``[P]`` vector (the inverse of
    :func:`rlteach.nets.flat_gradient`)."""
    params = list(model.parameters())
    for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad = g.view_as(p)


class AllReduceStep:
    """DD-PPO's :data:`~rlteach.algos.common.Step`: :func:`averaged_step` on each minibatch's
    loss; keeps the seconds of every all-reduce in ``seconds``."""

    def __init__(
        self,
        policy: ActorCritic,
        optimizer: torch.optim.Optimizer,
        max_grad_norm: float,
        ranks: Ranks,
    ):
        self.policy, self.optimizer, self.ranks = policy, optimizer, ranks
        self.max_grad_norm = max_grad_norm
        self.seconds: list[float] = []

    def __call__(self, loss: torch.Tensor, minibatch: Samples) -> dict[str, float]:
        seconds = averaged_step(self.policy, self.optimizer, loss, self.max_grad_norm, self.ranks)
        self.seconds.append(seconds)
        return {}


def averaged_updates(
    policy: ActorCritic,
    optimizer: torch.optim.Optimizer,
    data: Samples,
    cfg: DPPOConfig,
    shuffle: torch.Generator,
    ranks: Ranks,
) -> tuple[dict[str, float], float, float]:
    """Single-process PPO's :func:`~rlteach.algos.ppo.ppo_update` on this rank's ``data`` (flat
    ``[M, ...]`` tensors) whose step is an all-reduce (:class:`AllReduceStep`): ``cfg.epochs``
    passes, each in exactly ``cfg.minibatches`` shuffled minibatches (``exact``: ``chunk`` can give
    fewer, and every rank must make the same ``E · K`` all-reduces whatever its ``M``). Returns
    the mean loss values, the seconds of the first all-reduce (``wait``: the ranks that finished
    collecting first wait there for the last) and of the others (``communication``)."""
    step = AllReduceStep(policy, optimizer, cfg.max_grad_norm, ranks)
    minibatches = shuffled_minibatches(data, cfg, shuffle, exact=True)
    stats = ppo_update(policy, data, cfg, minibatches, step, measure=False)
    return stats, step.seconds[0], sum(step.seconds[1:])


# --- collecting, with DD-PPO's preemption of stragglers -----------------------------------------


@dataclass
class Preemption:
    """DD-PPO's rule for stragglers: once ``⌈fraction · W⌉`` ranks have collected all
    ``rollout_steps`` of batch ``b``, the others stop after at least ``MIN_ROLLOUT`` of them.
    ``fraction = 0`` turns it off. Ranks count on the store's counter ``finished/<b>``."""

    ranks: Ranks
    fraction: float
    rollout_steps: int

    @property
    def enabled(self) -> bool:
        return self.fraction > 0

    @property
    def chunk(self) -> int:
        """Vector steps collected between two looks at the store."""
        return CHECK_EVERY if self.enabled else self.rollout_steps

    def should_stop(self, batch: int, taken: int) -> bool:
        """True when a rank that took ``taken`` steps of ``batch`` may and must stop."""
        if not self.enabled or taken < math.ceil(MIN_ROLLOUT * self.rollout_steps):
            return False
        return self.ranks.count(f"finished/{batch}") >= math.ceil(self.fraction * self.ranks.world)

    def finished(self, batch: int) -> None:
        """Count this rank among those that collected all of ``batch``."""
        if self.enabled:
            self.ranks.count(f"finished/{batch}", 1)


def collect_rollout(
    collector: Collector, cfg: DPPOConfig, ranks: Ranks, preemption: Preemption, batch: int
) -> Batch:
    """Up to ``T = cfg.rollout_steps`` vector steps with the current policy, in chunks of
    ``preemption.chunk`` steps; rank 0 sleeps ``cfg.slow_worker_delay`` per env step after each
    chunk (DPPO's ``slow_down``). Returns a :class:`Batch` of ``[T_r, N, ...]``, ``T_r ≤ T``
    (shorter when preempted)."""
    chunks: list[Batch] = []
    taken = 0
    while taken < cfg.rollout_steps:
        chunk = collector.collect(min(preemption.chunk, cfg.rollout_steps - taken))
        slow_down(ranks, cfg, chunk)
        chunks.append(chunk)
        taken += len(chunk.valid)
        if taken < cfg.rollout_steps and preemption.should_stop(batch, taken):
            break
    if taken == cfg.rollout_steps:
        preemption.finished(batch)
    return concatenate(chunks)


def concatenate(chunks: list[Batch]) -> Batch:
    """Consecutive collections of one collector as one batch: ``[T_1, N, ...] … [T_k, N, ...]``
    → ``[ΣT_j, N, ...]``, the same as one ``collect(ΣT_j)`` (each chunk's last ``next_values`` is V
    of the observation the next chunk starts from)."""
    if len(chunks) == 1:
        return chunks[0]
    tensors = {
        f.name: torch.cat([getattr(chunk, f.name) for chunk in chunks])
        for f in fields(Batch)
        if isinstance(getattr(chunks[0], f.name), torch.Tensor)
    }
    return Batch(
        **tensors,
        episode_returns=[r for chunk in chunks for r in chunk.episode_returns],
        episode_lengths=[n for chunk in chunks for n in chunk.episode_lengths],
        env_steps=chunks[-1].env_steps,
    )


# --- one rank's training ------------------------------------------------------------------------


def batches_per_rank(cfg: DPPOConfig) -> int:
    """``B = ⌈(total_steps / W) / (N · T)⌉``, the same on every rank and fixed before the first
    batch: collectives are lock-step, so no rank may stop on its own count of env steps."""
    return -(-steps_per_worker(cfg) // (cfg.envs_per_worker * cfg.rollout_steps))


@dataclass
class Learner:
    """One rank's half of DD-PPO: its policy and Adam, its collector and minibatch shuffle."""

    cfg: DPPOConfig
    ranks: Ranks
    policy: ActorCritic
    collector: Collector
    preemption: Preemption

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.cfg.lr, eps=ADAM_EPS)
        self.shuffle = torch.Generator().manual_seed(self.ranks.seed)

    def train_on_batch(self, batch: int, batches: int) -> dict:
        """Collect batch ``batch`` of ``batches`` and take its averaged steps; return this rank's
        report: its env steps so far, finished episodes, losses and timings."""
        cfg = self.cfg
        set_learning_rate(self.optimizer, annealed(cfg.lr, batch / batches, cfg.anneal_lr))
        start = time.perf_counter()
        rollout = collect_rollout(self.collector, cfg, self.ranks, self.preemption, batch)
        data = gae_data(rollout, cfg)
        stats, wait, communication = averaged_updates(
            self.policy, self.optimizer, data, cfg, self.shuffle, self.ranks
        )
        return dict(
            env_steps=self.collector.env_steps,
            returns=rollout.episode_returns,
            lengths=rollout.episode_lengths,
            version=(batch + 1) * cfg.epochs * cfg.minibatches,
            staleness=0,  # every gradient is computed at the θ it is applied to
            applied=True,
            compute=time.perf_counter() - start - wait - communication,
            wait=wait,
            communication=communication,
            collected_steps=len(rollout.valid),
            samples=len(data["obs"]),
            preempted=len(rollout.valid) < cfg.rollout_steps,
            **stats,
        )


def rank_agent(
    cfg: DPPOConfig, ranks: Ranks, env_fn: EnvFn | None
) -> tuple[ActorCritic, Collector, ActorCritic]:
    """This rank's environments (with ``env_delay``/``env_variation`` as DPPO's workers get them),
    a collector seeded with ``ranks.seed``, and its policy set to θ0 — built on every rank the way
    ``build_agent`` builds it from ``cfg.seed``, then broadcast from rank 0 so that all ranks
    certainly start equal. Also returns θ0's own copy, on which rank 0 evaluates θ."""
    policy, collector = worker_agent(ranks, cfg, worker_env_factories(cfg, env_fn))
    initial = build_agent(cfg.env_id, 1, cfg.seed, cfg.hidden, env_fn)
    initial.close()
    theta = torch.from_numpy(flat_parameters(initial.policy))
    ranks.broadcast_(theta)
    set_flat_parameters(policy, theta.numpy())
    return policy, collector, initial.policy


def parameter_digest(policy: torch.nn.Module) -> str:
    """A fingerprint of θ's exact bytes: equal on two ranks iff their θ are identical."""
    return hashlib.sha256(flat_parameters(policy).tobytes()).hexdigest()[:16]


class OwnParameters:
    """Where :class:`RunRecorder` reads the global θ from (``read_params()``): on DD-PPO's rank 0
    that is the rank's own policy, since every rank holds the same θ."""

    def __init__(self, policy: ActorCritic):
        self.policy, self.version = policy, 0

    def read_params(self) -> tuple[np.ndarray, int]:
        return flat_parameters(self.policy), self.version


class RankZeroLog:
    """Rank 0's record of the run: each rank's per-batch report becomes History rows through the
    local backend's :class:`RunRecorder` (which also evaluates θ every ``cfg.eval_interval`` s and
    calls ``callback``), and the history (``out``) and checkpoint (``save_to``) files are
    rewritten at most every ``PUBLISH_EVERY`` seconds, so a parent process can follow the run."""

    def __init__(
        self,
        result: TrainResult,
        eval_policy: ActorCritic,
        out: str | os.PathLike[str] | None,
        save_to: str | os.PathLike[str] | None,
        callback: Callback | None,
    ):
        self.result, self.history_file, self.checkpoint_file = result, out, save_to
        self.theta = OwnParameters(result.policy)
        self.recorder = RunRecorder(result.config, result.history, eval_policy, callback)
        self.recorder.cluster = self.theta
        self.published = -math.inf

    def record(self, reports: list[dict]) -> None:
        self.theta.version = reports[0]["version"]
        for worker, report in enumerate(reports):
            self.recorder(worker, report)
        self.publish()

    def publish(self, force: bool = False) -> None:
        """Write the files (atomically) unless they were written less than a second ago."""
        if not force and time.perf_counter() - self.published < PUBLISH_EVERY:
            return
        if self.history_file:
            self.result.history.save(self.history_file)
        if self.checkpoint_file:
            checkpoint.save(self.result, self.checkpoint_file)
        self.published = time.perf_counter()


def dppo_allreduce(
    cfg: DPPOConfig,
    ranks: Ranks,
    preempt_fraction: float = 0.0,
    env_fn: str | None = None,
    out: str | os.PathLike[str] | None = None,
    save_to: str | os.PathLike[str] | None = None,
    callback: Callback | None = None,
    started: float | None = None,
) -> TrainResult | None:
    """DD-PPO on this rank of the process group; the result on rank 0, None on the others.

    Each of the ``B`` batches (:func:`batches_per_rank`): collect a fresh rollout, compute GAE,
    take ``epochs × minibatches`` averaged gradient steps (:func:`averaged_step`), then one
    ``all_gather_object`` brings every rank's report to rank 0, which records it
    (:class:`RankZeroLog`). ``env_fn`` (``"module:callable"``) replaces ``cfg.env_id``; ``started``
    (a ``time.perf_counter()``) is when this process started, for ``startup_seconds``.
    """
    meta = {
        "algorithm": "dppo",
        "backend": "torchrun",
        "world_size": ranks.world,
        "workers_requested": cfg.workers,
        "preempt_fraction": preempt_fraction,
        "collective_timeout": ranks.timeout,
        "env_fn": env_fn,
    }
    cfg = replace(cfg, workers=ranks.world)  # the process group decides how many workers there are
    policy, collector, eval_policy = rank_agent(cfg, ranks, import_env_fn(env_fn))
    learner = Learner(
        cfg, ranks, policy, collector, Preemption(ranks, preempt_fraction, cfg.rollout_steps)
    )
    log = None
    if ranks.rank == 0:
        history = History(start_time=started or time.perf_counter(), meta=meta)
        history.meta["config"] = asdict(cfg)
        log = RankZeroLog(TrainResult(policy, history, cfg), eval_policy, out, save_to, callback)
        log.publish(force=True)  # θ0: what an interrupt during the first batch returns
    batches = batches_per_rank(cfg)
    for batch in range(batches):
        reports = ranks.gather(learner.train_on_batch(batch, batches))
        if log is not None:
            log.record(reports)
    digests = ranks.gather(parameter_digest(policy))
    collector.envs.close()
    if log is None:
        return None
    log.result.history.meta.update(
        versions=batches * cfg.epochs * cfg.minibatches,
        seconds=log.result.history.elapsed(),
        parameter_digests=digests,
    )
    log.publish(force=True)
    return log.result


def import_env_fn(name: str | None) -> EnvFn | None:
    """The callable that ``"package.module:attribute"`` names, or None."""
    if name is None:
        return None
    module, _, attribute = name.partition(":")
    target: Any = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


# --- command line: every rank's entry point -------------------------------------------------------


def check_launch(cfg: DPPOConfig, launch: LaunchOptions) -> None:
    """Raise ``ValueError`` unless ``cfg`` suits DD-PPO launched with ``launch`` (both validated
    already, by :func:`rlteach.config.make_config`)."""
    if (cfg.mode, cfg.average, cfg.drop_stragglers) != ("sync", "gradients", 0):
        raise ValueError(
            f"DD-PPO averages every minibatch gradient synchronously: mode must be 'sync', "
            f"average 'gradients' and drop_stragglers 0, got {cfg.mode!r}, {cfg.average!r} and "
            f"{cfg.drop_stragglers} (for stragglers use preempt_fraction)"
        )
    shortest = cfg.rollout_steps
    if launch.preempt_fraction:
        shortest = math.ceil(MIN_ROLLOUT * cfg.rollout_steps)
    if shortest * cfg.envs_per_worker < 2 * cfg.minibatches:
        raise ValueError(
            f"DPPOConfig.minibatches = {cfg.minibatches} is invalid: a rank's shortest batch has "
            f"{shortest} × {cfg.envs_per_worker} steps, and at least half of them (the others may "
            "be autoreset steps) must fill every minibatch on every rank"
        )


def rank_parser() -> argparse.ArgumentParser:
    """Every rank's options: each field of :class:`DPPOConfig` and of :class:`LaunchOptions`
    (:func:`rlteach.config.add_options`, as ``python -m rlteach dppo`` takes them), and the files
    rank 0 writes."""
    parser = argparse.ArgumentParser(
        prog="torchrun ... -m rlteach.distributed.allreduce",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
    )
    add_options(parser, DPPOConfig)
    add_options(parser, LaunchOptions)
    parser.add_argument("--out", default=None, help="write the history as JSON to this path")
    parser.add_argument("--save", default=None, help="write a checkpoint to this path")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def parse_arguments(argv: list[str]) -> tuple[DPPOConfig, argparse.Namespace]:
    """The validated config and the other options (:func:`rank_parser`; names with ``_`` or
    ``-``), the launch options filled in with their defaults. A bad value raises ``ValueError``."""
    options = rank_parser().parse_args([dashed(arg) for arg in argv])
    cfg = make_config(DPPOConfig, **overrides_from(options, DPPOConfig))
    launch = make_config(LaunchOptions, **overrides_from(options, LaunchOptions))
    check_launch(cfg, launch)
    for name, value in asdict(launch).items():
        setattr(options, name, value)
    return cfg, options


def dashed(arg: str) -> str:
    """``--total_steps=5`` → ``--total-steps=5``: option names in either spelling."""
    if not arg.startswith("--"):
        return arg
    name, equals, value = arg.partition("=")
    return name.replace("_", "-") + equals + value


@record
def main(argv: list[str] | None = None) -> int:
    """Every rank's entry point: ``torchrun ... -m rlteach.distributed.allreduce [options]``."""
    started = time.perf_counter()
    try:
        cfg, options = parse_arguments(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    one_thread()
    ranks = join_process_group(options.timeout, cfg.seed)
    bar = ProgressBar(cfg.total_steps, enabled=ranks.rank == 0 and not options.quiet)
    try:
        result = dppo_allreduce(
            cfg,
            ranks,
            preempt_fraction=options.preempt_fraction,
            env_fn=options.env_fn,
            out=options.out,
            save_to=options.save,
            callback=bar,
            started=started,
        )
    finally:
        dist.destroy_process_group()
    bar.close()
    if result is not None and not options.quiet:
        h = result.history
        print(
            f"DD-PPO on {h.meta['world_size']} ranks: {h.updates[-1]['env_steps']:,} env steps, "
            f"{len(h.episodes):,} episodes, last-20 mean return {h.recent_mean_return():.1f}, "
            f"{h.meta['seconds']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    code = main()  # None after --help
    # Leave without finalising the interpreter. gloo's worker threads outlive
    # destroy_process_group() and release a collective's tensors just after the caller saw it
    # complete; a release that needs the GIL while the interpreter finalises aborts the process
    # (SIGABRT, "terminate called without an active exception": 13 of 87 runs here before this
    # line; pytorch/pytorch#179291). Every file is written and closed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
