"""The JupyterLab server of the browser suite (from the project's ``.venv``, serving a copy of the
notebooks) and the settings of Debian's Chromium, which Playwright drives.

The server runs on a free loopback port with a random token and private Jupyter folders (config,
data, runtime, settings, workspaces, IPython), so neither the user's setup nor the network can
change what the test sees: news and update checks are off, the extension manager is read-only,
autosave is off (the copies stay as they were). Its kernels inherit ``RLTEACH_FAST=1``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil

from rlteach.release import student_version

ROOT = Path(__file__).parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
JUPYTER_LAB = ROOT / ".venv" / "bin" / "jupyter-lab"
# Served as the students get it (`make student`): solutions replaced, so its checks say "not
# attempted yet"; the other notebooks are served as the instructor's version.
STUDENT_RELEASE = {"01_policy_gradient_theorem"}
ARTIFACTS = ROOT / "build" / "e2e"  # screenshots and the server log, for a person to see
CHROMIUM = "/usr/bin/chromium"  # what Debian's chromium package installs
# Playwright adds --headless (headless=True) and --user-data-dir (the fresh profile folder below).
CHROMIUM_FLAGS = [
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
SERVER_START_TIMEOUT = 120  # seconds; the server answers after ~5 s on a loaded 2-core machine
SERVER_STOP_TIMEOUT = 30
USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


@dataclass
class LabServer:
    """A running JupyterLab: ``url(path)`` for the browser, ``api(...)`` for its REST API."""

    process: subprocess.Popen
    base: str
    token: str
    root: Path
    log: Path

    def url(self, path: str) -> str:
        return f"{self.base}/{path}?reset&token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 10):
        request = urllib.request.Request(
            f"{self.base}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Stop every kernel (and so its worker processes): each notebook starts from nothing."""
        for kernel in self.api("kernels"):
            self.api(f"kernels/{kernel['id']}", method="DELETE", timeout=SERVER_STOP_TIMEOUT)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_jupyter_dirs(base: Path) -> dict:
    """Environment variables that point every Jupyter and IPython folder into ``base``, with the
    user settings of ``USER_SETTINGS`` written there. Kernel specs and lab extensions still come
    from the ``.venv`` (sys-prefix), where ``make`` installs them."""
    dirs = {
        name: base / name.lower()
        for name in (
            "JUPYTER_CONFIG_DIR",
            "JUPYTER_DATA_DIR",
            "JUPYTER_RUNTIME_DIR",
            "JUPYTERLAB_SETTINGS_DIR",
            "JUPYTERLAB_WORKSPACES_DIR",
            "IPYTHONDIR",
        )
    }
    for path in dirs.values():
        path.mkdir(parents=True)
    for name, settings in USER_SETTINGS.items():
        file = dirs["JUPYTERLAB_SETTINGS_DIR"] / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(settings))
    return {name: str(path) for name, path in dirs.items()}


def wait_until_answering(server: LabServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited at start:\n{server.log_tail()}")
        try:
            server.api("status", timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise TimeoutError(
        f"JupyterLab did not answer in {SERVER_START_TIMEOUT} s:\n{server.log_tail()}"
    )


def stop(server: LabServer) -> None:
    """Shut the kernels down, stop the server, and kill whatever of its process tree is left."""
    family = []
    with contextlib.suppress(psutil.NoSuchProcess):
        family = psutil.Process(server.process.pid).children(recursive=True)
    with contextlib.suppress(OSError):  # the server is gone or stuck: the kills below still run
        server.shutdown_kernels()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(SERVER_STOP_TIMEOUT)
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(family, timeout=SERVER_STOP_TIMEOUT)


def lab_command(port: int, token: str, root: Path) -> list:
    return [
        str(JUPYTER_LAB),
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_root=True",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: read the notebook's model
    ]


def start_lab(base: Path) -> LabServer:
    """Copy the notebooks into ``base/notebooks`` (those of ``STUDENT_RELEASE`` as released) and
    serve that folder with JupyterLab from the project's .venv; return once the server answers (stop
    it with :func:`stop`)."""
    if not JUPYTER_LAB.exists():
        raise FileNotFoundError(f"{JUPYTER_LAB} is missing: run `make test`, which creates .venv")
    root = base / "notebooks"
    root.mkdir()
    for path in NOTEBOOKS:
        if path.stem in STUDENT_RELEASE:
            nbformat.write(student_version(nbformat.read(path, as_version=4)), root / path.name)
        else:
            shutil.copy(path, root / path.name)
    env = {**os.environ, **private_jupyter_dirs(base), "RLTEACH_FAST": "1"}
    port, token = free_port(), secrets.token_hex(24)
    log = base / "server.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            lab_command(port, token, root),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LabServer(process, f"http://127.0.0.1:{port}", token, root, log)
    try:
        wait_until_answering(server)
    except BaseException:
        stop(server)
        raise
    return server
