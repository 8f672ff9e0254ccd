"""Single-process training loops, one readable file per algorithm."""

from rlteach.algos.a2c import A2CConfig, train_a2c
from rlteach.algos.common import TrainResult
from rlteach.algos.ppo import PPOConfig, train_ppo
from rlteach.algos.reinforce import ReinforceConfig, train_reinforce

CONFIGS = {"reinforce": ReinforceConfig, "a2c": A2CConfig, "ppo": PPOConfig}
TRAINERS = {"reinforce": train_reinforce, "a2c": train_a2c, "ppo": train_ppo}

__all__ = [
    "A2CConfig",
    "CONFIGS",
    "PPOConfig",
    "ReinforceConfig",
    "TRAINERS",
    "TrainResult",
    "train_a2c",
    "train_ppo",
    "train_reinforce",
]
