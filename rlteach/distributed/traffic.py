"""What a parameter server and an all-reduce send per update, counted and measured (notebook 08).

One update averages a gradient of ``P`` float32 values (``4P`` bytes) over ``W`` workers.

* **Parameter server.** Every worker sends its gradient to the server and receives θ back:
  ``4P`` bytes out and ``4P`` in per worker, so the server moves ``2 · W · 4P`` bytes. The
  server's link grows linearly with ``W``: it is the bottleneck.
* **Ring all-reduce** (what DD-PPO and ``torch.distributed.all_reduce`` do). The vector is cut into
  ``W`` chunks; in ``W − 1`` reduce-scatter steps and ``W − 1`` all-gather steps each rank sends
  one chunk of ``4P / W`` bytes to its neighbour and receives one from the other. Each rank sends
  ``2 (W − 1)/W · 4P`` bytes and receives as much: below ``2 · 4P`` whatever ``W``. No node is
  special; the total over the cluster is about the same as the server's, but spread evenly.

:func:`traffic_per_update` is that arithmetic. :func:`link_seconds` turns it into time with the
α–β model of a link (Hockney, 1994): a message of ``m`` bytes takes ``α + m / β`` seconds, ``α``
the latency of one message, ``β`` the bandwidth in bytes per second. :func:`measure_traffic` runs
the two schemes for real — ``gloo`` process groups over loopback, the server made of
``send``/``recv`` to rank 0 — and reads each process's TCP byte counters from the kernel
(``TCP_INFO``), so the plot in notebook 08 is what the sockets carried, not what the formula
says. (gloo may pick another all-reduce algorithm than the ring for some sizes; the measurement
shows what it did.)
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from rlteach.distributed.runtime import process_context

if TYPE_CHECKING:  # imported at run time only by the processes that use it
    import torch

SCHEMES = ("parameter server", "all-reduce")
TCP_INFO_SIZE = 232  # bytes of struct tcp_info read (Linux ≥ 4.19 fills at least this much)
TCP_INFO_BYTES_OFFSET = 120  # tcpi_bytes_acked, then tcpi_bytes_received (two u64)


def traffic_per_update(scheme: str, workers: int, params: int) -> dict:
    """Bytes per update by the arithmetic above: ``busiest`` (sent + received by the busiest
    process: the server, or any rank) and ``per_worker`` (sent + received by one worker)."""
    check_scheme(scheme)
    vector = 4 * params
    if scheme == "parameter server":
        return {"busiest": 2 * workers * vector, "per_worker": 2 * vector}
    ring = 2 * 2 * (workers - 1) / workers * vector  # sent + received
    return {"busiest": ring, "per_worker": ring}


def check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme = {scheme!r} is invalid: must be one of {', '.join(SCHEMES)}")


def measure_traffic(
    scheme: str, workers: int, params: int, updates: int = 5, timeout: float = 120.0
) -> dict:
    """Run ``updates`` averaging steps of a ``[params]`` float32 vector over ``workers`` processes
    (plus one server process for the parameter server) with ``gloo`` on 127.0.0.1, and return the
    bytes each process's sockets carried per update (sent + received, from the kernel's counters):
    ``{"per_process": [...], "server": bytes or None, "busiest": max, "seconds": per update}``.
    """
    check_scheme(scheme)
    if not sys.platform.startswith("linux"):
        raise RuntimeError("measure_traffic reads Linux's TCP_INFO socket counters: Linux only")
    if workers < 2:
        raise ValueError(f"workers = {workers!r} is invalid: an average needs at least 2")
    world = workers + (scheme == "parameter server")
    ctx = process_context()
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(
            target=_traffic_rank, args=(scheme, rank, world, port, params, updates, results)
        )
        for rank in range(world)
    ]
    for proc in procs:
        proc.start()
    try:
        rows = sorted(results.get(timeout=timeout) for _ in procs)
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    per_process = [row[1] / updates for row in rows]
    return {
        "per_process": per_process,
        "server": per_process[0] if scheme == "parameter server" else None,
        "busiest": max(per_process),
        "seconds": max(row[2] for row in rows) / updates,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _traffic_rank(
    scheme: str,
    rank: int,
    world: int,
    port: int,
    params: int,
    updates: int,
    results: Any,  # a multiprocess Queue (no stubs)
) -> None:
    """One process of :func:`measure_traffic`: ``updates`` averaging steps between two reads of
    this process's socket counters."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        vector = torch.ones(params)
        step = _all_reduce_step if scheme == "all-reduce" else _server_step
        step(dist, vector, rank, world)  # warm-up: gloo opens its connections lazily
        dist.barrier()
        before = socket_counters()
        dist.barrier()  # no rank sends before every rank has read its counters
        start = time.perf_counter()
        for _ in range(updates):
            step(dist, vector, rank, world)
        seconds = time.perf_counter() - start
        dist.barrier()
        results.put((rank, bytes_since(before, socket_counters()), seconds))
    finally:
        dist.destroy_process_group()


def _all_reduce_step(dist: ModuleType, vector: torch.Tensor, rank: int, world: int) -> None:
    dist.all_reduce(vector)
    vector /= world


