"""Grading submitted notebooks: ``python -m rlteach grade SUBMISSIONS_DIR``.

``SUBMISSIONS_DIR`` holds one folder per student, each with that student's notebooks at any depth
(nbgrader's ``submitted/<student>/<assignment>/`` layout works as it is). Each notebook runs in a
fresh ``rlteach`` kernel, in the fast profile, under a time limit for the whole notebook. Every check
that runs appends its result to a log the grader names (``RLTEACH_GRADE_LOG``); the exercises a
notebook holds are read from its check cells' nbgrader metadata. An exercise whose check never ran
(the notebook stopped at an error or at the time limit, or the cell was deleted) scores 0 with the
reason. One notebook's failure never stops the grading of the others.

The output is a CSV with one row per student, notebook and exercise (points, maximum, the check's
message) and a summary CSV with one row per student.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlteach.checks.core import GRADE_LOG
from rlteach.release import INSTRUCTOR_EXTRA

if TYPE_CHECKING:
    from nbformat import NotebookNode

KERNEL = "rlteach"
TIME_LIMIT = 900.0  # seconds per notebook: the slowest notebook's fast profile takes about 5 min


@dataclass(frozen=True)
class Grade:
    """One exercise of one student's notebook."""

    student: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    message: str


def exercises_of(notebook: NotebookNode) -> dict[str, float]:
    """``{exercise id: points}`` from the notebook's check cells (nbgrader ``grade_id`` ``ex05_1_check``
    is exercise ``05.1``)."""
    found = {}
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = meta.get("grade_id", "")
        if meta.get("grade") and grade_id.startswith("ex") and grade_id.endswith("_check"):
            found[grade_id[2:-6].replace("_", ".")] = float(meta.get("points", 0))
    return found


def run_notebook(path: Path, time_limit: float, log: Path) -> str | None:
    """Execute the notebook at ``path`` in a fresh kernel (its folder as working directory) with the
    checks logging to ``log``; ``None`` when it ran to the end, else why it stopped."""
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    except ImportError as exc:
        raise RuntimeError(f"grading runs notebooks with nbclient: {INSTRUCTOR_EXTRA}") from exc
    notebook = nbformat.read(path, as_version=4)
    deadline = time.monotonic() + time_limit
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        resources={"metadata": {"path": str(path.parent)}},
    )
    env = os.environ | {"RLTEACH_FAST": "1", GRADE_LOG: str(log)}
    try:
        client.execute(env=env)
    except CellTimeoutError:
        return f"stopped at the time limit ({time_limit:g} s for the notebook)"
    except CellExecutionError as exc:
        return f"stopped at an error: {exc.ename}: {exc.evalue}"
    except DeadKernelError as exc:
        return f"the kernel died: {exc}"
    return None


def grade_notebook(student: str, path: Path, time_limit: float = TIME_LIMIT) -> list[Grade]:
    """The grades of every exercise of one submitted notebook."""
    import nbformat

    expected = exercises_of(nbformat.read(path, as_version=4))
    with tempfile.TemporaryDirectory(prefix="rlteach-grade-") as scratch:
        log = Path(scratch) / "checks.jsonl"
        stopped = run_notebook(path, time_limit, log)
        results = _last_result_per_exercise(log)
    grades = []
    for exercise, max_points in expected.items():
        result = results.get(exercise)
        if result is None:
            reason = stopped or "its check cell did not run"
            grades.append(
                Grade(student, path.stem, exercise, 0.0, max_points, f"not graded: {reason}")
            )
        else:
            points = max_points if result["status"] == "passed" else 0.0
            grades.append(
                Grade(student, path.stem, exercise, points, max_points, result["message"])
            )
    return grades


def _last_result_per_exercise(log: Path) -> dict[str, dict[str, Any]]:
    """The last check result the log holds for each exercise (a check run twice counts once)."""
    if not log.exists():
        return {}
    results = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        results[entry["id"]] = entry
    return results


def submissions(directory: Path) -> Iterable[tuple[str, Path]]:
    """``(student, notebook path)`` for every notebook under ``directory/<student>/``, sorted."""
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        for path in sorted(folder.rglob("*.ipynb")):
            if ".ipynb_checkpoints" not in path.parts:
                yield folder.name, path


def grade_submissions(
    directory: Path, out: Path, time_limit: float = TIME_LIMIT, echo: bool = True
) -> list[Grade]:
    """Grade every notebook under ``directory``; write ``out`` (one row per exercise) and
    ``<out stem>_summary.csv`` (one row per student). Returns the grades."""
    if not directory.is_dir():
        raise ValueError(f"submissions directory {directory} does not exist")
    grades: list[Grade] = []
    for student, path in submissions(directory):
        graded = grade_notebook(student, path, time_limit)
        grades += graded
        if echo:
            got, of = sum(g.points for g in graded), sum(g.max_points for g in graded)
            print(f"{student}: {path.name}: {got:g} / {of:g}")
    write_grades(grades, out)
    return grades


def write_grades(grades: list[Grade], out: Path) -> Path:
    """The two CSV files; returns the summary's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, [field.name for field in fields(Grade)])
        writer.writeheader()
        writer.writerows(asdict(g) for g in grades)
    summary = out.with_name(f"{out.stem}_summary.csv")
    with summary.open("w", newline="", encoding="utf-8") as f:
        rows = csv.writer(f)
        rows.writerow(["student", "points", "max_points", "exercises_passed", "exercises"])
        for student in sorted({g.student for g in grades}):
            mine = [g for g in grades if g.student == student]
            rows.writerow(
                [
                    student,
                    f"{sum(g.points for g in mine):g}",
                    f"{sum(g.max_points for g in mine):g}",
                    sum(g.points == g.max_points > 0 for g in mine),
                    len(mine),
                ]
            )
    return summary
