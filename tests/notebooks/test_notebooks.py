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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_requires_the_library_version_it_was_written_for(path):
    nb = nbformat.read(path, as_version=4)
    setup = next(c.source for c in nb.cells if c.cell_type == "code")
    found = re.search(r"rlteach\.require_version\(\"([0-9.]+)\"\)", setup)
    assert found, f"{path.name}: the first code cell must call rlteach.require_version(...)"
    assert found.group(1).split(".")[:2] == rlteach.__version__.split(".")[:2]


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_runs_headless_in_the_fast_profile(path, monkeypatch, record_property):
    monkeypatch.setenv("RLTEACH_FAST", "1")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT, resources={"metadata": {"path": path.parent}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the cell on any error
    elapsed = time.perf_counter() - start
    record_property("seconds", round(elapsed, 1))
    print(f"{path.name}: {elapsed:.1f} s")
