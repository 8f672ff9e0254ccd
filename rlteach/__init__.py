"""rlteach: distributed deep reinforcement learning, taught by doing it.

The top-level names (``rlteach.train_ppo``, ``rlteach.evaluate`` …) are imported on first use, so a
worker process that only needs ``rlteach.distributed``'s plumbing starts without importing torch.
Notebooks call :func:`require_version` first, so a notebook and the library it was written for
cannot drift apart silently.
"""

import importlib
import pkgutil
from typing import TYPE_CHECKING

from rlteach.registry import ALGORITHMS

__version__ = "0.1.0"

_EXPORTS = {
    **{
        name: algorithm.module
        for algorithm in ALGORITHMS.values()
        for name in (algorithm.config_name, algorithm.trainer_name)
    },
    "TrainResult": "rlteach.algos.common",
    "load": "rlteach.checkpoint",
    "save": "rlteach.checkpoint",
    "ActorCritic": "rlteach.nets",
    "evaluate": "rlteach.rollout",
    "run_seeds": "rlteach.distributed.seeds",
    "show_episode": "rlteach.episodes",
    "show_episodes": "rlteach.episodes",
}
_SUBMODULES = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))

if TYPE_CHECKING:  # what IDEs and type checkers see; tests/test_architecture.py holds it equal
    from rlteach.algos.a2c import A2CConfig, train_a2c
    from rlteach.algos.common import TrainResult
    from rlteach.algos.ppo import PPOConfig, train_ppo
    from rlteach.algos.reinforce import ReinforceConfig, train_reinforce
    from rlteach.checkpoint import load, save
    from rlteach.distributed.da3c import DA3CConfig, run_da3c
    from rlteach.distributed.dppo import DPPOConfig, run_dppo
    from rlteach.distributed.hogwild import A3CConfig, run_a3c
    from rlteach.distributed.impala import IMPALAConfig, run_impala
    from rlteach.distributed.seeds import run_seeds
    from rlteach.episodes import show_episode, show_episodes
    from rlteach.nets import ActorCritic
    from rlteach.rollout import evaluate

__all__ = [  # "__version__", "require_version" and the lazy names of _EXPORTS
    "__version__",
    "require_version",
    "A2CConfig",
    "A3CConfig",
    "ActorCritic",
    "DA3CConfig",
    "DPPOConfig",
    "IMPALAConfig",
    "PPOConfig",
    "ReinforceConfig",
    "TrainResult",
    "evaluate",
    "load",
    "run_a3c",
    "run_da3c",
    "run_dppo",
    "run_impala",
    "run_seeds",
    "save",
    "show_episode",
    "show_episodes",
    "train_a2c",
    "train_ppo",
    "train_reinforce",
]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"rlteach.{name}")
    raise AttributeError(f"module 'rlteach' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBMODULES})


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
