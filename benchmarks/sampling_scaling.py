"""Samples per second with W sampling workers against one (notebook 05, multi-agent parallelism).

Run from the repository root::

    python -m benchmarks.sampling_scaling            # 3 repeats of each setting: about 2 minutes
    python -m benchmarks.sampling_scaling --quick    # smoke run: 1 repeat, short runs

Each measurement is one call of :func:`rlteach.distributed.patterns.sampling_throughput`: W worker
processes, each with its own environments and a copy of a 64-64 policy, collect
``steps_per_worker`` transitions; timing starts when every worker is ready (process start-up is
not counted) and ends when the last one finishes. Two settings:

* ``slow``: CartPole-v1 with a 1 ms sleep per step (``delay=0.001``, ``num_envs=1``), W = 1, 2, 4:
  a simulator that waits rather than computes. Target: 4 workers ≥ 3.5 × one worker.
* ``fast``: plain CartPole-v1, ``num_envs=8`` (the numpy vector env), W = 1, 2, enough steps that
  a run lasts ≥ 2 s: sampling bound by the CPU. Target: 2 workers ≥ 1.6 × one.

Every measurement is repeated; the table gives the median samples/s (min–max) and the ratio of
medians to W = 1. Every run's numbers go to JSON.
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.common import (
    benchmark_parser,
    machine,
    median_range,
    parse_checked,
    single_thread,
    write_json,
)
from rlteach.distributed.patterns import sampling_throughput

ENV_ID = "CartPole-v1"
SETTINGS = {
    "slow": {"delay": 0.001, "num_envs": 1, "workers": (1, 2, 4), "steps": 2_500, "target": 3.5},
    "fast": {"delay": 0.0, "num_envs": 8, "workers": (1, 2), "steps": 120_000, "target": 1.6},
}
QUICK_STEPS = {"slow": 200, "fast": 8_000}
REPEATS = 3
MIN_SECONDS = 2.0  # the brief's floor for one run of the fast setting


def measure(setting: str, workers: int, steps: int, repeat: int) -> dict:
    """One sampling run: pooled samples, seconds and samples/s."""
    spec = SETTINGS[setting]
    out = sampling_throughput(
        ENV_ID,
        workers=workers,
        steps_per_worker=steps,
        delay=spec["delay"],
        num_envs=spec["num_envs"],
        seed=repeat,
    )
    return {
        "setting": setting,
        "workers": workers,
        "repeat": repeat,
        "steps_per_worker": steps,
        "samples": out["samples"],
        "seconds": out["seconds"],
        "samples_per_s": out["samples_per_second"],
    }


def column(runs: list[dict], setting: str, workers: int, key: str) -> list:
    return [r[key] for r in runs if r["setting"] == setting and r["workers"] == workers]


def markdown_table(runs: list[dict], settings: list[str]) -> str:
    """Per setting and W: median (min–max) seconds and samples/s, and the speed-up over W = 1
    (ratio of medians) against the setting's target for the largest W."""
    lines = [
        "| setting | W | samples per run | seconds per run | samples/s | speed-up vs W = 1 | target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for setting in settings:
        spec = SETTINGS[setting]
        base = statistics.median(column(runs, setting, 1, "samples_per_s"))
        for w in spec["workers"]:
            rates = column(runs, setting, w, "samples_per_s")
            speedup = statistics.median(rates) / base
            target = ""
            if w == max(spec["workers"]):
                met = "met" if speedup >= spec["target"] else "not met"
                target = f"≥ {spec['target']}x: {met}"
            lines.append(
                f"| {setting} | {w} | {column(runs, setting, w, 'samples')[0]:,} | "
                f"{median_range(column(runs, setting, w, 'seconds'), 2)} | "
                f"{median_range(rates)} | {speedup:.2f}x | {target} |"
            )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser(
        __doc__, "sampling_scaling", quick_help="smoke run: 1 repeat, short runs"
    )
    parser.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS))
    return parse_checked(parser, argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    single_thread()
    runs = []
    for repeat in range(1 if args.quick else REPEATS):
        for setting in args.settings:  # repeats outermost: a change of load hits every W
            steps = QUICK_STEPS[setting] if args.quick else SETTINGS[setting]["steps"]
            for workers in SETTINGS[setting]["workers"]:
                row = measure(setting, workers, steps, repeat)
                runs.append(row)
                print(
                    f"{setting} W={workers} repeat {repeat}: {row['samples']:,} samples in "
                    f"{row['seconds']:.2f} s = {row['samples_per_s']:,.0f}/s",
                    flush=True,
                )
    short = [r for r in runs if r["setting"] == "fast" and r["seconds"] < MIN_SECONDS]
    table = markdown_table(runs, args.settings)
    print("\n" + table)
    if short and not args.quick:
        print(f"\nwarning: {len(short)} fast runs lasted less than {MIN_SECONDS} s")
    settings = {"env_id": ENV_ID, "settings": SETTINGS, "quick": args.quick}
    path = write_json(
        args.out, {"machine": machine(), "settings": settings, "runs": runs, "table": table}
    )
    print(f"\nraw numbers: {path}")


if __name__ == "__main__":
    main()
