"""DD-PPO's launcher: ``torchrun`` as a subprocess of a notebook or a test (notebook 08).

:func:`run_dppo_torchrun` builds the ``torchrun`` command for a config (:func:`torchrun_command`),
starts it in a session of its own, follows rank 0's history file for a live plot, and turns how it
ended into a result: rank 0's checkpoint, a partial result after a kernel interrupt, or a
:class:`~rlteach.distributed.WorkerError` that names the rank that failed first on its own
(:func:`rank_failure`, read from the error files torchrun's ``@record`` leaves and from its
failure summary). No process of the run outlives the call. What runs inside each rank is
:mod:`rlteach.distributed.allreduce`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from rlteach import checkpoint
from rlteach.algos.common import TrainResult, build_agent, last_callback
from rlteach.config import make_config
from rlteach.distributed.allreduce import PeerFailure, check_launch, import_env_fn
from rlteach.distributed.configs import COLLECTIVE_TIMEOUT, DPPOConfig, LaunchOptions
from rlteach.distributed.runtime import WorkerError
from rlteach.history import Callback, History

POLL = 0.2  # seconds between the launcher's looks at torchrun and the history file
STOP_GRACE = 10.0  # seconds torchrun gets to stop its ranks after SIGTERM, before SIGKILL
RANK_SHUTDOWN = 5  # seconds torchrun gives a rank after SIGTERM before it SIGKILLs it
LOOPBACK = "lo0" if sys.platform == "darwin" else "lo"


def torchrun_command(
    cfg: DPPOConfig,
    out: str | os.PathLike[str],
    save_to: str | os.PathLike[str],
    nproc: int | None = None,
    preempt_fraction: float = 0.0,
    timeout: float = COLLECTIVE_TIMEOUT,
    env_fn: str | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    quiet: bool = False,
) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node W [--log-dir DIR] -m
    rlteach.distributed.allreduce [options]`` for ``cfg`` on ``nproc`` (default ``cfg.workers``)
    ranks of this machine; the options name only the fields that differ from DPPOConfig's
    defaults. ``shlex.join(...)`` prints it."""
    nproc = cfg.workers if nproc is None else nproc
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(nproc)]
    if log_dir is not None:
        command += ["--log-dir", str(log_dir)]
    command += ["-m", "rlteach.distributed.allreduce", *config_options(cfg)]
    if preempt_fraction:
        command += ["--preempt-fraction", str(preempt_fraction)]
    if timeout != COLLECTIVE_TIMEOUT:
        command += ["--timeout", str(timeout)]
    if env_fn is not None:
        command += ["--env-fn", env_fn]
    command += ["--out", str(out), "--save", str(save_to)]
    return command + ["--quiet"] if quiet else command


def config_options(cfg: DPPOConfig) -> list[str]:
    """``--field value`` for each field of ``cfg`` that differs from DPPOConfig's default, written
    the way ``python -m rlteach`` parses values (``true``/``false``, ``64,64``)."""
    default = DPPOConfig()
    options = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value == getattr(default, f.name):
            continue
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, tuple):
            text = ",".join(map(str, value))
        else:
            text = str(value)
        options += ["--" + f.name.replace("_", "-"), text]
    return options


@dataclass(frozen=True)
class RunFiles:
    """Where one launched run keeps its files."""

    folder: Path

    @property
    def history(self) -> Path:
        return self.folder / "history.json"

    @property
    def checkpoint(self) -> Path:
        return self.folder / "policy.pt"

    @property
    def logs(self) -> Path:
        return self.folder / "torchrun-logs"

    @property
    def output(self) -> Path:
        return self.folder / "torchrun-output.txt"


