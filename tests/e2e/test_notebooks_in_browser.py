"""Every notebook runs in JupyterLab in a real Chromium and shows what a student should see: the
``rlteach`` kernel, no error output, every widget drawn by the widget front end (not its text repr,
not "Error displaying widget"), the figures as images, and the agent's episodes as animations that
play. The Train button of notebook 04's panel trains with the controls' values, its live plot and
its progress change while it runs, its Stop button (or the toolbar's interrupt) stops the run and
keeps the partial result, and a second run appears beside the first.

A screenshot of each notebook after its run (also after a failure) is saved under ``build/e2e/``.
"""

from __future__ import annotations

import base64
import io
import re
import time
from contextlib import contextmanager

import pytest
from PIL import Image, ImageSequence
from playwright.sync_api import expect

from rlteach import checks

from .lab import ARTIFACTS, NOTEBOOKS, STUDENT_RELEASE, VIEWPORT

pytestmark = pytest.mark.e2e

KERNEL_DISPLAY_NAME = "Python (rlteach)"
RUN_ALL_TIMEOUT = 420  # seconds per notebook: a hang ends; the slowest takes 1–4 min under load
STEP_TIMEOUT = 120  # seconds for one cell, one live-plot redraw, or the interrupt to land
# The notebook's scrolling box: the height the page needs to show all of it, and back to its top.
FULL_HEIGHT_JS = """() => {
    const box = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
    return box ? box.scrollHeight + window.innerHeight - box.clientHeight : 0;
}"""
SCROLL_TO_TOP_JS = """() => {
    const box = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
    if (box) box.scrollTop = 0;
}"""
SCREENSHOT_MAX_HEIGHT = 16_000  # px; Chromium's headless screenshots stay reliable below this
# Figures each notebook shows at least, counted in a headless run of the fast profile: the cells'
# image/png outputs plus the images inside widget Output areas (the explorers of 01 and 05 draw one).
MIN_IMAGES = {
    "01_policy_gradient_theorem": 7,
    "02_reinforce": 2,
    "03_actor_critic": 3,
    "04_ppo": 5,
    "05_distributed_patterns": 3,
    "06_da3c": 4,
    "07_dppo": 5,
    "08_beyond_one_machine": 3,
    "09_actors_and_learners": 2,
}
# Animated episodes (rlteach.show_episode's GIFs) each notebook shows at least.
MIN_ANIMATIONS = {"02_reinforce": 2, "04_ppo": 4, "06_da3c": 2}
GIF = 'img[src^="data:image/gif"]'

EXERCISES = {p.stem: sum(e.id[:2] == p.stem[:2] for e in checks.EXERCISES) for p in NOTEBOOKS}

# The run as the page knows it: the kernel's status in the toolbar, any dialog, and each code cell's
# execution count and state from the notebook's model (a cell with hidden input shows no prompt).
PROGRESS_JS = """() => {
    const panel = window.jupyterapp?.shell.currentWidget;
    const cells = panel?.content?.widgets?.filter(c => c.model.type === 'code') ?? [];
    return {
        status: document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status ?? null,
        kernel: document.querySelector('.jp-Toolbar-kernelName')?.textContent.trim() ?? null,
        dialog: document.querySelector('.jp-Dialog')?.innerText ?? null,
        counts: cells.map(c => c.model.executionCount),
        running: cells.map(c => c.model.executionState === 'running'),
    };
}"""

