"""Answers of notebook 08's exercises."""

import numpy as np

from tools.answers import cases


def all_reduce(arrays: list[np.ndarray]) -> np.ndarray:
    """What every rank holds after an all-reduce of the ``W`` ranks' ``[P]`` arrays: their sum
    ``[P]``. (The check watches the ring's messages itself.)"""
    return np.sum(arrays, axis=0)


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
    return {"08.1": cases(all_reduce, rings), "08.3": cases(server_wins_above, links)}
