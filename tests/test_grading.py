"""``python -m rlteach grade``: fake submissions (right, wrong, calling the library, erroring, never
ending) grade to the expected CSV, and one notebook's failure does not stop the others."""

import csv
import os

import nbformat
import pytest

from rlteach import cli
from rlteach.grading import exercises_of

pytestmark = pytest.mark.notebook  # starts a kernel per submission

SETUP = "import numpy as np\nfrom rlteach import checks, tabular"
RIGHT_RTG = """def rewards_to_go(rewards, gamma):
    out, running = np.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out"""
SUBMISSIONS = {  # student: (rewards-to-go, extra cell between the exercises, GAE limits)
    "alice": (RIGHT_RTG, "", 'return "A"'),
    "bob": (
        "def rewards_to_go(rewards, gamma):\n    return np.cumsum(rewards[::-1])[::-1]",
        "",
        'return "B"',
    ),
    "carol": (
        "def rewards_to_go(rewards, gamma):\n    return tabular.rewards_to_go(rewards, gamma)",
        "",
        'return "A"',
    ),
    "dave": (RIGHT_RTG, "1 / 0", 'return "A"'),
    "erin": (RIGHT_RTG, "while True:\n    pass", 'return "A"'),
}


def graded_cell(source, grade_id, solution):
    meta = {
        "grade": not solution,
        "solution": solution,
        "grade_id": grade_id,
        "locked": not solution,
        "schema_version": 3,
        "task": False,
    }
    if not solution:
        meta["points"] = 1
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta})


def submission(rewards_to_go, between, gae_limits):
    cells = [
        nbformat.v4.new_code_cell(SETUP),
        graded_cell(rewards_to_go, "ex01_2", solution=True),
        graded_cell("checks.check_rewards_to_go(rewards_to_go)", "ex01_2_check", solution=False),
        nbformat.v4.new_code_cell(between),
        graded_cell(f"def gae_limits():\n    {gae_limits}", "ex03_3", solution=True),
        graded_cell("checks.check_gae_limits(gae_limits)", "ex03_3_check", solution=False),
    ]
    return nbformat.v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "rlteach", "language": "python", "display_name": "rlteach"}
        },
    )


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("submitted")
    for student, parts in SUBMISSIONS.items():
        folder = root / student / "week1"
        folder.mkdir(parents=True)
        nbformat.write(submission(*parts), folder / "exercises.ipynb")
    out = root.parent / "grades.csv"
    assert cli.main(["grade", str(root), "--out", str(out), "--time-limit", "30"]) == 0
    with out.open() as f:
        rows = {(r["student"], r["exercise"]): r for r in csv.DictReader(f)}
    with out.with_name("grades_summary.csv").open() as f:
        summary = {r["student"]: r for r in csv.DictReader(f)}
    return rows, summary


def test_exercises_are_read_from_the_check_cells():
    assert exercises_of(submission(*SUBMISSIONS["alice"])) == {"01.2": 1.0, "03.3": 1.0}


def test_every_submission_grades_to_the_expected_points(graded):
    rows, summary = graded
    points = {key: float(row["points"]) for key, row in rows.items()}
    assert points == {
        ("alice", "01.2"): 1,
        ("alice", "03.3"): 1,
        ("bob", "01.2"): 0,
        ("bob", "03.3"): 0,
        ("carol", "01.2"): 0,
        ("carol", "03.3"): 1,
        ("dave", "01.2"): 1,
        ("dave", "03.3"): 0,
        ("erin", "01.2"): 1,
        ("erin", "03.3"): 0,
    }
    assert {s: (r["points"], r["max_points"]) for s, r in summary.items()} == {
        "alice": ("2", "2"),
        "bob": ("0", "2"),
        "carol": ("1", "2"),
        "dave": ("1", "2"),
        "erin": ("1", "2"),
    }
    assert all(row["notebook"] == "exercises" for row in rows.values())


def test_each_grade_says_why(graded):
    rows, _ = graded
    assert "agrees with the reference" in rows["alice", "01.2"]["message"]
    assert "largest difference" in rows["bob", "01.2"]["message"]
    assert "not this choice (B)" in rows["bob", "03.3"]["message"]
    assert "rlteach.tabular.reinforce.rewards_to_go" in rows["carol", "01.2"]["message"]
    assert "library's own answer" in rows["carol", "01.2"]["message"]
    assert "ZeroDivisionError" in rows["dave", "03.3"]["message"]
    assert "time limit" in rows["erin", "03.3"]["message"]


def test_a_missing_folder_is_one_error_line(tmp_path, capsys):
    assert cli.main(["grade", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("student, expected", [("alice", [1.0, 1.0]), ("bob", [0.0, 0.0])])
def test_nbgrader_scores_the_check_cells_as_the_checks_say(student, expected, tmp_path):
    """Under nbgrader's autograder (``NBGRADER_EXECUTION`` set) a failed check raises, and
    nbgrader's own ``determine_grade`` scores its cell 0; a passed one gets the cell's points."""
    from nbclient import NotebookClient
    from nbgrader.utils import determine_grade

    nb = submission(*SUBMISSIONS[student])
    client = NotebookClient(nb, kernel_name="rlteach", timeout=60, allow_errors=True)
    client.execute(env={**os.environ, "NBGRADER_EXECUTION": "autograde"})
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert [determine_grade(c)[0] for c in cells] == expected