# Per code cell: error outputs (from the notebook's model, the front end's record of each output),
# and, from the page, each widget output's rendering, widget errors and the images.
REPORT_JS = """() => {
    const WIDGET = 'application/vnd.jupyter.widget-view+json';
    const panel = window.jupyterapp.shell.currentWidget;
    return panel.content.widgets.filter(c => c.model.type === 'code').map(cell => {
        const area = cell.outputArea.node;
        const outputs = cell.model.outputs.toJSON();
        const nodes = cell.outputArea.widgets.map(w => w.node);
        const views = outputs.map((o, i) => [o, nodes[i]]).filter(([o]) => o.data && WIDGET in o.data);
        const stderr = '.widget-output [data-mime-type="application/vnd.jupyter.stderr"]';
        return {
            count: cell.model.executionCount,
            errors: outputs.filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`),
            widget_tracebacks: [...area.querySelectorAll(stderr)].map(n => n.innerText)
                .filter(t => t.includes('Traceback')).map(t => t.slice(0, 300)),
            unrendered_widgets: views.filter(([o, node]) => !node
                    || !node.querySelector('.jupyter-widgets')
                    || node.innerText.includes('Error displaying widget'))
                .map(([o, node]) => node ? node.innerText.slice(0, 120) : '(no output node)'),
            broken_widget_views: area.querySelectorAll('.jupyter-widgets-error-widget').length,
            images: [...area.querySelectorAll('img')].map(img => img.complete && img.naturalWidth > 0),
        };
    });
}"""


# ---------------------------------------------------------------------------------------------
# Driving JupyterLab


def open_notebook(page, lab, name: str) -> None:
    """Open ``name`` in a fresh workspace and wait until its kernel, which must be ``rlteach``
    (from the notebook's metadata), is idle. JupyterLab asks for a kernel when it cannot find it:
    that dialog fails the test."""
    page.goto(lab.url(f"lab/tree/{name}"))
    page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell")
    state = wait_for(
        page,
        lambda s: s["dialog"] or (s["status"] == "idle" and s["kernel"] == KERNEL_DISPLAY_NAME),
        STEP_TIMEOUT,
        "the rlteach kernel to start",
    )
    assert not state["dialog"], f"{name}: JupyterLab asks for a kernel:\n{state['dialog']}"


def wait_for(page, done, timeout: float, what: str, stable: int = 1) -> dict:
    """Poll the page's progress (``PROGRESS_JS``) once a second until ``done(progress)`` has held
    for ``stable`` polls in a row; return it, or fail after ``timeout`` seconds."""
    deadline, streak, state = time.monotonic() + timeout, 0, None
    while time.monotonic() < deadline:
        state = page.evaluate(PROGRESS_JS)
        streak = streak + 1 if done(state) else 0
        if streak >= stable:
            return state
        page.wait_for_timeout(1000)
    pytest.fail(f"waited {timeout} s for {what}; last seen: {state}")


def run_all_cells(page) -> None:
    """Run → Run All Cells, from the menu bar."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator('.lm-Menu [data-command="runmenu:run-all"]').click()


def all_runs_ended(state: dict) -> bool:
    """The kernel is idle, no cell is queued or running (``[*]``) and the first one has run. A
    cell after an error gets no count: the run has ended then too, and the report says which cells
    did not run."""
    return (
        state["status"] == "idle" and not any(state["running"]) and state["counts"][0] is not None
    )


def run_cell(page, cell) -> None:
    """Select one code cell by its prompt and run it with the toolbar's ▶ button."""
    cell.locator(".jp-InputPrompt").click()
    page.locator(
        '.jp-NotebookPanel-toolbar [data-command="notebook:run-cell-and-select-next"]'
    ).click()


def interrupt_kernel(page) -> None:
    page.locator('.jp-NotebookPanel-toolbar [data-command="notebook:interrupt-kernel"]').click()


def wait_idle(page, what: str) -> dict:
    # Two idle polls in a row: between two queued requests the kernel is idle for an instant.
    return wait_for(page, all_runs_ended, STEP_TIMEOUT, what, stable=2)


@contextmanager
def screenshot_at_the_end(page, stem: str):
    """Save a full-height screenshot of the notebook as ``build/e2e/<stem>.png`` when the block
    ends, passed or failed. JupyterLab scrolls the notebook inside its panel, so the viewport is
    first made as tall as the notebook (capped at ``SCREENSHOT_MAX_HEIGHT``)."""
    try:
        yield
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.evaluate("() => window.jupyterapp?.shell.collapseLeft()")  # the file browser
        tall = min(SCREENSHOT_MAX_HEIGHT, max(VIEWPORT["height"], page.evaluate(FULL_HEIGHT_JS)))
        page.set_viewport_size({"width": VIEWPORT["width"], "height": tall})
        page.evaluate(SCROLL_TO_TOP_JS)
        page.wait_for_timeout(1000)  # let JupyterLab lay the taller panel out and paint it
        page.screenshot(path=ARTIFACTS / f"{stem}.png", full_page=True)


