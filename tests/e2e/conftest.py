"""Fixtures of the browser suite: one JupyterLab server and one Chromium per test module, a new tab
per test (see ``lab.py``)."""

import os
import shutil

import pytest

from .lab import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, VIEWPORT, start_lab, stop


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a copy of notebooks/ (nothing in the repository gets saved); always
    stopped, with its kernels, at the end of the module, and its log kept in build/e2e/."""
    server = start_lab(tmp_path_factory.mktemp("lab"))
    try:
        yield server
    finally:
        stop(server)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(server.log, ARTIFACTS / "jupyterlab.log")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's Chromium with a fresh profile, driven by Playwright (which never downloads one)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"Chromium is not installed ({CHROMIUM} missing) and `make test` could not install "
            "it (`apt-get install -y chromium` failed): the browser suite needs Debian's chromium"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=VIEWPORT,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser, lab):
    """A new tab; at the end it is closed and the kernels it started are shut down."""
    tab = browser.new_page()
    tab.set_default_timeout(60_000)  # ms: a UI element appearing on a loaded 2-core machine
    try:
        yield tab
    finally:
        tab.close()
        lab.shutdown_kernels()
