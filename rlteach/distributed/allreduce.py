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

From a notebook, :func:`run_dppo_torchrun` runs that command, shows a live plot and returns a
:class:`rlteach.TrainResult`. On several machines, each runs (``HOST:29400`` on one of them)::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        --rdzv-id ID -m rlteach.distributed.allreduce --total_steps 1000000

(``GLOO_SOCKET_IFNAME`` names the network interface gloo should use.) Every option is a field of
:class:`~rlteach.distributed.dppo.DPPOConfig` (``--total_steps`` or ``--total-steps``), plus
``--preempt_fraction``, ``--timeout`` (seconds a collective waits for the other ranks, default 60)
and ``--env_fn module:callable`` (an importable environment constructor instead of ``env_id``).

**When a rank fails.** Its traceback goes to the error file torchrun gives it (the entry point is
decorated with ``@record``); torchrun sees the exit, stops the other ranks and exits non-zero, and
:func:`run_dppo_torchrun` raises :class:`~rlteach.distributed.WorkerError` naming that rank.
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
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from rlteach import checkpoint
from rlteach.__main__ import ProgressBar, build_parser
from rlteach.algos.common import (
    TrainResult,
    annealed,
    build_agent,
    one_thread,
    set_learning_rate,
)
from rlteach.algos.ppo import gae_data, ppo_loss
from rlteach.config import make_config
from rlteach.distributed.dppo import DPPOConfig, slow_down
from rlteach.distributed.driver import (
    RunRecorder,
    steps_per_worker,
    worker_agent,
    worker_env_factories,
)
from rlteach.distributed.runtime import WorkerError
from rlteach.history import History
from rlteach.nets import ActorCritic, flat_gradient, flat_parameters, set_flat_parameters
from rlteach.rollout import Batch, Collector

COLLECTIVE_TIMEOUT = 60.0  # default seconds a collective waits for the other ranks
MIN_ROLLOUT = 0.25  # DD-PPO: a straggler collects at least this share of T before it may stop
CHECK_EVERY = 4  # vector steps between a possible straggler's looks at the store
PUBLISH_EVERY = 1.0  # seconds between rank 0's writes of the history and checkpoint files
POLL = 0.2  # seconds between the launcher's looks at torchrun and the history file
STOP_GRACE = 10.0  # seconds torchrun gets to stop its ranks after SIGTERM, before SIGKILL
RANK_SHUTDOWN = 5  # seconds torchrun gives a rank after SIGTERM before it SIGKILLs it
LOOPBACK = "lo0" if sys.platform == "darwin" else "lo"


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

    def gather(self, obj) -> list:
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
    def _collective(self, name: str):
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
    policy: torch.nn.Module, optimizer: torch.optim.Optimizer, loss, max_grad_norm: float, ranks
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
    limit = max_grad_norm if max_grad_norm > 0 else math.inf
    torch.nn.utils.clip_grad_norm_(policy.parameters(), limit)
    flat = torch.from_numpy(flat_gradient(policy))
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


def averaged_updates(
    policy, optimizer, data: dict, cfg: DPPOConfig, shuffle: torch.Generator, ranks: Ranks
) -> tuple[dict, float, float]:
    """``cfg.epochs`` passes over this rank's ``data`` (flat ``[M, ...]`` tensors), each in exactly
    ``cfg.minibatches`` shuffled minibatches (``tensor_split``: ``chunk`` can give fewer, and every
    rank must make the same ``E · K`` all-reduces whatever its ``M``), one :func:`averaged_step`
    each. Returns the mean loss values, the seconds of the first all-reduce (``wait``: the ranks
    that finished collecting first wait there for the last) and of the others (``communication``).
    """
    totals: dict[str, float] = {}
    seconds: list[float] = []
    for _ in range(cfg.epochs):
        order = torch.randperm(len(data["obs"]), generator=shuffle)
        for idx in order.tensor_split(cfg.minibatches):
            loss, stats = ppo_loss(policy, {k: v[idx] for k, v in data.items()}, cfg)
            seconds.append(averaged_step(policy, optimizer, loss, cfg.max_grad_norm, ranks))
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
    means = {key: value / len(seconds) for key, value in totals.items()}
    return means, seconds[0], sum(seconds[1:])


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

    def __post_init__(self):
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.cfg.lr, eps=1e-5)
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