# ---------------------------------------------------------------------------------------------
# Every notebook, Run All


def problems_in(report: list) -> list:
    """Human-readable problems of a ``REPORT_JS`` report, one per finding, naming the cell."""
    found = []
    for index, cell in enumerate(report):
        where = f"code cell {index} [{cell['count'] or ' '}]"
        if cell["count"] is None:
            found.append(f"{where} did not run")
        found += [f"{where} shows the error {e}" for e in cell["errors"]]
        found += [f"{where} shows a traceback in a widget: {t}" for t in cell["widget_tracebacks"]]
        found += [f"{where}: widget not rendered, shows {t!r}" for t in cell["unrendered_widgets"]]
        if cell["broken_widget_views"]:
            found.append(f"{where}: {cell['broken_widget_views']} widget view(s) failed to render")
        if not all(cell["images"]):
            found.append(f"{where}: {cell['images'].count(False)} image(s) did not load")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_jupyterlab_and_shows_no_error_every_widget_and_its_figures(
    path, page, lab, record_property
):
    start = time.perf_counter()
    with screenshot_at_the_end(page, path.stem):
        open_notebook(page, lab, path.name)
        run_all_cells(page)
        wait_for(page, all_runs_ended, RUN_ALL_TIMEOUT, f"{path.name} to run", stable=2)
        report = page.evaluate(REPORT_JS)
    elapsed = time.perf_counter() - start
    record_property("seconds", round(elapsed, 1))
    print(f"{path.name}: {elapsed:.1f} s in the browser")

    problems = problems_in(report)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
    images = sum(len(cell["images"]) for cell in report)
    assert images >= MIN_IMAGES[path.stem], (
        f"{path.name} shows {images} images, expected at least {MIN_IMAGES[path.stem]}"
    )
    checks_shown = page.locator(".jp-OutputArea-output", has_text="not attempted yet").count()
    if path.stem in STUDENT_RELEASE:  # the checker's message, as the page shows it to a student
        assert checks_shown == EXERCISES[path.stem], (
            f"{path.name} (student release): {checks_shown} checks say 'not attempted yet', "
            f"expected one per exercise ({EXERCISES[path.stem]})"
        )
    else:
        assert checks_shown == 0, f"{path.name}: a solution did not run before its check"
    animations = page.locator(f".jp-OutputArea-output {GIF}")
    assert animations.count() >= MIN_ANIMATIONS.get(path.stem, 0), (
        f"{path.name} shows {animations.count()} animated episodes, expected at least "
        f"{MIN_ANIMATIONS.get(path.stem, 0)}"
    )
    if animations.count():
        assert plays(animations.last), f"{path.name}: the last episode's animation does not play"


def plays(image) -> bool:
    """Whether the page shows different frames of ``image``, a GIF, within one loop of it and a
    margin: screenshots of the element, as fast as they come. A short episode moves for a fifth of
    a second and then holds its last frame for a second (``rlteach.episodes.END_PAUSE_MS``), so
    screenshots at fixed intervals over a second can all fall on the held frame."""
    image.scroll_into_view_if_needed()
    first = image.screenshot()
    deadline = time.monotonic() + gif_loop_seconds(image.get_attribute("src")) + 1.0
    while time.monotonic() < deadline:
        if image.screenshot() != first:
            return True
    return False


def gif_loop_seconds(data_uri: str) -> float:
    """How long one loop of the GIF in ``data_uri`` (``data:image/gif;base64,...``) lasts."""
    with Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))) as gif:
        return sum(frame.info.get("duration", 0) for frame in ImageSequence.Iterator(gif)) / 1000


