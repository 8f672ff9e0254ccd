"""Environment factory: single envs for evaluation, vector envs for collecting experience.

Gymnasium ≥ 1.0 vector envs reset a finished sub-environment automatically, in one of two ways:

* ``NEXT_STEP``: the step that ends an episode returns the genuine final observation; the *next*
  ``step()`` call resets that sub-environment, ignores its action and returns the reset observation
  with reward 0. Vectorised implementations (``vector_entry_point``, e.g. CartPole) work this way.
* ``SAME_STEP``: the step that ends an episode already returns the reset observation; the genuine
  final observation is in ``infos["final_obs"][i]``. Used here for every ``SyncVectorEnv``.

:class:`rlteach.rollout.Collector` handles both.
"""

from __future__ import annotations

import difflib
import importlib
import time
from collections.abc import Callable
from functools import partial
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.core import ActType, ObsType
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv

EnvFn = Callable[[], gym.Env]  # a zero-argument constructor of one environment


def registered_spec(env_id: str) -> EnvSpec:
    """The registry entry of ``env_id`` (``"[module:][namespace/]name-vN"``, version required).

    An id that is not registered raises ``ValueError`` naming it and listing close matches.
    """
    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a string such as 'CartPole-v1', got {env_id!r}")
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise ValueError(f"env_id {env_id!r}: cannot import module {module!r} ({e})") from e
    spec = gym.envs.registry.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(gym.envs.registry), n=3)
        hint = f"; close matches: {close}" if close else ""
        raise ValueError(f"env_id {env_id!r} is not a registered gymnasium environment{hint}")
    return spec


def make_env(env_id: str, **env_kwargs: Any) -> gym.Env:
    """One environment, e.g. for evaluation; ``env_kwargs`` go to ``gymnasium.make``
    (``max_episode_steps=...``, ``render_mode=...``)."""
    registered_spec(env_id)
    return gym.make(env_id, **env_kwargs)


def make_vector_env(
    env_id: str,
    num_envs: int,
    seed: int | None = None,
    env_fn: EnvFn | None = None,
    **env_kwargs: Any,
) -> VectorEnv:
    """``num_envs`` copies of an environment stepped as one batch.

    Where ``env_id`` registers a ``vector_entry_point`` (CartPole-v1 does) it is used: one numpy
    implementation steps all copies at once, much faster, with ``NEXT_STEP`` autoreset. Otherwise,
    or when ``env_fn`` (a zero-argument callable returning an Env, e.g. written in a notebook) is
    given, a ``SyncVectorEnv`` with ``SAME_STEP`` autoreset. ``env_kwargs`` (e.g.
    ``max_episode_steps=5``) go to the environment constructor; not allowed with ``env_fn``.

    With a ``seed``, the env is reset with ``reset(seed=seed)`` and its action space is seeded.
    """
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
    if env_fn is not None and env_kwargs:
        raise ValueError(
            f"env_kwargs {sorted(env_kwargs)} cannot be combined with env_fn: "
            "pass them to the env inside env_fn instead"
        )
    if env_fn is None:
        spec = registered_spec(env_id)
        if spec.vector_entry_point is not None and not spec.additional_wrappers:
            envs = gym.make_vec(
                env_id, num_envs, vectorization_mode="vector_entry_point", **env_kwargs
            )
            return _seeded(envs, seed)
        env_fn = partial(gym.make, env_id, **env_kwargs)
    envs = SyncVectorEnv([env_fn] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    return _seeded(envs, seed)


def autoreset_mode(envs: VectorEnv) -> AutoresetMode:
    """The autoreset mode a vector env declares in its metadata (gymnasium's default: NEXT_STEP)."""
    return AutoresetMode(envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))


def _seeded(envs: VectorEnv, seed: int | None) -> VectorEnv:
    if seed is not None:
        envs.reset(seed=seed)
        envs.action_space.seed(seed)
    return envs


# ----------------------------------------------------------------------------- distributed runs
# Notebook 05 and the distributed algorithms: a slow simulator, and instances that differ.


DELAY_KINDS = ("sleep", "busy")


