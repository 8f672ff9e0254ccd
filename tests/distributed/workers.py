"""Worker functions for the runtime tests: importable, numpy only (fast to spawn)."""

import os
import time

import numpy as np


def push_constant_gradients(ctx, rounds, value_of_worker=None):
    """Push gradient (worker_id + 1) * ones for ``rounds`` rounds; return the versions seen."""
    versions = []
    for _ in range(rounds):
        params, version = ctx.pull()
        grad = np.full_like(params, ctx.worker_id + 1.0)
        receipt = ctx.push(grad, version)
        versions.append((version, receipt.version, receipt.applied, receipt.staleness))
        ctx.report(version=version)
    return versions


def push_parameters(ctx, rounds):
    """Push params + worker_id + 1 (a fake local update) for ``rounds`` rounds."""
    for _ in range(rounds):
        params, version = ctx.pull()
        ctx.push(params + ctx.worker_id + 1.0, version)


def slow_for_worker_zero(ctx, rounds, delay, fast_rounds, fast_delay):
    """Worker 0 is a straggler: ``rounds`` pushes, each after ``delay`` seconds; the others push
    ``fast_rounds`` times every ``fast_delay`` seconds. Returns whether each push was applied."""
    out = []
    slow = ctx.worker_id == 0
    for _ in range(rounds if slow else fast_rounds):
        params, version = ctx.pull()
        time.sleep(delay if slow else fast_delay)
        out.append(ctx.push(np.ones_like(params), version).applied)
    return out


def raise_on_worker_one(ctx):
    if ctx.worker_id == 1:
        raise ValueError("worker one is broken on purpose")
    while not ctx.stopping:
        params, version = ctx.pull()
        ctx.push(np.zeros_like(params), version)
        time.sleep(0.01)


def die_silently_on_worker_one(ctx):
    if ctx.worker_id == 1:
        time.sleep(0.2)
        os._exit(3)
    while not ctx.stopping:
        params, version = ctx.pull()
        ctx.push(np.zeros_like(params), version)
        time.sleep(0.01)


def run_until_stopped(ctx):
    """Pull, push and report forever; only a stop ends it."""
    steps = 0
    while not ctx.stopping:
        params, version = ctx.pull()
        ctx.push(np.zeros_like(params), version)
        steps += 1
        ctx.report(steps=steps)
        time.sleep(0.005)
    return steps


def return_seed(ctx):
    return ctx.seed


def cartpole_that_breaks():
    """A CartPole whose 40th step raises: a worker crash in the middle of a run."""
    import gymnasium as gym

    class Breaks(gym.Wrapper):
        steps = 0

        def step(self, action):
            self.steps += 1
            if self.steps == 40:
                raise RuntimeError("the simulator crashed on purpose")
            return self.env.step(action)

    return Breaks(gym.make("CartPole-v1"))


def sum_twice_then_leave_early_on_worker_two(ctx, length):
    """Sum ``[worker_id + 1] * length`` and then ``arange(length) * (worker_id + 1)`` over the
    workers; worker 2 returns before the second sum. Returns the sums this worker got."""
    first = ctx.sum_over_workers(np.full(length, ctx.worker_id + 1.0, dtype=np.float32))
    if ctx.worker_id == 2:
        return [first]
    second = ctx.sum_over_workers(np.arange(length, dtype=np.float32) * (ctx.worker_id + 1))
    params, _ = ctx.pull()
    return [first, second, params]


def send_until_stopped(ctx, fail_on=None, die_on=None):
    """Send small segments of experience through the bounded queue until the run stops; after
    0.2 s worker ``fail_on`` raises and worker ``die_on`` exits without a word."""
    start, sent = time.monotonic(), 0
    while not ctx.stopping:
        late = time.monotonic() - start > 0.2
        if late and ctx.worker_id == fail_on:
            raise ValueError("actor is broken on purpose")
        if late and ctx.worker_id == die_on:
            os._exit(3)
        ctx.send(segment=np.full(4, sent, dtype=np.float32))
        sent += 1
        time.sleep(0.005)
    return sent


def send_and_time(ctx, count):
    """Send ``count`` segments at once; return the seconds each ``send`` waited."""
    return [ctx.send(index=i) for i in range(count)]


def a3c_probe(ctx, cfg, factories):
    """A Hogwild A3C worker that also says how many math threads its process ran."""
    import torch

    from rlteach.distributed.hogwild import a3c_worker

    steps = a3c_worker(ctx, cfg, factories)
    return steps, torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")


def pull_after_each_push(ctx, rounds):
    """Push gradient (worker_id + 1) * ones, then pull, ``rounds`` times; return the version and
    first parameter of every pull."""
    params, version = ctx.pull()
    pulled = []
    for _ in range(rounds):
        version = ctx.push(np.full_like(params, ctx.worker_id + 1.0), version).version
        params, version = ctx.pull()
        pulled.append((version, float(params[0])))
    return pulled
