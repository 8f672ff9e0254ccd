"""rlteach: distributed deep reinforcement learning, taught by doing it.

Notebooks call :func:`require_version` first, so a notebook and the library it was written for
cannot drift apart silently.
"""

__version__ = "0.1.0"

from rlteach.algos import (  # noqa: E402
    A2CConfig,
    PPOConfig,
    ReinforceConfig,
    TrainResult,
    train_a2c,
    train_ppo,
    train_reinforce,
)
from rlteach.checkpoint import load, save  # noqa: E402
from rlteach.nets import ActorCritic  # noqa: E402
from rlteach.rollout import evaluate  # noqa: E402

__all__ = [
    "A2CConfig",
    "ActorCritic",
    "PPOConfig",
    "ReinforceConfig",
    "TrainResult",
    "__version__",
    "evaluate",
    "load",
    "require_version",
    "save",
    "train_a2c",
    "train_ppo",
    "train_reinforce",
]


def require_version(written_for: str) -> None:
    """Raise ``RuntimeError`` unless this library's ``major.minor`` equals ``written_for``'s.

    A notebook written for rlteach 0.1 runs with 0.1.x and stops with a clear message otherwise.
    """
    wanted = written_for.split(".")[:2]
    have = __version__.split(".")[:2]
    if wanted != have:
        raise RuntimeError(
            f"this notebook was written for rlteach {written_for}, but rlteach {__version__} is "
            "installed: use the notebooks that come with this version of the library"
        )
