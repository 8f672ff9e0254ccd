"""DD-PPO over torch.distributed: the averaged step, the launcher, and runs of real torchrun
processes over loopback that learn, record, fail, get preempted and stop cleanly."""

import copy
import json
import textwrap
import time

import numpy as np
import psutil
import pytest
import torch

import rlteach
from rlteach.algos.common import build_agent
from rlteach.distributed import WorkerError
from rlteach.distributed.allreduce import (
    PeerFailure,
    averaged_step,
    concatenate,
    parameter_digest,
    parse_arguments,
)
from rlteach.distributed.dppo import DPPOConfig, run_dppo
from rlteach.distributed.launcher import (
    RunFiles,
    died_without_traceback,
    partial_result,
    rank_failure,
    run_dppo_torchrun,
    torchrun_command,
)
from rlteach.envs import make_vector_env
from rlteach.nets import ActorCritic, flat_gradient
from rlteach.rollout import Collector
from tests.distributed.test_runtime import HELPERS

QUICK = dict(total_steps=4096, envs_per_worker=2, rollout_steps=32, epochs=2)


def leftover_processes(workdir) -> list:
    """Processes of a run still alive: this process's descendants (except multiprocess's helpers,
    kept for the whole session: see ``test_runtime.child_pids``), and any process whose command
    line names the run's folder — a rank orphaned by a killed torchrun would no longer be a
    child."""
    me = psutil.Process()
    descendants = set(me.children(recursive=True))
    alive = []
    for process in descendants | set(psutil.process_iter()) - {me}:
        try:
            command = " ".join(process.cmdline())
            if process.status() == psutil.STATUS_ZOMBIE or HELPERS.search(command):
                continue
            if process in descendants or str(workdir) in command:
                alive.append(command)
        except psutil.Error:  # ended while we looked
            continue
    return alive


# --- pure pieces, no process group ------------------------------------------------------------


class TwoRanks:
    """Rank 0's view of a two-rank all-reduce whose other rank contributed ``other``."""

    world = 2

    def __init__(self, other: torch.Tensor):
        self.other = other

    def sum_(self, tensor: torch.Tensor) -> None:
        tensor += self.other


def tiny_policy() -> ActorCritic:
    envs = make_vector_env("CartPole-v1", 1)
    torch.manual_seed(0)
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space, (8,))
    envs.close()
    return policy


def minibatch_loss(policy, seed: int) -> torch.Tensor:
    obs = torch.randn(16, 4, generator=torch.Generator().manual_seed(seed))
    dist = policy.dist(obs)
    return (
        -(dist.log_prob(torch.ones(16, dtype=torch.long)).mean()) + policy.value(obs).pow(2).mean()
    )


def gradient_of(policy, loss, max_grad_norm: float) -> torch.Tensor:
    policy.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
    return torch.from_numpy(flat_gradient(policy))


