"""Command line: train any of the course's algorithms outside Jupyter; release and grade the course.

    python -m rlteach ppo --total-steps 100000 --seed 0 --out runs/ppo.json
    python -m rlteach dppo --workers 2 --mode sync --out runs/dppo.json
    python -m rlteach da3c --workers 4 --env-delay 0.001
    python -m rlteach dppo --workers 4 --backend ray --address auto   # on a Ray cluster
    python -m rlteach release --out build/student        # the notebooks without their solutions
    python -m rlteach grade submitted/ --out grades.csv  # run and grade students' notebooks

Every field of the algorithm's config is an option (``python -m rlteach dppo --help``). A progress
bar shows env steps and the recent mean return; at the end a summary table is printed and the
history is written as JSON for a notebook to plot (``rlteach.history.History.load``). Ctrl-C stops the
run and keeps what it learned.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from typing import TYPE_CHECKING

from rlteach.config import add_options, overrides_from, validate
from rlteach.envs import registered_spec
from rlteach.progress import ProgressBar
from rlteach.registry import ALGORITHMS

if TYPE_CHECKING:
    from rlteach.algos.common import TrainResult


def build_parser() -> argparse.ArgumentParser:
    """``python -m rlteach NAME [--field VALUE …]``: one subcommand per algorithm of the registry,
    one option per field of its config (:func:`rlteach.config.add_options`), and the run's files."""
    parser = argparse.ArgumentParser(prog="python -m rlteach", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, algorithm in ALGORITHMS.items():
        p = sub.add_parser(name, help=f"train {name} (notebook {algorithm.notebook})")
        add_options(p, algorithm.config_class())
        p.add_argument("--out", default=None, help="write the history as JSON to this path")
        p.add_argument(
            "--save", default=None, help="write a checkpoint (rlteach.save) to this path"
        )
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        backends = getattr(importlib.import_module(algorithm.module), "BACKENDS", None)
        if backends:
            p.add_argument(
                "--backend",
                choices=backends,
                default=None,
                help="where the workers run (default: local processes)",
            )
            p.add_argument(
                "--address",
                default=None,
                help="with --backend ray: 'auto' or 'ray://HEAD:10001' joins a Ray cluster",
            )
    add_teaching_commands(sub)
    return parser


def add_teaching_commands(sub: argparse._SubParsersAction) -> None:
    """The instructor's two commands (they need ``rlteach[instructor]``)."""
    from rlteach.grading import TIME_LIMIT
    from rlteach.release import NOTEBOOKS

    release = sub.add_parser("release", help="write the student release of the notebooks")
    release.add_argument(
        "--out", default="build/student", help="folder to write (default: %(default)s)"
    )
    release.add_argument(
        "--notebooks",
        default=str(NOTEBOOKS),
        help="the instructor's notebooks (default: %(default)s)",
    )
    grade = sub.add_parser("grade", help="run and grade submitted notebooks")
    grade.add_argument("submissions", help="a folder with one subfolder of notebooks per student")
    grade.add_argument("--out", default="grades.csv", help="the grades CSV (default: %(default)s)")
    grade.add_argument(
        "--time-limit",
        type=float,
        default=TIME_LIMIT,
        help="seconds each notebook may run (default: %(default)s)",
    )


def summary(result: TrainResult, seconds: float) -> str:
    """A small table of what the run reached."""
    from rlteach.plots import Table  # matplotlib: only once a run has ended

    h = result.history
    steps = h.updates[-1]["env_steps"] if h.updates else 0
    reached = h.first_reaching(475)
    rows = [
        ("algorithm", h.meta.get("algorithm", "")),
        ("env", result.config.env_id),
        ("env steps", f"{steps:,}"),
        ("episodes", f"{len(h.episodes):,}"),
        ("mean return, last 20 episodes", f"{h.recent_mean_return():.1f}"),
        ("wall-clock", f"{seconds:.1f} s"),
        ("env steps per second", f"{steps / max(seconds, 1e-9):,.0f}"),
        ("stopped early", "yes (partial result)" if result.interrupted else "no"),
    ]
    if reached and result.config.env_id.startswith("CartPole"):
        rows.append(
            (
                "first reached 475 (last-20 mean)",
                f"{reached['env_steps']:,} steps, {reached['wall_time']:.1f} s",
            )
        )
    if "versions" in h.meta:
        rows.append(("server versions", f"{h.meta['versions']:,}"))
        rows.append(("pushes dropped", f"{h.meta['pushes_dropped']:,}"))
    return repr(Table(rows, ["", ""]))


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, train, print the summary, write the files; the exit code."""
    options = build_parser().parse_args(argv)
    if options.command in ("release", "grade"):
        return teach(options)
    algorithm = ALGORITHMS[options.command]
    placement = {
        k: getattr(options, k) for k in ("backend", "address") if getattr(options, k, None)
    }
    config_cls, train = algorithm.config_class(), algorithm.trainer_function()
    out, save, quiet = options.out, options.save, options.quiet
    try:
        config = config_cls(**overrides_from(options, config_cls))
        validate(config)
        registered_spec(config.env_id)
    except ValueError as exc:
        return _usage_error(exc)
    bar = ProgressBar(config.total_steps, enabled=not quiet)
    start = time.perf_counter()
    try:
        result = train(config, callback=bar, **placement)
    except ValueError as exc:  # the trainers check the rest (backend, W − D, …) before starting
        bar.close()
        return _usage_error(exc)
    bar.close()
    print(summary(result, time.perf_counter() - start))
    if out:
        print(f"history written to {result.history.save(out)}")
    if save:
        from rlteach.checkpoint import save as save_checkpoint

        print(f"checkpoint written to {save_checkpoint(result, save)}")
    return 0


def teach(options: argparse.Namespace) -> int:
    """``release`` or ``grade``; a missing extra or a bad folder is one error line, exit code 2."""
    from pathlib import Path

    from rlteach.grading import grade_submissions
    from rlteach.release import write_student_release

    try:
        if options.command == "release":
            written = write_student_release(Path(options.out), Path(options.notebooks))
            print(f"{len(written)} notebooks written to {options.out}")
        else:
            grades = grade_submissions(
                Path(options.submissions), Path(options.out), options.time_limit
            )
            print(f"{len(grades)} grades written to {options.out} (and its _summary.csv)")
    except (RuntimeError, ValueError) as exc:
        return _usage_error(exc)
    return 0


def _usage_error(exc: Exception) -> int:
    """Bad input: one ``error:`` line on stderr, no traceback, and exit code 2, as argparse does."""
    print(f"error: {exc}", file=sys.stderr)
    return 2
