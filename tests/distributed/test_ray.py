"""The parameter server on Ray: same worker code, same server rules, same results, clean failures.

Skipped when the Ray extra is missing; ``make test`` installs it, so CI runs these.
"""

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

pytest.importorskip(
    "ray", reason="the Ray extra is not installed: pip install -e '.[ray]' (make test installs it)"
)

import ray  # noqa: E402

import rlteach  # noqa: E402
from rlteach.distributed import ServerConfig, WorkerError  # noqa: E402
from rlteach.distributed.dppo import run_dppo  # noqa: E402
from rlteach.distributed.ray_backend import RayCluster, connect  # noqa: E402
from rlteach.distributed.traffic import free_port  # noqa: E402
from tests.distributed import workers as W  # noqa: E402
from tests.distributed.test_runtime import HELPERS  # noqa: E402

SGD1 = ServerConfig(optimizer="sgd", lr=1.0)
QUICK = dict(total_steps=1600, envs_per_worker=2, rollout_steps=32, eval_interval=0.5)


def descendants() -> list[psutil.Process]:
    """Every live process started (directly or not) by this one, zombies excepted."""
    alive = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and not HELPERS.search(
                " ".join(proc.cmdline())
            ):
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4 loopback address written as IPv6 (``::ffff:127.0.0.1``)."""
    address = ipaddress.ip_address(ip)
    return address.is_loopback or bool(
        getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback
    )


def nothing_left_running(grace: float = 10.0) -> bool:
    """Ray's daemons exit shortly after ``ray.shutdown()``: allow them ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while descendants() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not descendants() and not ray.is_initialized()


# --------------------------------------------- runs that start (and must stop) their own Ray


def test_bad_backend_and_address_are_refused_before_anything_starts():
    with pytest.raises(ValueError, match="backend = 'spark' is invalid"):
        run_dppo(**QUICK, backend="spark")
    with pytest.raises(ValueError, match="needs backend='ray'"):
        run_dppo(**QUICK, address="auto")
    assert not ray.is_initialized()


def test_an_address_where_no_cluster_answers_fails_fast_and_clearly():
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="no Ray cluster answers at '127.0.0.1:1'"):
        run_dppo(**QUICK, backend="ray", address="127.0.0.1:1")
    assert time.monotonic() - start < 15 and not ray.is_initialized()


def test_a_killed_worker_actor_is_named_and_ray_is_shut_down():
    assert not ray.is_initialized()
    killed = []

    def kill_worker_one(worker, metrics):
        if not killed and metrics["steps"] >= 5:
            os.kill(cluster.worker_pids[1], signal.SIGKILL)
            killed.append(time.monotonic())

    cluster = RayCluster(W.run_until_stopped, workers=2, params=np.zeros(3))
    with pytest.raises(WorkerError, match="worker 1 died") as info:
        with cluster:
            cluster.run(on_report=kill_worker_one, timeout=120)
    assert info.value.worker == 1
    assert time.monotonic() - killed[0] < 10
    assert nothing_left_running()


def test_a_worker_that_raises_is_named_with_its_traceback():
    with pytest.raises(WorkerError, match="worker 1 raised") as info:
        with RayCluster(W.raise_on_worker_one, workers=2, params=np.zeros(3)) as cluster:
            cluster.run(timeout=120)
    assert "broken on purpose" in info.value.remote_traceback
    assert nothing_left_running()


def test_dppo_on_ray_records_what_the_local_backend_records(capfd):
    """A short DPPO run on a local Ray instance (2 CPUs) has the local run's structure, and prints
    nothing a student did not ask for (Ray warns when it turns token authentication on)."""
    ray_run = run_dppo(**QUICK, backend="ray")
    assert nothing_left_running()
    assert "Token authentication" not in capfd.readouterr().err
    local_run = run_dppo(**QUICK)
    for name in ("updates", "episodes", "evaluations"):
        ray_rows, local_rows = getattr(ray_run.history, name), getattr(local_run.history, name)
        assert ray_rows and set(ray_rows[-1]) == set(local_rows[-1]), name
    assert {row["worker"] for row in ray_run.history.episodes} == {0, 1}
    assert ray_run.history.meta["backend"] == "ray"
    assert set(ray_run.history.meta) == set(local_run.history.meta)
    assert ray_run.history.meta["versions"] > 0
    assert ray_run.history.updates[-1]["env_steps"] >= QUICK["total_steps"]
    assert isinstance(ray_run.policy, rlteach.ActorCritic) and not ray_run.interrupted


