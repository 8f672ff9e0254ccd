"""Checkpoints round-trip, load with weights_only=True, and refuse foreign or corrupt files."""

import pickle

import pytest
import torch

import rlteach


@pytest.fixture(scope="module")
def result():
    return rlteach.train_ppo(total_steps=1500, seed=3)


def test_round_trip_keeps_policy_config_and_history(result, tmp_path):
    path = rlteach.save(result, tmp_path / "run" / "ppo.pt")
    loaded = rlteach.load(path)
    obs = torch.randn(16, 4)
    assert torch.equal(
        loaded.policy.deterministic_action(obs), result.policy.deterministic_action(obs)
    )
    assert torch.allclose(loaded.policy.value(obs), result.policy.value(obs))
    assert loaded.config == result.config
    assert loaded.history.column("return").tolist() == result.history.column("return").tolist()
    torch.load(path, weights_only=True)  # plain data only
    assert [p.name for p in path.parent.iterdir()] == ["ppo.pt"]  # no temporary file left


def test_corrupt_truncated_and_foreign_files_raise_clear_errors(result, tmp_path):
    good = rlteach.save(result, tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable rlteach checkpoint"):
        rlteach.load(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not an rlteach checkpoint"):
        rlteach.load(foreign)
    code = tmp_path / "code.pt"
    code.write_bytes(pickle.dumps(object()))
    with pytest.raises(ValueError):
        rlteach.load(code)
    with pytest.raises(FileNotFoundError):
        rlteach.load(tmp_path / "missing.pt")


def test_a_distributed_runs_config_comes_back_as_its_dataclass(result, tmp_path):
    from rlteach.distributed.dppo import DPPOConfig

    config = DPPOConfig(workers=3, hidden=tuple(result.config.hidden))
    dppo = rlteach.TrainResult(result.policy, result.history, config)
    loaded = rlteach.load(rlteach.save(dppo, tmp_path / "dppo.pt"))
    assert loaded.config == config
