"""The four ways to distribute training of seed §2.3, each run for real (notebook 05).

1. data parallelism — :func:`data_parallel_gradients`: W processes, each the gradient on its shard,
   averaged by the parameter server;
2. model parallelism — :class:`TwoProcessMLP`: one network split across two processes,
   activations forward and gradients back through a pipe;
3. parameter server — :mod:`rlteach.distributed.runtime` itself, driven by hand in the notebook;
4. multi-agent parallelism — :func:`sampling_throughput`: W workers explore their own environment
   instances and the experience is pooled centrally; :func:`fit_amdahl` reads the serial fraction
   off the measured speed-ups.
"""

from __future__ import annotations

import time

import multiprocess as mp
import numpy as np

from rlteach.distributed.runtime import ServerConfig, run_cluster
from rlteach.envs import env_factory, make_vector_env

# torch is imported inside the functions that use it: the numpy-only workers (least squares) then
# start in a fraction of a second instead of importing torch in every process.

# ----------------------------------------------------------------------------- 1. data parallel


def regression_mlp(inputs: int, hidden: int = 16, seed: int = 0):
    """A small MLP ``[B, inputs] → [B, 1]`` with seeded initial weights (same in every process)."""
    import torch
    from torch import nn

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def mse_gradient(model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``∇θ (1/B) Σ_b (f_θ(x_b) − y_b)²`` as a flat vector ``[P]``."""
    import torch

    from rlteach.nets import flat_gradient

    model.zero_grad()
    pred = model(torch.as_tensor(X, dtype=torch.float32)).squeeze(-1)
    ((pred - torch.as_tensor(y, dtype=torch.float32)) ** 2).mean().backward()
    return flat_gradient(model)


def _shard_gradient_worker(ctx, X, y, shards, hidden):
    """Worker: pull θ, compute the gradient on shard ``ctx.worker_id``, push it; return it too."""
    from rlteach.nets import set_flat_parameters

    model = regression_mlp(X.shape[1], hidden)
    theta, version = ctx.pull()
    set_flat_parameters(model, theta)
    rows = shards[ctx.worker_id]
    grad = mse_gradient(model, X[rows], y[rows])
    ctx.push(grad, version)
    return grad


def data_parallel_gradients(X: np.ndarray, y: np.ndarray, shards: list, hidden: int = 16) -> dict:
    """One synchronous round of data parallelism with ``len(shards)`` worker processes.

    Each worker computes the mean-squared-error gradient ``g_w`` on its rows ``shards[w]`` and
    pushes it; the server, running SGD with α = 1, applies ``θ ← θ − mean_w g_w``, so the change of
    θ *is* the averaged gradient. Returns ``averaged`` (θ0 − θ1), ``full`` (the full-batch
    gradient, computed here in one process), ``per_worker`` ``[W, P]`` and the shard ``sizes``.
    """
    from rlteach.nets import flat_parameters

    model = regression_mlp(X.shape[1], hidden)
    theta0 = flat_parameters(model)
    result = run_cluster(
        _shard_gradient_worker,
        workers=len(shards),
        params=theta0,
        server=ServerConfig(optimizer="sgd", lr=1.0),
        args=(X, y, shards, hidden),
    )
    return {
        "averaged": theta0 - result.params,
        "full": mse_gradient(model, X, y),
        "per_worker": np.stack(result.results),
        "sizes": np.array([len(np.arange(len(X))[rows]) for rows in shards]),
    }


# ----------------------------------------------------------------------------- 2. model parallel


def _second_half_process(conn, inputs, hidden, seed):
    """Child process: holds layers 2 of the MLP; for each ``(h, y)`` received it returns the loss,
    ``∂loss/∂h`` and the gradient of its own parameters."""
    import torch

    from rlteach.nets import flat_gradient

    torch.set_num_threads(1)
    second = regression_mlp(inputs, hidden, seed)[1:]
    conn.send("ready")
    while True:
        if not conn.poll(60.0):
            return  # the parent is gone or idle for a minute: end
        message = conn.recv()
        if message is None:
            return
        h_array, y = message
        h = torch.as_tensor(h_array).requires_grad_(True)
        second.zero_grad()
        loss = ((second(h).squeeze(-1) - torch.as_tensor(y)) ** 2).mean()
        loss.backward()
        conn.send((loss.item(), h.grad.numpy(), flat_gradient(second)))


class TwoProcessMLP:
    """``regression_mlp`` split in two: the first layer in this process, the rest in a child.

    :meth:`loss_and_gradients` runs the forward pass across the pipe (activations ``h [B, hidden]``
    go over), the backward pass back (``∂loss/∂h`` comes back) and returns the loss and the full
    flat gradient — the same numbers the unsplit model gives. ``hop_seconds`` accumulates the time
    spent sending and waiting. Use as a context manager; the child always ends on exit.
    """

    def __init__(self, inputs: int, hidden: int = 16, seed: int = 0, timeout: float = 30.0):
        self.first = regression_mlp(inputs, hidden, seed)[:1]
        self.timeout, self.hop_seconds = timeout, 0.0
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(
            target=_second_half_process,
            args=(child_conn, inputs, hidden, seed),
            daemon=True,
            name="rlteach-model-half",
        )
        self._proc.start()
        child_conn.close()
        if not self._conn.poll(timeout) or self._conn.recv() != "ready":
            self.close()
            raise TimeoutError(f"the second half did not start within {timeout} s")

    def __enter__(self) -> TwoProcessMLP:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def loss_and_gradients(self, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        import torch

        from rlteach.nets import flat_gradient

        self.first.zero_grad()
        h = self.first(torch.as_tensor(X, dtype=torch.float32))
        start = time.perf_counter()
        self._conn.send((h.detach().numpy(), np.asarray(y, dtype=np.float32)))
        if not self._conn.poll(self.timeout):
            raise TimeoutError(f"the second half did not answer within {self.timeout} s")
        loss, grad_h, grad_second = self._conn.recv()
        self.hop_seconds += time.perf_counter() - start
        h.backward(torch.as_tensor(grad_h))
        return loss, np.concatenate([flat_gradient(self.first), grad_second])

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(3.0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(1.0)
        self._proc.close()
        self._conn.close()
        self._proc = None


# ----------------------------------------------------------------------------- 3. parameter server


def least_squares_problem(workers: int, rows: int = 32, dim: int = 5, seed: int = 0):
    """Per-worker data ``(A_w [rows, dim], b_w [rows])`` of the loss
    ``f_w(θ) = |A_w θ − b_w|² / (2·rows)`` with gradient ``A_wᵀ(A_w θ − b_w)/rows``."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(workers, rows, dim)).astype(np.float32)
    b = (A @ rng.normal(size=dim) + 0.1 * rng.normal(size=(workers, rows))).astype(np.float32)
    return A, b


def _least_squares_worker(ctx, A, b, rounds, local_steps, local_lr, local_optimizer):
    """Worker for the averaging comparison: each round, pull θ and either push the gradient of
    its loss (gradient averaging) or take ``local_steps`` local steps and push the new θ."""
    from rlteach.distributed.runtime import Optimizer

    A_w, b_w = A[ctx.worker_id], b[ctx.worker_id]
    local = Optimizer(local_optimizer, local_lr, A_w.shape[1])
    for _ in range(rounds):
        theta, version = ctx.pull()
        if ctx.server.average == "gradients":
            vector = A_w.T @ (A_w @ theta - b_w) / len(b_w)
        else:
            for _ in range(local_steps):
                local.step(theta, A_w.T @ (A_w @ theta - b_w) / len(b_w))
            vector = theta
        receipt = ctx.push(vector, version)
        ctx.report(version=version, staleness=receipt.staleness, waiting=receipt.waiting)


def averaging_comparison(
    workers: int = 2,
    rounds: int = 5,
    local_steps: int = 1,
    optimizer: str = "sgd",
    lr: float = 0.1,
    mode: str = "sync",
    seed: int = 0,
) -> dict:
    """The same least-squares problem trained two ways (seed §3.1 step 6):

    * **average gradients**: workers push ``∇f_w(θ)``, the server steps its ``optimizer``;
    * **average parameters**: workers take ``local_steps`` steps of the same ``optimizer`` locally
      and push their θ; the server averages them.

    With one plain-SGD local step the two coincide: ``mean_w(θ − α g_w) = θ − α mean_w g_w``. With
    several local steps, or Adam (whose state lives on the server in one case and on the workers in
    the other), they do not. Returns both final θ and their distance.
    """
    A, b = least_squares_problem(workers, seed=seed)
    theta0 = np.zeros(A.shape[2], dtype=np.float32)
    out = {}
    for average in ("gradients", "parameters"):
        cfg = ServerConfig(mode=mode, average=average, optimizer=optimizer, lr=lr)
        result = run_cluster(
            _least_squares_worker,
            workers=workers,
            params=theta0,
            server=cfg,
            seed=seed,
            args=(A, b, rounds, local_steps, lr, optimizer),
        )
        out[average] = result.params
    out["distance"] = float(np.linalg.norm(out["gradients"] - out["parameters"]))
    return out


def staleness_run(workers: int = 2, rounds: int = 50, mode: str = "async", seed: int = 0):
    """A gradient-averaging run on the least-squares problem: its :class:`ClusterResult` carries
    every push's staleness (always 0 in sync mode)."""
    A, b = least_squares_problem(workers, seed=seed)
    cfg = ServerConfig(mode=mode, optimizer="sgd", lr=0.05)
    return run_cluster(
        _least_squares_worker,
        workers=workers,
        params=np.zeros(A.shape[2]),
        server=cfg,
        seed=seed,
        args=(A, b, rounds, 1, 0.05, "sgd"),
    )


# ----------------------------------------------------------------------------- 4. multi-agent


def _sampling_worker(ctx, env_fn, steps, num_envs, hidden):
    """Worker: its own env instances and a copy of the policy; wait for everyone (one sync push),
    then collect ``steps`` transitions and return them with the time they took."""
    from rlteach.nets import ActorCritic, set_flat_parameters
    from rlteach.rollout import Collector

    envs = make_vector_env("", num_envs, env_fn=env_fn)
    theta, version = ctx.pull()
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space, hidden)
    set_flat_parameters(policy, theta)
    collector = Collector(envs, policy, seed=ctx.seed)
    ctx.push(np.zeros_like(theta), version)  # a sync round: the start line for everyone
    start = time.time()
    batch = collector.collect(max(1, steps // num_envs))
    seconds = time.time() - start
    envs.close()
    data = batch.flat()
    return {
        "obs": data["obs"].numpy(),
        "actions": data["actions"].numpy(),
        "start": start,
        "seconds": seconds,
    }


def sampling_throughput(
    env_id: str,
    workers: int,
    steps_per_worker: int,
    delay: float = 0.0,
    num_envs: int = 1,
    hidden=(64, 64),
    seed: int = 0,
    delay_kind: str = "sleep",
) -> dict:
    """Multi-agent parallelism: ``workers`` processes explore their own ``env_id`` instances
    (``delay`` seconds per step, slept or spun: ``delay_kind``, see
    :class:`rlteach.envs.DelayWrapper`) with the same policy, and the parent pools their experience.

    Timing starts when every worker is ready (process start-up and imports are not counted).
    Returns ``samples`` (pooled transitions), ``seconds`` (first start to last finish),
    ``samples_per_second`` and the pooled ``obs [M, obs_dim]``.
    """
    from rlteach.nets import ActorCritic, flat_parameters

    factory = env_factory(env_id, delay=delay, delay_kind=delay_kind)
    probe = factory()
    policy = ActorCritic(probe.observation_space, probe.action_space, hidden)
    probe.close()
    result = run_cluster(
        _sampling_worker,
        workers=workers,
        params=flat_parameters(policy),
        server=ServerConfig(optimizer="sgd"),
        seed=seed,
        args=(factory, steps_per_worker, num_envs, hidden),
    )
    parts = result.results
    start = min(p["start"] for p in parts)
    seconds = max(p["start"] + p["seconds"] for p in parts) - start
    obs = np.concatenate([p["obs"] for p in parts])
    return {
        "samples": len(obs),
        "seconds": seconds,
        "samples_per_second": len(obs) / seconds,
        "obs": obs,
    }


def fit_amdahl(workers, speedups) -> float:
    """Serial fraction ``s`` of Amdahl's law ``S(W) = 1 / (s + (1 − s)/W)``, least squares on
    ``1/S − 1/W = s (1 − 1/W)`` over the measured points with ``W > 1``."""
    w = np.asarray(workers, dtype=float)
    inv = 1.0 / np.asarray(speedups, dtype=float)
    keep = w > 1
    a, b = inv[keep] - 1 / w[keep], 1 - 1 / w[keep]
    if not keep.any():
        raise ValueError("fit_amdahl needs at least one measurement with more than one worker")
    return float(np.clip((a @ b) / (b @ b), 0.0, 1.0))


def amdahl_speedup(s: float, workers) -> np.ndarray:
    """``S(W) = 1 / (s + (1 − s)/W)``."""
    return 1.0 / (s + (1 - s) / np.asarray(workers, dtype=float))
