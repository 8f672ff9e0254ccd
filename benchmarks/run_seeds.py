"""Several seeds of one trainer: one after the other in this process, against ``rlteach.run_seeds``.

Run from the repository root::

    python -m benchmarks.run_seeds              # 3 seeds of default PPO: about 2 minutes
    python -m benchmarks.run_seeds --quick      # smoke run: 3 seeds of 4k env steps

Each arm trains ``rlteach.train_ppo(seed=s)`` with the default ``PPOConfig`` (CartPole-v1,
100k env steps) for seeds 0, 1, 2 (``--seeds``):

* **sequential** — ``[train_ppo(seed=s) for s in seeds]`` in this process (one torch thread, as
  ``train_ppo`` sets it);
* **run_seeds, P processes** — ``run_seeds(train_ppo, seeds, processes=P)`` for P = 2 and 3:
  each run in a worker process with one torch thread. With 2 processes on 3 seeds, process 0 runs
  two of them in turn; with 3, the three processes share the cores.

Seconds are the wall-clock of the whole call, worker start-up included (each worker imports what
its first run needs; the fork server itself is started before timing, as in a notebook that has
run anything distributed before). A short warm-up run in this process first imports the same, so
the sequential arm does not pay it either. The ratio is each arm's seconds over the sequential
arm's, measured in the same script, with the arms in turn (``--repeats`` rounds; medians, min–max).
Target: 3 seeds with ``run_seeds`` ≤ 0.75 × sequential. The runs of every arm are also checked to
be the same runs (histories equal but for wall times).
"""

from __future__ import annotations

import argparse
import statistics
import time

import rlteach
from benchmarks.common import (
    benchmark_parser,
    machine,
    median_range,
    parse_checked,
    single_thread,
    write_json,
)

TARGET = 0.75  # run_seeds' seconds ÷ sequential seconds for 3 seeds
PROCESSES = (2, 3)
QUICK_STEPS = 4_000


def return_seed(seed: int) -> int:
    """A ``train_fn`` that does nothing: running it starts the fork server before any timing."""
    return seed


def sequential(seeds: list[int], config: dict) -> tuple[float, list]:
    start = time.perf_counter()
    results = [rlteach.train_ppo(seed=s, **config) for s in seeds]
    return time.perf_counter() - start, results


def in_processes(seeds: list[int], config: dict, processes: int) -> tuple[float, list]:
    start = time.perf_counter()
    results = rlteach.run_seeds(rlteach.train_ppo, seeds, processes=processes, **config)
    return time.perf_counter() - start, results


def run_record(result) -> tuple[list, list]:
    """A run's update and episode rows without their wall times: what must not differ."""
    return tuple(
        [{k: v for k, v in row.items() if k != "wall_time"} for row in rows]
        for rows in (result.history.updates, result.history.episodes)
    )


def table(rows: list[dict]) -> str:
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    seconds = {arm: [r["seconds"] for r in rows if r["arm"] == arm] for arm in arms}
    base = statistics.median(seconds["sequential"])
    lines = [
        "| arm | seconds | ÷ sequential | target | same runs as sequential |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arm in arms:
        ratio = statistics.median(seconds[arm]) / base
        target = (
            "" if arm == "sequential" else f"≤ {TARGET}: {'met' if ratio <= TARGET else 'missed'}"
        )
        same = all(r["same_runs"] for r in rows if r["arm"] == arm)
        lines.append(
            f"| {arm} | {median_range(seconds[arm], 1)} | {ratio:.2f}x | {target} | "
            f"{'yes' if same else 'NO'} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__, "run_seeds", f"3 seeds of {QUICK_STEPS:,} steps", seeds=3)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every arm (default 1)")
    return parse_checked(parser, argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    single_thread()
    seeds = list(range(args.seeds))
    config = {"total_steps": QUICK_STEPS} if args.quick else {}
    rlteach.train_ppo(total_steps=512)  # warm-up: this process imports what a run needs
    rlteach.run_seeds(return_seed, [0], on_result=None)  # warm-up: the fork server starts
    rows = []
    for repeat in range(args.repeats):
        seconds, reference = sequential(seeds, config)
        rows.append({"arm": "sequential", "repeat": repeat, "seconds": seconds, "same_runs": True})
        print(f"sequential: {seconds:.1f} s", flush=True)
        for processes in PROCESSES:
            seconds, results = in_processes(seeds, config, processes)
            same = list(map(run_record, results)) == list(map(run_record, reference))
            arm = f"run_seeds, {processes} processes"
            rows.append({"arm": arm, "repeat": repeat, "seconds": seconds, "same_runs": same})
            print(f"{arm}: {seconds:.1f} s", flush=True)
    text = table(rows)
    print("\n" + text)
    payload = {"machine": machine(), "seeds": seeds, "config": config, "runs": rows, "table": text}
    print(f"\nraw numbers: {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