def run_dppo_torchrun(
    config: DPPOConfig | None = None,
    callback: Callback | None = None,
    nproc: int | None = None,
    timeout: float | None = None,
    workdir: str | os.PathLike | None = None,
    env_fn: str | None = None,
    preempt_fraction: float = 0.0,
    collective_timeout: float = COLLECTIVE_TIMEOUT,
    **overrides: Any,
) -> TrainResult:
    """Train DD-PPO on ``nproc`` (default ``workers``) ranks started by torchrun on this machine;
    returns a :class:`rlteach.TrainResult` like :func:`rlteach.run_dppo`.

    ``config`` and/or keyword ``overrides`` are DPPOConfig fields; ``env_fn`` is an importable
    ``"module:callable"``; ``preempt_fraction`` and ``collective_timeout`` (seconds a collective
    waits) are the DD-PPO options (:class:`~rlteach.distributed.configs.LaunchOptions`, whose
    ``timeout`` is ``collective_timeout``; see :mod:`rlteach.distributed.allreduce`). Bad values
    raise ``ValueError`` before anything starts. ``callback(history)`` runs each time rank 0 has
    rewritten the history file (about once a second), e.g. a ``LivePlot``. ``timeout`` (seconds,
    None: none) bounds the whole run: past it every process is stopped and ``TimeoutError``
    raised. ``workdir`` keeps the history, checkpoint and torchrun's logs (default: a temporary
    folder, removed at the end).

    A failed rank raises :class:`~rlteach.distributed.WorkerError` with its traceback; a kernel
    interrupt stops the run and returns rank 0's last checkpoint with ``interrupted=True``. No
    process of the run is left when this returns or raises.

    Network: gloo's connections stay on loopback (``GLOO_SOCKET_IFNAME``), but torchrun's own TCP
    stores listen on all interfaces while the run lasts (torch's ``TCPStore`` binds the wildcard
    address, pytorch/pytorch#173909); on an untrusted network, run behind a firewall.
    """
    cfg = make_config(DPPOConfig, config, **overrides)
    nproc = cfg.workers if nproc is None else nproc
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc = {nproc!r} is invalid: must be an integer >= 1")
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise ValueError(f"timeout = {timeout!r} is invalid: must be seconds > 0 or None")
    launch = make_config(
        LaunchOptions,
        preempt_fraction=preempt_fraction,
        timeout=collective_timeout,
        env_fn=env_fn,
    )
    check_launch(cfg, launch)
    with run_folder(workdir) as folder:
        files = RunFiles(folder)
        command = torchrun_command(
            cfg,
            files.history,
            files.checkpoint,
            nproc,
            preempt_fraction,
            collective_timeout,
            env_fn,
            files.logs,
            quiet=True,
        )
        return supervise(command, files, cfg, env_fn, callback, timeout)


@contextlib.contextmanager
def run_folder(workdir: str | os.PathLike | None) -> Iterator[Path]:
    """``workdir`` (created if needed), or a temporary folder removed afterwards."""
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="rlteach-ddppo-", ignore_cleanup_errors=True) as tmp:
        yield Path(tmp)


