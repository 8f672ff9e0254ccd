"""What a training run records: one row per update and one row per finished episode.

Every trainer (single-process and distributed) fills a :class:`History`; plots, the live plot, the
command line and the notebooks read it. Rows are plain dicts of numbers, so a history saves to JSON
and loads back for plotting in another process.

Update rows always hold ``update``, ``env_steps`` (total so far) and ``wall_time`` (seconds since the
run started), plus the algorithm's losses and diagnostics. Episode rows hold ``env_steps`` and
``wall_time`` at the episode's end, ``return`` and ``length``; distributed runs add ``worker``,
and ``evaluations`` rows (``env_steps``, ``wall_time``, ``return``) for the global policy
evaluated during the run.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Row = dict[str, float]  # one update, episode or evaluation record: field name → number


@dataclass
class History:
    """Per-update and per-episode records of one run, plus free-form ``meta`` (config, algorithm)."""

    updates: list[Row] = field(default_factory=list)
    episodes: list[Row] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    evaluations: list[Row] = field(default_factory=list)  # distributed runs: the global policy
    start_time: float = field(default_factory=time.perf_counter, repr=False)

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.start_time

    def log_update(self, **row: float) -> Row:
        """Append an update row; ``wall_time`` is filled in unless given."""
        row.setdefault("wall_time", self.elapsed())
        row.setdefault("update", len(self.updates))
        self.updates.append(row)
        return row

    def log_episodes(
        self,
        returns: Iterable[float],
        lengths: Iterable[int],
        env_steps: int,
        wall_time: float | None = None,
        **extra: float,
    ) -> None:
        """Append one row per finished episode (all stamped with the same ``env_steps`` and
        ``wall_time``, by default now)."""
        now = self.elapsed() if wall_time is None else wall_time
        for ret, length in zip(returns, lengths, strict=True):
            self.episodes.append(
                {
                    "env_steps": env_steps,
                    "wall_time": now,
                    "return": float(ret),
                    "length": int(length),
                    **extra,
                }
            )

    def column(self, key: str, kind: str = "episodes") -> np.ndarray:
        """One field of every ``kind`` row (``"episodes"``, ``"updates"`` or ``"evaluations"``) as a
        float array; rows without the field give NaN."""
        rows = {
            "episodes": self.episodes,
            "updates": self.updates,
            "evaluations": self.evaluations,
        }[kind]
        return np.array([row.get(key, math.nan) for row in rows], dtype=float)

    def recent_mean_return(self, last: int = 20) -> float:
        """Mean return of the last ``last`` finished episodes (NaN before the first one)."""
        returns = [row["return"] for row in self.episodes[-last:]]
        return float(np.mean(returns)) if returns else math.nan

    def first_reaching(self, threshold: float, last: int = 20) -> Row | None:
        """The episode row at which the mean of the last ``last`` returns first reaches
        ``threshold`` (its ``env_steps`` and ``wall_time`` say when), or None. The window's sum is
        compared with ``last · threshold``: exact for whole-number returns, where a mean computed
        as ``Σ r · (1/last)`` can fall short by a rounding (three returns of 475 averaged to
        474.99999999999994)."""
        returns = self.column("return")
        if len(returns) < last:
            return None
        sums = np.convolve(returns, np.ones(last), mode="valid")
        hits = np.nonzero(sums >= threshold * last)[0]
        return self.episodes[hits[0] + last - 1] if len(hits) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "updates": self.updates,
            "episodes": self.episodes,
            "meta": self.meta,
            "evaluations": self.evaluations,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the history as JSON, atomically (a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(self.to_dict(), f, default=_jsonable)
        os.replace(f.name, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a history written by :meth:`save`; a file of another kind raises ``ValueError``."""
        try:
            data = json.loads(Path(path).read_text())
            return cls(
                list(data["updates"]),
                list(data["episodes"]),
                dict(data.get("meta", {})),
                list(data.get("evaluations", [])),
            )
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not an rlteach history file ({exc})") from exc


def _jsonable(value: object) -> object:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# When a run first reaches a return level (notebook 06: sample efficiency and time against W).


def steps_to(history: History, level: float, last: int = 20) -> float:
    """Env steps at which the mean of the last ``last`` training returns first reaches ``level``
    (:meth:`History.first_reaching`); NaN if it never does."""
    row = history.first_reaching(level, last)
    return math.nan if row is None else float(row["env_steps"])


def seconds_to(history: History, level: float, last: int = 20) -> float:
    """Seconds of training until :func:`steps_to`'s episode: its ``wall_time`` minus the run's
    start-up (``meta["startup_seconds"]``, the first worker report of a distributed run; 0 for a
    single-process run). NaN if the level is never reached."""
    row = history.first_reaching(level, last)
    if row is None:
        return math.nan
    return row["wall_time"] - history.meta.get("startup_seconds", 0.0)


def env_steps_per_second(history: History) -> float:
    """Throughput after start-up: env steps between the first and the last update row divided by
    the wall-clock seconds between them (NaN with fewer than two updates)."""
    steps, times = history.column("env_steps", "updates"), history.column("wall_time", "updates")
    if len(steps) < 2 or times[-1] <= times[0]:
        return math.nan
    return float((steps[-1] - steps[0]) / (times[-1] - times[0]))


class StopAtReturn:
    """A training callback that ends the run once the mean of the last ``last`` training returns
    has reached ``level`` (at any episode logged so far: the one :func:`steps_to` reports): it
    raises ``KeyboardInterrupt`` once, the path the kernel's ■ takes, so the trainer stops its
    workers and returns what it has learned (``interrupted=True``). The run up to that point is
    the one it would have been without the callback."""

    def __init__(self, level: float, last: int = 20) -> None:
        self.level, self.last, self.fired = level, last, False

    def __call__(self, history: History) -> None:
        if not self.fired and history.first_reaching(self.level, self.last) is not None:
            self.fired = True
            raise KeyboardInterrupt


Callback = Callable[[History], None]  # what a trainer calls after every update, e.g. StopAtReturn
