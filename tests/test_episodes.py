"""rlteach.show_episode: the recorded frames, the GIF that plays them, and how a notebook shows them.
(That a trained greedy CartPole policy's episode lasts 500 steps is checked where the policy is
trained: tests/test_algos.py.)"""

import base64
import io
import os
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import rlteach
from rlteach.episodes import END_PAUSE_MS, MIN_GIF_FRAME_MS, Episodes

ENV_IDS = ["CartPole-v1", "Pendulum-v1"]


@pytest.fixture(scope="module")
def random_episodes():
    """A random policy's episode of each env, seed 0 (CartPole: 18 steps; Pendulum: 200)."""
    return {env_id: rlteach.show_episode(None, env_id, seed=0) for env_id in ENV_IDS}


def untrained_policy(env_id: str) -> rlteach.ActorCritic:
    env = gym.make(env_id)
    return rlteach.ActorCritic(env.observation_space, env.action_space)


def gif_frames(gif: bytes) -> tuple[int, tuple[int, int], list[int]]:
    """``(number of frames, (width, height), each frame's duration in ms)`` of a GIF."""
    image = Image.open(io.BytesIO(gif))
    durations = []
    for i in range(image.n_frames):
        image.seek(i)
        durations.append(image.info["duration"])
    return image.n_frames, image.size, durations


def last_gif_frame(gif: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(gif))
    image.seek(image.n_frames - 1)
    return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_frames_have_the_env_render_shape_one_per_step_plus_the_reset(random_episodes, env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    render_shape = env.render().shape
    env.close()
    episode = random_episodes[env_id]
    assert episode.frames.shape == (episode.length + 1, *render_shape)
    assert episode.frames.dtype == np.uint8
    assert episode.rewards.shape == (episode.length,)
    assert episode.total_return == pytest.approx(episode.rewards.sum())
    assert episode.terminated or episode.truncated
    assert episode.label == "random policy"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_the_frames_show_the_system_moving(random_episodes, env_id):
    frames = random_episodes[env_id].frames
    changed = [not np.array_equal(a, b) for a, b in zip(frames[:-1], frames[1:], strict=True)]
    # CartPole's cart can move less than a pixel in one step (seed 0: 2 of 18 steps), so most
    # consecutive frames differ, not necessarily all
    assert np.mean(changed) > 0.5
    assert not np.array_equal(frames[0], frames[-1])


def test_the_gif_plays_the_whole_pendulum_episode_at_real_speed(random_episodes):
    episode = random_episodes["Pendulum-v1"]
    assert (episode.length, episode.fps) == (200, 30)
    count, size, durations = gif_frames(episode.to_gif(width=120))
    assert (count, size) == (201, (120, 120))  # every frame (no two consecutive ones are equal)
    count, size, durations = gif_frames(episode.to_gif(width=120, max_frames=50))
    assert (count, size) == (41, (120, 120))  # every 5th of 201 frames, the last one included
    assert np.array_equal(
        last_gif_frame(episode.to_gif(width=120, max_frames=50)),
        last_gif_frame(episode.to_gif(width=120, max_frames=1)),  # the episode's last frame alone
    )
    # 41 frames of 5/30 s each stand for 205 of the 201 frames: the GIF may play up to one kept
    # frame (5/30 s) longer than the episode, plus 10 ms as GIF counts in hundredths of a second
    extra_ms = sum(durations) - END_PAUSE_MS - 201 / 30 * 1000
    assert 0 <= extra_ms <= 5 / 30 * 1000 + 10


def test_no_gif_frame_is_shorter_than_browsers_play_even_at_a_high_fps():
    """Browsers show a GIF frame shorter than 20 ms for 100 ms: frames are merged instead."""
    episode = rlteach.show_episode(None, "CartPole-v1", seed=0, max_steps=15)
    count, _, durations = gif_frames(episode.to_gif(fps=200))
    assert min(durations) >= MIN_GIF_FRAME_MS
    assert count <= 4  # 16 frames, every 4th kept


def test_a_notebook_shows_the_episode_as_an_inline_gif_with_a_caption():
    episode = rlteach.show_episode(None, "CartPole-v1", seed=0, label="coin flips")
    html = episode._repr_html_()
    payload = re.search(r"src='data:image/gif;base64,([^']+)'", html)
    assert payload and base64.b64decode(payload.group(1)) == episode.to_gif()
    caption = re.search(r"<figcaption[^>]*>([^<]+)</figcaption>", html)
    assert caption and caption.group(1) == (
        "CartPole-v1 · coin flips · 18 steps · return 18.0 · terminated"  # the pole fell
    )
    assert len(repr(episode)) < 200  # a script prints a summary, not the frames


def test_show_episodes_starts_every_policy_in_the_same_state_side_by_side():
    untrained = untrained_policy("CartPole-v1")
    episodes = rlteach.show_episodes({"random": None, "untrained": untrained}, seed=3)
    assert isinstance(episodes, Episodes) and [e.label for e in episodes] == ["random", "untrained"]
    assert np.array_equal(episodes[0].frames[0], episodes[1].frames[0])
    html = episodes._repr_html_()
    assert html.startswith("<div style='display:flex") and html.count("<figure") == 2


def test_the_same_seed_gives_the_same_episode_and_max_steps_cuts_it():
    first, second = (rlteach.show_episode(seed=1, max_steps=5) for _ in range(2))
    assert np.array_equal(first.frames, second.frames)
    assert first.length == 5 and first.truncated and not first.terminated


def test_bad_arguments_raise_value_errors_that_name_them():
    with pytest.raises(ValueError, match="CartPol-v1"):
        rlteach.show_episode(None, "CartPol-v1")
    with pytest.raises(ValueError, match="CliffWalking-v1.*no time limit"):
        rlteach.show_episode(None, "CliffWalking-v1")
    with pytest.raises(ValueError, match="max_steps"):
        rlteach.show_episode(max_steps=0)
    with pytest.raises(ValueError, match="policy must be"):
        rlteach.show_episode("a trained policy")
    with pytest.raises(ValueError, match=r"shape \(4,\).*Pendulum-v1"):
        rlteach.show_episode(untrained_policy("CartPole-v1"), "Pendulum-v1")
    with pytest.raises(ValueError, match="policies"):
        rlteach.show_episodes({})
    episode = rlteach.show_episode(max_steps=2)
    for keyword in ("width", "max_frames", "fps"):
        with pytest.raises(ValueError, match=keyword):
            episode.to_gif(**{keyword: 0})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SDL probes Wayland on Linux")
def test_rendering_on_a_server_without_a_display_writes_nothing_to_stderr():
    """ipykernel shows a process's stderr in the cell: SDL's failed Wayland probe must not."""
    headless = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR")
    }
    code = "import rlteach; print(rlteach.show_episode(max_steps=1).length)"
    run = subprocess.run(
        [sys.executable, "-c", code], env=headless, capture_output=True, text=True, timeout=120
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "1\n", "")
