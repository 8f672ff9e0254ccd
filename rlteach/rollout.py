"""Collecting experience from a gymnasium vector env into a time-major batch; evaluating a policy.

A :class:`Collector` owns a vector env of ``N`` sub-environments, a policy and the current
observations. ``collect(T)`` runs ``T`` vector steps and returns a :class:`Batch` of ``[T, N, ...]``
tensors. Both gymnasium autoreset modes are handled (see :mod:`rlteach.envs`):

* ``NEXT_STEP``: the step after an episode's end only resets the sub-environment; it is recorded
  with ``valid=False``, reward 0 and both done flags False. Drop such steps after computing
  advantages (:meth:`Batch.flat` does).
* ``SAME_STEP``: every step is valid; the genuine final observation is in ``infos["final_obs"]``.

In both modes ``next_values[t] = V(s_{t+1})`` of the *genuine* next observation, the final one when
the episode ended at ``t``, which is what bootstrapping a truncated episode needs (notebook 03).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial
from typing import cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from numpy.typing import ArrayLike

from rlteach.envs import EnvFn, autoreset_mode, env_factory, make_env, make_vector_env
from rlteach.nets import ActorCritic

MAX_EVAL_ENVS = 16


@dataclass
class Batch:
    """``T`` steps of ``N`` sub-environments, time-major.

    Shapes: ``obs [T, N, *obs_shape]`` float32; ``actions [T, N]`` int64 (discrete) or
    ``[T, N, act_dim]`` float32 (Box, the unclipped sample whose log-prob is ``logp``); ``logp``,
    ``rewards``, ``values`` ``[T, N]`` float32 with ``values[t] = V(s_t)``; ``next_values [T, N]``
    float32, ``V`` of the genuine next observation, ``next_obs [T, N, *obs_shape]`` (the final one
    where an episode ended: what a learner with other parameters needs to recompute
    ``next_values``, as IMPALA's does); ``terminated``, ``truncated``, ``valid``
    ``[T, N]`` bool.

    ``episode_returns``/``episode_lengths``: undiscounted return and number of valid steps of each
    episode that ended during this collection, in order of ending. ``env_steps``: running count of
    valid steps the collector has taken, this batch included.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    rewards: torch.Tensor
    values: torch.Tensor
    next_values: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    valid: torch.Tensor
    episode_returns: list[float]
    episode_lengths: list[int]
    env_steps: int

    def flat(
        self, mask: torch.Tensor | None = None, **extra: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Valid samples only, flattened over time and envs: each ``[T, N, ...]`` → ``[M, ...]``,
        ``M = valid.sum()``, in time-major order. A bool ``mask [T, N]`` keeps fewer samples
        (``valid & mask``).

        Returns ``obs``, ``actions``, ``logp``, ``values`` and every keyword tensor (e.g. the
        advantages and returns computed from this batch: ``batch.flat(adv=adv, ret=ret)``).
        """
        shape = tuple(self.valid.shape)
        for name, tensor in extra.items():
            if tuple(tensor.shape[:2]) != shape:
                raise ValueError(
                    f"{name} must have leading shape [T, N] = {list(shape)}, "
                    f"got {list(tensor.shape)}"
                )
        selected = {"obs": self.obs, "actions": self.actions, "logp": self.logp}
        selected.update(values=self.values, **extra)
        keep = self.valid if mask is None else self.valid & mask
        return {name: tensor[keep] for name, tensor in selected.items()}

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{f.name}={list(value.shape)}"
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), torch.Tensor)
        )
        return f"Batch({shapes}, episodes={len(self.episode_returns)}, env_steps={self.env_steps})"


class Collector:
    """Runs ``policy`` in the vector env ``envs`` and records what happens.

    ``seed`` resets the envs (``reset(seed=seed)``), seeds their action space and the torch
    generator used to sample actions, so two collectors built alike with the same seed give
    identical batches. The policy needs ``sample(obs [N, obs_dim], generator) -> (action,
    logp)`` and ``value(obs [M, obs_dim]) -> [M]`` (see :class:`rlteach.nets.ActorCritic`): it
    samples at every step, and the critic values the whole batch in one call at the end (the
    parameters do not change during a collection; one call on ``(T + 1) N`` observations costs
    less than ``T`` calls on ``N``).

    Attributes: ``obs [N, *obs_shape]`` the current observations (numpy float32); ``env_steps`` the
    running count of valid steps (real transitions) over all collections.
    """

    def __init__(
        self, envs: gym.vector.VectorEnv, policy: ActorCritic, seed: int | None = None
    ) -> None:
        self.envs = envs
        self.policy = policy
        mode = autoreset_mode(envs)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"envs autoreset_mode must be NEXT_STEP or SAME_STEP, got {mode}")
        self.same_step = mode is AutoresetMode.SAME_STEP
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
            envs.action_space.seed(seed)
        self.obs = _float32(envs.reset(seed=seed)[0])
        n = envs.num_envs
        self.env_steps = 0
        self._resetting = np.zeros(n, dtype=bool)  # NEXT_STEP: the next step() only resets env i
        self._episode_return = np.zeros(n)
        self._episode_length = np.zeros(n, dtype=np.int64)

    def restart(self) -> None:
        """Start a new episode in every env (``reset()`` without a seed: the envs' random streams
        go on), forgetting the episodes in progress; ``env_steps`` is kept."""
        self.obs = _float32(self.envs.reset()[0])
        self._resetting[:] = False
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0

    def collect(self, num_steps: int) -> Batch:
        """Run ``num_steps`` vector steps from the current observations; return them as a Batch."""
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}")
        record = _Record.empty(num_steps, self.obs.shape, self.envs.single_action_space)
        with torch.inference_mode():
            for t in range(num_steps):
                self._step(t, record)
        self.env_steps += int(record.valid.sum())
        values, next_values = self._values(record)
        return record.to_batch(values, next_values, self._next_obs(record), self.env_steps)

    def _step(self, t: int, record: _Record) -> None:
        """Act in every env from the current observations and write row ``t`` of ``record``."""
        record.obs[t] = self.obs
        valid = record.valid[t] = ~self._resetting
        action, logp = self.policy.sample(torch.from_numpy(self.obs), self.generator)
        record.actions[t], record.logp[t] = action, logp
        env_actions = env_action(record.actions[t], self.envs.single_action_space)
        next_obs, reward, terminated, truncated, infos = self.envs.step(env_actions)
        reward = np.where(valid, reward, 0.0)
        record.rewards[t] = reward
        record.terminated[t], record.truncated[t] = terminated & valid, truncated & valid
        done = record.terminated[t] | record.truncated[t]
        if self.same_step:
            record.finals.extend((t, int(i), infos["final_obs"][i]) for i in np.flatnonzero(done))
        else:
            self._resetting = done
        self._track_episodes(reward, valid, done, record)
        self.obs = _float32(next_obs)

    def _values(self, record: _Record) -> tuple[np.ndarray, np.ndarray]:
        """``values[t] = V(s_t)`` ``[T, N]``, and ``next_values[t] = values[t+1]``, except at the
        batch end (V of the current observations) and at SAME_STEP done steps (V of the final
        observations): one forward of the critic for all of them."""
        num_steps, n = record.logp.shape
        rows = [record.obs.reshape(num_steps * n, *self.obs.shape[1:]), self.obs]
        if record.finals:
            rows.append(np.stack([final for _, _, final in record.finals]))
        observed = _float32(np.concatenate(rows))
        with torch.inference_mode():
            every_value = self.policy.value(torch.from_numpy(observed)).numpy()
        values = every_value[: num_steps * n].reshape(num_steps, n)
        next_values = np.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = every_value[num_steps * n : (num_steps + 1) * n]
        for (t, i, _), value in zip(record.finals, every_value[(num_steps + 1) * n :], strict=True):
            next_values[t, i] = value
        return values, next_values

    def _next_obs(self, record: _Record) -> np.ndarray:
        """``next_obs[t] = obs[t+1]`` (NEXT_STEP: the final observation where an episode ended),
        the current observations at the batch end, the final observations at SAME_STEP ends."""
        next_obs = np.empty_like(record.obs)
        next_obs[:-1] = record.obs[1:]
        next_obs[-1] = self.obs
        for t, i, final in record.finals:
            next_obs[t, i] = final
        return next_obs

    def _track_episodes(
        self, reward: np.ndarray, valid: np.ndarray, done: np.ndarray, record: _Record
    ) -> None:
        """Accumulate per-env returns and lengths; move those of finished episodes to ``record``."""
        self._episode_return += reward
        self._episode_length += valid
        for i in np.flatnonzero(done):
            record.returns.append(float(self._episode_return[i]))
            record.lengths.append(int(self._episode_length[i]))
        self._episode_return[done] = 0.0
        self._episode_length[done] = 0


@dataclass
class _Record:
    """The numpy arrays a collection fills in place, shapes as in :class:`Batch`."""

    obs: np.ndarray
    actions: np.ndarray
    logp: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    finals: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # SAME_STEP (t, i, obs)
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    @classmethod
    def empty(cls, num_steps: int, batch_obs_shape: tuple[int, ...], space: gym.Space) -> _Record:
        n = batch_obs_shape[0]
        action_dtype = np.float32 if isinstance(space, gym.spaces.Box) else np.int64
        logp, rewards = (np.empty((num_steps, n), dtype=np.float32) for _ in range(2))
        terminated, truncated, valid = (np.empty((num_steps, n), dtype=bool) for _ in range(3))
        return cls(
            np.empty((num_steps, *batch_obs_shape), dtype=np.float32),
            np.empty((num_steps, n, *(space.shape or ())), dtype=action_dtype),
            logp,
            rewards,
            terminated,
            truncated,
            valid,
        )

    def to_batch(
        self, values: np.ndarray, next_values: np.ndarray, next_obs: np.ndarray, env_steps: int
    ) -> Batch:
        """Wrap the arrays as tensors without copying."""
        return Batch(
            obs=torch.from_numpy(self.obs),
            actions=torch.from_numpy(self.actions),
            logp=torch.from_numpy(self.logp),
            rewards=torch.from_numpy(self.rewards),
            values=torch.from_numpy(values),
            next_values=torch.from_numpy(next_values),
            next_obs=torch.from_numpy(next_obs),
            terminated=torch.from_numpy(self.terminated),
            truncated=torch.from_numpy(self.truncated),
            valid=torch.from_numpy(self.valid),
            episode_returns=self.returns,
            episode_lengths=self.lengths,
            env_steps=env_steps,
        )


def env_action(action: np.ndarray, space: gym.Space) -> np.ndarray:
    """The action the env receives: a Box action clipped to ``[space.low, space.high]``; any other
    action unchanged. Shapes: ``[N, *space.shape]``."""
    if isinstance(space, gym.spaces.Box):
        return np.clip(action, space.low, space.high)
    return action


def evaluate(
    policy: ActorCritic,
    env_id: str,
    episodes: int = 20,
    seed: int = 123,
    deterministic: bool = True,
    env_fn: EnvFn | None = None,
) -> list[float]:
    """Undiscounted returns of ``episodes`` complete episodes, episode ``i`` reset with seed
    ``seed + i``.

    Episodes run in waves on a ``SyncVectorEnv`` of ``n_envs = min(episodes, 16)`` envs: wave ``w``
    resets env ``j`` with seed ``seed + w·n_envs + j`` and steps until each env has finished its
    episode (so every episode must end: keep the env's time limit). With ``deterministic=True``
    (greedy actions, see :meth:`rlteach.nets.ActorCritic.deterministic_action`) episode ``i``
    depends only on ``seed + i``, so the list does not depend on the number of envs. With
    ``deterministic=False`` actions are sampled from a generator seeded with ``seed``:
    reproducible, but tied to the wave layout. Box actions are clipped to the action space.
    """
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    num_envs = min(episodes, MAX_EVAL_ENVS)
    # with an env_fn, make_vector_env builds a SyncVectorEnv, whose reset takes a seed per env
    envs = cast(
        SyncVectorEnv,
        make_vector_env(env_id, num_envs, env_fn=env_fn or partial(make_env, env_id)),
    )
    generator = torch.Generator().manual_seed(seed)
    choose = partial(_eval_action, policy, deterministic, generator, envs.single_action_space)
    returns: list[float] = []
    try:
        for start in range(0, episodes, num_envs):
            seeds = [seed + start + j for j in range(num_envs)]
            returns += _run_wave(envs, choose, seeds)[: episodes - start]
    finally:
        envs.close()
    return returns


def returns_across_physics(
    policy: ActorCritic,
    env_id: str,
    physics: list[dict[str, float]],
    episodes: int = 5,
    seed: int = 7,
) -> list[float]:
    """Mean greedy return of ``policy`` over ``episodes`` episodes on each entry of ``physics``
    (keyword arguments of :func:`~rlteach.envs.set_physics`, e.g. ``{"length": 0.25}``), ``[K]``:
    how well one global policy serves environments unlike each other."""
    return [
        float(
            np.mean(evaluate(policy, env_id, episodes, seed, env_fn=env_factory(env_id, physics=p)))
        )
        for p in physics
    ]


def _run_wave(
    envs: SyncVectorEnv, choose: Callable[[np.ndarray], np.ndarray], seeds: list[int]
) -> list[float]:
    """Reset env ``j`` with ``seeds[j]``, step until every env has ended one episode, return the
    episode returns (what happens after an env's episode ended is ignored)."""
    # gymnasium types seed as list[int | None], which (invariant) refuses a list[int]
    obs, _ = envs.reset(seed=seeds)  # type: ignore[arg-type]
    total = np.zeros(envs.num_envs)
    running = np.ones(envs.num_envs, dtype=bool)
    with torch.inference_mode():
        while running.any():
            obs, reward, terminated, truncated, _ = envs.step(choose(_float32(obs)))
            total += np.where(running, reward, 0.0)
            running &= ~(terminated | truncated)
    return total.tolist()


def _eval_action(
    policy: ActorCritic,
    deterministic: bool,
    generator: torch.Generator,
    space: gym.Space,
    obs: np.ndarray,
) -> np.ndarray:
    obs_tensor = torch.from_numpy(obs)
    if deterministic:
        action = policy.deterministic_action(obs_tensor)
    else:
        action = policy.sample(obs_tensor, generator)[0]
    return env_action(action.numpy(), space)


def _float32(array: ArrayLike) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)
