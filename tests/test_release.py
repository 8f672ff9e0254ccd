"""The student release hides every solution, keeps every check, and the exercises cover the course:
2–4 per notebook, each kind in at least half the notebooks, each checked by one locked cell."""

import re
from collections import Counter
from pathlib import Path

import nbformat
import pytest

from rlteach import checks
from rlteach.release import NOTEBOOKS, student_version, write_student_release

PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)


def nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    target = tmp_path_factory.mktemp("student")
    written = write_student_release(target)
    return {p.name: nbformat.read(p, as_version=4) for p in written}


def test_every_notebook_is_released(release):
    assert sorted(release) == [p.name for p in PATHS]


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_the_release_holds_no_solution_line_and_no_output(path, release):
    instructor = nbformat.read(path, as_version=4)
    released = release[path.name]
    text = "\n".join(c.source for c in released.cells)
    for cell in filter(lambda c: nbgrader(c).get("solution"), instructor.cells):
        for body in SOLUTION.findall(cell.source):
            for line in filter(None, (row.strip() for row in body.splitlines())):
                assert line not in text, (
                    f"{path.name}: the release shows the solution line {line!r}"
                )
    assert "BEGIN SOLUTION" not in text
    assert not any(c.get("outputs") for c in released.cells if c.cell_type == "code")
    assert not any(c.metadata.get("jupyter", {}).get("source_hidden") for c in released.cells)
    stubs = [c for c in released.cells if nbgrader(c).get("solution")]
    assert stubs and all("raise NotImplementedError()" in c.source for c in stubs)


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_check_cells_are_locked_and_name_their_exercise(path, release):
    checks_cells = [c for c in release[path.name].cells if nbgrader(c).get("grade")]
    ids = {nbgrader(c)["grade_id"][2:-6].replace("_", ".") for c in checks_cells}
    mine = {e.id for e in checks.EXERCISES if e.id[:2] == path.name[:2]}
    assert ids == mine, f"{path.name}: check cells for {sorted(ids)}, exercises {sorted(mine)}"
    for cell in checks_cells:
        assert cell.metadata["editable"] is False and cell.metadata["deletable"] is False
        assert re.fullmatch(r"checks\.check_\w+\(.*\)", cell.source.strip(), re.S), cell.source


def test_exercises_cover_every_notebook_and_every_kind():
    per_notebook = Counter(e.id[:2] for e in checks.EXERCISES)
    assert sorted(per_notebook) == [p.name[:2] for p in PATHS]
    assert all(2 <= n <= 4 for n in per_notebook.values()), per_notebook
    for kind in ("implement", "predict", "explain"):
        notebooks = {e.id[:2] for e in checks.EXERCISES if e.kind == kind}
        assert len(notebooks) >= len(PATHS) / 2, f"{kind}: only in notebooks {sorted(notebooks)}"


def test_a_marker_outside_a_solution_cell_is_refused():
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")]
    )
    with pytest.raises(RuntimeError, match="non-solution cell"):
        student_version(nb)


def test_make_student_writes_the_release_where_the_readme_says():
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert re.search(r"^student:.*\n\t.*-m rlteach release --out build/student", makefile, re.M)
