"""Every notebook runs headless through the ``rlteach`` kernel in the fast profile, and is committed
clean: no outputs, no execution counts, and a version requirement that matches the library."""

import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

import rlteach
from rlteach.release import student_version

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
KERNEL = "rlteach"
CELL_TIMEOUT = 600  # seconds: no cell of the fast profile comes near it; a hang still ends


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


def test_the_rlteach_kernel_is_registered_and_runs_this_python():
    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pytest.fail(
            "kernel 'rlteach' is not registered: run `make lab` or `make test` to create it"
        )
    assert Path(spec.argv[0]).resolve().parent == Path(os.sys.executable).resolve().parent


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} store outputs; strip them before committing"
    missing = [i for i, c in enumerate(nb.cells) if not c.get("id")]
    assert not missing, f"{path.name}: cells {missing} have no id (nbformat 4.5 wants one per cell)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_requires_the_library_version_it_was_written_for(path):
    nb = nbformat.read(path, as_version=4)
    setup = next(c.source for c in nb.cells if c.cell_type == "code")
    found = re.search(r"rlteach\.require_version\(\"([0-9.]+)\"\)", setup)
    assert found, f"{path.name}: the first code cell must call rlteach.require_version(...)"
    assert found.group(1).split(".")[:2] == rlteach.__version__.split(".")[:2]


def is_solution(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("solution", False)


def is_check(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade", False)


def check_outputs(nb):
    """``{check cell source: its text output}`` for every executed check cell of ``nb``."""
    found = {}
    for cell in filter(is_check, nb.cells):
        texts = [o["data"]["text/plain"] for o in cell.outputs if "text/plain" in o.get("data", {})]
        found[cell.source] = "\n".join(texts)
    return found


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_release_runs_headless_and_the_solutions_pass_their_checks(
    path, monkeypatch, record_property
):
    """One run proves both versions: the student release runs start to finish in the fast profile
    with every check saying "not attempted yet"; then, in the same kernel (the state the instructor's
    notebook has when it reaches its exercises), the instructor's solution and check cells run and
    every check passes."""
    monkeypatch.setenv("RLTEACH_FAST", "1")
    instructor = nbformat.read(path, as_version=4)
    nb = student_version(instructor)
    client = NotebookClient(
        nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT, resources={"metadata": {"path": path.parent}}
    )
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)  # raises CellExecutionError naming the cell
        student = check_outputs(nb)
        nb.cells = [c for c in instructor.cells if is_solution(c) or is_check(c)]
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        solutions = check_outputs(nb)
    elapsed = time.perf_counter() - start
    record_property("seconds", round(elapsed, 1))
    print(f"{path.name}: {elapsed:.1f} s")
    assert 2 <= len(student) <= 4, f"{path.name}: {len(student)} exercises (2–4 wanted)"
    unattempted = {src: out for src, out in student.items() if "[NOT ATTEMPTED]" not in out}
    assert not unattempted, (
        f"{path.name}: checks of the release that do not say not attempted: {unattempted}"
    )
    failed = {src: out for src, out in solutions.items() if "[PASSED]" not in out}
    assert not failed, f"{path.name}: checks the instructor's solutions fail: {failed}"