def test_every_notebook_has_an_expected_figure_count():
    assert set(MIN_IMAGES) == {p.stem for p in NOTEBOOKS}


# ---------------------------------------------------------------------------------------------
# Notebook 04's training panel, by hand

PANEL_NOTEBOOK = "04_ppo"
STEPS_TO_TYPE = 10_000_000  # far more than the run lasts: only the interrupt ends it
CHECK_CELL = (
    "r = panel.result\n"
    "print(f'clip_eps={r.config.clip_eps!r} total_steps={r.config.total_steps} '\n"
    "      f'interrupted={r.interrupted} runs={len(panel.results)} updates={len(r.history.updates)}')"
)


def open_panel(page, lab):
    """Open notebook 04, run its set-up cell (imports, fast-profile sizes) and its panel's cell,
    and return the panel as the page shows it."""
    open_notebook(page, lab, f"{PANEL_NOTEBOOK}.ipynb")
    cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
    panel_cell = cells.filter(has_text="widgets.TrainingPanel(")
    run_cell(page, cells.first)
    run_cell(page, panel_cell)
    wait_idle(page, "the set-up and panel cells to run")
    return panel_cell.locator(".jp-OutputArea-output .widget-vbox").first


def run_new_cell(page, code: str) -> str:
    """Insert a code cell below the selected one, type ``code`` into it, run it and return the
    text of its output."""
    page.locator('.jp-NotebookPanel-toolbar [data-command="notebook:insert-cell-below"]').click()
    page.locator(".jp-CodeCell.jp-mod-active .cm-content").click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")
    wait_idle(page, "the new cell to run")
    cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
    first_line = code.splitlines()[0]
    return cells.filter(has_text=first_line).locator(".jp-OutputArea-output").inner_text()


def control(panel, name: str):
    """The ipywidgets control whose description is ``name``."""
    label = panel.page.locator("label.widget-label", has_text=re.compile(f"^{name}$"))
    return panel.locator(".widget-inline-hbox", has=label)


def live_plot_src(panel) -> str | None:
    """The ``src`` of the live plot's image in the panel (None before the first redraw)."""
    images = panel.locator(".widget-output img")
    return images.first.get_attribute("src") if images.count() else None


def wait_for_src(panel, accept, what: str) -> str:
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        src = live_plot_src(panel)
        if accept(src):
            return src
        panel.page.wait_for_timeout(250)
    pytest.fail(f"waited {STEP_TIMEOUT} s for {what}")


def test_training_panel_trains_with_the_controls_shows_live_progress_and_stops_on_interrupt(
    page, lab
):
    with screenshot_at_the_end(page, f"{PANEL_NOTEBOOK}_training_panel"):
        panel = open_panel(page, lab)
        train_row = panel.locator(".widget-hbox", has=page.get_by_role("button", name="Train"))
        train, status = (
            train_row.get_by_role("button", name="Train"),
            panel.locator(".rlteach-status"),
        )

        # Move the clip-range slider five steps with the keyboard, as a student would.
        clip = control(panel, "clip_eps")
        before = clip.locator(".widget-readout").inner_text()
        clip.locator(".noUi-handle").focus()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        clip_readout = clip.locator(".widget-readout").inner_text()
        assert float(clip_readout) > float(before), (
            f"the slider did not move: {before} → {clip_readout}"
        )
        steps = control(panel, "total_steps").locator("input")
        steps.fill(str(STEPS_TO_TYPE))
        steps.press("Tab")  # the text box sends its value when it loses focus

        train.click()
        first = wait_for_src(panel, lambda src: src is not None, "the live plot to appear")
        wait_for_src(panel, lambda src: src not in (None, first), "the live plot to change")
        assert status.inner_text() == "training…", "the run ended before it was interrupted"
        assert train.is_disabled(), "the Train button is enabled while training runs"

        interrupt_kernel(page)
        page.wait_for_function(
            "el => el.innerText.includes('stopped — partial result kept')",
            arg=status.element_handle(),
            timeout=STEP_TIMEOUT * 1000,
        )
        wait_idle(page, "the kernel to be idle after the interrupt")
        assert train.is_enabled(), "the Train button stays disabled after the run"

        # The kernel's record of the run: the slider's value, the typed steps, a partial result.
        text = run_new_cell(page, CHECK_CELL)
    found = dict(re.findall(r"(\w+)=(\S+)", text))
    # The readout shows the value to 4 significant digits (readout_format ".4g").
    assert float(found["clip_eps"]) == pytest.approx(float(clip_readout), rel=5e-4), text
    assert found["total_steps"] == str(STEPS_TO_TYPE), text
    assert found["interrupted"] == "True" and found["runs"] == "1", text
    assert int(found["updates"]) >= 2, text  # the live plot changed, so at least two updates ran