def _server_step(dist: ModuleType, vector: torch.Tensor, rank: int, world: int) -> None:
    """Rank 0 receives a gradient from every worker, averages, and sends θ back to each."""
    if rank == 0:
        total, incoming = vector.clone().zero_(), vector.clone()
        for worker in range(1, world):
            dist.recv(incoming, src=worker)
            total += incoming
        vector.copy_(total / (world - 1))
        for worker in range(1, world):
            dist.send(vector, dst=worker)
    else:
        dist.send(vector, dst=0)
        dist.recv(vector, src=0)


def socket_counters() -> dict:
    """Bytes sent (and acknowledged) + received so far by each TCP socket of this process, keyed
    by the socket's inode: Linux's ``TCP_INFO`` (``tcpi_bytes_acked``, ``tcpi_bytes_received``,
    the counters ``ss -ti`` prints), read on a duplicate of each of the process's socket fds."""
    counters = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if not target.startswith("socket:"):
                continue
            with socket.socket(fileno=os.dup(int(fd))) as sock:
                if sock.family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                if sock.type != socket.SOCK_STREAM:
                    continue
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
        except OSError:  # closed meanwhile, or not a TCP socket
            continue
        acked, received = struct.unpack_from("QQ", info, TCP_INFO_BYTES_OFFSET)
        counters[target] = acked + received
    return counters


def bytes_since(before: dict, after: dict) -> int:
    """What the sockets carried between two :func:`socket_counters` readings (a socket opened in
    between counts from zero; one gone by the second reading is not counted)."""
    return sum(count - before.get(key, 0) for key, count in after.items())


LINK_ALPHA = 10e-6  # s per message: an assumed latency, of the order of TCP between two machines
LINK_BETA = 1.25e9  # bytes per second: a 10 Gbit/s link


def link_seconds(
    scheme: str,
    workers: int,
    params: int,
    alpha: float = LINK_ALPHA,
    beta: float = LINK_BETA,
    duplex: bool = True,
) -> dict:
    """Seconds one update keeps the busiest link busy in the α–β model (notebook 08, eqs. 8.3–8.6).

    A message of ``m`` bytes costs ``α + m/β``. ``duplex``: the link sends and receives at the same
    time (full duplex), else the two directions share it (half duplex) and queue behind each other.

    * **Ring all-reduce** (8.4): ``2(W − 1)`` steps; in each, every rank sends one chunk of
      ``4P/W`` bytes and receives one, both starting at once. A step costs ``α + (4P/W)/β`` on a
      full-duplex link, ``α + 2(4P/W)/β`` on a half-duplex one. Over the update:
      ``2(W − 1)·α + 2(W − 1)/W · 4P/β`` (full duplex).
    * **Parameter server** (8.6), synchronous, as :func:`measure_traffic` runs it: it receives the
      ``W`` gradients (``W · 4P`` bytes in, their latencies overlapping: one ``α``), then sends θ back
      to each worker (``W · 4P`` bytes out, one ``α``). It cannot send θ before the last gradient
      is in, so the two phases never overlap and duplex does not help: ``2α + 2 · W · 4P/β``.

    Returns ``{"latency": s, "transfer": s, "seconds": latency + transfer}``.
    """
    check_scheme(scheme)
    if workers < 2:
        raise ValueError(f"workers = {workers!r} is invalid: an average needs at least 2")
    if alpha < 0 or beta <= 0:
        raise ValueError(f"alpha = {alpha!r}, beta = {beta!r} are invalid: need α >= 0 and β > 0")
    vector = 4 * params
    if scheme == "parameter server":
        latency, transfer = 2 * alpha, 2 * workers * vector / beta
    else:
        steps = 2 * (workers - 1)
        per_step = vector / workers * (1 if duplex else 2)  # bytes queued on the link per step
        latency, transfer = steps * alpha, steps * per_step / beta
    return {"latency": latency, "transfer": transfer, "seconds": latency + transfer}


def ring_latency_crossover(
    params: int, alpha: float = LINK_ALPHA, beta: float = LINK_BETA
) -> float:
    """``W*`` of notebook 08's eq. 8.5: the number of ranks from which the ring's latency term
    exceeds its transfer term on a full-duplex link, ``2(W − 1)α > 2(W − 1)/W · 4P/β`` ⇔
    ``W > 4P / (αβ)``, i.e. once a chunk ``4P/W`` is smaller than the bytes the link carries during
    one latency, ``αβ``."""
    return 4 * params / (alpha * beta)


def link_table(
    params: int,
    workers: Iterable[int] = (10, 100, 1000),
    alpha: float = LINK_ALPHA,
    beta: float = LINK_BETA,
    duplex: bool = True,
) -> list[dict]:
    """The arithmetic for larger clusters, one row per entry of ``workers``: megabytes per update
    at the busiest process (:func:`traffic_per_update`), milliseconds per update at its link
    (:func:`link_seconds`), and the share of the ring's time that is latency."""
    rows = []
    for w in workers:
        server, ring = (link_seconds(s, w, params, alpha, beta, duplex) for s in SCHEMES)
        rows.append(
            {
                "W": w,
                "server MB": traffic_per_update("parameter server", w, params)["busiest"] / 1e6,
                "ring MB per rank": traffic_per_update("all-reduce", w, params)["busiest"] / 1e6,
                "server ms": server["seconds"] * 1e3,
                "ring ms": ring["seconds"] * 1e3,
                "ring: latency share": ring["latency"] / ring["seconds"],
            }
        )
    return rows
