"""DA3C and DPPO on CartPole-v1: do they learn with their defaults, and does DPPO scale with a slow
simulator?

Run from the repository root::

    python -m benchmarks.distributed_cartpole                 # both parts, 3 seeds: about 15 minutes
    python -m benchmarks.distributed_cartpole --part learn    # only (a)
    python -m benchmarks.distributed_cartpole --part scaling --seeds 1
    python -m benchmarks.distributed_cartpole --quick         # smoke run: 1 seed, a few thousand steps

(a) ``learn``: ``run_dppo(seed=s)`` and ``run_da3c(seed=s)`` with their default configs (2 workers;
DPPO 150k env steps, DA3C 500k). Per run: wall-clock of the call (process start-up included), env
steps, the env steps and seconds at which the mean of the last 20 training episodes (over all
workers, in arrival order) first reaches 475, and the greedy return of the final policy over 20
episodes (``rlteach.evaluate(policy, "CartPole-v1", episodes=20, seed=123)``). The bar: greedy mean
≥ 475 on every seed.

(b) ``scaling``: DPPO with a 1 ms sleep per env step (``env_delay=0.001``), 150k env steps budget,
in the variants of ``SCALING``: 1 worker, 4 workers with the same per-worker settings (4 times the
samples per round), and 4 workers with 1 environment each (the same 256 samples per round as one
worker with 4). Measured: seconds from the start of the call (process start-up included) until the
last-20 training mean first reaches 475, ``first_reaching(475)["wall_time"]``. The run is then
stopped (a callback raises ``KeyboardInterrupt``, the library's interrupt path), since what follows
does not change that number. Evaluation during training is off (``eval_interval=0``) in every
variant, so the parent's evaluations do not compete for the 2 cores. Target: 1 worker ÷ 4 workers
≥ 2.5.
"""

from __future__ import annotations

import argparse
import statistics
import time

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
from rlteach.distributed.da3c import run_da3c
from rlteach.distributed.dppo import run_dppo
from rlteach.history import StopAtReturn

ENV_ID = "CartPole-v1"
SOLVED = 475.0
EVAL_EPISODES = 20
EVAL_SEED = 123
LEARNERS = {"dppo": run_dppo, "da3c": run_da3c}
QUICK_STEPS = 4_096
DELAY = 0.001
SCALING_STEPS = 150_000
SCALING = {
    "1 worker × 4 envs": {"workers": 1, "envs_per_worker": 4},
    "4 workers × 4 envs": {"workers": 4, "envs_per_worker": 4},
    "4 workers × 1 env": {"workers": 4, "envs_per_worker": 1},
}
BASELINE = "1 worker × 4 envs"


def first_report_seconds(history) -> float | None:
    """Seconds from the start of the call to the first worker report: process start-up plus one
    batch, an upper bound on what start-up costs a run."""
    return history.updates[0]["wall_time"] if history.updates else None


