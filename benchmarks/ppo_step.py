"""Where single-process PPO's time goes on CartPole-v1, and how far its gradient step is from the
same arithmetic written in bare torch.

Run from the repository root::

    python -m benchmarks.ppo_step               # about a minute
    python -m benchmarks.ppo_step --quick       # smoke run: seconds

Three measurements, all with one torch thread and the default ``PPOConfig``:

* **phases** — ``train_ppo``'s loop rebuilt from the library's own functions, timed per update:
  collecting ``T × N`` = 512 env steps, GAE, the update (10 epochs × 4 minibatches of 128), and
  the measurement pass after it (KL and clip fraction on the whole batch);
* **one minibatch step** — ``ppo_loss`` then ``gradient_step`` (Adam on the vector parameter),
  against a step that computes the same loss and update with bare torch functions: the two
  64-64 tanh MLPs as ``F.linear``/``torch.tanh`` calls, no modules, no argument checks, no
  entropy and no statistics; interleaved repeats, medians. The difference is what the library's
  readable layers cost per step;
* **profile** — ``cProfile`` of ``train_ppo(total_steps=40_000)``: the functions with the most
  cumulative time. Run with ``PYTHONPATH`` pointing at an older checkout to profile that one.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.common import benchmark_parser, machine, parse_checked, single_thread, write_json
from rlteach.algos.common import build_agent, gradient_step, local_step, vector_parameter
from rlteach.algos.ppo import (
    ADAM_EPS,
    PPOConfig,
    batch_log_probs,
    gae_data,
    ppo_loss,
    ppo_update,
    shuffled_minibatches,
    train_ppo,
)
from rlteach.losses import approx_kl, clip_fraction


def phases(updates: int) -> dict[str, float]:
    """Milliseconds per update of each phase of PPO's loop, averaged over ``updates`` updates
    (after 5 to warm up)."""
    cfg = PPOConfig()
    agent = build_agent(cfg.env_id, cfg.num_envs, cfg.seed, cfg.hidden)
    theta = vector_parameter(agent.policy)  # as train_ppo builds its optimizer
    optimizer = torch.optim.Adam([theta], lr=cfg.lr, eps=ADAM_EPS, fused=True)
    totals = dict.fromkeys(("collect", "advantages", "update", "measure"), 0.0)
    for update in range(updates + 5):
        marks = [time.perf_counter()]
        batch = agent.collector.collect(cfg.rollout_steps)
        marks.append(time.perf_counter())
        data = gae_data(batch, cfg)
        marks.append(time.perf_counter())
        minibatches = shuffled_minibatches(data, cfg, agent.generator)
        ppo_update(
            agent.policy,
            data,
            cfg,
            minibatches,
            local_step(optimizer, cfg.max_grad_norm),
            measure=False,
        )
        marks.append(time.perf_counter())
        logp = batch_log_probs(agent.policy, data)
        approx_kl(logp, data["logp"]), clip_fraction(logp, data["logp"], cfg.clip_eps)
        marks.append(time.perf_counter())
        if update >= 5:
            for name, start, end in zip(totals, marks, marks[1:], strict=False):
                totals[name] += end - start
    return {name: 1e3 * total / updates for name, total in totals.items()}


def minibatch_steps(repeats: int) -> dict[str, float]:
    """Microseconds per minibatch step, rlteach's and bare torch's (medians of ``repeats``
    interleaved blocks of 500 steps)."""
    cfg = PPOConfig()
    agent = build_agent(cfg.env_id, cfg.num_envs, cfg.seed, cfg.hidden)
    policy = agent.policy
    theta = vector_parameter(policy)
    optimizer = torch.optim.Adam([theta], lr=1e-6, eps=ADAM_EPS, fused=True)
    data = gae_data(agent.collector.collect(cfg.rollout_steps), cfg)
    mb = next(iter(shuffled_minibatches(data, cfg, agent.generator)))

    def rlteach_step() -> None:
        loss, _ = ppo_loss(policy, mb, cfg)
        gradient_step(optimizer, loss, cfg.max_grad_norm)

    w = list(policy.parameters())

    def bare_step() -> None:
        pi = torch.tanh(F.linear(torch.tanh(F.linear(mb["obs"], w[0], w[1])), w[2], w[3]))
        pi = F.linear(pi, w[4], w[5])
        v = torch.tanh(F.linear(torch.tanh(F.linear(mb["obs"], w[6], w[7])), w[8], w[9]))
        v = F.linear(v, w[10], w[11])
        logp = torch.log_softmax(pi, -1).gather(-1, mb["actions"].unsqueeze(-1)).squeeze(-1)
        adv = (mb["adv"] - mb["adv"].mean()) / (mb["adv"].std(correction=0) + 1e-8)
        ratio = torch.exp(logp - mb["logp"])
        clipped = ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps)
        value_loss = 0.5 * (v.squeeze(-1) - mb["ret"]).square().mean()
        loss = -torch.minimum(ratio * adv, clipped * adv).mean() + cfg.vf_coef * value_loss
        theta.grad.zero_()
        loss.backward()
        norm = torch.linalg.vector_norm(theta.grad)
        theta.grad.mul_(torch.clamp(cfg.max_grad_norm / (norm + 1e-6), max=1.0))
        optimizer.step()

    times: dict[str, list[float]] = {"rlteach": [], "bare torch": []}
    for _ in range(repeats):
        for name, step in (("rlteach", rlteach_step), ("bare torch", bare_step)):
            start = time.perf_counter()
            for _ in range(500):
                step()
            times[name].append((time.perf_counter() - start) / 500 * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def profile(steps: int, rows: int = 25) -> str:
    """``cProfile`` of ``train_ppo(total_steps=steps)``: the ``rows`` entries with the most
    cumulative time."""
    train_ppo(total_steps=2_048)  # imports and first calls out of the way
    profiler = cProfile.Profile()
    profiler.enable()
    train_ppo(total_steps=steps)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(rows)
    return out.getvalue()


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__, "ppo_step", "20 updates, 3 repeats, 8k-step profile")
    args = parse_checked(parser, argv)
    single_thread()
    updates, repeats, steps = (20, 3, 8_000) if args.quick else (100, 9, 40_000)
    split = phases(updates)
    per_step = minibatch_steps(repeats)
    total = sum(split.values())
    print("| phase | ms per update | share |\n|---|---|---|")
    for name, ms in split.items():
        print(f"| {name} | {ms:.1f} | {ms / total:.0%} |")
    print(f"| all | {total:.1f} | env steps/s: {512 / total * 1e3:,.0f} |\n")
    print("| minibatch step | µs |\n|---|---|")
    for name, us in per_step.items():
        print(f"| {name} | {us:.0f} |")
    print(profile(steps))
    path = write_json(args.out, {"machine": machine(), "phases": split, "step": per_step})
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
