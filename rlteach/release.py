"""The student release: the course's notebooks without their solutions.

The notebooks in ``notebooks/`` are the instructor's version. Each exercise is a solution cell whose
answer sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's markers and cell
metadata), followed by a locked check cell. The release passes every notebook through nbgrader's own
preprocessors: ``ClearSolutions`` replaces each answer by ``raise NotImplementedError()``,
``LockCells`` makes the check cells read-only, ``ClearOutput`` empties every output. Every exercise
is a function, so the released notebook still runs start to finish, and each check then says "not
attempted yet".

    make student                                  # build/student/
    python -m rlteach release --out build/student
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbformat import NotebookNode

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
INSTRUCTOR_EXTRA = "pip install 'rlteach[instructor]'"


def nbgrader_preprocessors() -> list[Any]:
    """nbgrader's preprocessors, in the order its ``generate_assignment`` runs them; a clear error
    when the optional extra is not installed."""
    try:
        from nbgrader.preprocessors import ClearOutput, ClearSolutions, LockCells
    except ImportError as exc:
        raise RuntimeError(
            f"the student release uses nbgrader, which is not installed: {INSTRUCTOR_EXTRA}"
        ) from exc
    return [ClearSolutions(enforce_metadata=True), LockCells(), ClearOutput()]


def student_version(notebook: NotebookNode) -> NotebookNode:
    """A copy of ``notebook`` with its solutions replaced, check cells locked and outputs cleared.
    nbgrader raises a ``RuntimeError`` for a solution marker outside a solution cell."""
    released = copy.deepcopy(notebook)
    resources: dict[str, Any] = {}
    for preprocessor in nbgrader_preprocessors():
        released, resources = preprocessor.preprocess(released, resources)
    return released


def write_student_release(target: Path, source: Path = NOTEBOOKS) -> list[Path]:
    """Write the student version of every ``NN_*.ipynb`` notebook of ``source`` into ``target``
    (created; files of a previous release there are overwritten). Returns the notebooks written."""
    import nbformat

    paths = sorted(source.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise ValueError(f"no course notebooks (NN_name.ipynb) in {source}: pass --notebooks")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        out = target / path.name
        nbformat.write(student_version(notebook), out)
        written.append(out)
    return written
