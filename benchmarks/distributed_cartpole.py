"""DA3C, DPPO, Hogwild A3C and IMPALA on CartPole-v1: do they learn with their defaults, and do they
get faster with more workers when the simulator is slow?

Run from the repository root::

    python -m benchmarks.distributed_cartpole                 # both parts, 3 seeds: about an hour
    python -m benchmarks.distributed_cartpole --part learn    # only (a)
    python -m benchmarks.distributed_cartpole --part scaling --seeds 1
    python -m benchmarks.distributed_cartpole --part throughput --algos impala
    python -m benchmarks.distributed_cartpole --quick         # smoke run: 1 seed, a few thousand steps

(a) ``learn``: ``run_dppo(seed=s)``, ``run_da3c(seed=s)``, ``run_a3c(seed=s)`` and
``run_impala(seed=s)`` with their default configs (2 workers; DPPO 150k env steps, the others
500k). Per run: wall-clock of the call (process start-up included), env
steps, the env steps and seconds at which the mean of the last 20 training episodes (over all
workers, in arrival order) first reaches 475, and the greedy return of the final policy over 20
episodes (``rlteach.evaluate(policy, "CartPole-v1", episodes=20, seed=123)``). The bar: greedy mean
≥ 475 on every seed.

(b) ``scaling``: each env step costs ``DELAY`` = 2 ms more, by a sleep (a simulator that waits: a
remote one, a robot, disk) or by a busy loop (one that computes), and the run is timed until the
mean of the last 20 training returns first reaches 475, for W = 1, 2, 4, 8 workers
(:func:`rlteach.distributed.driver.worker_scaling`; the run is then stopped through the library's
interrupt path, since what follows does not change that number; no evaluations during training,
so the parent does not compete for the cores). DPPO keeps its global batch: ``TOTAL_ENVS`` = 16
environments split over the W workers (16/W each, DPPO's default of 4 at W = 4), so every W takes
the same rounds per env step and each round is the same large-batch PPO step; DA3C keeps its
defaults per worker (4 environments, 8 steps per push), since each asynchronous push is an update
of its own. Reported per W: seconds and env steps to 475 (medians and ranges over seeds), the
first report, and the speed-up ``t(1) / t(W)``. Targets (sleeping simulator): DPPO t(1)/t(4)
≥ 2.5, DA3C ≥ 3, and 8 workers faster than 4. The busy simulator should flatten at
``os.cpu_count()`` workers.

(c) ``throughput``: env steps per second with W = 1 and 4 workers (actors, for IMPALA) and the
sleeping simulator of (b), over ``THROUGHPUT_STEPS`` env steps with the default settings (4
environments per worker): the env steps between the first and the last update, divided by the
seconds between them, so process start-up does not count. Target: IMPALA with 4 actors at least
3 times one actor's rate (actors never wait for one another, and wait for the learner only when
its queue is full).
"""

from __future__ import annotations

import argparse
import math
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
from rlteach.distributed.driver import worker_scaling
from rlteach.distributed.hogwild import run_a3c
from rlteach.distributed.impala import run_impala
from rlteach.history import env_steps_per_second

ENV_ID = "CartPole-v1"
SOLVED = 475.0
EVAL_EPISODES = 20
EVAL_SEED = 123
LEARNERS = {"dppo": run_dppo, "da3c": run_da3c, "a3c": run_a3c, "impala": run_impala}
QUICK_STEPS = 4_096
DELAY = 0.002
SCALING_STEPS = {"dppo": 150_000, "da3c": 500_000, "a3c": 500_000, "impala": 500_000}  # defaults
SCALING_WORKERS = (1, 2, 4, 8)
SIMULATORS = ("sleep", "busy")
TOTAL_ENVS = {"dppo": 16, "da3c": None, "a3c": None, "impala": None}  # DPPO: fixed global batch
THROUGHPUT_STEPS = 12_000
THROUGHPUT_WORKERS = (1, 4)


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


def scaling_runs(algo: str, simulator: str, seed: int, quick: bool) -> list[dict]:
    """(b) One seed of ``algo`` with a slow ``simulator`` at every W of ``SCALING_WORKERS``."""
    workers = SCALING_WORKERS[:2] if quick else SCALING_WORKERS
    table = worker_scaling(
        LEARNERS[algo],
        workers,
        [seed],
        target=SOLVED,
        delay=DELAY,
        kind=simulator,
        total_envs=TOTAL_ENVS[algo],
        total_steps=QUICK_STEPS if quick else SCALING_STEPS[algo],
    )
    return [
        {
            "part": "scaling",
            "algo": algo,
            "simulator": simulator,
            "seed": seed,
            "workers": w,
            "envs_per_worker": (TOTAL_ENVS[algo] or 4 * w) // w,
            "time_to": none_if_nan(table["seconds"][0, j]),
            "steps_to": none_if_nan(table["env_steps"][0, j]),
            "first_report_s": none_if_nan(table["first_report"][0, j]),
        }
        for j, w in enumerate(workers)
    ]


