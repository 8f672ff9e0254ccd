"""rlteach PPO/A2C against Stable-Baselines3 PPO/A2C on CartPole-v1: speed and time to solve.

Run from the repository root (needs the ``bench`` extra)::

    python -m benchmarks.cartpole_vs_sb3                 # 5 seeds, PPO and A2C, a few minutes
    python -m benchmarks.cartpole_vs_sb3 --quick         # smoke run: 1 seed, a few thousand steps

For each algorithm and seed, both libraries train in this one process, one torch thread each:

* rlteach with its default config (PPO 100k env steps, A2C 300k);
* SB3 with the rl-baselines3-zoo hyperparameters for CartPole-v1 (``hyperparams/ppo.yml`` and
  ``a2c.yml``) on ``make_vec_env("CartPole-v1", n_envs=8)`` (a DummyVecEnv of Monitor-wrapped
  envs, as the zoo uses), ``device="cpu"``, ``verbose=0``, no evaluation during training.

Measured per run: total wall-clock (building the agent and training), env steps per second (env
steps / that wall-clock), the env steps and seconds at which the mean of the last 20 training
episode returns first reaches 475, and the mean greedy return over 20 evaluation episodes seeded
123, 124, ... . Medians over seeds are printed as a markdown table; every run's numbers go to JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import stable_baselines3
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

import rlteach
from benchmarks.common import (
    WINDOW,
    benchmark_parser,
    machine,
    median_range,
    parse_checked,
    ratio_of_medians,
    reaching,
    single_thread,
    write_json,
)
from rlteach.algos.a2c import train_a2c
from rlteach.algos.ppo import train_ppo
from rlteach.history import History

ENV_ID = "CartPole-v1"
SOLVED = 475.0
EVAL_EPISODES = 20
EVAL_SEED = 123
RLTEACH_STEPS = {"ppo": 100_000, "a2c": 300_000}
QUICK_STEPS = 4_096
# rl-baselines3-zoo, hyperparams/ppo.yml and a2c.yml, entry CartPole-v1 (n_envs 8 for both).
# The zoo's "lin_x" is x times the remaining progress (1 at the start, 0 at the end).
ZOO_PPO = {
    "n_steps": 32,
    "batch_size": 256,
    "gae_lambda": 0.8,
    "gamma": 0.98,
    "n_epochs": 20,
    "ent_coef": 0.0,
    "learning_rate": lambda progress_remaining: 0.001 * progress_remaining,
    "clip_range": lambda progress_remaining: 0.2 * progress_remaining,
}
ZOO_A2C = {"ent_coef": 0.0}  # every other setting is SB3's A2C default (constant learning rate)
ZOO_STEPS = {"ppo": 100_000, "a2c": 500_000}
# SB3 A2C trains for rlteach's 300k steps, not the zoo's 500k: with its constant learning rate the
# first 300k steps are the same run either way, so only the total wall-clock column is shorter.
SB3_STEPS = {"ppo": ZOO_STEPS["ppo"], "a2c": RLTEACH_STEPS["a2c"]}
ZOO_N_ENVS = 8


class EpisodeRecorder(BaseCallback):
    """Records every finished training episode (return, length, env steps, seconds since training
    started) from the ``infos[i]["episode"]`` the Monitor wrapper adds, into an rlteach History so
    both libraries are judged by the same :meth:`History.first_reaching`. ``overhead`` is the time
    spent inside this callback, measured around its own body."""

    def __init__(self):
        super().__init__(verbose=0)
        self.history = History()
        self.overhead = 0.0

    def _on_training_start(self) -> None:
        self.history = History()

    def _on_step(self) -> bool:
        start = time.perf_counter()
        for info in self.locals["infos"]:
            episode = info.get("episode")
            if episode is not None:
                self.history.episodes.append(
                    {
                        "env_steps": self.num_timesteps,
                        "wall_time": self.history.elapsed(),
                        "return": float(episode["r"]),
                        "length": int(episode["l"]),
                    }
                )
        self.overhead += time.perf_counter() - start
        return True


def sb3_model(algo: str, seed: int):
    """SB3 PPO or A2C with the zoo's CartPole-v1 settings on 8 DummyVecEnv copies."""
    envs = make_vec_env(ENV_ID, n_envs=ZOO_N_ENVS, seed=seed)
    cls, kwargs = (PPO, ZOO_PPO) if algo == "ppo" else (A2C, ZOO_A2C)
    return cls("MlpPolicy", envs, seed=seed, device="cpu", verbose=0, **kwargs)


def evaluate_sb3(model, episodes: int = EVAL_EPISODES, seed: int = EVAL_SEED) -> list[float]:
    """Greedy returns (``model.predict(obs, deterministic=True)``) of ``episodes`` episodes on a
    fresh env, episode ``i`` reset with seed ``seed + i``, as :func:`rlteach.evaluate` does."""
    env = gym.make(ENV_ID)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def run_sb3(algo: str, seed: int, steps: int) -> dict:
    """Train SB3 ``algo`` for ``steps`` env steps; return the run's measurements."""
    recorder = EpisodeRecorder()
    start = time.perf_counter()
    model = sb3_model(algo, seed)
    model.learn(total_timesteps=steps, callback=recorder)
    wall_clock = time.perf_counter() - start
    returns = evaluate_sb3(model)
    model.get_env().close()
    return measurements(
        "sb3",
        algo,
        seed,
        model.num_timesteps,
        wall_clock,
        recorder.history,
        returns,
        callback_overhead=recorder.overhead,
    )


