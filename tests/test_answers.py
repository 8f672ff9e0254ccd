"""The stored answers are what ``tools/answers`` computes from the references, and every exercise
has its entry: a changed reference or a hand-edited answer file cannot go unnoticed."""

import json

import pytest

from rlteach import checks
from rlteach.checks.core import decode, encode, seal, unseal
from tools.answers import STORE, notebooks, rendered

NOTEBOOKS = notebooks()


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS))
def test_stored_answers_are_what_the_references_compute(notebook):
    stored = (STORE / f"{notebook}.json").read_text()
    assert stored == rendered(NOTEBOOKS[notebook]()), (
        f"rlteach/checks/answers/{notebook}.json differs from tools/answers/nb{notebook}.py: "
        "run `python -m tools.answers`"
    )


def test_every_exercise_has_an_answer_and_every_answer_an_exercise():
    """A prediction is graded against the course's law applied to what the notebook measured in
    that run, so it has no stored answer; every other exercise has one."""
    stored = {key for nb in NOTEBOOKS for key in json.loads((STORE / f"{nb}.json").read_text())}
    assert stored == {e.id for e in checks.EXERCISES if e.kind != "predict"}


def test_test_vectors_round_trip_exactly():
    import numpy as np
    import torch

    value = [torch.tensor([0.1, 1 / 3], dtype=torch.float64), np.array([True, False]), 0.7, "A"]
    back = decode(json.loads(json.dumps(encode(value))))
    assert torch.equal(back[0], value[0]) and back[0].dtype == torch.float64
    assert np.array_equal(back[1], value[1]) and back[1].dtype == bool
    assert back[2:] == [0.7, "A"]


def test_sealed_feedback_opens_only_with_its_own_key():
    sealed = seal("05.3", "B", "averaging is linear")
    assert "averaging" not in sealed
    assert unseal("05.3", "B", sealed) == "averaging is linear"
    with pytest.raises(UnicodeDecodeError):
        unseal("05.3", "C", sealed)
