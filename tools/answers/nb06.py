"""Answers of notebook 06's exercises."""

import numpy as np

from rlteach.distributed.ray_backend import ActorParams
from rlteach.distributed.server import Server, ServerConfig
from tools.answers import cases, choice

Log = list[tuple[int, str]]  # (worker, "pull" | "push"), in the order the server handled them


def server_staleness(log: Log) -> np.ndarray:
    """The staleness the library's own asynchronous server reports for every push of ``log``: a
    pull reads the store's version, a push is tagged with the version its worker pulled last."""
    workers = 1 + max(worker for worker, _ in log)
    store = ActorParams(np.zeros(1, np.float32), workers)
    server = Server(store, ServerConfig(mode="async", optimizer="sgd").validate(workers))
    pulled, staleness = {}, []
    for worker, event in log:
        if event == "pull":
            pulled[worker] = store.read()[1]
        else:
            ((_, (_, _, _, stale)),) = server.on_push(worker, pulled[worker])
            staleness.append(stale)
    return np.array(staleness)


def async_log(rng: np.random.Generator, workers: int, cycles: int) -> Log:
    """``cycles`` pull → push cycles of ``workers`` workers with their own speeds, start times and
    waits for the server's answer, merged in time order; now and then a worker pulls twice."""
    events = []
    for worker in range(workers):
        t, seconds = rng.uniform(0, 1), rng.uniform(0.5, 2)
        for _ in range(cycles):
            events.append((t, worker, "pull"))
            if rng.random() < 0.15:
                t += rng.uniform(0, 0.2)
                events.append((t, worker, "pull"))
            t += seconds * rng.uniform(0.8, 1.2)
            events.append((t, worker, "push"))
            t += rng.uniform(0, 0.3)
    return [(worker, event) for _, worker, event in sorted(events)]


def logs(rng: np.random.Generator) -> list[tuple[Log]]:
    """Two short logs written out (the second with a worker that pulls twice before pushing) and
    five drawn ones with 2 to 5 workers."""
    written = [
        [(0, "pull"), (1, "pull"), (0, "push"), (0, "pull"), (1, "push"), (1, "pull")]
        + [(0, "push"), (1, "push")],
        [(0, "pull"), (1, "pull"), (2, "pull"), (1, "push"), (0, "push"), (2, "pull")]
        + [(2, "push"), (1, "pull"), (1, "push")],
    ]
    drawn = [async_log(rng, int(rng.integers(2, 6)), int(rng.integers(2, 5))) for _ in range(5)]
    return [(log,) for log in written + drawn]


def answers() -> dict:
    return {
        "06.1": cases(server_staleness, logs(np.random.default_rng(0))),
        "06.3": choice(
            "06.3",
            "ACD",
            {
                "A": "true: Hogwild (Recht et al., 2011) writes without locks, so a read can see some "
                "coordinates before and some after another thread's write. Its guarantees assume "
                "sparse updates, each touching few coordinates; A3C applied it to the dense "
                "gradients of a network, and it worked in their experiments.",
                "B": "false: applying one push at a time orders the writes; it does not make the "
                "reads fresh. While one worker collects and differentiates, the others' pushes are "
                "applied: those are its staleness (section 3's histogram, section 5's column).",
                "C": "true: the server changes θ under the lock that pulls take and publishes a "
                "version with every update, so a pull is one whole θ_t and a push's staleness is the "
                "server's version minus t — what Exercise 06.1 computes.",
                "D": "true: an async push waits for the server's answer (section 3's median wait per "
                "push), and the server process must be scheduled to apply each step; a Hogwild "
                "thread writes into the shared parameters itself and goes on at once.",
                "E": "false: lock-free means that no thread ever waits for another's write — that is "
                "Hogwild's point. Its price is the mixed reads of A, not waiting.",
            },
        ),
    }
