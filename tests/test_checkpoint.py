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
    path = rlteach.save(dppo, tmp_path / "dppo.pt")
    loaded = rlteach.load(path)
    assert loaded.config == config
    # saved under its public name, which every version of the library can import
    stored = torch.load(path, weights_only=True)["config_class"]
    assert stored == "rlteach.distributed.dppo:DPPOConfig"


@pytest.mark.parametrize(
    "old_name",
    ["rlteach.distributed.dppo:DPPOConfig", "rlteach.distributed.da3c:DA3CConfig"],
)
def test_a_checkpoint_written_before_the_configs_moved_still_loads(result, tmp_path, old_name):
    """Checkpoints from before the distributed configs moved to rlteach.distributed.configs name
    the algorithm's module; that module still has the class, so they load unchanged."""
    module, _, name = old_name.partition(":")
    config_cls = getattr(rlteach, name)
    assert config_cls.__module__ == "rlteach.distributed.configs"  # where it lives now
    config = config_cls(workers=3, hidden=tuple(result.config.hidden))
    path = rlteach.save(rlteach.TrainResult(result.policy, result.history, config), tmp_path / "a")
    payload = torch.load(path, weights_only=True)
    payload["config_class"] = old_name  # what such a file holds
    torch.save(payload, path)
    loaded = rlteach.load(path)
    assert type(loaded.config) is config_cls and loaded.config == config
