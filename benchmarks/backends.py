"""The same DPPO on the three backends: local processes, Ray actors, and DD-PPO under torchrun.

Run from the repository root::

    python -m benchmarks.backends              # 3 seeds, 60k env steps each: about 10 minutes
    python -m benchmarks.backends --quick      # smoke run: 1 seed, 8k env steps

Per run, ``run_dppo(total_steps=60_000, workers=2, seed=s, eval_interval=0, backend=b)`` with
``b`` in local, ray (a local Ray instance started by the call) and torchrun (2 ranks):

* **start-up** — seconds from the call until the first update row reaches the caller's
  ``callback``: process spawning, Ray's daemons, torchrun's interpreter and rendezvous (torchrun
  hands rows over through the history file rank 0 rewrites every second, so its figure is late by
  up to ~1.2 s);
* **env steps/s after start-up** — (last − first update row's env steps) / (their wall-time gap);
* **time to 475** — seconds from the call until the mean of the last 20 training episodes first
  reaches 475 (start-up included; torchrun's history clock starts in rank 0, so its rows are
  shifted by the start-up seen above);
* **greedy return** — ``rlteach.evaluate(policy, "CartPole-v1", episodes=20, seed=123)``.

**The transport's share.** Sync DPPO makes ``epochs × minibatches`` = 40 server rounds per batch.
Before the runs, the script times rounds that compute nothing (:func:`empty_rounds`: every worker
pushes a zero gradient of θ's size and pulls θ, 2 workers, the DPPO server's rules) on the local
and the Ray backends, and predicts Ray's rate from local's measured rate plus the difference:
``1 / (1/local_rate + (ray_round − local_round) / env_steps_per_round)``. A prediction that
matches the measured rate says that the gap is the transport's time per round, which Ray's
remote calls set, and not the computation around it.

Ratios are against the local backend, measured in the same script. The local and Ray backends run
the same parameter-server DPPO (one synchronous server round per minibatch); torchrun runs DD-PPO
(an all-reduce per minibatch, no server), so its steps/s compares two transports and two schemes.
"""

from __future__ import annotations

import statistics
import time

import gymnasium as gym
import numpy as np

import rlteach
from benchmarks.common import (
    benchmark_parser,
    machine,
    median_range,
    parse_checked,
    ratio_of_medians,
    reaching,
    single_thread,
    write_json,
)
from rlteach.distributed.configs import DPPOConfig
from rlteach.distributed.dppo import run_dppo, server_config
from rlteach.distributed.driver import parameter_server_cluster
from rlteach.history import env_steps_per_second
from rlteach.nets import flat_parameters

BACKENDS = ("local", "ray", "torchrun")
DPPO_DEFAULTS = DPPOConfig(workers=2)  # what run_dppo runs below: θ's size, rounds per batch


class FirstUpdate:
    """A callback that notes when the first update row reached the caller."""

    def __init__(self):
        self.start, self.seen = time.perf_counter(), None

    def __call__(self, history) -> None:
        if self.seen is None and history.updates:
            self.seen = time.perf_counter() - self.start
            self.row_time = history.updates[0]["wall_time"]


def empty_rounds(ctx, rounds: int) -> float:
    """A worker that only talks to the server: ``rounds`` sync rounds of pushing a zero gradient
    and pulling θ, as DPPO's ``PushThenPull`` does. Returns the seconds per round."""
    theta, version = ctx.pull()
    zeros = np.zeros_like(theta)
    start = time.perf_counter()
    for _ in range(rounds):
        version = ctx.push(zeros, version).version
        ctx.pull(out=theta)
    return (time.perf_counter() - start) / rounds


def round_seconds(backend: str, rounds: int = 400) -> float:
    """Median over 2 workers of :func:`empty_rounds`, with default DPPO's θ size and server rules."""
    cfg = DPPO_DEFAULTS
    env = gym.make(cfg.env_id)
    theta = flat_parameters(
        rlteach.ActorCritic(env.observation_space, env.action_space, cfg.hidden)
    )
    cluster = parameter_server_cluster(
        backend,
        None,
        worker_fn=empty_rounds,
        workers=cfg.workers,
        params=theta,
        server=server_config(cfg),
        args=(rounds,),
    )
    with cluster:
        return statistics.median(cluster.run(timeout=300).results)


def one_run(backend: str, seed: int, steps: int) -> dict:
    first = FirstUpdate()
    result = run_dppo(
        total_steps=steps,
        workers=DPPO_DEFAULTS.workers,
        seed=seed,
        eval_interval=0,
        backend=backend,
        callback=first,
    )
    history = result.history
    returns = rlteach.evaluate(result.policy, "CartPole-v1", episodes=20, seed=123)
    reached = reaching(history, 475)
    if reached["time_to"] is not None:  # on the caller's clock, which started at the call
        reached["time_to"] += first.seen - first.row_time
    return {
        "backend": backend,
        "seed": seed,
        "startup": first.seen,
        "steps_per_second": env_steps_per_second(history),
        **reached,
        "greedy": float(np.mean(returns)),
    }


def table(runs: list[dict]) -> str:
    def column(backend, key):
        return [r[key] for r in runs if r["backend"] == backend]

    lines = [
        "| backend | start-up s | env steps/s after start-up | vs local | time to 475 s | greedy |",
        "|---|---|---|---|---|---|",
    ]
    for backend in BACKENDS:
        rate = column(backend, "steps_per_second")
        lines.append(
            f"| {backend} | {median_range(column(backend, 'startup'), 1)} "
            f"| {median_range(rate)} | {ratio_of_medians(rate, column('local', 'steps_per_second'))} "
            f"| {median_range(column(backend, 'time_to'), 1)} "
            f"| {statistics.median(column(backend, 'greedy')):.0f} |"
        )
    return "\n".join(lines)


def transport_table(runs: list[dict], rounds: dict[str, float]) -> str:
    """Ray's rate predicted from local's and the two backends' empty rounds, against the measured
    one (medians over seeds)."""
    cfg = DPPO_DEFAULTS
    steps_per_round = (
        cfg.workers * cfg.envs_per_worker * cfg.rollout_steps / (cfg.epochs * cfg.minibatches)
    )
    local, ray = (
        statistics.median(r["steps_per_second"] for r in runs if r["backend"] == b)
        for b in ("local", "ray")
    )
    predicted = 1 / (1 / local + (rounds["ray"] - rounds["local"]) / steps_per_round)
    return "\n".join(
        [
            "| empty round, local | empty round, Ray | env steps per round | Ray predicted "
            "| Ray measured | predicted ÷ local |",
            "|---|---|---|---|---|---|",
            f"| {rounds['local'] * 1e6:,.0f} µs | {rounds['ray'] * 1e6:,.0f} µs "
            f"| {steps_per_round:g} | {predicted:,.0f} | {ray:,.0f} | {predicted / local:.2f}x |",
        ]
    )


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__, "backends", "1 seed, 8k env steps", seeds=3)
    args = parse_checked(parser, argv)
    single_thread()
    steps = 8_000 if args.quick else 60_000
    seeds = range(1 if args.quick else args.seeds)
    rounds = {backend: round_seconds(backend) for backend in ("local", "ray")}
    print({"empty round seconds": rounds}, flush=True)
    runs = []
    for seed in seeds:
        for backend in BACKENDS:  # interleaved, so that a change of load hits every backend
            runs.append(one_run(backend, seed, steps))
            print(runs[-1], flush=True)
    print(table(runs))
    print(transport_table(runs, rounds))
    path = write_json(
        args.out, {"machine": machine(), "steps": steps, "rounds": rounds, "runs": runs}
    )
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
