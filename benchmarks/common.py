"""What the benchmark scripts share: the machine they ran on, when a run reached a return threshold,
medians over seeds, and writing the raw numbers to JSON.

These are benchmarks, not tests: CI does not run them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import gymnasium
import numpy as np
import torch

import rlteach
from rlteach.history import History

WINDOW = 20  # "solved" is judged on the mean return of the last WINDOW training episodes


def single_thread() -> None:
    """One torch thread for every library measured, so no library is timed with more cores."""
    torch.set_num_threads(1)


def machine() -> dict:
    """Where and when the numbers were taken: date, cores, load averages, library versions."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpus": os.cpu_count(),
        "load_average_1_5_15min": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
        "rlteach": rlteach.__version__,
    }


def reaching(history: History, threshold: float, last: int = WINDOW) -> dict:
    """``steps_to`` and ``time_to`` (env steps and seconds since the run started) at the first
    episode where the mean of the last ``last`` training returns is ``>= threshold``; both None if
    the run never got there."""
    row = history.first_reaching(threshold, last=last)
    if row is None:
        return {"steps_to": None, "time_to": None}
    return {"steps_to": int(row["env_steps"]), "time_to": float(row["wall_time"])}


def median_range(values: list[float | None], digits: int = 0) -> str:
    """``"median (min–max)"`` of the values that are not None, with ``k/n`` appended when only ``k``
    of the ``n`` runs have a value (e.g. runs that never reached the threshold); ``"never"`` when
    none has."""
    present = [v for v in values if v is not None]
    if not present:
        return "never"
    text = f"{statistics.median(present):,.{digits}f} ({min(present):,.{digits}f}–{max(present):,.{digits}f})"
    if len(present) < len(values):
        text += f", {len(present)}/{len(values)} runs"
    return text


def ratio_of_medians(numerator: list[float | None], denominator: list[float | None]) -> str:
    """``median(numerator) / median(denominator)`` over the values present, as ``"1.23x"``; ``"n/a"``
    when either side has no value."""
    top = [v for v in numerator if v is not None]
    bottom = [v for v in denominator if v is not None]
    if not top or not bottom:
        return "n/a"
    return f"{statistics.median(top) / statistics.median(bottom):.2f}x"


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as indented JSON, creating the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    return path


def benchmark_parser(doc: str, name: str, quick_help: str, seeds: int | None = None):
    """The options every benchmark shares: ``--quick``, ``--out`` (JSON under
    /tmp/rlteach-bench/NAME.json) and, when ``seeds`` is given, ``--seeds`` (0..S-1)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    if seeds is not None:
        parser.add_argument(
            "--seeds", type=int, default=seeds, help=f"seeds 0..S-1 (default {seeds})"
        )
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--out", default=f"/tmp/rlteach-bench/{name}.json", help="JSON file for the raw numbers"
    )
    return parser


def parse_checked(parser, argv=None):
    """Parse ``argv``; ``--seeds`` below 1 is an error that names it."""
    args = parser.parse_args(argv)
    if getattr(args, "seeds", 1) < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    return args