@pytest.mark.parametrize("max_grad_norm", [0.0, 0.05], ids=["unclipped", "clipped"])
def test_the_averaged_step_applies_the_mean_of_the_ranks_clipped_gradients(max_grad_norm):
    rank0, rank1, reference = tiny_policy(), tiny_policy(), tiny_policy()
    limit = max_grad_norm or float("inf")
    g1 = gradient_of(rank1, minibatch_loss(rank1, seed=1), limit)

    optimizer = torch.optim.Adam(rank0.parameters(), lr=0.01, eps=1e-5)
    seconds = averaged_step(
        rank0, optimizer, minibatch_loss(rank0, seed=0), max_grad_norm, TwoRanks(g1)
    )

    g0 = gradient_of(reference, minibatch_loss(reference, seed=0), limit)
    mean = (g0 + g1) / 2
    if not max_grad_norm:  # unclipped, the mean gradient is the gradient of the mean loss
        both = (minibatch_loss(reference, seed=0) + minibatch_loss(reference, seed=1)) / 2
        assert torch.allclose(gradient_of(reference, both, limit), mean, atol=1e-6)
    offset = 0
    for p in reference.parameters():
        p.grad = mean[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    torch.optim.Adam(reference.parameters(), lr=0.01, eps=1e-5).step()
    for p, q in zip(rank0.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-7)
    assert parameter_digest(rank0) != parameter_digest(tiny_policy()) and seconds >= 0


def test_chunks_of_a_collection_concatenate_to_one_collection():
    def collector():
        envs = make_vector_env("CartPole-v1", 3)
        return Collector(envs, tiny_policy(), seed=7)

    whole = collector().collect(40)
    pieces = collector()
    joined = concatenate([pieces.collect(4) for _ in range(10)])
    for name in ("obs", "actions", "rewards", "values", "next_values", "terminated", "valid"):
        assert torch.allclose(getattr(joined, name).float(), getattr(whole, name).float())
    assert joined.episode_returns == whole.episode_returns
    assert joined.env_steps == whole.env_steps


def test_the_command_line_takes_every_config_field_in_either_spelling():
    cfg, options = parse_arguments(
        ["--total_steps", "20000", "--hidden", "32,32", "--anneal-lr", "false"]
        + ["--preempt_fraction", "0.6", "--env_fn", "gymnasium:make", "--out", "h.json"]
    )
    assert (cfg.total_steps, cfg.hidden, cfg.anneal_lr) == (20000, (32, 32), False)
    assert (options.preempt_fraction, options.env_fn, options.out) == (
        0.6,
        "gymnasium:make",
        "h.json",
    )
    assert options.timeout == 60.0 and options.save is None
    with pytest.raises(ValueError, match="DPPOConfig.lr = -1.0"):
        parse_arguments(["--lr", "-1"])


def test_the_printed_command_rebuilds_the_same_config():
    cfg = DPPOConfig(total_steps=5000, hidden=(16,), anneal_lr=False, lr=3e-4, env_delay=0.001)
    command = torchrun_command(cfg, "h.json", "p.pt", nproc=3, preempt_fraction=0.5, timeout=9)
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3"]
    module = command.index("rlteach.distributed.allreduce")
    parsed, options = parse_arguments(command[module + 1 :])
    assert parsed == cfg
    assert (options.preempt_fraction, options.timeout, options.save) == (0.5, 9.0, "p.pt")


def test_the_root_cause_is_the_rank_that_failed_on_its_own(tmp_path):
    """torchrun's summary names the lowest rank of a one-second tie; the error files say more."""
    files = RunFiles(tmp_path)
    files.output.write_text("torchrun output\n")

    def error_file(rank, message):
        path = files.logs / "run" / "attempt_0" / str(rank) / "error.json"
        path.parent.mkdir(parents=True)
        extra = {"py_callstack": f"Traceback ...\n{message}", "timestamp": "1700000000"}
        path.write_text(json.dumps({"message": {"message": message, "extraInfo": extra}}))

    error_file(0, f"{PeerFailure.__name__}: rank 0: all_reduce failed")
    error_file(1, "RuntimeError: boom")
    failure = rank_failure(files, 1)
    assert failure.worker == 1 and "boom" in str(failure)


# The end of torchrun's output when rank 1 was SIGKILLed and rank 0, which raised PeerFailure,
# was stopped by torchrun: its log names rank 0's exit before the summary lists rank 1's.
KILLED_RANK_OUTPUT = """\
[rank0]: PeerFailure: rank 0: all_reduce failed after 0.0 s
W1201 14:09:39.040000 12339 api.py:1028] Sending process 12343 closing signal SIGTERM
E1201 14:09:39.077000 12339 api.py:1002] failed (exitcode: -15) local_rank: 0 (pid: 12343) of binary
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
rlteach.distributed.allreduce FAILED
------------------------------------------------------------
Failures:
[0]:
  time      : 2026-12-01_14:09:39
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 12344)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 12344
------------------------------------------------------------
Root Cause (first observed failure):
[1]:
  time      : 2026-12-01_14:09:38
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 12343)  (SIGTERM)
  error_file: /tmp/run/torchrun-logs/x/attempt_0/0/error.json
  traceback : Traceback (most recent call last):
============================================================
"""


def test_a_killed_rank_is_read_from_the_summary_not_from_the_log_lines_before_it(tmp_path):
    """Also when torchrun stopped rank 0 halfway through writing its error file."""
    files = RunFiles(tmp_path)
    files.output.write_text(KILLED_RANK_OUTPUT)
    cut_short = files.logs / "run" / "attempt_0" / "0" / "error.json"
    cut_short.parent.mkdir(parents=True)
    cut_short.write_text('{"message": {"message": "PeerFailure: rank 0: all_re')
    assert died_without_traceback(KILLED_RANK_OUTPUT) == [1]
    failure = rank_failure(files, 1)
    assert failure.worker == 1 and "rank 1" in str(failure)


def test_an_interrupt_before_rank_0_wrote_anything_returns_the_initial_policy(tmp_path):
    cfg = DPPOConfig(hidden=(16,))
    result = partial_result(RunFiles(tmp_path), cfg, env_fn=None)
    initial = build_agent(cfg.env_id, 1, cfg.seed, cfg.hidden)
    initial.close()
    assert result.interrupted and result.history.updates == [] and result.config == cfg
    assert parameter_digest(result.policy) == parameter_digest(initial.policy)


def test_bad_arguments_fail_before_any_process_starts(tmp_path):
    bad = [
        dict(preempt_fraction=1.5),
        dict(preempt_fraction=0.5, minibatches=64),
        dict(nproc=0),
        dict(collective_timeout=0),
        dict(timeout=-1),
        dict(env_fn="not a module name"),
        dict(mode="async"),
        dict(workers=0),
    ]
    for options in bad:
        with pytest.raises(ValueError):
            run_dppo_torchrun(workdir=tmp_path, **options)
    assert not any(tmp_path.iterdir()) and leftover_processes(tmp_path) == []


# --- real torchrun runs over loopback ------------------------------------------------------------


@pytest.fixture(scope="module")
def ddppo(tmp_path_factory):
    """One short 2-rank DD-PPO run, the history files its callback saw, and its folder."""
    workdir = tmp_path_factory.mktemp("ddppo")
    seen = []
    result = run_dppo_torchrun(**QUICK, eval_interval=0.2, callback=seen.append, workdir=workdir)
    return result, seen, workdir


def test_a_run_returns_what_the_local_backend_returns(ddppo):
    result, seen, workdir = ddppo
    local = run_dppo(total_steps=256, envs_per_worker=2, rollout_steps=32, eval_interval=0)
    h, reference = result.history, local.history
    assert isinstance(result.policy, rlteach.ActorCritic) and not result.interrupted
    assert isinstance(result.config, DPPOConfig)
    assert set(reference.updates[-1]) <= set(h.updates[-1])
    assert set(reference.episodes[-1]) == set(h.episodes[-1])
    assert {row["worker"] for row in h.updates} == {row["worker"] for row in h.episodes} == {0, 1}
    assert h.updates[-1]["env_steps"] >= 0.9 * QUICK["total_steps"]
    assert h.evaluations and "return" in h.evaluations[-1]
    meta = h.meta
    assert (meta["algorithm"], meta["backend"], meta["world_size"]) == (
        "dppo",
        "torchrun",
        2,
    )
    for key in ("config", "versions", "seconds", "startup_seconds"):
        assert key in meta
    assert all(row["collected_steps"] == QUICK["rollout_steps"] for row in h.updates)
    assert len(seen) >= 2 and len(seen[-1].updates) == len(h.updates)
    assert leftover_processes(workdir) == []


def test_every_rank_ends_with_the_same_parameters_and_the_checkpoint_holds_them(ddppo):
    result, _, workdir = ddppo
    digests = result.history.meta["parameter_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    saved = rlteach.load(RunFiles(workdir).checkpoint)
    assert parameter_digest(saved.policy) == parameter_digest(result.policy) == digests[0]
    initial = build_agent("CartPole-v1", 1, result.config.seed, result.config.hidden)
    initial.close()
    assert parameter_digest(result.policy) != parameter_digest(initial.policy)  # it trained


BREAKING_ENV = """
import os

import gymnasium as gym


class BreakAfter(gym.Wrapper):
    def __init__(self, env, steps, how):
        super().__init__(env)
        self.left, self.how = steps, how

    def step(self, action):
        self.left -= 1
        if self.left < 0:
            if self.how == "raise":
                raise RuntimeError("boom on rank 1")
            os.kill(os.getpid(), 9)
        return self.env.step(action)


def make(how):
    env = gym.make("CartPole-v1")
    return BreakAfter(env, 300, how) if os.environ["RANK"] == "1" else env


def raising():
    return make("raise")


def killed():
    return make("sigkill")
"""


@pytest.mark.parametrize("how", ["raising", "killed"])
def test_a_failing_rank_is_named_and_nothing_is_left_running(tmp_path, monkeypatch, how):
    (tmp_path / "breaking_env.py").write_text(textwrap.dedent(BREAKING_ENV))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    workdir = tmp_path / "run"
    start = time.monotonic()
    with pytest.raises(WorkerError) as info:
        run_dppo_torchrun(**QUICK, env_fn=f"breaking_env:{how}", workdir=workdir)
    seconds = time.monotonic() - start
    assert info.value.worker == 1 and "rank 1" in str(info.value)
    if how == "raising":
        assert "boom" in str(info.value)
    assert seconds < 30  # far under the process group's 60 s timeout
    assert leftover_processes(workdir) == []


def test_preemption_shortens_the_stragglers_batches(tmp_path):
    result = run_dppo_torchrun(
        **{**QUICK, "total_steps": 2048},
        slow_worker_delay=0.02,  # rank 0's rollout takes 1.3 s: rank 1 is never the straggler
        preempt_fraction=0.5,
        eval_interval=0,
        workdir=tmp_path,
    )
    rows = {w: [r for r in result.history.updates if r["worker"] == w] for w in (0, 1)}
    slow = [r["collected_steps"] for r in rows[0]]
    assert min(slow) >= QUICK["rollout_steps"] // 4  # the 25% a straggler always collects
    assert sum(r["preempted"] for r in rows[0]) >= len(rows[0]) / 2
    assert not any(r["preempted"] for r in rows[1])
    assert np.mean(slow) < QUICK["rollout_steps"]
    assert (
        result.history.meta["parameter_digests"][0] == result.history.meta["parameter_digests"][1]
    )
    assert leftover_processes(tmp_path) == []


def test_an_interrupt_stops_every_rank_and_returns_the_partial_result(tmp_path):
    def interrupt_after_some_updates(history):
        if len(history.updates) >= 6:
            raise KeyboardInterrupt  # what the kernel's ■ does in the main thread

    start = time.monotonic()
    result = run_dppo_torchrun(
        **{**QUICK, "total_steps": 10**6},
        eval_interval=0,
        callback=interrupt_after_some_updates,
        workdir=tmp_path,
        workers=3,
        nproc=2,  # the process group decides: 2 workers, and the 3 asked for is recorded
    )
    assert result.config.workers == 2 and result.history.meta["workers_requested"] == 3
    assert result.interrupted and 6 <= len(result.history.updates)
    assert result.history.updates[-1]["env_steps"] < 10**6
    assert time.monotonic() - start < 60
    rlteach.evaluate(copy.deepcopy(result.policy), "CartPole-v1", episodes=2)
    assert leftover_processes(tmp_path) == []


def test_a_run_past_its_timeout_is_stopped(tmp_path):
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        run_dppo_torchrun(**{**QUICK, "total_steps": 10**6}, timeout=4, workdir=tmp_path)
    assert time.monotonic() - start < 20
    assert leftover_processes(tmp_path) == []


def test_run_dppo_with_the_torchrun_backend_launches_dd_ppo():
    seen = []
    result = run_dppo(**QUICK, eval_interval=0, backend="torchrun", callback=seen.append)
    assert result.history.meta["backend"] == "torchrun" and seen
    with pytest.raises(ValueError, match="env_fn = .* must be an importable 'module:callable'"):
        run_dppo(**QUICK, backend="torchrun", env_fn=lambda: None)