def throughput_run(algo: str, workers: int, seed: int, quick: bool) -> dict:
    """(c) Env steps per second of ``algo`` with ``workers`` workers and the sleeping simulator,
    between its first and last update (start-up excluded)."""
    steps = QUICK_STEPS if quick else THROUGHPUT_STEPS
    result = LEARNERS[algo](
        workers=workers, seed=seed, total_steps=steps, env_delay=DELAY, eval_interval=0.0
    )
    lags = result.history.meta.get("lags")  # IMPALA's; the others have no learner
    return {
        "part": "throughput",
        "algo": algo,
        "seed": seed,
        "workers": workers,
        "steps_per_s": env_steps_per_second(result.history),
        "lag_mean": statistics.fmean(lags) if lags else None,
    }


def throughput_table(runs: list[dict]) -> str:
    """Per algorithm and W: env steps/s (median and range over seeds) and the ratio to W = 1."""
    lines = [
        "| algo | W | env steps/s | ratio to W = 1 | mean policy lag (IMPALA) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for algo in LEARNERS:
        base = column(runs, "steps_per_s", algo=algo, workers=1)
        for w in THROUGHPUT_WORKERS:
            rates = column(runs, "steps_per_s", algo=algo, workers=w)
            if rates:
                lag = column(runs, "lag_mean", algo=algo, workers=w)
                lags = "—" if None in lag else median_range(lag, 2)
                lines.append(
                    f"| {algo} | {w} | {median_range(rates)} | {ratio_of_medians(rates, base)} | "
                    f"{lags} |"
                )
    return "\n".join(lines)


def none_if_nan(value: float):
    return None if math.isnan(value) else float(value)


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
    """Per algorithm and simulator, medians (min–max) over seeds per W, and t(1) ÷ t(W)."""
    lines = [
        "| algo | simulator | W | envs per worker | seconds to 475 | env steps to 475 | "
        "first report s | speed-up t(1) ÷ t(W) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for algo in LEARNERS:
        for simulator in SIMULATORS:
            base = column(runs, "time_to", algo=algo, simulator=simulator, workers=1)
            for w in SCALING_WORKERS:
                match = {"algo": algo, "simulator": simulator, "workers": w}
                if not column(runs, "seed", **match):
                    continue
                cells = [
                    str(column(runs, "envs_per_worker", **match)[0]),
                    median_range(column(runs, "time_to", **match), 1),
                    median_range(column(runs, "steps_to", **match)),
                    median_range(column(runs, "first_report_s", **match), 1),
                    ratio_of_medians(base, column(runs, "time_to", **match)),
                ]
                lines.append(f"| {algo} | {simulator} | {w} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser(
        __doc__,
        "distributed_cartpole",
        seeds=3,
        quick_help=f"smoke run: 1 seed, {QUICK_STEPS} env steps per run",
    )
    parser.add_argument(
        "--part", choices=("learn", "scaling", "throughput", "both"), default="both"
    )
    parser.add_argument(
        "--algos", nargs="+", choices=tuple(LEARNERS), default=list(LEARNERS), metavar="ALGO"
    )
    parser.add_argument(
        "--simulators", nargs="+", choices=SIMULATORS, default=list(SIMULATORS), metavar="KIND"
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
            for algo in args.algos:
                for simulator in args.simulators:
                    for row in scaling_runs(algo, simulator, seed, args.quick):
                        runs.append(row)
                        print(
                            f"{algo} {simulator} W={row['workers']} seed {seed}: 475 at "
                            f"{row['steps_to']} steps / {row['time_to']} s (first report "
                            f"{row['first_report_s']} s)",
                            flush=True,
                        )
        tables.append(scaling_table([r for r in runs if r["part"] == "scaling"]))
    if args.part == "throughput":
        for seed in seeds:
            for algo in args.algos:
                for w in THROUGHPUT_WORKERS:
                    row = throughput_run(algo, w, seed, args.quick)
                    runs.append(row)
                    print(
                        f"{algo} W={w} seed {seed}: {row['steps_per_s']:,.0f} steps/s", flush=True
                    )
        tables.append(throughput_table(runs))
    table = "\n\n".join(tables)
    print("\n" + table)
    settings = {
        "delay": DELAY,
        "scaling_steps": SCALING_STEPS,
        "scaling_workers": SCALING_WORKERS,
        "total_envs": TOTAL_ENVS,
        "throughput_steps": THROUGHPUT_STEPS,
        "quick": args.quick,
    }
    path = write_json(
        args.out, {"machine": machine(), "settings": settings, "runs": runs, "table": table}
    )
    print(f"\nraw numbers: {path}")


if __name__ == "__main__":
    main()