def rank_agent(cfg: DPPOConfig, ranks: Ranks, env_fn) -> tuple[ActorCritic, Collector, ActorCritic]:
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

    def __init__(self, result: TrainResult, eval_policy: ActorCritic, out, save_to, callback):
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
    out=None,
    save_to=None,
    callback=None,
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


def import_env_fn(name: str | None):
    """The callable that ``"package.module:attribute"`` names, or None."""
    if name is None:
        return None
    module, _, attribute = name.partition(":")
    target = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


# --- command line: every rank's entry point -------------------------------------------------------


def check_launch(cfg: DPPOConfig, preempt_fraction, timeout, env_fn) -> None:
    """Raise ``ValueError`` unless the DD-PPO options are valid and ``cfg`` suits DD-PPO."""
    if isinstance(preempt_fraction, bool) or not isinstance(preempt_fraction, (int, float)):
        raise ValueError(f"preempt_fraction = {preempt_fraction!r} is invalid: must be a number")
    if not 0 <= preempt_fraction <= 1:
        raise ValueError(
            f"preempt_fraction = {preempt_fraction!r} is invalid: must be in [0, 1] "
            "(0: off; DD-PPO used 0.6)"
        )
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout = {timeout!r} is invalid: must be a number of seconds > 0")
    if env_fn is not None and not (
        isinstance(env_fn, str) and re.fullmatch(r"[\w.]+:[\w.]+", env_fn)
    ):
        raise ValueError(
            f"env_fn = {env_fn!r} is invalid: must be an importable 'module:callable' name "
            "(every rank is a fresh interpreter that imports it)"
        )
    if (cfg.mode, cfg.average, cfg.drop_stragglers) != ("sync", "gradients", 0):
        raise ValueError(
            f"DD-PPO averages every minibatch gradient synchronously: mode must be 'sync', "
            f"average 'gradients' and drop_stragglers 0, got {cfg.mode!r}, {cfg.average!r} and "
            f"{cfg.drop_stragglers} (for stragglers use preempt_fraction)"
        )
    shortest = math.ceil(MIN_ROLLOUT * cfg.rollout_steps) if preempt_fraction else cfg.rollout_steps
    if shortest * cfg.envs_per_worker < 2 * cfg.minibatches:
        raise ValueError(
            f"DPPOConfig.minibatches = {cfg.minibatches} is invalid: a rank's shortest batch has "
            f"{shortest} × {cfg.envs_per_worker} steps, and at least half of them (the others may "
            "be autoreset steps) must fill every minibatch on every rank"
        )


def launch_parser() -> argparse.ArgumentParser:
    """The options DD-PPO adds to DPPOConfig's fields."""
    parser = argparse.ArgumentParser(
        prog="rlteach.distributed.allreduce",
        description=__doc__.split("\n\n")[0],
        add_help=False,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--preempt-fraction",
        type=float,
        default=0.0,
        metavar="VALUE",
        help="stop stragglers once this fraction of ranks has collected its rollout (0: off)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=COLLECTIVE_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a collective waits for the other ranks (default: {COLLECTIVE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--env-fn",
        default=None,
        metavar="MODULE:CALLABLE",
        help="an importable environment constructor, used instead of env_id",
    )
    return parser


