"""Save a trained result to one file and load it back, safely.

The file is a plain ``torch.save`` of tensors, strings and numbers (no pickled classes), so
:func:`load` reads it with ``torch.load(..., weights_only=True)``: loading a checkpoint cannot run
code. Writes are atomic — a temporary file in the same folder, renamed into place — so an interrupted
save never leaves half a checkpoint.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from rlteach import __version__
from rlteach.algos.common import TrainResult
from rlteach.history import History
from rlteach.nets import ActorCritic
from rlteach.registry import ALGORITHMS

FORMAT = "rlteach-checkpoint-1"


def save(result: TrainResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` (policy weights and architecture, config, history) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "rlteach_version": __version__,
        "algorithm": result.history.meta.get("algorithm", ""),
        "spec": json.dumps(result.policy.spec()),
        "state_dict": result.policy.state_dict(),
        "config": json.dumps(dataclasses.asdict(result.config)),
        "config_class": config_location(type(result.config)),
        "history": json.dumps(result.history.to_dict(), default=str),
        "interrupted": bool(result.interrupted),
    }
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as f:
        torch.save(payload, f)
    os.replace(f.name, path)
    return path


def config_location(cls: type) -> str:
    """``"module:Class"`` under which :func:`load` finds ``cls``: for a registered algorithm's
    config its public home (``rlteach.distributed.dppo:DPPOConfig``, where every version of the
    library has it, whichever module defines it), else where the class is defined."""
    for algorithm in ALGORITHMS.values():
        if cls.__name__ == algorithm.config_name and algorithm.config_class() is cls:
            return f"{algorithm.module}:{algorithm.config_name}"
    return f"{cls.__module__}:{cls.__qualname__}"


def load(path: str | os.PathLike[str]) -> TrainResult:
    """Read a checkpoint written by :func:`save`.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a file that is not an
    rlteach checkpoint (corrupt, truncated, or of another kind).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{path} is not a readable rlteach checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an rlteach checkpoint (expected format {FORMAT!r})")
    policy = ActorCritic.from_spec(_tuples(json.loads(payload["spec"])))
    policy.load_state_dict(payload["state_dict"])
    config_cls = _config_class(payload)
    fields = _tuples(json.loads(payload["config"]))
    config = config_cls(**fields) if config_cls else fields
    data = json.loads(payload["history"])
    history = History(data["updates"], data["episodes"], data["meta"], data.get("evaluations", []))
    return TrainResult(policy, history, config, payload["interrupted"])


def _config_class(payload: dict[str, Any]) -> type | None:
    """The config's dataclass, as the checkpoint names it (only rlteach's own modules are
    imported; a class that has moved is still found under its old module, which imports it), else
    the registered algorithm's (:mod:`rlteach.registry`); ``None`` leaves the config a dict."""
    module, _, name = payload.get("config_class", "").partition(":")
    if module.split(".")[0] == "rlteach":
        cls = getattr(importlib.import_module(module), name, None)
        return cls if isinstance(cls, type) and dataclasses.is_dataclass(cls) else None
    algorithm = ALGORITHMS.get(payload["algorithm"])
    return algorithm.config_class() if algorithm is not None else None


def _tuples(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples (hidden sizes) into lists; configs and specs want them back."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
