"""The stored answers are what ``tools/answers`` computes from the references, and every exercise
has its entry: a changed reference or a hand-edited answer file cannot go unnoticed."""

import json
import math

import pytest

from rlteach import checks
from rlteach.checks.core import decode, encode, seal, unseal
from tools.answers import STORE, notebooks, rendered

NOTEBOOKS = notebooks()


# CPUs with other vector units round the last bit of a float64 sum differently (an AVX-512 machine
# moved 12 of 04's numbers by 1 ulp): numbers match to this, everything else exactly.
REL = 1e-12


def same_answers(stored: object, computed: object, where: str = "") -> str | None:
    """Where ``stored`` and ``computed`` (decoded JSON) differ, or None: floats within ``REL``."""
    if isinstance(stored, float) and isinstance(computed, float):
        close = math.isclose(stored, computed, rel_tol=REL, abs_tol=1e-300)
        return None if close else f"{where}: {stored!r} != {computed!r}"
    if isinstance(stored, dict) and isinstance(computed, dict):
        if stored.keys() != computed.keys():
            return f"{where}: keys {sorted(stored)} != {sorted(computed)}"
        pairs = [(stored[k], computed[k], f"{where}/{k}") for k in stored]
    elif isinstance(stored, list) and isinstance(computed, list):
        if len(stored) != len(computed):
            return f"{where}: {len(stored)} entries != {len(computed)}"
        pairs = [
            (a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(stored, computed, strict=True))
        ]
    else:
        return None if stored == computed else f"{where}: {stored!r} != {computed!r}"
    return next((d for a, b, w in pairs if (d := same_answers(a, b, w)) is not None), None)


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS))
def test_stored_answers_are_what_the_references_compute(notebook):
    stored = json.loads((STORE / f"{notebook}.json").read_text())
    difference = same_answers(stored, json.loads(rendered(NOTEBOOKS[notebook]())))
    assert difference is None, (
        f"rlteach/checks/answers/{notebook}.json differs from tools/answers/nb{notebook}.py at "
        f"{difference}: run `python -m tools.answers`"
    )


def test_the_comparison_sees_a_changed_digit_and_forgives_the_last_bit():
    assert same_answers({"a": [1.0, "x"]}, {"a": [1.0 + 1e-15, "x"]}) is None
    assert same_answers({"a": [1.0, "x"]}, {"a": [1.0 + 1e-9, "x"]}) == "/a[0]: 1.0 != 1.000000001"
    assert same_answers({"a": [1.0, "x"]}, {"a": [1.0, "y"]}) == "/a[1]: 'x' != 'y'"


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