def run_rlteach(algo: str, seed: int, steps: int) -> dict:
    """Train rlteach ``algo`` (default config) for ``steps`` env steps; return the measurements."""
    train = train_ppo if algo == "ppo" else train_a2c
    start = time.perf_counter()
    result = train(total_steps=steps, seed=seed)
    wall_clock = time.perf_counter() - start
    returns = rlteach.evaluate(result.policy, ENV_ID, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    env_steps = result.history.updates[-1]["env_steps"]
    return measurements("rlteach", algo, seed, env_steps, wall_clock, result.history, returns)


def measurements(
    library: str,
    algo: str,
    seed: int,
    env_steps: int,
    wall_clock: float,
    history: History,
    eval_returns: list[float],
    **extra,
) -> dict:
    """One run's row: throughput ``env_steps / wall_clock``, when the last-20 mean first reached
    475, the final last-20 training mean and the greedy evaluation."""
    return {
        "library": library,
        "algo": algo,
        "seed": seed,
        "env_steps": int(env_steps),
        "wall_clock": wall_clock,
        "steps_per_s": env_steps / wall_clock,
        **reaching(history, SOLVED),
        "episodes": len(history.episodes),
        "final_train_mean": history.recent_mean_return(WINDOW),
        "eval_mean": statistics.fmean(eval_returns),
        "eval_returns": eval_returns,
        **extra,
    }


def column(runs: list[dict], algo: str, library: str, key: str) -> list:
    """``key`` of every run of ``algo`` by ``library``, in seed order."""
    return [r[key] for r in runs if r["algo"] == algo and r["library"] == library]


def markdown_table(runs: list[dict], algos: list[str]) -> str:
    """Medians (min–max) over seeds per algorithm and library, then the rlteach/SB3 ratios."""
    lines = [
        "| algo | library | env steps | wall-clock s | env steps/s | steps to 475 | "
        "seconds to 475 | greedy eval (20 ep.) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for algo in algos:
        for library in ("rlteach", "sb3"):
            if not column(runs, algo, library, "seed"):
                continue
            cells = [
                median_range(column(runs, algo, library, key), digits)
                for key, digits in (
                    ("env_steps", 0),
                    ("wall_clock", 1),
                    ("steps_per_s", 0),
                    ("steps_to", 0),
                    ("time_to", 1),
                    ("eval_mean", 1),
                )
            ]
            lines.append(f"| {algo} | {library} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| algo | env steps/s, rlteach ÷ SB3 (target ≥ 2) | seconds to 475, rlteach ÷ SB3 "
        "(target ≤ 0.5) | steps to 475, rlteach ÷ SB3 |",
        "| --- | --- | --- | --- |",
    ]
    for algo in algos:
        ratios = [
            ratio_of_medians(column(runs, algo, "rlteach", key), column(runs, algo, "sb3", key))
            for key in ("steps_per_s", "time_to", "steps_to")
        ]
        lines.append(f"| {algo} | " + " | ".join(ratios) + " |")
    overheads = [r["callback_overhead"] / r["wall_clock"] for r in runs if r["library"] == "sb3"]
    if overheads:
        lines += [
            "",
            f"SB3 episode-recording callback, timed around its body: at most "
            f"{max(overheads):.2%} of an SB3 run's wall-clock.",
        ]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser(
        __doc__,
        "cartpole_vs_sb3",
        seeds=5,
        quick_help=f"smoke run: 1 seed, {QUICK_STEPS} env steps per run",
    )
    parser.add_argument("--algos", nargs="+", choices=("ppo", "a2c"), default=["ppo", "a2c"])
    return parse_checked(parser, argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    single_thread()
    seeds = range(1 if args.quick else args.seeds)
    runs = []
    for algo in args.algos:
        for seed in seeds:
            for library, run, steps in (
                ("rlteach", run_rlteach, RLTEACH_STEPS[algo]),
                ("sb3", run_sb3, SB3_STEPS[algo]),
            ):
                row = run(algo, seed, QUICK_STEPS if args.quick else steps)
                runs.append(row)
                print(
                    f"{algo} {library} seed {seed}: {row['wall_clock']:.1f} s, "
                    f"{row['steps_per_s']:,.0f} steps/s, 475 at {row['steps_to']} steps / "
                    f"{row['time_to']} s, eval {row['eval_mean']:.1f}",
                    flush=True,
                )
    table = markdown_table(runs, args.algos)
    print("\n" + table)
    settings = {
        "stable_baselines3": stable_baselines3.__version__,
        "rlteach_steps": RLTEACH_STEPS,
        "sb3_steps": SB3_STEPS,
        "zoo_steps": ZOO_STEPS,
        "zoo_ppo": {k: v for k, v in ZOO_PPO.items() if not callable(v)}
        | {"learning_rate": "lin_0.001", "clip_range": "lin_0.2"},
        "zoo_a2c": ZOO_A2C,
        "quick": args.quick,
    }
    path = write_json(
        args.out, {"machine": machine(), "settings": settings, "runs": runs, "table": table}
    )
    print(f"\nraw numbers: {path}")


if __name__ == "__main__":
    main()
