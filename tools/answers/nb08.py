"""Answers of notebook 08's exercises."""

import numpy as np

from tools.answers import cases


def ring_allreduce(arrays: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """A ring all-reduce over ``W`` ranks' ``[P]`` arrays (``P`` a multiple of ``W``): in
    reduce-scatter step ``s`` rank ``r`` sends chunk ``(r − s) mod W`` to rank ``r + 1``, which adds
    it; in all-gather step ``s`` it sends chunk ``(r + 1 − s) mod W``, which overwrites. Returns the
    ranks' arrays and the values one rank sent."""
    workers = len(arrays)
    chunks = [np.split(a.copy(), workers) for a in arrays]
    sent = 0
    for phase in (0, 1):
        for step in range(workers - 1):
            messages = []  # every rank sends at once: collect, then deliver
            for r in range(workers):
                c = (r + phase - step) % workers
                messages.append(((r + 1) % workers, c, chunks[r][c].copy()))
            for dst, c, chunk in messages:
                chunks[dst][c] = chunk if phase else chunks[dst][c] + chunk
            sent += messages[0][2].size
    return [np.concatenate(c) for c in chunks], sent


def server_wins_above(workers: int, params: int, beta: float) -> float:
    """The latency above which (8.6) is below (8.4):
    ``2α + 2W·4P/β < 2(W − 1)α + 2(W − 1)/W · 4P/β`` ⇔ ``α > (W − (W − 1)/W) · 4P / ((W − 2) β)``."""
    return (workers - (workers - 1) / workers) * 4 * params / ((workers - 2) * beta)


def answers() -> dict:
    rng = np.random.default_rng(8)
    rings = [
        ([rng.normal(size=workers * per) for _ in range(workers)],)
        for workers, per in ((3, 2), (4, 1), (2, 3), (5, 2), (4, 3))
    ]
    links = [
        (100, 9_155, 1.25e9),  # the notebook's CartPole policy and link
        (3, 9_155, 1.25e9),
        (10, 100_000, 1.25e9),
        (1000, 25_000_000, 1.25e9),
        (7, 2_000, 1.25e8),
    ]
    return {"08.1": cases(ring_allreduce, rings), "08.3": cases(server_wins_above, links)}
