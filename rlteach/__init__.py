"""rlteach: distributed deep reinforcement learning, taught by doing it.

The top-level names (``rlteach.train_ppo``, ``rlteach.evaluate`` …) are imported on first use, so a
worker process that only needs ``rlteach.distributed``'s plumbing starts without importing torch.
Notebooks call :func:`require_version` first, so a notebook and the library it was written for
cannot drift apart silently.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "A2CConfig": "rlteach.algos",
    "PPOConfig": "rlteach.algos",
    "ReinforceConfig": "rlteach.algos",
    "TrainResult": "rlteach.algos",
    "train_a2c": "rlteach.algos",
    "train_ppo": "rlteach.algos",
    "train_reinforce": "rlteach.algos",
    "load": "rlteach.checkpoint",
    "save": "rlteach.checkpoint",
    "ActorCritic": "rlteach.nets",
    "evaluate": "rlteach.rollout",
    "DA3CConfig": "rlteach.distributed.da3c",
    "run_da3c": "rlteach.distributed.da3c",
    "DPPOConfig": "rlteach.distributed.dppo",
    "run_dppo": "rlteach.distributed.dppo",
}

__all__ = ["__version__", "require_version", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in {
        "advantages",
        "algos",
        "checks",
        "checkpoint",
        "config",
        "distributed",
        "envs",
        "history",
        "losses",
        "nets",
        "plots",
        "rollout",
        "tabular",
        "widgets",
    }:
        return importlib.import_module(f"rlteach.{name}")
    raise AttributeError(f"module 'rlteach' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


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
