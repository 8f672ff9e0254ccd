"""DA3C and DPPO on the parameter server: they learn, record what happened, and end cleanly."""

import gc
import time

import numpy as np
import pytest

import rlteach
from rlteach.distributed import WorkerError
from rlteach.distributed.da3c import DA3CConfig, run_da3c
from rlteach.distributed.dppo import run_dppo
from rlteach.panel import TrainingPanel
from tests.distributed import workers as W
from tests.distributed.test_runtime import child_pids, leaked_shm_entries, shm_entries

QUICK = dict(total_steps=1600, envs_per_worker=2, rollout_steps=32, eval_interval=0.5)


def greedy_mean(result):
    return float(np.mean(rlteach.evaluate(result.policy, "CartPole-v1", episodes=20, seed=123)))


@pytest.mark.slow
def test_dppo_default_config_solves_cartpole_with_two_workers():
    result = run_dppo(seed=0)
    assert result.config.workers == 2 and result.config.total_steps <= 300_000
    assert greedy_mean(result) >= 475


@pytest.mark.slow
def test_da3c_default_config_solves_cartpole_with_two_workers():
    result = run_da3c(seed=0)
    assert result.config.workers == 2 and result.config.total_steps <= 500_000
    assert greedy_mean(result) >= 475


@pytest.mark.parametrize("run", [run_dppo, run_da3c])
def test_history_holds_global_and_per_worker_records(run):
    result = run(**QUICK)
    h = result.history
    assert {row["worker"] for row in h.episodes} == {0, 1}
    assert {row["worker"] for row in h.updates} == {0, 1}
    assert h.updates[-1]["env_steps"] >= 1600
    for key in ("version", "staleness", "compute", "wait", "communication", "policy_objective"):
        assert key in h.updates[-1]
    assert h.evaluations and "return" in h.evaluations[-1]
    assert h.evaluations[-1]["version"] == h.meta["versions"]  # the final θ is evaluated too
    assert h.meta["versions"] > 0 and len(h.meta["staleness"]) == h.meta["pushes_applied"]
    assert isinstance(result.policy, rlteach.ActorCritic) and not result.interrupted
    assert child_pids() == []


def test_reports_are_dated_when_sent_not_when_a_busy_notebook_reads_them():
    """The callback (a live plot's first drawing, say) keeps the parent busy for a second while the
    workers go on: dated when read, the reports of that second would pile up at its end."""
    busy = []

    def slow_first_drawing(history):
        if not busy:
            busy.append(history.elapsed())
            time.sleep(1.0)

    result = run_da3c(
        **{**QUICK, "total_steps": 6000, "eval_interval": 0}, callback=slow_first_drawing
    )
    times = result.history.column("wall_time", "updates")
    during = (times > busy[0]) & (times < busy[0] + 1.0)
    assert during.sum() >= 10, times  # the workers' updates of that second, spread over it
    assert np.diff(times[during]).max() < 0.5


@pytest.mark.parametrize(
    "options",
    [dict(average="parameters"), dict(mode="async")],
    ids=["parameter-averaging", "async"],
)
def test_dppo_variants_run(options):
    result = run_dppo(**QUICK, **options)
    assert result.history.meta["versions"] > 0


def test_the_straggler_rule_closes_rounds_with_the_first_w_minus_d_gradients():
    result = run_dppo(
        **{**QUICK, "eval_interval": 0}, workers=3, drop_stragglers=1, slow_worker_delay=0.002
    )
    meta = result.history.meta
    assert sum(meta["dropped_by_worker"]) == meta["pushes_dropped"] > 0
    # every round closed with at most W − D = 2 gradients: the late third one was dropped
    assert meta["pushes_applied"] <= 2 * meta["versions"]


def test_a_crashing_worker_raises_with_its_id_and_leaves_nothing_behind():
    with pytest.raises(WorkerError, match="simulator crashed on purpose") as info:
        run_dppo(**QUICK, env_fn=W.cartpole_that_breaks)
    assert info.value.worker in (0, 1)
    assert child_pids() == []


def test_an_interrupt_returns_the_partial_result():
    interrupted = []

    def interrupt_after_five_reports(history):
        if len(history.updates) >= 5 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt  # what the kernel's ■ does in the main thread

    result = run_dppo(**{**QUICK, "total_steps": 10**6}, callback=interrupt_after_five_reports)
    assert result.interrupted and 5 <= len(result.history.updates) < 100
    rlteach.evaluate(result.policy, "CartPole-v1", episodes=2)
    assert child_pids() == []


def test_the_panels_stop_button_ends_a_distributed_run_and_leaves_nothing_behind():
    """A student's click on Stop is handled in the panel's callback (``jupyter_ui_poll`` in a
    kernel); here the click comes from a callback of the run itself, after five reports."""
    panel = None

    def da3c_with_a_click(config, callback):
        def click_then_follow(history):
            if len(history.updates) == 5:
                panel.stop_button.click()
            callback(history)

        return run_da3c(config, callback=click_then_follow)

    before = shm_entries()
    config = DA3CConfig(**{**QUICK, "total_steps": 10**6})
    panel = TrainingPanel(da3c_with_a_click, DA3CConfig, config=config)
    result = panel.train()
    assert result.interrupted and 5 <= len(result.history.updates) < 100
    assert panel.status.value.endswith("stopped — partial result kept")
    gc.collect()  # a run's semaphores go when its Cluster, in a reference cycle, is collected
    assert child_pids() == [] and leaked_shm_entries(before) == set()


def test_bad_arguments_fail_before_any_process_starts():
    with pytest.raises(ValueError, match="W − D must be >= 1"):
        run_dppo(workers=2, drop_stragglers=2)
    with pytest.raises(ValueError, match="DA3CConfig.mode = 'hogwild'"):
        run_da3c(mode="hogwild")
    assert child_pids() == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ppo", "--env-id", "NoSuchEnv-v0"], "'NoSuchEnv-v0' is not a registered gymnasium"),
        (["ppo", "--hidden", "abc"], "--hidden: expected integers separated by commas"),
        (["a2c", "--lr", "fast"], "--lr: expected a number, got 'fast'"),
        (["reinforce", "--total-steps", "1.5"], "--total-steps: expected an integer"),
        (["dppo", "--workers", "2", "--drop-stragglers", "2"], "W − D must be >= 1"),
    ],
)
def test_command_line_ends_bad_input_with_one_error_line_and_exit_code_2(argv, message, capsys):
    """Checked by the config, argparse or the trainer before any work: no traceback."""
    from rlteach.cli import main

    try:
        code = main([*argv, "--quiet"])
    except SystemExit as exit_:  # argparse exits by itself
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and "<lambda>" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last and message in last
    assert child_pids() == []


def test_command_line_trains_and_writes_a_history(tmp_path, capsys):
    from rlteach.cli import main
    from rlteach.history import History

    out = tmp_path / "run.json"
    assert main(["ppo", "--total-steps", "1500", "--out", str(out), "--quiet"]) == 0
    assert "env steps per second" in capsys.readouterr().out
    assert History.load(out).episodes
    assert main(["dppo", "--workers", "0"]) == 2
    assert "DPPOConfig.workers = 0" in capsys.readouterr().err
