"""Policy and value networks: an MLP builder, categorical and Gaussian policies, ``ActorCritic``.

Observations are flat vectors: a batch of observations is a tensor ``[..., obs_dim]`` with any
number of leading dimensions (``[N, obs_dim]`` while acting, ``[T, N, obs_dim]`` for a whole batch).

Every network is built by :func:`mlp`: orthogonal weights, zero biases. Hidden layers get gain √2;
the last layer of a policy gets gain 0.01, so the initial policy is close to uniform (categorical)
or centred on zero (Gaussian); the last layer of a value function gets gain 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

HIDDEN_GAIN = math.sqrt(2.0)
POLICY_OUTPUT_GAIN = 0.01
VALUE_OUTPUT_GAIN = 1.0
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def mlp(
    sizes: Sequence[int],
    activation: type[nn.Module] = nn.Tanh,
    output_gain: float = VALUE_OUTPUT_GAIN,
) -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Shapes: input ``[..., sizes[0]]``, output ``[..., sizes[-1]]``; no activation after the last
    layer. Init: each weight matrix ``W`` is orthogonal times a gain ``g`` (all its singular values
    equal ``g``): ``g = √2`` on hidden layers, ``g = output_gain`` on the last; biases are zero.
    """
    sizes = tuple(sizes)
    if len(sizes) < 2 or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise ValueError(
            f"sizes must be at least two positive ints (input and output widths), got {sizes!r}"
        )
    layers: list[nn.Module] = []
    last = len(sizes) - 2
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        gain = output_gain if i == last else HIDDEN_GAIN
        layers.append(_orthogonal_linear(fan_in, fan_out, gain))
        if i < last:
            layers.append(activation())
    return nn.Sequential(*layers)


def _orthogonal_linear(fan_in: int, fan_out: int, gain: float) -> nn.Linear:
    layer = nn.Linear(fan_in, fan_out)
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


