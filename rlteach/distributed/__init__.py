"""Distributed training: a parameter server (:mod:`~rlteach.distributed.server`), worker processes
(:mod:`~rlteach.distributed.worker`) and their lifecycle (:mod:`~rlteach.distributed.runtime`) on
one machine, DA3C and DPPO built on them, and DPPO on Ray and as DD-PPO over torchrun."""

from rlteach.distributed.runtime import Cluster, ClusterResult, WorkerError, run_cluster
from rlteach.distributed.server import ServerConfig
from rlteach.distributed.worker import PushReceipt, WorkerContext

__all__ = [
    "Cluster",
    "ClusterResult",
    "PushReceipt",
    "ServerConfig",
    "WorkerContext",
    "WorkerError",
    "run_cluster",
]
