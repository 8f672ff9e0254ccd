"""The course's trainable algorithms, listed once. The command line (``python -m rlteach NAME``),
the top-level names of ``rlteach`` (``rlteach.train_ppo``, ``rlteach.DPPOConfig`` …), checkpoints
and the widget panels all read this table.

It names modules rather than importing them, so reading it costs nothing: ``import rlteach``
stays free of torch until an algorithm is used.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Algorithm:
    """One algorithm: its command-line ``name``, the ``module`` that holds it, the names of its
    config dataclass and of its trainer function there, and the notebook that teaches it."""

    name: str
    module: str
    config_name: str
    trainer_name: str
    notebook: str

    def config_class(self) -> type:
        """The config dataclass (imports the module)."""
        return getattr(importlib.import_module(self.module), self.config_name)

    def trainer_function(self) -> Callable[..., Any]:
        """``trainer(config=None, callback=None, ..., **overrides)`` (imports the module)."""
        return getattr(importlib.import_module(self.module), self.trainer_name)


ALGORITHMS: dict[str, Algorithm] = {
    algorithm.name: algorithm
    for algorithm in (
        Algorithm(
            "reinforce", "rlteach.algos.reinforce", "ReinforceConfig", "train_reinforce", "02"
        ),
        Algorithm("a2c", "rlteach.algos.a2c", "A2CConfig", "train_a2c", "03"),
        Algorithm("ppo", "rlteach.algos.ppo", "PPOConfig", "train_ppo", "04"),
        Algorithm("da3c", "rlteach.distributed.da3c", "DA3CConfig", "run_da3c", "06"),
        Algorithm("dppo", "rlteach.distributed.dppo", "DPPOConfig", "run_dppo", "07"),
        Algorithm("a3c", "rlteach.distributed.hogwild", "A3CConfig", "run_a3c", "09"),
        Algorithm("impala", "rlteach.distributed.impala", "IMPALAConfig", "run_impala", "09"),
    )
}


def algorithm_of(trainer: Callable[..., Any]) -> Algorithm | None:
    """The algorithm whose trainer ``trainer`` is (matched by module and name; a
    ``functools.partial`` of it counts), or None."""
    while isinstance(trainer, functools.partial):
        trainer = trainer.func
    key = (getattr(trainer, "__module__", None), getattr(trainer, "__name__", None))
    for algorithm in ALGORITHMS.values():
        if key == (algorithm.module, algorithm.trainer_name):
            return algorithm
    return None
