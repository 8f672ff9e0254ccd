"""rlteach PPO on Pendulum-v1 (continuous actions, Gaussian policy): does it solve it in 200k steps?

Run from the repository root::

    python -m benchmarks.pendulum_ppo              # 3 seeds, about a minute each on one core
    python -m benchmarks.pendulum_ppo --quick      # smoke run: 1 seed, 8k env steps

The goal: the mean of the last 20 training episode returns above -250 within 200k env steps, and
a greedy evaluation (the Gaussian's mean action, 20 episodes seeded 123, 124, ...) that agrees.
Pendulum's reward is in [-16.3, 0] per step and an episode is 200 steps (always truncated, never
terminated), so -250 means the pendulum is swung up and held from almost every start.

The settings below are the rl-baselines3-zoo's PPO settings for Pendulum-v1 (gamma 0.9, GAE 0.95,
lr 1e-3, 10 epochs, clip 0.2, no entropy bonus) with 8 envs x 256 steps per update and minibatches
of 64 samples, on rlteach's plain Gaussian policy (state-independent std, no observation or reward
normalisation); the zoo additionally uses gSDE, which rlteach does not have and does not need here.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import rlteach
from benchmarks.common import (
    WINDOW,
    benchmark_parser,
    machine,
    parse_checked,
    reaching,
    single_thread,
    write_json,
)
from rlteach.algos.ppo import PPOConfig, train_ppo

TARGET = -250.0
EVAL_EPISODES = 20
EVAL_SEED = 123
QUICK_STEPS = 8_192
PENDULUM = PPOConfig(
    env_id="Pendulum-v1",
    total_steps=200_000,
    num_envs=8,
    rollout_steps=256,
    epochs=10,
    minibatches=32,
    lr=1e-3,
    anneal_lr=True,
    gamma=0.9,
    gae_lambda=0.95,
    clip_eps=0.2,
    ent_coef=0.0,
)


def run(config: PPOConfig, seed: int) -> dict:
    """Train with ``config`` and ``seed``; return the final last-20 training mean, the greedy
    evaluation mean, the env steps and seconds at which the last-20 mean first reached -250, and
    the wall-clock of training."""
    start = time.perf_counter()
    result = train_ppo(config, seed=seed)
    wall_clock = time.perf_counter() - start
    returns = rlteach.evaluate(result.policy, config.env_id, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    return {
        "seed": seed,
        "env_steps": int(result.history.updates[-1]["env_steps"]),
        "wall_clock": wall_clock,
        "final_train_mean": result.history.recent_mean_return(WINDOW),
        "eval_mean": statistics.fmean(returns),
        "eval_returns": returns,
        **reaching(result.history, TARGET),
    }


def solved(row: dict) -> bool:
    """Both the final last-20 training mean and the greedy evaluation mean are above -250."""
    return row["final_train_mean"] > TARGET and row["eval_mean"] > TARGET


def markdown_table(rows: list[dict]) -> str:
    """One line per seed: the numbers :func:`run` returns and whether both means beat -250."""
    lines = [
        "| seed | final mean of last 20 training returns | greedy eval mean (20 ep.) "
        "| env steps to -250 | seconds to -250 | training wall-clock s | above -250 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        steps_to = "never" if row["steps_to"] is None else f"{row['steps_to']:,}"
        time_to = "never" if row["time_to"] is None else f"{row['time_to']:.1f}"
        lines.append(
            f"| {row['seed']} | {row['final_train_mean']:.1f} | {row['eval_mean']:.1f} "
            f"| {steps_to} | {time_to} | {row['wall_clock']:.1f} | {'yes' if solved(row) else 'no'} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser(
        __doc__, "pendulum_ppo", seeds=3, quick_help=f"smoke run: 1 seed, {QUICK_STEPS} env steps"
    )
    return parse_checked(parser, argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    single_thread()
    config = dataclasses.replace(PENDULUM, total_steps=QUICK_STEPS) if args.quick else PENDULUM
    rows = []
    for seed in range(1 if args.quick else args.seeds):
        rows.append(run(config, seed))
        print(
            f"seed {seed}: final last-20 mean {rows[-1]['final_train_mean']:.1f}, greedy eval "
            f"{rows[-1]['eval_mean']:.1f}, -250 at {rows[-1]['steps_to']} steps",
            flush=True,
        )
    table = markdown_table(rows)
    print("\n" + table)
    print(f"\nsolved (both above {TARGET:.0f}) in {sum(map(solved, rows))}/{len(rows)} seeds")
    settings = {**config.__dict__, "hidden": list(config.hidden)}
    path = write_json(
        args.out, {"machine": machine(), "config": settings, "runs": rows, "table": table}
    )
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
