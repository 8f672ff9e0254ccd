"""The pieces every training loop shares: building the agent, one gradient step, the learning-rate
schedule, stopping cleanly on a kernel interrupt, and the result a trainer returns."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import torch

from rlteach.envs import EnvFn, make_vector_env
from rlteach.history import History
from rlteach.nets import ActorCritic, alias_gradients, alias_parameters, flat_gradient
from rlteach.rollout import Collector


@dataclass
class TrainResult:
    """What a trainer returns: the trained ``policy`` (an :class:`ActorCritic`), the ``history`` of
    the run, the validated ``config``, and ``interrupted`` — True when a kernel interrupt stopped the
    run early and this is the partial result."""

    policy: ActorCritic
    history: History
    config: Any
    interrupted: bool = False

    def __repr__(self) -> str:
        state = "interrupted" if self.interrupted else "finished"
        steps = self.history.updates[-1]["env_steps"] if self.history.updates else 0
        return (
            f"TrainResult({type(self.config).__name__}, {state} after {steps} env steps, "
            f"{len(self.history.episodes)} episodes, last-20 mean return "
            f"{self.history.recent_mean_return():.1f})"
        )


@dataclass
class Agent:
    """A policy and the collector that runs it in ``num_envs`` copies of the environment."""

    policy: ActorCritic
    collector: Collector
    generator: torch.Generator = field(repr=False)

    def close(self) -> None:
        self.collector.envs.close()


def build_agent(
    env_id: str, num_envs: int, seed: int, hidden: tuple[int, ...], env_fn: EnvFn | None = None
) -> Agent:
    """Vector env, actor-critic and collector, all seeded from one integer.

    ``numpy.random.SeedSequence(seed)`` gives independent streams for the network's initial weights,
    the environments and action sampling, and minibatch shuffling (``Agent.generator``). Torch's
    global random state is left untouched.
    """
    init_seed, env_seed, shuffle_seed = (
        int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(3)
    )
    envs = make_vector_env(env_id, num_envs, env_fn=env_fn)
    with torch.random.fork_rng():
        torch.manual_seed(init_seed)
        policy = ActorCritic(envs.single_observation_space, envs.single_action_space, hidden)
    generator = torch.Generator().manual_seed(shuffle_seed)
    return Agent(policy, Collector(envs, policy, seed=env_seed), generator)


def vector_parameter(model: torch.nn.Module) -> torch.nn.Parameter:
    """θ: one ``Parameter`` ``[P]`` that holds all of ``model``'s parameters (each becomes a view of
    it, :func:`rlteach.nets.alias_parameters`), with ``θ.grad`` ``[P]`` holding their gradients
    (:func:`rlteach.nets.alias_gradients`). An optimizer built on ``[θ]`` updates the whole model
    with one kernel per operation instead of one per weight and bias, and clipping the gradient's
    norm is one norm of one vector: a 64-64 actor-critic has twelve tensors (what that saves PPO
    on CartPole: ``benchmarks/README.md``, "After issue 18").

    The model stays an ordinary module: the same ``nn.Parameter`` objects, the same
    ``state_dict``. The rule it brings: zero the gradients in place, as :func:`gradient_step` does
    (or ``zero_grad(set_to_none=False)``). Torch's default, ``set_to_none=True``, would give the
    model fresh gradients that ``θ.grad`` does not hold, and the optimizer would step on zeros;
    only the trainer that made ``θ`` steps it.
    """
    theta = torch.nn.Parameter(torch.from_numpy(alias_parameters(model)))
    theta.grad = torch.zeros_like(theta)
    alias_gradients(model, theta.grad.numpy())
    return theta


def gradient_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float
) -> float:
    """``θ ← θ − α ∇loss`` with the optimizer, the gradient's norm clipped to ``max_grad_norm``
    (0 turns clipping off). Returns the gradient norm before clipping.

    Gradients are zeroed in place before ``backward`` (not set to ``None``), so an optimizer built
    on a :func:`vector_parameter` finds the gradient in its ``θ.grad``; for any other optimizer the
    result is the same as with fresh gradients (0 + ∇ = ∇)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for p in params:
        if p.grad is not None:
            p.grad.zero_()
    loss.backward()
    norm = clip_gradient(params, max_grad_norm)
    optimizer.step()
    return norm