def learn_run(algo: str, seed: int, quick: bool) -> dict:
    """(a) One default-config run of ``algo``; its measurements and greedy evaluation."""
    overrides = {"total_steps": QUICK_STEPS} if quick else {}
    start = time.perf_counter()
    result = LEARNERS[algo](seed=seed, **overrides)
    wall_clock = time.perf_counter() - start
    returns = rlteach.evaluate(result.policy, ENV_ID, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    history = result.history
    return {
        "part": "learn",
        "algo": algo,
        "seed": seed,
        "workers": result.config.workers,
        "total_steps": result.config.total_steps,
        "env_steps": int(history.updates[-1]["env_steps"]),
        "wall_clock": wall_clock,
        "first_report_s": first_report_seconds(history),
        **reaching(history, SOLVED),
        "final_train_mean": history.recent_mean_return(WINDOW),
        "eval_mean": statistics.fmean(returns),
        "eval_returns": returns,
        "versions": history.meta["versions"],
    }


def scaling_run(variant: str, seed: int, quick: bool) -> dict:
    """(b) One slow-simulator DPPO run of ``variant``, stopped once the last-20 mean reaches 475."""
    settings = SCALING[variant]
    stopper = StopAtReturn(SOLVED, last=WINDOW)
    start = time.perf_counter()
    result = run_dppo(
        callback=stopper,
        seed=seed,
        env_delay=DELAY,
        eval_interval=0.0,
        total_steps=QUICK_STEPS if quick else SCALING_STEPS,
        **settings,
    )
    wall_clock = time.perf_counter() - start
    history = result.history
    cfg = result.config
    return {
        "part": "scaling",
        "variant": variant,
        "seed": seed,
        **settings,
        "rollout_steps": cfg.rollout_steps,
        "samples_per_round": cfg.workers * cfg.envs_per_worker * cfg.rollout_steps,
        "env_steps": int(history.updates[-1]["env_steps"]),
        "wall_clock": wall_clock,
        "stopped_at_475": stopper.fired,
        "first_report_s": first_report_seconds(history),
        **reaching(history, SOLVED),
        "versions": history.meta["versions"],
    }


def column(runs: list[dict], key: str, **match) -> list:
    return [r[key] for r in runs if all(r.get(k) == v for k, v in match.items())]


def learn_table(runs: list[dict]) -> str:
    lines = [
        "| algo | seed | env steps | wall-clock s | steps to 475 | seconds to 475 | "
        "final last-20 train mean | greedy eval (20 ep.) | ≥ 475 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        steps_to = "never" if r["steps_to"] is None else f"{r['steps_to']:,}"
        time_to = "never" if r["time_to"] is None else f"{r['time_to']:.1f}"
        lines.append(
            f"| {r['algo']} | {r['seed']} | {r['env_steps']:,} | {r['wall_clock']:.1f} | "
            f"{steps_to} | {time_to} | {r['final_train_mean']:.1f} | {r['eval_mean']:.1f} | "
            f"{'yes' if r['eval_mean'] >= SOLVED else 'no'} |"
        )
    lines.append("")
    for algo in LEARNERS:
        evals = column(runs, "eval_mean", algo=algo)
        if evals:
            passed = sum(e >= SOLVED for e in evals)
            lines.append(f"{algo}: greedy mean ≥ 475 on {passed} of {len(evals)} seeds.")
    return "\n".join(lines)


def scaling_table(runs: list[dict]) -> str:
    """Medians (min–max) over seeds per variant, and the baseline ÷ variant ratios."""
    lines = [
        "| variant | samples per round | seconds to 475 | steps to 475 | first report s | "
        "seconds to 475, 1 worker ÷ this (target ≥ 2.5 for 4 workers) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base = column(runs, "time_to", variant=BASELINE)
    for variant in SCALING:
        if not column(runs, "seed", variant=variant):
            continue
        cells = [
            str(column(runs, "samples_per_round", variant=variant)[0]),
            median_range(column(runs, "time_to", variant=variant), 1),
            median_range(column(runs, "steps_to", variant=variant)),
            median_range(column(runs, "first_report_s", variant=variant), 1),
            ratio_of_medians(base, column(runs, "time_to", variant=variant)),
        ]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser(
        __doc__,
        "distributed_cartpole",
        seeds=3,
        quick_help=f"smoke run: 1 seed, {QUICK_STEPS} env steps per run",
    )
    parser.add_argument("--part", choices=("learn", "scaling", "both"), default="both")
    parser.add_argument(
        "--algos", nargs="+", choices=tuple(LEARNERS), default=list(LEARNERS), metavar="ALGO"
    )
    parser.add_argument(
        "--variants", nargs="+", choices=tuple(SCALING), default=list(SCALING), metavar="VARIANT"
    )
    return parse_checked(parser, argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    single_thread()
    seeds = range(1 if args.quick else args.seeds)
    runs, tables = [], []
    if args.part in ("learn", "both"):
        for seed in seeds:
            for algo in args.algos:
                row = learn_run(algo, seed, args.quick)
                runs.append(row)
                print(
                    f"{algo} seed {seed}: {row['wall_clock']:.1f} s, {row['env_steps']:,} steps, "
                    f"475 at {row['steps_to']} steps / {row['time_to']} s, "
                    f"eval {row['eval_mean']:.1f}",
                    flush=True,
                )
        tables.append(learn_table([r for r in runs if r["part"] == "learn"]))
    if args.part in ("scaling", "both"):
        for seed in seeds:  # seeds outermost: a change of load hits every variant
            for variant in args.variants:
                row = scaling_run(variant, seed, args.quick)
                runs.append(row)
                print(
                    f"{variant} seed {seed}: 475 at {row['steps_to']} steps / {row['time_to']} s "
                    f"(first report {row['first_report_s']:.1f} s), stopped after "
                    f"{row['env_steps']:,} steps / {row['wall_clock']:.1f} s",
                    flush=True,
                )
        tables.append(scaling_table([r for r in runs if r["part"] == "scaling"]))
    table = "\n\n".join(tables)
    print("\n" + table)
    settings = {
        "delay": DELAY,
        "scaling_steps": SCALING_STEPS,
        "scaling": SCALING,
        "quick": args.quick,
    }
    path = write_json(
        args.out, {"machine": machine(), "settings": settings, "runs": runs, "table": table}
    )
    print(f"\nraw numbers: {path}")


if __name__ == "__main__":
    main()