STOP_WITHIN = 2.0  # seconds from the click on Stop to the status line saying so
SECOND_RUN_STEPS = 4_096  # a run that ends by itself in a few seconds
COMPARE_CELL = (
    "figure, table = panel.compare()\n"
    "print([t.get_text() for t in figure.axes[0].get_legend().get_texts()])"
)


def test_training_panel_stop_button_progress_and_two_runs_side_by_side(page, lab):
    with screenshot_at_the_end(page, f"{PANEL_NOTEBOOK}_training_panel_stop"):
        panel = open_panel(page, lab)
        train = panel.get_by_role("button", name="Train")
        stop = panel.get_by_role("button", name="Stop")
        status, progress = panel.locator(".rlteach-status"), panel.locator(".rlteach-progress")
        assert stop.is_disabled(), "Stop is enabled before any run"
        steps = control(panel, "total_steps").locator("input")
        steps.fill(str(STEPS_TO_TYPE))
        steps.press("Tab")

        train.click()
        first = wait_for_text(progress, lambda t: "env steps" in t, "the progress to show")
        wait_for_text(progress, lambda t: t != first, "the progress to move")
        assert "steps/s" in progress.inner_text() and stop.is_enabled()

        stop.click()
        clicked = time.monotonic()
        page.wait_for_function(
            "el => el.innerText.includes('stopped — partial result kept')",
            arg=status.element_handle(),
            timeout=STEP_TIMEOUT * 1000,
        )
        took = time.monotonic() - clicked
        print(f"Stop: the status said so {took:.2f} s after the click")
        assert took <= STOP_WITHIN, f"the run stopped {took:.1f} s after the click on Stop"
        expect(train).to_be_enabled(timeout=STEP_TIMEOUT * 1000)  # once the figures are drawn
        expect(stop).to_be_disabled()

        # A second run with two other settings: it appears beside the first.
        clip = control(panel, "clip_eps")
        clip.locator(".noUi-handle").focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        steps.fill(str(SECOND_RUN_STEPS))
        steps.press("Tab")
        train.click()
        page.wait_for_function(
            "el => el.innerText.startsWith('run 2:')",
            arg=status.element_handle(),
            timeout=STEP_TIMEOUT * 1000,
        )
        rows = panel.locator(".rlteach-runs table tbody tr")
        wait_for_text(rows.last, lambda t: t.startswith("run 2:"), "the second row of runs")
        labels = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
        comparison_images = panel.locator(".rlteach-runs img").count()

        legend_text = run_new_cell(page, COMPARE_CELL)  # also: the kernel runs cells again
    assert len(labels) == 2 and labels[0] == "run 1", labels
    assert "clip_eps = " in labels[1] and f"total_steps = {SECOND_RUN_STEPS}" in labels[1], labels
    assert comparison_images == 1, "the panel does not show the figure of its runs"
    assert legend_text.strip() == repr(labels), (legend_text, labels)


def wait_for_text(element, accept, what: str) -> str:
    """Poll ``element``'s text until ``accept(text)``; return it, or fail after STEP_TIMEOUT."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        text = element.inner_text() if element.count() else ""
        if accept(text):
            return text
        element.page.wait_for_timeout(200)
    pytest.fail(f"waited {STEP_TIMEOUT} s for {what}")
