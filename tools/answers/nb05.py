"""Answers of notebook 05's exercises."""

import numpy as np

from rlteach.distributed.ray_backend import ActorParams
from rlteach.distributed.server import Server, ServerConfig
from tools.answers import cases, choice


def server_round(
    theta: np.ndarray, slots: np.ndarray, arrival: list[int], drop: int, lr: float
) -> np.ndarray:
    """θ ``[P]`` after the library's own server, in sync mode with SGD and ``drop_stragglers =
    drop``, received the gradients ``slots [W, P]`` in the order ``arrival``: the round closes after
    the first ``W − drop`` and the later pushes are dropped. (The server computes in float32.)"""
    workers = len(slots)
    store = ActorParams(theta, workers)
    cfg = ServerConfig(mode="sync", optimizer="sgd", lr=lr, drop_stragglers=drop)
    server = Server(store, cfg.validate(workers))
    for worker in arrival:
        np.copyto(store.slot(worker), slots[worker])
        server.on_push(worker, 0)  # every worker pulled version 0
    return store.params.astype(np.float64)


def rounds(rng: np.random.Generator) -> list[tuple]:
    """Six rounds: ``(theta [P], slots [W, P], arrival, D, lr)`` with W in 2..6 and D in [0, W),
    the first with W = 3, D = 1 and workers that do not arrive in the order of their numbers. The
    numbers are float32 values, so the server's float32 copy of them is exact."""
    shapes = [(3, 4, 1)] + [
        (w, int(rng.integers(1, 6)), int(rng.integers(0, w))) for w in rng.integers(2, 7, size=5)
    ]
    out = []
    for workers, size, drop in shapes:
        theta = rng.normal(size=size).astype(np.float32).astype(np.float64)
        slots = rng.normal(size=(workers, size)).astype(np.float32).astype(np.float64)
        arrival = [int(w) for w in rng.permutation(workers)]
        if arrival[: workers - drop] == list(range(workers - drop)):
            arrival.reverse()  # the first W − D by arrival are not workers 0 … W − D − 1
        out.append((theta, slots, arrival, drop, float(rng.choice([0.1, 0.5, 1.0]))))
    return out


def answers() -> dict:
    return {
        "05.1": cases(server_round, rounds(np.random.default_rng(0))),
        "05.3": choice(
            "05.3",
            "AD",
            {
                "A": "(1/W) Σ_w (θ − α g_w) = θ − α (1/W) Σ_w g_w: one plain SGD step is linear in "
                "the gradient, so the mean of the steps is the step of the mean (section 3's table: "
                "a distance of float rounding).",
                "B": "after its first local step each worker takes its gradient at its own θ'_w, "
                "while the gradient arm's second step takes every gradient at the common mean θ: the "
                "workers follow their own curvature, and the means differ (section 3's table).",
                "C": "Adam's step m̂ / (√v̂ + ε) is not linear in the gradient — its first step is "
                "about α · sign(g) in each coordinate, and the mean of the signs is not the sign of "
                "the mean; and the optimizer state lives on W workers in one arm, on the server in "
                "the other (section 3's table).",
                "D": "the identity (1/W) Σ_w (θ − α g_w) = θ − α (1/W) Σ_w g_w holds whatever the "
                "g_w: the two arms agree with each other — and both miss the full-batch gradient in "
                "the same way (section 1). Weighting by shard size repairs both alike.",
            },
        ),
    }
