"""Single-process training loops, one readable file per algorithm (the registry of every
algorithm, distributed ones included, is :mod:`rlteach.registry`)."""

from rlteach.algos.a2c import A2CConfig, train_a2c
from rlteach.algos.common import TrainResult
from rlteach.algos.ppo import PPOConfig, train_ppo
from rlteach.algos.reinforce import ReinforceConfig, train_reinforce

__all__ = [
    "A2CConfig",
    "PPOConfig",
    "ReinforceConfig",
    "TrainResult",
    "train_a2c",
    "train_ppo",
    "train_reinforce",
]