def busy_wait(seconds: float) -> None:
    """Spin until this thread has used ``seconds`` of CPU time: a fixed amount of work, like a
    simulator that computes. When other processes share the core, it takes longer in wall time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class DelayWrapper(gym.Wrapper[ObsType, ActType, ObsType, ActType]):
    """Adds a fixed ``delay`` to every ``step``: a stand-in for an expensive simulator.

    ``kind="sleep"`` (``time.sleep``) frees the CPU, as waiting on a remote simulator, a robot or
    disk would: more workers than cores still speed up collection. ``kind="busy"`` spins the CPU
    for the same time, as a simulator that computes does: collection stops speeding up once every
    core is busy (``os.cpu_count()``).
    """

    def __init__(self, env: gym.Env[ObsType, ActType], delay: float, kind: str = "sleep") -> None:
        check_delay(delay, kind)
        super().__init__(env)
        self.delay, self.kind = delay, kind
        self._wait = time.sleep if kind == "sleep" else busy_wait

    def step(self, action: ActType) -> tuple[ObsType, SupportsFloat, bool, bool, dict[str, Any]]:
        self._wait(self.delay)
        return self.env.step(action)


def delay_seconds(delay: float, kind: str = "sleep", repeats: int = 200) -> float:
    """The median wall-clock seconds one :class:`DelayWrapper` delay takes on this machine, idle:
    ``time.sleep(delay)`` wakes up late by the scheduler's slack (tens of µs to a millisecond);
    ``busy_wait`` is exact while its core is free."""
    check_delay(delay, kind)
    wait = time.sleep if kind == "sleep" else busy_wait
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        wait(delay)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def check_delay(delay: float, kind: str = "sleep") -> None:
    """``ValueError`` naming the problem unless ``delay >= 0`` seconds and ``kind`` is known."""
    if not delay >= 0:
        raise ValueError(f"delay = {delay!r} is invalid: must be >= 0 seconds")
    if kind not in DELAY_KINDS:
        raise ValueError(f"delay kind {kind!r} is invalid: must be one of {', '.join(DELAY_KINDS)}")


# Physical constants of CartPole a variation may change; the derived ones are recomputed.
CARTPOLE_PHYSICS = ("length", "masspole", "masscart", "force_mag", "gravity")


def set_physics(env: gym.Env, **physics: float) -> gym.Env:
    """Change physical constants of ``env`` in place (CartPole: ``length`` — half the pole's
    length —, ``masspole``, ``masscart``, ``force_mag``, ``gravity``); returns ``env``."""
    core: Any = env.unwrapped  # CartPole's constants are plain attributes, not in gym.Env's type
    unknown = (
        sorted(set(physics) - set(CARTPOLE_PHYSICS))
        if hasattr(core, "polemass_length")
        else sorted(physics)
    )
    if unknown:
        raise ValueError(
            f"cannot set {unknown} on {env.spec.id if env.spec else type(core).__name__}: "
            f"physics variations are defined for CartPole ({', '.join(CARTPOLE_PHYSICS)})"
        )
    for name, value in physics.items():
        setattr(core, name, float(value))
    core.total_mass = core.masspole + core.masscart
    core.polemass_length = core.masspole * core.length
    return env


def physics_variations(
    env_id: str, workers: int, seed: int = 0, spread: float = 0.5
) -> list[dict[str, float]]:
    """One set of CartPole physics per worker: pole half-length and pole mass each scaled by a
    factor drawn uniformly from ``[1 − spread, 1 + spread]`` (``spread = 0``: all identical).
    Worker ``i`` always gets the same draw for a given ``seed``."""
    if registered_spec(env_id).name != "CartPole":
        raise ValueError(f"physics variations are defined for CartPole only, not {env_id!r}")
    if not 0 <= spread < 1:
        raise ValueError(f"spread = {spread!r} is invalid: must be in [0, 1)")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    factors = rng.uniform(1 - spread, 1 + spread, size=(workers, 2))
    return [{"length": float(0.5 * a), "masspole": float(0.1 * b)} for a, b in factors]


def env_factory(
    env_id: str,
    delay: float = 0.0,
    physics: dict[str, float] | None = None,
    delay_kind: str = "sleep",
) -> EnvFn:
    """A zero-argument, picklable constructor of ``env_id`` with an optional per-step ``delay``
    (of ``delay_kind``, see :class:`DelayWrapper`) and ``physics`` changes — what a worker process
    needs to build its own environment."""
    registered_spec(env_id)
    check_delay(delay, delay_kind)
    return partial(_build_env, env_id, float(delay), dict(physics or {}), delay_kind)


def _build_env(
    env_id: str, delay: float, physics: dict[str, float], delay_kind: str = "sleep"
) -> gym.Env:
    env = gym.make(env_id)
    if physics:
        set_physics(env, **physics)
    return DelayWrapper(env, delay, delay_kind) if delay > 0 else env
