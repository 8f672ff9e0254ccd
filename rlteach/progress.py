"""Progress of a run outside Jupyter: a one-line bar on stderr (the command line and DD-PPO's
rank 0 use it as a trainer's ``callback``)."""

from __future__ import annotations

import sys
import time

from rlteach.history import History


class ProgressBar:
    """A one-line progress bar on stderr: env steps, episodes, recent mean return, speed. Call it
    with the run's :class:`~rlteach.history.History` after each update; it redraws at most every
    0.2 s."""

    def __init__(self, total: int, enabled: bool = True, width: int = 30):
        self.total, self.enabled, self.width = total, enabled, width
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, history: History) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < 0.2:
            return
        self.last = now
        steps = history.updates[-1]["env_steps"] if history.updates else 0
        done = min(1.0, steps / self.total)
        bar = "#" * int(done * self.width) + "." * (self.width - int(done * self.width))
        rate = steps / max(now - self.start, 1e-9)
        sys.stderr.write(
            f"\r[{bar}] {steps:>9,}/{self.total:,} steps  {len(history.episodes):>6} episodes  "
            f"return {history.recent_mean_return():7.1f}  {rate:8,.0f} steps/s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