class CategoricalPolicy(nn.Module):
    """π(a|s) = softmax(f(s))_a over ``n_actions`` discrete actions; ``f`` is an MLP.

    Shapes: obs ``[..., obs_dim]`` → logits ``[..., n_actions]``; actions and log-probs ``[...]``.
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.Tanh,
    ) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden, n_actions], activation, POLICY_OUTPUT_GAIN)

    def dist(self, obs: torch.Tensor) -> Distribution:
        """The distribution π(·|s), batch shape ``[...]``."""
        return Categorical(logits=self.net(obs), validate_args=False)

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``a ~ π(·|s)`` and return ``(a, log π(a|s))``, both ``[...]``.

        Gumbel-max trick: with ``E_a ~ Exp(1)`` i.i.d., ``-log E_a`` is standard Gumbel, so
        ``argmax_a (log π(a|s) - log E_a)`` is distributed as π(·|s). Cheaper than
        ``Categorical(...).sample()``, and same distribution and log-prob (tested).
        """
        log_probs = torch.log_softmax(self.net(obs), dim=-1)
        noise = torch.empty_like(log_probs).exponential_(generator=generator)
        action = (log_probs - noise.log()).argmax(dim=-1, keepdim=True)
        return action.squeeze(-1), log_probs.gather(-1, action).squeeze(-1)

    def log_prob_and_entropy(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``log π(a|s)`` and ``H[π(·|s)] = −Σ_a π log π``, both ``[...]``, with autograd.

        The same numbers as ``dist(obs).log_prob(actions)`` and ``.entropy()`` (tested) without
        building a Distribution object: the training loops call this once per minibatch.
        """
        log_probs = torch.log_softmax(self.net(obs), dim=-1)
        logp = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        return logp, -(log_probs.exp() * log_probs).sum(dim=-1)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The most probable action ``argmax_a π(a|s)``, shape ``[...]``."""
        return self.net(obs).argmax(dim=-1)


class GaussianPolicy(nn.Module):
    """π(·|s) = N(μ(s), diag σ²), σ = exp(log_std) a state-independent parameter; μ is an MLP.

    Shapes: obs ``[..., obs_dim]`` → actions ``[..., act_dim]``, log-probs ``[...]``: the density of
    an action vector is the product over action dimensions, so its log-prob is the sum
    ``log π(a|s) = Σ_j [ -(a_j - μ_j)² / (2σ_j²) - log σ_j - ½ log 2π ]``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.Tanh,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.mean_net = mlp([obs_dim, *hidden, act_dim], activation, POLICY_OUTPUT_GAIN)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def dist(self, obs: torch.Tensor) -> Distribution:
        """The distribution π(·|s): batch shape ``[...]``, event shape ``[act_dim]``."""
        mean = self.mean_net(obs)
        return Independent(
            Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False),
            1,
            validate_args=False,
        )

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``a = μ(s) + σ ε``, ``ε ~ N(0, I)``; return ``a [..., act_dim]``, ``logp [...]``.

        Since ``(a - μ)/σ = ε``, the log-prob is ``Σ_j (-ε_j²/2 - log σ_j - ½ log 2π)``.
        """
        mean = self.mean_net(obs)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        action = mean + self.log_std.exp() * eps
        logp = (-0.5 * eps.square() - self.log_std - _HALF_LOG_2PI).sum(dim=-1)
        return action, logp

    def log_prob_and_entropy(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``log π(a|s)`` (the sum in the class docstring) and ``H = Σ_j (½ + ½ log 2π + log σ_j)``,
        both ``[...]``, with autograd; equal to ``dist(obs)``'s (tested)."""
        mean = self.mean_net(obs)
        z = (actions - mean) * torch.exp(-self.log_std)
        logp = (-0.5 * z.square() - self.log_std - _HALF_LOG_2PI).sum(dim=-1)
        entropy = (0.5 + _HALF_LOG_2PI + self.log_std).sum().expand(logp.shape)
        return logp, entropy

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action μ(s), shape ``[..., act_dim]``."""
        return self.mean_net(obs)


class ValueFunction(nn.Module):
    """V_w(s), an MLP with one output; obs ``[..., obs_dim]`` → values ``[...]``."""

    def __init__(
        self,
        obs_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.Tanh,
    ) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 1], activation, VALUE_OUTPUT_GAIN)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class ActorCritic(nn.Module):
    """An actor π_θ(a|s) and a critic V_w(s) (seed §2.2) as two separate networks (no shared trunk).

    ``Discrete(n)`` actions give a :class:`CategoricalPolicy`, ``Box`` actions of shape ``(d,)`` a
    :class:`GaussianPolicy`. Observations must be a ``Box`` of shape ``(obs_dim,)``.

    Shapes: obs ``[..., obs_dim]``; ``value(obs)`` and log-probs ``[...]``; actions ``[...]``
    (discrete) or ``[..., d]`` (Box).
    """

    def __init__(
        self,
        obs_space: gym.Space,
        act_space: gym.Space,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.obs_dim = _flat_box_dim(obs_space, "obs_space")
        self.hidden = tuple(hidden)
        self.activation = activation
        self.log_std_init = float(log_std_init)
        act_cls = ACTIVATIONS[activation]
        self.actor: CategoricalPolicy | GaussianPolicy
        if isinstance(act_space, gym.spaces.Discrete):
            self.action_kind, self.action_dim = "discrete", int(act_space.n)
            self.actor = CategoricalPolicy(self.obs_dim, self.action_dim, self.hidden, act_cls)
        elif isinstance(act_space, gym.spaces.Box):
            self.action_kind, self.action_dim = "box", _flat_box_dim(act_space, "act_space")
            self.actor = GaussianPolicy(
                self.obs_dim, self.action_dim, self.hidden, act_cls, self.log_std_init
            )
        else:
            raise ValueError(
                f"act_space must be gymnasium.spaces.Discrete or Box, got {act_space!r}"
            )
        self.critic = ValueFunction(self.obs_dim, self.hidden, act_cls)

    def dist(self, obs: torch.Tensor) -> Distribution:
        """π_θ(·|s), batch shape ``[...]``; ``log_prob(a)`` is ``[...]`` for both action kinds."""
        return self.actor.dist(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V_w(s), shape ``[...]`` (last dim squeezed)."""
        return self.critic(obs)

    def evaluate_actions(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What a loss needs, with autograd: ``(log π(a|s), H[π(·|s)], V(s))``, each ``[...]``."""
        logp, entropy = self.actor.log_prob_and_entropy(obs, actions)
        return logp, entropy, self.critic(obs)

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One acting step without autograd: ``(a ~ π(·|s), log π(a|s), V(s))``.

        Shapes: obs ``[N, obs_dim]`` → action ``[N]`` or ``[N, d]``, logp ``[N]``, value ``[N]``.
        Runs under ``no_grad`` (not ``inference_mode``) so the results can be used later in a loss;
        a caller that only converts them to numpy may wrap the call in ``torch.inference_mode()``.
        """
        action, logp = self.sample(obs, generator)
        return action, logp, self.critic(obs)

    @torch.no_grad()
    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`act` without the critic: ``(a ~ π(·|s), log π(a|s))``. A collector calls this at
        every step and asks the critic for the values of the whole batch at once afterwards."""
        return self.actor.sample(obs, generator)

    @torch.no_grad()
    def deterministic_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The greedy action: argmax of π for discrete actions, the mean μ(s) for Box actions."""
        return self.actor.mode(obs)

    def spec(self) -> dict[str, Any]:
        """The constructor arguments as plain ints/floats/strings/tuples.

        Save ``{"spec": spec(), "state_dict": state_dict()}``; it loads with
        ``torch.load(..., weights_only=True)``, then ``from_spec(spec)`` + ``load_state_dict``.
        """
        return {
            "obs_dim": self.obs_dim,
            "action_kind": self.action_kind,
            "action_dim": self.action_dim,
            "hidden": self.hidden,
            "activation": self.activation,
            "log_std_init": self.log_std_init,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ActorCritic:
        """Rebuild an (untrained) ``ActorCritic`` of the architecture described by ``spec()``."""
        kind = spec.get("action_kind")
        if kind not in ("discrete", "box"):
            raise ValueError(f"spec['action_kind'] must be 'discrete' or 'box', got {kind!r}")
        obs_space = gym.spaces.Box(-math.inf, math.inf, (spec["obs_dim"],))
        if kind == "discrete":
            act_space: gym.Space = gym.spaces.Discrete(spec["action_dim"])
        else:
            act_space = gym.spaces.Box(-math.inf, math.inf, (spec["action_dim"],))
        return cls(obs_space, act_space, spec["hidden"], spec["activation"], spec["log_std_init"])


def _flat_box_dim(space: gym.Space, name: str) -> int:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"{name} must be a one-dimensional gymnasium Box, got {space!r}")
    return int(space.shape[0])


# ----------------------------------------------------------------------------- flat vectors
# What travels between processes: all parameters (or gradients) of a model as one float32 vector,
# in the order of ``model.parameters()`` (notebook 05).


def flat_parameters(model: nn.Module) -> np.ndarray:
    """All parameters of ``model`` as one float32 vector ``[P]`` (a copy)."""
    return (
        torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy().astype(np.float32)
    )


def set_flat_parameters(model: nn.Module, vector: np.ndarray) -> None:
    """Load a ``[P]`` vector made by :func:`flat_parameters` back into ``model``'s parameters."""
    flat = torch.as_tensor(np.asarray(vector, dtype=np.float32))
    expected = sum(p.numel() for p in model.parameters())
    if flat.numel() != expected:
        raise ValueError(f"vector has {flat.numel()} entries, the model has {expected} parameters")
    with torch.no_grad():  # copy into each parameter's own storage: no aliasing of ``vector``
        offset = 0
        for p in model.parameters():
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def flat_gradient(model: nn.Module) -> np.ndarray:
    """The gradients left by ``backward()`` as one float32 vector ``[P]`` (zeros where a parameter
    received none)."""
    return (
        torch.cat(
            [
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                for p in model.parameters()
            ]
        )
        .numpy()
        .astype(np.float32)
    )


def alias_parameters(model: nn.Module) -> np.ndarray:
    """Make every parameter of ``model`` a view of one new float32 vector ``[P]`` (in
    :func:`flat_parameters` order, holding the current values) and return that vector: writing a
    θ into it (``np.copyto``) then loads θ into ``model`` in one copy, where
    :func:`set_flat_parameters` copies tensor by tensor. The parameters stay the same
    ``nn.Parameter`` objects, so an optimizer built on them keeps working."""
    flat = flat_parameters(model)
    storage = torch.from_numpy(flat)
    for p, view in zip(model.parameters(), _views(model, storage), strict=True):
        p.data = view
    return flat


def alias_gradients(model: nn.Module, flat: np.ndarray) -> None:
    """Make every parameter's ``.grad`` a view of ``flat`` ``[P]`` float32 (in
    :func:`flat_parameters` order; e.g. a worker's push slot, ``ctx.slot``): ``backward()`` then
    accumulates into ``flat`` in place, so the gradient is there without :func:`flat_gradient`'s
    copy. Zero it before each backward with ``flat.fill(0)`` (one pass) or
    ``model.zero_grad(set_to_none=False)``; the default, ``set_to_none=True``, would drop the
    views."""
    storage = torch.from_numpy(flat)
    if storage.dtype != torch.float32 or storage.numel() != sum(
        p.numel() for p in model.parameters()
    ):
        raise ValueError("flat must be a float32 vector with one entry per parameter")
    for p, view in zip(model.parameters(), _views(model, storage), strict=True):
        p.grad = view


def _views(model: nn.Module, storage: torch.Tensor) -> list[torch.Tensor]:
    """Consecutive views of the flat ``storage`` shaped as ``model``'s parameters."""
    views, offset = [], 0
    for p in model.parameters():
        views.append(storage[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    return views
