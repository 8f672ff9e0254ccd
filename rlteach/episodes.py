"""Watching an agent: one episode rendered frame by frame, shown inline as an animated GIF.

``rlteach.show_episode(result.policy, "CartPole-v1")`` plays one episode with gymnasium's
``rgb_array`` rendering and returns an :class:`Episode`. As the value of a notebook cell it draws
itself as an ``<img>`` holding a GIF, which plays in JupyterLab, VS Code, an untrusted notebook and
a static HTML export alike, with no server, JavaScript or ffmpeg; in a script it draws nothing and
its ``frames`` are there to use. ``rlteach.show_episodes({"random": None, "trained": policy})``
puts several policies side by side, each starting from the same initial state.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from PIL import Image

from rlteach.envs import make_env
from rlteach.nets import ActorCritic
from rlteach.rollout import _eval_action, _float32

DEFAULT_FPS = 30  # for an env whose metadata gives no "render_fps"
MIN_GIF_FRAME_MS = 20  # browsers play a GIF frame shorter than 20 ms for 100 ms instead
END_PAUSE_MS = 1000  # the last frame stays this long, so the reader sees how the episode ended


@dataclass(frozen=True, eq=False, repr=False)
class Episode:
    """One recorded episode of ``T`` steps.

    ``frames`` uint8 ``[T+1, H, W, 3]``: the frame after ``reset`` and one after each step, at the
    env's render size; ``rewards`` float64 ``[T]``; ``terminated``/``truncated`` how the last step
    ended it (gymnasium's flags); ``fps`` the env's ``metadata["render_fps"]``, its real speed.
    """

    frames: np.ndarray
    rewards: np.ndarray
    env_id: str
    label: str
    terminated: bool
    truncated: bool
    fps: float

    @property
    def length(self) -> int:
        """The number of steps ``T``."""
        return len(self.rewards)

    @property
    def total_return(self) -> float:
        """The undiscounted return ``Σ_t r_t``, as :func:`rlteach.evaluate` counts it."""
        return float(self.rewards.sum())

    @property
    def caption(self) -> str:
        """One line: env, label, steps, return and how the episode ended."""
        ending = "terminated" if self.terminated else "truncated (time limit)"
        return (
            f"{self.env_id} · {self.label} · {self.length} steps · "
            f"return {self.total_return:.1f} · {ending}"
        )

    def to_gif(self, fps: float | None = None, width: int = 300, max_frames: int = 250) -> bytes:
        """The episode as a looping GIF ``width`` pixels wide, playing at ``fps`` frames of the
        episode per second (default: the env's real speed).

        At most ``max_frames`` frames are kept: every ``k``-th one, the last frame always among
        them, each shown ``k`` times as long, so the whole episode still plays at the same speed
        (``k`` also keeps each GIF frame at least 20 ms, the shortest browsers honour).
        """
        fps = self.fps if fps is None else fps
        _check_positive("fps", fps, float)
        _check_positive("width", width, int)
        _check_positive("max_frames", max_frames, int)
        step = max(
            math.ceil(len(self.frames) / max_frames), math.ceil(MIN_GIF_FRAME_MS * fps / 1000)
        )
        kept = self.frames[len(self.frames) - 1 :: -step][::-1]
        images = [_gif_frame(frame, width) for frame in kept]
        buffer = io.BytesIO()
        images[0].save(
            buffer,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=_frame_durations_ms(len(images), step / fps),
            loop=0,
        )
        return buffer.getvalue()

    def _repr_html_(self) -> str:
        return _figure_html(self.to_gif(), self.caption)

    def __repr__(self) -> str:
        return f"Episode({self.caption}; frames {list(self.frames.shape)})"


class Episodes(list[Episode]):
    """Several episodes, a list that a notebook draws as a row of animations."""

    def _repr_html_(self) -> str:
        figures = "".join(episode._repr_html_() for episode in self)
        return f"<div style='display:flex;flex-wrap:wrap;gap:16px'>{figures}</div>"


def show_episode(
    policy: ActorCritic | None = None,
    env_id: str = "CartPole-v1",
    seed: int = 0,
    greedy: bool = True,
    label: str | None = None,
    max_steps: int | None = None,
) -> Episode:
    """Play one episode of ``env_id`` from ``reset(seed=seed)`` and record every frame.

    ``policy`` acts as in :func:`rlteach.evaluate`: the greedy action with ``greedy=True``, else
    a sample from a generator seeded with ``seed``; Box actions clipped to the action space.
    ``policy=None`` acts uniformly at random (``env.action_space`` seeded with ``seed``). The
    episode runs until it terminates or reaches the env's time limit, or ``max_steps`` steps if
    given. ``label`` (default: "random policy" or "trained policy, greedy") goes in the caption.
    """
    if max_steps is not None:
        _check_positive("max_steps", max_steps, int)
    _use_sdl_dummy_video_when_headless()
    env = make_env(env_id, render_mode="rgb_array", max_episode_steps=max_steps)
    try:
        if env.spec is None or env.spec.max_episode_steps is None:
            raise ValueError(f"env_id {env_id!r} has no time limit: pass max_steps (an int >= 1)")
        choose = _action_chooser(policy, env, env_id, greedy, seed)
        frames, rewards, terminated, truncated = _play(env, choose, seed)
        fps = env.metadata.get("render_fps") or DEFAULT_FPS
    finally:
        env.close()
    label = _default_label(policy, greedy) if label is None else label
    return Episode(frames, rewards, env_id, label, terminated, truncated, float(fps))


def show_episodes(
    policies: Mapping[str, ActorCritic | None],
    env_id: str = "CartPole-v1",
    seed: int = 0,
    greedy: bool = True,
    max_steps: int | None = None,
) -> Episodes:
    """One episode per entry of ``policies`` (label → policy, ``None`` for random actions), all
    from the same ``reset(seed=seed)``, so they start in the same state: e.g.
    ``show_episodes({"random": None, "trained": result.policy})``. See :func:`show_episode`."""
    if not isinstance(policies, Mapping) or not policies:
        raise ValueError(
            f"policies must be a non-empty mapping of label to policy (or None), got {policies!r}"
        )
    return Episodes(
        show_episode(policy, env_id, seed, greedy, label, max_steps)
        for label, policy in policies.items()
    )


def _action_chooser(
    policy: ActorCritic | None, env: gym.Env, env_id: str, greedy: bool, seed: int
) -> Callable[[np.ndarray], Any]:
    """``obs [obs_dim] → action`` the env receives, chosen as :func:`rlteach.evaluate` does."""
    space = env.action_space
    if policy is None:
        space.seed(seed)
        return lambda obs: space.sample()
    if not isinstance(policy, ActorCritic):
        raise ValueError(
            f"policy must be an rlteach ActorCritic (e.g. result.policy) or None for random "
            f"actions, got {type(policy).__name__}"
        )
    obs_shape = env.observation_space.shape
    if obs_shape != (policy.obs_dim,):
        raise ValueError(
            f"policy takes observations of shape ({policy.obs_dim},) but env_id {env_id!r} "
            f"gives {obs_shape}: pass a policy trained on {env_id!r}"
        )
    choose_batch = partial(_eval_action, policy, greedy, torch.Generator().manual_seed(seed), space)
    return lambda obs: choose_batch(_float32(obs)[None])[0]


def _play(
    env: gym.Env, choose: Callable[[np.ndarray], Any], seed: int
) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """Run one episode; ``(frames uint8 [T+1, H, W, 3], rewards [T], terminated, truncated)``."""
    obs, _ = env.reset(seed=seed)
    frames, rewards = [_rgb_frame(env)], []
    terminated = truncated = False
    with torch.inference_mode():
        while not (terminated or truncated):
            obs, reward, terminated, truncated, _ = env.step(choose(obs))
            rewards.append(float(reward))
            frames.append(_rgb_frame(env))
    return np.stack(frames), np.array(rewards), terminated, truncated


def _rgb_frame(env: gym.Env) -> np.ndarray:
    """The env's current picture, uint8 ``[H, W, 3]`` (it renders in ``rgb_array`` mode)."""
    return np.asarray(cast(np.ndarray, env.render()), dtype=np.uint8)


def _use_sdl_dummy_video_when_headless() -> None:
    """On Linux without a display (a JupyterHub, CI), SDL's video start-up probes Wayland and
    writes an error that ipykernel shows in the cell before falling back to an offscreen driver;
    ``rgb_array`` rendering needs no display, so choose SDL's dummy driver there directly (unless
    the user chose one). Desktops, where a window could open, are left alone."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def _default_label(policy: ActorCritic | None, greedy: bool) -> str:
    if policy is None:
        return "random policy"
    return "trained policy, greedy" if greedy else "trained policy, sampled actions"


def _gif_frame(frame: np.ndarray, width: int) -> Image.Image:
    """``frame [H, W, 3]`` scaled to ``width`` pixels (aspect kept), reduced to a 256-colour
    palette (each frame its own)."""
    height = max(1, round(frame.shape[0] * width / frame.shape[1]))
    image = Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR)
    return image.quantize(method=Image.Quantize.FASTOCTREE)


def _frame_durations_ms(count: int, seconds_each: float) -> list[int]:
    """Durations of ``count`` GIF frames that each stand for ``seconds_each`` of the episode: GIF
    counts in centiseconds, so each frame gets the rounded end time minus the rounded start time,
    and the whole plays at real speed. The last frame also holds for ``END_PAUSE_MS``."""
    ends_cs = np.round(np.arange(count + 1) * seconds_each * 100).astype(int)
    durations = [10 * int(d) for d in np.diff(ends_cs)]
    durations[-1] += END_PAUSE_MS
    return durations


def _figure_html(gif: bytes, caption: str) -> str:
    data = base64.b64encode(gif).decode("ascii")
    text = html.escape(caption)
    return (
        f"<figure style='margin:0;width:min-content'>"
        f"<img src='data:image/gif;base64,{data}' alt='{text}'>"
        f"<figcaption style='font-size:smaller'>{text}</figcaption></figure>"
    )


def _check_positive(name: str, value: object, kind: type) -> None:
    """``ValueError`` unless ``value`` is a positive ``kind`` (an int passes as a float)."""
    allowed = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, allowed) or not value > 0:
        raise ValueError(f"{name} must be a {kind.__name__} > 0, got {value!r}")