def supervise(
    command: list[str],
    files: RunFiles,
    cfg: DPPOConfig,
    env_fn: str | None,
    callback: Callback | None,
    timeout: float | None,
) -> TrainResult:
    """Run torchrun in its own session, follow it, and turn how it ended into a result."""
    start = time.monotonic()
    with open(files.output, "wb") as output:
        process = subprocess.Popen(
            command,
            env=loopback_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        follow(process, files.history, callback, None if timeout is None else start + timeout)
    except KeyboardInterrupt:
        stop(process)
        return partial_result(files, cfg, env_fn)
    finally:
        stop(process)
    if process.returncode != 0:
        raise rank_failure(files, process.returncode)
    result = load_result(files.checkpoint, interrupted=False)
    result.history.meta["torchrun_seconds"] = time.monotonic() - start
    last_callback(callback, result.history)
    return result


def loopback_environment() -> dict[str, str]:
    """torchrun's environment: gloo on the loopback interface, one math thread per rank, and
    ``RANK_SHUTDOWN`` seconds for a rank to exit after SIGTERM before torchrun kills it."""
    return {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "GLOO_SOCKET_IFNAME": LOOPBACK,
        "OMP_NUM_THREADS": "1",
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(RANK_SHUTDOWN),
    }


def follow(
    process: subprocess.Popen, history: Path, callback: Callback | None, deadline: float | None
) -> None:
    """Wait for torchrun to exit; meanwhile call ``callback(history)`` whenever rank 0 has
    rewritten the history file, and raise ``TimeoutError`` past ``deadline`` (monotonic)."""
    stamp = None
    while True:
        try:
            process.wait(POLL)
            return
        except subprocess.TimeoutExpired:
            pass
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the DD-PPO run took longer than its timeout and was stopped")
        if callback is not None:
            stamp = report_newer(history, stamp, callback)


def report_newer(path: Path, stamp: int | None, callback: Callback) -> int | None:
    """``callback(History.load(path))`` if the file changed since ``stamp``; its new stamp."""
    try:
        current = path.stat().st_mtime_ns
    except FileNotFoundError:
        return stamp
    if current != stamp:
        callback(History.load(path))
    return current


def stop(process: subprocess.Popen) -> None:
    """SIGTERM torchrun's process group, SIGKILL it after ``STOP_GRACE`` seconds. torchrun starts
    each rank in a session of its own, so the signal reaches the ranks through torchrun, which
    forwards it and waits for them (``RANK_SHUTDOWN``) before it exits."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def load_result(path: Path, interrupted: bool) -> TrainResult:
    """Rank 0's checkpoint as a TrainResult."""
    return replace(checkpoint.load(path), interrupted=interrupted)


def partial_result(files: RunFiles, cfg: DPPOConfig, env_fn: str | None) -> TrainResult:
    """What a stopped run learned: rank 0's last checkpoint (at most ``PUBLISH_EVERY`` seconds
    old), or θ0 and an empty history when it was stopped before rank 0 wrote one."""
    if files.checkpoint.exists():
        return load_result(files.checkpoint, interrupted=True)
    agent = build_agent(cfg.env_id, 1, cfg.seed, cfg.hidden, import_env_fn(env_fn))
    agent.close()
    meta = {"algorithm": "dppo", "backend": "torchrun", "config": asdict(cfg)}
    return TrainResult(agent.policy, History(meta=meta), cfg, interrupted=True)


@dataclass(frozen=True)
class RankError:
    """What one failed rank's ``@record`` wrote: its exception and traceback."""

    rank: int
    timestamp: int
    message: str
    traceback: str


def rank_errors(log_dir: Path) -> list[RankError]:
    """The error files of the failed ranks: torchrun gives each rank
    ``LOG_DIR/<run id>/attempt_<n>/<local rank>/error.json`` (with ``--standalone`` the local
    rank is the rank). A file that is not whole JSON is left out: its rank was stopped by
    torchrun while writing it, so it failed after another rank did."""
    errors = []
    for path in sorted(log_dir.glob("*/attempt_*/*/error.json")):
        try:
            message = json.loads(path.read_text()).get("message", {})
        except json.JSONDecodeError:
            continue
        if isinstance(message, str):
            message = {"message": message}
        extra = message.get("extraInfo", {})
        errors.append(
            RankError(
                rank=int(path.parent.name),
                timestamp=int(extra.get("timestamp", 0)),
                message=message.get("message", ""),
                traceback=extra.get("py_callstack", message.get("message", "")),
            )
        )
    return errors


def rank_failure(files: RunFiles, returncode: int) -> WorkerError:
    """The error to raise for a run that failed, naming the rank that failed first on its own.

    In order of preference: the earliest error file of a rank whose exception is not a
    :class:`PeerFailure` (torchrun's own "root cause" compares timestamps of whole seconds and
    names the lowest rank of a tie, often a rank that only saw its peer vanish); a rank that died
    without a traceback (killed by a signal, say), from torchrun's failure summary, with the tail
    of the output; the earliest :class:`PeerFailure` (a rank that hung until a collective timed
    out is stopped by torchrun and leaves none of its own); or, without any of these, the output.
    """
    errors = rank_errors(files.logs)
    own = [e for e in errors if not e.message.startswith(f"{PeerFailure.__name__}:")]
    output = files.output.read_text(errors="replace")
    tail = "\n".join(output.splitlines()[-40:])
    silent = died_without_traceback(output)
    if own:
        return earliest_error(own)
    if silent:
        rank = silent[0]
        return WorkerError(rank, f"(torchrun rank {rank}) died without a traceback", tail)
    if errors:
        return earliest_error(errors)
    return WorkerError("torchrun", f"exited with code {returncode}", tail)


def earliest_error(errors: list[RankError]) -> WorkerError:
    cause = min(errors, key=lambda e: (e.timestamp, e.rank))
    return WorkerError(cause.rank, f"(torchrun rank {cause.rank}) failed", cause.traceback)


# One failure of torchrun's summary: three consecutive lines "rank : 1 (local_rank: 1)",
# "exitcode : -9 (pid: ...)" and "error_file: <N/A>". Anchored to the starts of lines, so that
# torchrun's log lines before the summary ("failed (exitcode: -15) local_rank: 0 ...") never
# pair one rank with another rank's exit.
SUMMARY_ENTRY = re.compile(
    r"^\s*rank\s*:\s*(\d+).*\n\s*exitcode\s*:\s*(-?\d+).*\n\s*error_file\s*:\s*(\S+)",
    re.MULTILINE,
)


def died_without_traceback(output: str) -> list[int]:
    """The ranks torchrun's failure summary lists with no error file and an exit that torchrun
    did not cause itself (it stops the other ranks with SIGTERM)."""
    return sorted(
        {
            int(rank)
            for rank, code, error_file in SUMMARY_ENTRY.findall(output)
            if error_file == "<N/A>" and int(code) != -signal.SIGTERM
        }
    )
