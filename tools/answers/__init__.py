"""The exercises' answers, from their references: ``python -m tools.answers`` writes
``rlteach/checks/answers/NN.json`` from the module ``tools/answers/nbNN.py`` of each notebook.

The references live here, outside the installed package, so a student who reads ``rlteach.checks``
finds test vectors and digests, not the solutions. ``tests/test_answers.py`` holds the stored files
equal to what these modules compute, so a change of a reference cannot go unnoticed.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rlteach.checks.core import canonical_choice, canonical_number, digest, encode, seal

STORE = Path(__file__).parents[2] / "rlteach" / "checks" / "answers"


def cases(reference: Callable[..., Any], inputs: Iterable[tuple[Any, ...]]) -> dict[str, Any]:
    """Test vectors: each input tuple with the reference's output."""
    return {"cases": [{"args": list(args), "expected": reference(*args)} for args in inputs]}


def choice(exercise_id: str, letters: str, feedback: dict[str, str]) -> dict[str, Any]:
    """A choice answer: its options, the digest of the right letters, and the explanation of every
    option sealed with the right letters as key (shown once a student has found them)."""
    answer = canonical_choice(letters)
    return {
        "digest": digest(exercise_id, answer),
        "options": sorted(feedback),
        "feedback": seal(exercise_id, answer, json.dumps(feedback, ensure_ascii=False)),
    }


def number(exercise_id: str, value: float, decimals: int) -> dict[str, Any]:
    """A number answer, stored as the digest of its value rounded to ``decimals`` places."""
    return {"digest": digest(exercise_id, canonical_number(value, decimals)), "decimals": decimals}


def notebooks() -> dict[str, Callable[[], dict[str, Any]]]:
    """``{"05": answers function}`` for every ``nbNN`` module here."""
    found = {}
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith("nb"):
            found[module.name[2:]] = importlib.import_module(f"{__name__}.{module.name}").answers
    return dict(sorted(found.items()))


def rendered(answers: dict[str, Any]) -> str:
    """The JSON text stored for one notebook."""
    return json.dumps(encode(answers), indent=1, sort_keys=True) + "\n"


def main() -> None:
    STORE.mkdir(parents=True, exist_ok=True)
    for notebook, answers in notebooks().items():
        (STORE / f"{notebook}.json").write_text(rendered(answers()))
        print(f"wrote {STORE / f'{notebook}.json'}")
