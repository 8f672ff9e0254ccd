"""Distributed training on one machine: a parameter server, worker processes and their lifecycle
(:mod:`rlteach.distributed.runtime`), and DA3C and DPPO built on them."""

from rlteach.distributed.runtime import (
    Cluster,
    ClusterResult,
    PushReceipt,
    ServerConfig,
    WorkerContext,
    WorkerError,
    run_cluster,
)

__all__ = [
    "Cluster",
    "ClusterResult",
    "PushReceipt",
    "ServerConfig",
    "WorkerContext",
    "WorkerError",
    "run_cluster",
]