def parse_arguments(argv: list[str]) -> tuple[DPPOConfig, argparse.Namespace]:
    """The validated config and the other options: every DPPOConfig field as ``python -m rlteach
    dppo`` takes it (its parser is reused), ``--out``, ``--save``, ``--quiet`` and the options of
    :func:`launch_parser`; names with ``_`` or ``-``. A bad value raises ``ValueError``."""
    argv = [dashed(arg) for arg in argv]
    if "-h" in argv or "--help" in argv:
        launch_parser().print_help()
        print("\nand every option of `python -m rlteach dppo`:\n")
    options, rest = launch_parser().parse_known_args(argv)
    fields_and_files = vars(build_parser().parse_args(["dppo", *rest]))
    for name in ("algorithm", "out", "save", "quiet"):
        setattr(options, name, fields_and_files.pop(name))
    overrides = {k: v for k, v in fields_and_files.items() if v is not None}
    cfg = make_config(DPPOConfig, **overrides)
    check_launch(cfg, options.preempt_fraction, options.timeout, options.env_fn)
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


# --- the launcher: torchrun as a subprocess of a notebook or test -------------------------------


def torchrun_command(
    cfg: DPPOConfig,
    out,
    save_to,
    nproc: int | None = None,
    preempt_fraction: float = 0.0,
    timeout: float = COLLECTIVE_TIMEOUT,
    env_fn: str | None = None,
    log_dir=None,
    quiet: bool = False,
) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node W [--log-dir DIR] -m
    rlteach.distributed.allreduce [options]`` for ``cfg`` on ``nproc`` (default ``cfg.workers``)
    ranks of this machine; the options name only the fields that differ from DPPOConfig's
    defaults. ``shlex.join(...)`` prints it."""
    nproc = cfg.workers if nproc is None else nproc
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(nproc)]
    if log_dir is not None:
        command += ["--log-dir", str(log_dir)]
    command += ["-m", "rlteach.distributed.allreduce", *config_options(cfg)]
    if preempt_fraction:
        command += ["--preempt-fraction", str(preempt_fraction)]
    if timeout != COLLECTIVE_TIMEOUT:
        command += ["--timeout", str(timeout)]
    if env_fn is not None:
        command += ["--env-fn", env_fn]
    command += ["--out", str(out), "--save", str(save_to)]
    return command + ["--quiet"] if quiet else command


def config_options(cfg: DPPOConfig) -> list[str]:
    """``--field value`` for each field of ``cfg`` that differs from DPPOConfig's default, written
    the way ``python -m rlteach`` parses values (``true``/``false``, ``64,64``)."""
    default = DPPOConfig()
    options = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value == getattr(default, f.name):
            continue
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, tuple):
            text = ",".join(map(str, value))
        else:
            text = str(value)
        options += ["--" + f.name.replace("_", "-"), text]
    return options


@dataclass(frozen=True)
class RunFiles:
    """Where one launched run keeps its files."""

    folder: Path

    @property
    def history(self) -> Path:
        return self.folder / "history.json"

    @property
    def checkpoint(self) -> Path:
        return self.folder / "policy.pt"

    @property
    def logs(self) -> Path:
        return self.folder / "torchrun-logs"

    @property
    def output(self) -> Path:
        return self.folder / "torchrun-output.txt"


def run_dppo_torchrun(
    config: DPPOConfig | None = None,
    callback=None,
    nproc: int | None = None,
    timeout: float | None = None,
    workdir=None,
    env_fn: str | None = None,
    preempt_fraction: float = 0.0,
    collective_timeout: float = COLLECTIVE_TIMEOUT,
    **overrides,
) -> TrainResult:
    """Train DD-PPO on ``nproc`` (default ``workers``) ranks started by torchrun on this machine;
    returns a :class:`rlteach.TrainResult` like :func:`rlteach.run_dppo`.

    ``config`` and/or keyword ``overrides`` are DPPOConfig fields; ``env_fn`` is an importable
    ``"module:callable"``; ``preempt_fraction`` and ``collective_timeout`` (seconds a collective
    waits) are the DD-PPO options of the module docstring. Bad values raise ``ValueError`` before
    anything starts. ``callback(history)`` runs each time rank 0 has rewritten the history file
    (about once a second), e.g. a ``LivePlot``. ``timeout`` (seconds, None: none) bounds the whole
    run: past it every process is stopped and ``TimeoutError`` raised. ``workdir`` keeps the
    history, checkpoint and torchrun's logs (default: a temporary folder, removed at the end).

    A failed rank raises :class:`~rlteach.distributed.WorkerError` with its traceback; a kernel
    interrupt stops the run and returns rank 0's last checkpoint with ``interrupted=True``. No
    process of the run is left when this returns or raises.

    Network: gloo's connections stay on loopback (``GLOO_SOCKET_IFNAME``), but torchrun's own TCP
    stores listen on all interfaces while the run lasts (torch's ``TCPStore`` binds the wildcard
    address, pytorch/pytorch#173909); on an untrusted network, run behind a firewall.
    """
    cfg = make_config(DPPOConfig, config, **overrides)
    nproc = cfg.workers if nproc is None else nproc
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc = {nproc!r} is invalid: must be an integer >= 1")
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise ValueError(f"timeout = {timeout!r} is invalid: must be seconds > 0 or None")
    check_launch(cfg, preempt_fraction, collective_timeout, env_fn)
    with run_folder(workdir) as folder:
        files = RunFiles(folder)
        command = torchrun_command(
            cfg,
            files.history,
            files.checkpoint,
            nproc,
            preempt_fraction,
            collective_timeout,
            env_fn,
            files.logs,
            quiet=True,
        )
        return supervise(command, files, cfg, env_fn, callback, timeout)


@contextlib.contextmanager
def run_folder(workdir):
    """``workdir`` (created if needed), or a temporary folder removed afterwards."""
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="rlteach-ddppo-", ignore_cleanup_errors=True) as tmp:
        yield Path(tmp)


def supervise(command, files: RunFiles, cfg, env_fn, callback, timeout) -> TrainResult:
    """Run torchrun in its own session, follow it, and turn how it ended into a result."""
    start = time.monotonic()
    with open(files.output, "wb") as output:
        process = subprocess.Popen(
            command,
            env=loopback_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        follow(process, files.history, callback, None if timeout is None else start + timeout)
    except KeyboardInterrupt:
        stop(process)
        return partial_result(files, cfg, env_fn)
    finally:
        stop(process)
    if process.returncode != 0:
        raise rank_failure(files, process.returncode)
    result = load_result(files.checkpoint, interrupted=False)
    result.history.meta["torchrun_seconds"] = time.monotonic() - start
    if callback is not None:
        callback(result.history)
    return result


def loopback_environment() -> dict[str, str]:
    """torchrun's environment: gloo on the loopback interface, one math thread per rank, and
    ``RANK_SHUTDOWN`` seconds for a rank to exit after SIGTERM before torchrun kills it."""
    return {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "GLOO_SOCKET_IFNAME": LOOPBACK,
        "OMP_NUM_THREADS": "1",
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(RANK_SHUTDOWN),
    }


def follow(process: subprocess.Popen, history: Path, callback, deadline: float | None) -> None:
    """Wait for torchrun to exit; meanwhile call ``callback(history)`` whenever rank 0 has
    rewritten the history file, and raise ``TimeoutError`` past ``deadline`` (monotonic)."""
    stamp = None
    while True:
        try:
            process.wait(POLL)
            return
        except subprocess.TimeoutExpired:
            pass
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the DD-PPO run took longer than its timeout and was stopped")
        if callback is not None:
            stamp = report_newer(history, stamp, callback)


def report_newer(path: Path, stamp: int | None, callback) -> int | None:
    """``callback(History.load(path))`` if the file changed since ``stamp``; its new stamp."""
    try:
        current = path.stat().st_mtime_ns
    except FileNotFoundError:
        return stamp
    if current != stamp:
        callback(History.load(path))
    return current


def stop(process: subprocess.Popen) -> None:
    """SIGTERM torchrun's process group, SIGKILL it after ``STOP_GRACE`` seconds. torchrun starts
    each rank in a session of its own, so the signal reaches the ranks through torchrun, which
    forwards it and waits for them (``RANK_SHUTDOWN``) before it exits."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def load_result(path: Path, interrupted: bool) -> TrainResult:
    """Rank 0's checkpoint as a TrainResult."""
    return replace(checkpoint.load(path), interrupted=interrupted)


def partial_result(files: RunFiles, cfg: DPPOConfig, env_fn) -> TrainResult:
    """What a stopped run learned: rank 0's last checkpoint (at most ``PUBLISH_EVERY`` seconds
    old), or θ0 and an empty history when it was stopped before rank 0 wrote one."""
    if files.checkpoint.exists():
        return load_result(files.checkpoint, interrupted=True)
    agent = build_agent(cfg.env_id, 1, cfg.seed, cfg.hidden, import_env_fn(env_fn))
    agent.close()
    meta = {"algorithm": "dppo", "backend": "torchrun", "config": asdict(cfg)}
    return TrainResult(agent.policy, History(meta=meta), cfg, interrupted=True)


@dataclass(frozen=True)
class RankError:
    """What one failed rank's ``@record`` wrote: its exception and traceback."""

    rank: int
    timestamp: int
    message: str
    traceback: str


def rank_errors(log_dir: Path) -> list[RankError]:
    """The error files of the failed ranks: torchrun gives each rank
    ``LOG_DIR/<run id>/attempt_<n>/<local rank>/error.json`` (with ``--standalone`` the local
    rank is the rank)."""
    errors = []
    for path in sorted(log_dir.glob("*/attempt_*/*/error.json")):
        message = json.loads(path.read_text()).get("message", {})
        if isinstance(message, str):
            message = {"message": message}
        extra = message.get("extraInfo", {})
        errors.append(
            RankError(
                rank=int(path.parent.name),
                timestamp=int(extra.get("timestamp", 0)),
                message=message.get("message", ""),
                traceback=extra.get("py_callstack", message.get("message", "")),
            )
        )
    return errors


def rank_failure(files: RunFiles, returncode: int) -> WorkerError:
    """The error to raise for a run that failed, naming the rank that failed first on its own.

    In order of preference: the earliest error file of a rank whose exception is not a
    :class:`PeerFailure` (torchrun's own "root cause" compares timestamps of whole seconds and
    names the lowest rank of a tie, often a rank that only saw its peer vanish); a rank that died
    without a traceback (killed by a signal, say), from torchrun's failure summary, with the tail
    of the output; the earliest :class:`PeerFailure` (a rank that hung until a collective timed
    out is stopped by torchrun and leaves none of its own); or, without any of these, the output.
    """
    errors = rank_errors(files.logs)
    own = [e for e in errors if not e.message.startswith(f"{PeerFailure.__name__}:")]
    output = files.output.read_text(errors="replace")
    tail = "\n".join(output.splitlines()[-40:])
    silent = died_without_traceback(output)
    if own:
        return earliest_error(own)
    if silent:
        rank = silent[0]
        return WorkerError(rank, f"(torchrun rank {rank}) died without a traceback", tail)
    if errors:
        return earliest_error(errors)
    return WorkerError("torchrun", f"exited with code {returncode}", tail)


def earliest_error(errors: list[RankError]) -> WorkerError:
    cause = min(errors, key=lambda e: (e.timestamp, e.rank))
    return WorkerError(cause.rank, f"(torchrun rank {cause.rank}) failed", cause.traceback)


SUMMARY_ENTRY = re.compile(
    r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+).*?error_file\s*:\s*(\S+)", re.DOTALL
)


def died_without_traceback(output: str) -> list[int]:
    """The ranks torchrun's failure summary lists with no error file and an exit that torchrun
    did not cause itself (it stops the other ranks with SIGTERM)."""
    return sorted(
        {
            int(rank)
            for rank, code, error_file in SUMMARY_ENTRY.findall(output)
            if error_file == "<N/A>" and int(code) != -signal.SIGTERM
        }
    )


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