def clip_gradient(params: Iterable[torch.Tensor], max_grad_norm: float) -> float:
    """Scale the ``.grad`` of ``params`` in place by ``min(1, max_norm / (‖∇θ‖₂ + 1e-6))``, the
    norm taken over all of them (``torch.nn.utils.clip_grad_norm_``); ``max_grad_norm = 0`` turns
    clipping off. Returns the norm before clipping. One vector (a :func:`vector_parameter`) is
    clipped by the same rule in three operations, without the bookkeeping torch's function does
    for many tensors (a third of that function's time on a small network)."""
    limit = max_grad_norm if max_grad_norm > 0 else float("inf")
    params = list(params)
    grads = [p.grad for p in params if p.grad is not None]
    if len(grads) != 1:
        return float(torch.nn.utils.clip_grad_norm_(params, limit))
    norm = torch.linalg.vector_norm(grads[0])
    grads[0].mul_(torch.clamp(limit / (norm + 1e-6), max=1.0))
    return float(norm)


class LossWeights(Protocol):
    """The weights of the value loss and the entropy bonus (every actor-critic config has them)."""

    @property
    def vf_coef(self) -> float: ...
    @property
    def ent_coef(self) -> float: ...


Samples = dict[str, torch.Tensor]  # a batch or minibatch as flat [M, ...] tensors: obs, actions, …
Step = Callable[[torch.Tensor, Samples], dict[str, float]]
"""What an update does with one minibatch's loss (``step(loss, minibatch)``): take the step and
return any values to log. Single-process PPO steps its own optimizer (:func:`local_step`), DPPO
pushes the gradient to the parameter server and pulls θ, DD-PPO all-reduces it: only this differs
between the three (notebooks 04, 07, 08)."""


def local_step(optimizer: torch.optim.Optimizer, max_grad_norm: float) -> Step:
    """The single-process :data:`Step`: one :func:`gradient_step`, logging ``grad_norm``."""

    def step(loss: torch.Tensor, minibatch: Samples) -> dict[str, float]:
        return {"grad_norm": gradient_step(optimizer, loss, max_grad_norm)}

    return step


def clipped_flat_gradient(model: torch.nn.Module, max_grad_norm: float) -> np.ndarray:
    """``clip(∇θ, max_grad_norm)`` as one flat ``[P]`` float32 vector, from the ``.grad`` that a
    ``backward`` left: clipped in place (:func:`clip_gradient`), then concatenated in parameter
    order (:func:`rlteach.nets.flat_gradient`)."""
    clip_gradient(model.parameters(), max_grad_norm)
    return flat_gradient(model)


def combined_loss(
    policy_objective: torch.Tensor,
    value_loss: torch.Tensor,
    entropy: torch.Tensor,
    cfg: LossWeights,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss to minimise, ``−J + c_v · L^V − c_e · H̄`` (``cfg.vf_coef``, ``cfg.ent_coef``; H̄ the
    mean of the per-sample ``entropy [M]``), and the three values as floats. With ``c_e = 0`` the
    entropy term is left out of the graph: its gradient is 0, and backward would still pass
    through the half-dozen operations that compute it (a tenth of a small minibatch's backward)."""
    entropy = entropy.mean()
    loss = -policy_objective + cfg.vf_coef * value_loss
    if cfg.ent_coef != 0:
        loss = loss - cfg.ent_coef * entropy
    stats = {
        "policy_objective": policy_objective.item(),
        "value_loss": value_loss.item(),
        "entropy": entropy.item(),
    }
    return loss, stats


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def annealed(value: float, progress: float, anneal: bool) -> float:
    """``value · (1 − progress)`` when annealing (linear decay to 0 over the run), else ``value``."""
    return value * max(0.0, 1.0 - progress) if anneal else value


class Interruptible(contextlib.AbstractContextManager):
    """``with Interruptible() as run:`` — a KeyboardInterrupt (the kernel's ■ button) inside the block
    ends it quietly and sets ``run.interrupted``, so the trainer can return what it learned so far."""

    interrupted = False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc_type is KeyboardInterrupt:
            self.interrupted = True
            return True
        return False


def last_callback(callback: Callable[[History], None] | None, history: History) -> None:
    """Call ``callback(history)`` once more after the run has ended (a live plot then shows its
    end). An interrupt raised there — the kernel's ■, or a panel's Stop handled late — has
    nothing left to stop: it is swallowed, and the finished run is returned as it is."""
    if callback is not None:
        with Interruptible():
            callback(history)


def one_thread() -> None:
    """One torch thread: small networks never gain from more and lose when the cores are busy."""
    torch.set_num_threads(1)