def test_address_auto_joins_a_running_cluster_and_leaves_it_running(monkeypatch):
    """A one-node cluster started the way the README says (``ray start --head``; here on loopback,
    in the foreground so that the test can end it), joined with ``address="auto"``. The driver
    runs in loopback mode too, as the head does (otherwise it looks for the head on this
    machine's network address)."""
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)
    port, client_port = free_port(), free_port()  # not Ray Client's default 10001: may be taken
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--port", str(port)]
        + ["--ray-client-server-port", str(client_port)]
        + ["--num-cpus", "2", "--include-dashboard", "false", "--block"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_head(head, port)
        result = run_dppo(**QUICK, backend="ray", address="auto")
        assert result.history.meta["backend"] == "ray" and result.history.meta["versions"] > 0
        assert not ray.is_initialized()  # the run disconnected ...
        assert head.poll() is None  # ... and left the cluster it joined running
    finally:
        stop_head(head)
    assert nothing_left_running(grace=30)


def stop_head(head, patience: float = 30.0) -> None:
    """Ctrl-C, as a user stops ``ray start --block``; a head that has not exited after
    ``patience`` seconds (a loaded machine) is killed with its process group, so that no Ray
    process outlives the test and trips the leak checks of the tests after it."""
    try:
        os.killpg(head.pid, signal.SIGINT)
        head.wait(patience)
    except ProcessLookupError:  # the whole group has exited already
        head.wait(patience)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(patience)


def wait_for_head(head, port: int, patience: float = 60.0) -> None:
    """Until the head's GCS accepts connections on ``port`` and Ray's address file names it."""
    address_file = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline and head.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0 and address_file.exists():
                if address_file.read_text().strip().endswith(f":{port}"):
                    return
        time.sleep(0.5)
    raise AssertionError(f"the head node did not come up on port {port} (exit {head.poll()})")


# --------------------------------------------- the server's rules, on one shared Ray instance


@pytest.fixture(scope="module")
def shared_ray():
    """One local Ray instance for the tests below (each cluster then reuses it); 3 CPUs for the
    3-worker straggler test."""
    connect(ray, None, cpus=3)
    yield
    ray.shutdown()


def run_on_ray(worker_fn, **kwargs):
    with RayCluster(worker_fn, **kwargs) as cluster:
        return cluster.run(timeout=120)


def test_ray_listens_on_loopback_only(shared_ray):
    ours = {proc.pid for proc in descendants()}
    listening = [
        conn
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.pid in ours
    ]
    assert listening, "Ray's servers were not found"
    assert all(is_loopback(conn.laddr.ip) for conn in listening), listening


def test_sync_rounds_average_gradients_like_the_local_server(shared_ray):
    result = run_on_ray(
        W.push_constant_gradients, workers=2, params=np.zeros(7), server=SGD1, args=(4,)
    )
    np.testing.assert_allclose(result.params, -4 * 1.5)
    assert result.version == 4 and result.server["applied"] == 8
    for versions in result.results:
        assert [(v, after) for v, after, _, _ in versions] == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_a_pull_after_a_sync_push_returns_the_rounds_theta_without_a_call(shared_ray):
    """Sync rounds that wait for every worker: the ack carries θ, and the pull that follows it is
    answered from it. The θ each pull returns is the local server's, round by round; with
    stragglers dropped or async pushes θ can move between the ack and the pull, and the pull
    asks the server (theta_stays_until_next_push)."""
    from rlteach.distributed.ray_backend import theta_stays_until_next_push
    from rlteach.distributed.runtime import Cluster

    arguments = dict(workers=2, params=np.zeros(5), server=SGD1, args=(4,))
    on_ray = run_on_ray(W.pull_after_each_push, **arguments)
    with Cluster(W.pull_after_each_push, **arguments) as cluster:
        local = cluster.run(timeout=60)
    expected = [(r, -1.5 * r) for r in range(1, 5)]
    assert on_ray.results == local.results == [expected, expected]
    assert theta_stays_until_next_push(SGD1)
    assert not theta_stays_until_next_push(ServerConfig(mode="async"))
    assert not theta_stays_until_next_push(ServerConfig(drop_stragglers=1))


class CountingServer:
    """A stand-in for the server actor's handle: ``push`` answers with an ack and θ, ``pull`` with
    θ; every remote call is counted."""

    def __init__(self, theta_with_ack: bool):
        self.calls, self.theta_with_ack, self.version = [], theta_with_ack, 0
        for name in ("push", "pull"):
            setattr(self, name, type("Method", (), {"remote": getattr(self, f"_{name}")})())

    def _push(self, worker, vector, version, weight, progress):
        self.calls.append("push")
        self.version += 1
        theta = np.full(3, float(self.version), np.float32)
        return (("ack", True, self.version, 0), theta if self.theta_with_ack else None)

    def _pull(self):
        self.calls.append("pull")
        return np.full(3, float(self.version), np.float32), self.version, False


class ImmediateRay:
    """``ray.get`` of a value that is already there."""

    exceptions = ray.exceptions

    @staticmethod
    def get(ref, timeout=None):
        return ref


@pytest.mark.parametrize("theta_with_ack", [True, False])
def test_a_sync_round_on_ray_is_one_remote_call(theta_with_ack):
    from rlteach.distributed.ray_backend import RayWorkerContext

    server = CountingServer(theta_with_ack)
    cfg = SGD1 if theta_with_ack else ServerConfig(mode="async")
    ctx = RayWorkerContext(ImmediateRay, server, 0, 2, 0, cfg)
    theta, version = ctx.pull()
    for _ in range(3):
        version = ctx.push(np.ones(3, np.float32), version).version
        theta, version = ctx.pull(out=theta)
        np.testing.assert_array_equal(theta, np.full(3, float(version)))
    per_round = ["push"] if theta_with_ack else ["push", "pull"]
    assert server.calls == ["pull"] + 3 * per_round


def test_sum_over_workers_is_the_local_runtimes_sum_on_ray(shared_ray):
    """The same worker as test_runtime's: three workers, worker 2 leaves after the first sum, 11
    numbers through a 5-parameter slot."""
    theta0 = np.arange(5, dtype=np.float32)
    result = run_on_ray(
        W.sum_twice_then_leave_early_on_worker_two, workers=3, params=theta0, args=(11,)
    )
    for worker, sums in enumerate(result.results):
        np.testing.assert_array_equal(sums[0], np.full(11, 6.0))
        if worker < 2:
            np.testing.assert_array_equal(sums[1], np.arange(11) * 3.0)
            np.testing.assert_array_equal(sums[2], theta0)
    assert result.version == 0


def test_async_applies_every_push_and_records_staleness(shared_ray):
    server = ServerConfig(mode="async", optimizer="sgd", lr=1.0)
    result = run_on_ray(
        W.push_constant_gradients, workers=2, params=np.zeros(3), server=server, args=(5,)
    )
    assert result.version == 10 and result.server["applied"] == 10
    np.testing.assert_allclose(result.params, -(5 * 1 + 5 * 2))
    assert len(result.staleness) == 10 and result.staleness.min() >= 0


def test_stragglers_are_dropped_when_a_round_takes_the_first_w_minus_d(shared_ray):
    """As in the local test: worker 0 takes 0.15 s per push, workers 1 and 2 push every 20 ms."""
    server = ServerConfig(drop_stragglers=1)
    result = run_on_ray(
        W.slow_for_worker_zero,
        workers=3,
        params=np.zeros(2),
        server=server,
        args=(6, 0.15, 150, 0.02),
    )
    assert sum(result.results[0]) < 6
    dropped = [p[0] for p in result.server["pushes"] if not p[3]]
    assert result.server["dropped"] == len(dropped) > 0
    assert dropped.count(0) > len(dropped) / 2


def test_an_interrupt_stops_the_workers_and_keeps_the_partial_result(shared_ray):
    """SIGINT (the kernel's ■) half a second after the first report: Ray's worker actors take
    longer to start than local processes (seconds on a fresh machine), so a fixed delay from the
    start could interrupt a run in which nothing has happened yet."""
    seen, interrupted_at = [], []

    def interrupt_once_running(worker, metrics):
        seen.append(metrics)
        if not interrupted_at:
            interrupted_at.append(time.monotonic() + 0.5)
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()

    with RayCluster(W.run_until_stopped, workers=2, params=np.zeros(3)) as cluster:
        result = cluster.run(on_report=interrupt_once_running, timeout=120)
    assert result.interrupted and seen and result.version > 0
    assert time.monotonic() - interrupted_at[0] < 5
    assert result.results == [None, None]  # both workers were stopped, not finished


def test_more_workers_than_free_cpus_is_a_clear_error(shared_ray):
    with pytest.raises(RuntimeError, match="4 workers need 4 CPUs; the Ray cluster has 3 "):
        with RayCluster(W.return_seed, workers=4, params=np.zeros(3)):
            pass


def test_the_command_line_runs_dppo_on_ray(shared_ray, tmp_path, capsys):
    from rlteach.cli import main
    from rlteach.history import History

    out = tmp_path / "ray.json"
    argv = ["dppo", "--backend", "ray", "--total-steps", "1600", "--rollout-steps", "32"]
    assert main([*argv, "--eval-interval", "0", "--out", str(out), "--quiet"]) == 0
    assert History.load(out).meta["backend"] == "ray"
    assert ray.is_initialized()  # the run used the instance it found and left it running


def test_da3c_runs_on_ray_asynchronously_and_records_staleness(shared_ray):
    from rlteach.distributed.da3c import run_da3c

    result = run_da3c(**QUICK, backend="ray")
    meta = result.history.meta
    assert meta["backend"] == "ray" and meta["server"]["mode"] == "async"
    assert len(meta["staleness"]) == meta["pushes_applied"] == meta["versions"] > 0
    assert {row["worker"] for row in result.history.updates} == {0, 1}
