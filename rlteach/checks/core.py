"""How an exercise is checked, whatever the notebook.

An exercise is a function the student writes: a piece of an algorithm (*implement*), a number written
before a measurement runs (*predict*), or the answer to a question (*explain*: a number, a choice, or
a formula as a function of its symbols). A checker calls it and returns a :class:`CheckResult`,
which prints as passed, as "not yet" with what differs, or as "not attempted yet" while the function
still raises the template's ``NotImplementedError``.

The answers are not code a student could read: they are test vectors (inputs and the outputs they
must give) and salted digests of the right choices and numbers, in ``rlteach/checks/answers/``,
written by ``tools/answers`` from the references that live outside the installed package.

While a checker calls the student's function it watches every Python call; a call to a library
function that *is* the answer (``advantages.gae`` for the GAE exercise) fails the check and says so.

Two graders read the results: ``python -m rlteach grade`` (each result is appended to the file named
by ``RLTEACH_GRADE_LOG``), and nbgrader, for which a failed check raises (``NBGRADER_EXECUTION`` set).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, Literal

import numpy as np
import torch

Solution = Callable[..., Any]  # a student's function, as the exercise cell defines it
Status = Literal["passed", "not yet", "not attempted"]
GRADE_LOG = "RLTEACH_GRADE_LOG"  # a file the grader asks every checker to append its result to
NOT_ATTEMPTED = "not attempted yet: replace `raise NotImplementedError` with your answer"
STYLE = {"passed": ("#1a7f37", "✔ passed"), "not yet": ("#b35900", "✘ not yet")}


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one exercise's check; truthy when it passed.

    ``exercise`` is the exercise's id and title ("05.1 · the synchronous round"), ``points`` what a
    pass is worth; ``score`` is ``points`` when passed, else 0.
    """

    exercise: str
    status: Status
    message: str
    points: float = 1.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def score(self) -> float:
        return self.points if self.passed else 0.0

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"[{self.status.upper()}] {self.exercise}: {self.message}"

    def _repr_html_(self) -> str:
        color, mark = STYLE.get(self.status, ("#57606a", "… not attempted yet"))
        return (
            f"<div class='rlteach-check' style='border-left:4px solid {color};padding:4px 8px'>"
            f"<b style='color:{color}'>{mark}</b> — <b>{html.escape(self.exercise)}</b>: "
            f"<pre style='display:inline;white-space:pre-wrap'>{html.escape(self.message)}</pre></div>"
        )


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``id`` ("05.1", notebook and number), a short title, its kind, its points and
    the library functions a solution may not call (they compute the answer)."""

    id: str
    title: str
    kind: Literal["implement", "predict", "explain"]
    points: float = 1.0
    forbidden: tuple[Callable[..., Any], ...] = field(default=(), repr=False)

    @property
    def name(self) -> str:
        return f"{self.id} · {self.title}"

    def result(self, status: Status, message: str) -> CheckResult:
        """The result of this exercise's check, recorded for the graders (see :func:`record`)."""
        return record(CheckResult(self.name, status, message, self.points))


def record(result: CheckResult) -> CheckResult:
    """Append ``result`` to the grader's log when one is set; under nbgrader, raise on a failure so
    its autograder scores the cell 0 (it gives full points to a cell that ends without an error)."""
    log = os.environ.get(GRADE_LOG)
    if log:
        entry = asdict(result) | {"id": result.exercise.split(" ", 1)[0]}
        with Path(log).open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
    if os.environ.get("NBGRADER_EXECUTION") and not result.passed:
        raise AssertionError(repr(result))
    return result


# ----------------------------------------------------------------------------- calling the student


class NotAttempted(Exception):
    """The student's function still raises the template's ``NotImplementedError``."""


class Delegated(Exception):
    """The student's function called a library function that computes the answer."""


def guarded(student: Solution, forbidden: Iterable[Callable[..., Any]]) -> Solution:
    """``student`` wrapped so that a call raises :class:`NotAttempted` for the template and
    :class:`Delegated` when it reached any of ``forbidden`` by whatever name (a profile hook compares
    each Python call's code object, so ``from rlteach.advantages import gae as g`` is caught too)."""
    codes = {_code_of(f): _name_of(f) for f in forbidden}

    def call(*args: Any) -> Any:
        reached: list[str] = []

        def watch(frame: FrameType, event: str, arg: object) -> None:
            if event == "call" and frame.f_code in codes:
                reached.append(codes[frame.f_code])

        previous = sys.getprofile()
        sys.setprofile(watch)
        try:
            value = student(*args)
        except NotImplementedError as exc:
            raise NotAttempted from exc
        finally:
            sys.setprofile(previous)
        if reached:
            raise Delegated(
                f"your function calls `{reached[0]}`, the library's own answer to this exercise; "
                "write it yourself"
            )
        return value

    return call


def _code_of(function: Callable[..., Any]) -> CodeType:
    while hasattr(function, "__wrapped__"):
        function = function.__wrapped__
    return function.__code__


def _name_of(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def attempt(
    exercise: Exercise, student: Solution, check: Callable[[Solution], CheckResult]
) -> CheckResult:
    """Run ``check`` on the guarded student function and turn the template, a delegation and a crash
    into results that say so."""
    try:
        return check(guarded(student, exercise.forbidden))
    except NotAttempted:
        return exercise.result("not attempted", NOT_ATTEMPTED)
    except Delegated as exc:
        return exercise.result("not yet", str(exc))
    except Exception as exc:  # the student's bug, reported rather than raised
        return exercise.result("not yet", f"your function raised {type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- stored answers


@cache
def answers(notebook: str) -> dict[str, Any]:
    """The stored answers of notebook ``notebook`` ("05"), decoded: ``{exercise id: entry}``."""
    text = (resources.files("rlteach.checks") / "answers" / f"{notebook}.json").read_text()
    return {key: decode(entry) for key, entry in json.loads(text).items()}


def encode(value: Any) -> Any:
    """JSON form of a test vector: tensors and arrays keep their kind and dtype, floats are exact
    (JSON writes ``repr(float)``), tuples and dicts recurse."""
    if isinstance(value, torch.Tensor):
        return {"tensor": value.tolist(), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, np.ndarray):
        return {"array": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(value: Any) -> Any:
    """Inverse of :func:`encode` (lists stay lists)."""
    if isinstance(value, dict) and "tensor" in value:
        return torch.tensor(value["tensor"], dtype=getattr(torch, value["dtype"]))
    if isinstance(value, dict) and "array" in value:
        return np.array(value["array"], dtype=value["dtype"])
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def digest(exercise_id: str, answer: str) -> str:
    """Salted SHA-256 of a canonical answer: what the answer files store instead of the answer."""
    return hashlib.sha256(f"rlteach:{exercise_id}:{answer}".encode()).hexdigest()


def seal(exercise_id: str, key: str, text: str) -> str:
    """``text`` encrypted with a keystream derived from the exercise and ``key``, base64. A choice's
    explanations are sealed with its right answer as key: the answer file holds them, and only a
    student who found the answer (and so is shown them) can open them."""
    data = text.encode()
    return base64.b64encode(
        bytes(a ^ b for a, b in zip(data, _keystream(exercise_id, key, len(data)), strict=True))
    ).decode()


def unseal(exercise_id: str, key: str, sealed: str) -> str:
    """Inverse of :func:`seal`; a ``UnicodeDecodeError`` (or garbage) with another key."""
    data = base64.b64decode(sealed)
    return bytes(
        a ^ b for a, b in zip(data, _keystream(exercise_id, key, len(data)), strict=True)
    ).decode()


def _keystream(exercise_id: str, key: str, size: int) -> bytes:
    return hashlib.shake_256(f"rlteach-seal:{exercise_id}:{key}".encode()).digest(size)


def canonical_number(value: float, decimals: int) -> str:
    """``value`` rounded to ``decimals`` places, as text (``-0.00`` is ``0.00``)."""
    return f"{round(float(value), decimals) + 0.0:.{decimals}f}"


def canonical_choice(value: str | Iterable[str]) -> str:
    """A choice or set of choices as sorted upper-case letters: ``"b, a"`` and ``["A", "B"]`` are
    both ``"AB"``."""
    letters = value if isinstance(value, str) else "".join(value)
    return "".join(sorted({c.upper() for c in letters if c.isalpha()}))


# ----------------------------------------------------------------------------- the three kinds


def as_array(value: Any) -> np.ndarray:
    """A tensor, array, list or number as a float numpy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=float)


def describe(args: Iterable[Any]) -> str:
    """The inputs of a case, short enough to read."""
    parts = []
    for a in args:
        if isinstance(a, (torch.Tensor, np.ndarray)):
            parts.append(np.array2string(as_array(a), precision=3, threshold=24))
        else:
            parts.append(repr(a))
    return "(" + ", ".join(parts) + ")"


def difference(
    case: int, args: Iterable[Any], want: np.ndarray, got: np.ndarray, atol: float
) -> str | None:
    """What differs between ``got`` and ``want`` (shape, or the largest difference with the case's
    inputs), or None when they agree to ``atol`` absolute plus the same relative."""
    if got.shape != want.shape:
        return f"case {case}: expected shape {want.shape}, got shape {got.shape}"
    if np.allclose(got, want, atol=atol, rtol=atol):
        return None
    worst = np.unravel_index(np.argmax(np.abs(got - want)), want.shape) if want.shape else ()
    return (
        f"case {case}: inputs {describe(args)}\n  expected {np.array2string(want, precision=5)}"
        f"\n  got      {np.array2string(got, precision=5)}"
        f"\n  largest difference {np.abs(got - want).max():.3g} at index {worst}"
    )


def matching_slip(
    got: np.ndarray, slips: Iterable[tuple[Any, str]], rtol: float = 1e-6, atol: float = 1e-12
) -> str | None:
    """The message of the first slip ``(what that slip gives, message)`` that the student's
    function gave, else None."""
    for value, message in slips:
        if np.allclose(got, value, rtol=rtol, atol=atol):
            return message
    return None


def scaled_slip(
    got: np.ndarray, expected: np.ndarray, slips: Iterable[tuple[float, str]], rtol: float = 1e-6
) -> str | None:
    """:func:`matching_slip` for slips that scale the answer: ``(factor, message)`` gives
    ``factor · expected`` (a sum for a mean is ``factor = M``, a sign slip ``−1``)."""
    return matching_slip(got, ((f * expected, m) for f, m in slips), rtol=rtol)


def check_cases(
    exercise: Exercise,
    student: Solution,
    transform: Callable[[Solution], Solution] | None = None,
    atol: float = 1e-6,
    diagnose: Callable[[list[Any], np.ndarray, np.ndarray], str | None] | None = None,
    layout: str = "",
) -> CheckResult:
    """Implement and derive: call the student's function on each stored case of ``exercise`` and
    compare with the stored output. ``transform`` turns the guarded function into what is compared
    (e.g. :func:`value_and_grad`); ``atol`` is absolute plus the same relative; ``diagnose(args,
    expected, got)`` may name a typical mistake, added to the message of a case that differs;
    ``layout`` says what the compared vector holds (e.g. the value, then the gradient)."""
    cases = answers(exercise.id[:2])[exercise.id]["cases"]

    def check(guarded_student: Solution) -> CheckResult:
        function = transform(guarded_student) if transform else guarded_student
        for i, case in enumerate(cases):
            try:
                got = as_array(
                    function(*copy.deepcopy(case["args"]))
                )  # the stored case stays intact
            except (NotAttempted, Delegated):
                raise
            except Exception as exc:  # the student's bug, with the inputs that raised it
                message = (
                    f"case {i}: inputs {describe(case['args'])}: raised {type(exc).__name__}: {exc}"
                )
                return exercise.result("not yet", message)
            want = as_array(case["expected"])
            problem = difference(i, case["args"], want, got, atol)
            if problem:
                mistake = diagnose(case["args"], want, got) if diagnose else None
                message = "\n".join(filter(None, (mistake, problem, layout)))
                return exercise.result("not yet", message)
        return exercise.result("passed", f"agrees with the reference on {len(cases)} cases")

    return attempt(exercise, student, check)


def value_and_grad(function: Solution, wrt: int = 0) -> Solution:
    """``function(*args)`` → its value followed by its gradient with respect to argument ``wrt``,
    flattened, so a check compares both (a loss with the right value and the wrong dependence on
    the inputs fails)."""

    def wrapped(*args: Any) -> torch.Tensor:
        inputs = [
            a.detach().clone().requires_grad_(i == wrt) if isinstance(a, torch.Tensor) else a
            for i, a in enumerate(args)
        ]
        value = function(*inputs)
        if not isinstance(value, torch.Tensor) or not value.requires_grad:
            raise TypeError("the result must be a torch scalar computed from the inputs")
        (grad,) = torch.autograd.grad(value, inputs[wrt])
        return torch.cat([value.detach().reshape(1), grad.flatten()])

    return wrapped


def check_choice(exercise: Exercise, student: Solution, hint: str) -> CheckResult:
    """Explain, by choice: the student's function returns a letter (or several, for "all that
    apply"), compared with the stored digest. A wrong choice gets ``hint`` and nothing that tells
    which letters are wrong; a right one gets the explanation of every option, stored sealed with
    the right answer as key (:func:`seal`), so it opens only for a student who found it."""
    entry = answers(exercise.id[:2])[exercise.id]
    options = entry["options"]

    def check(guarded_student: Solution) -> CheckResult:
        chosen = canonical_choice(guarded_student())
        if not chosen or set(chosen) - set(options):
            return exercise.result(
                "not yet", f"answer with one or more of the letters {', '.join(options)}"
            )
        if digest(exercise.id, chosen) != entry["digest"]:
            return exercise.result("not yet", f"not this choice ({', '.join(chosen)}). {hint}")
        why = json.loads(unseal(exercise.id, chosen, entry["feedback"]))
        return exercise.result(
            "passed", "right.\n" + "\n".join(f"  {k}: {why[k]}" for k in options)
        )

    return attempt(exercise, student, check)


def check_number(exercise: Exercise, student: Solution, hint: str) -> CheckResult:
    """Explain, by a number: the student's function returns it; it must round to the stored digest's
    value at the stored number of decimals. ``hint`` is what a wrong number is told."""
    entry = answers(exercise.id[:2])[exercise.id]

    def check(guarded_student: Solution) -> CheckResult:
        value = float(guarded_student())
        if digest(exercise.id, canonical_number(value, entry["decimals"])) == entry["digest"]:
            return exercise.result("passed", f"right: {value:g}")
        return exercise.result(
            "not yet", f"{value:g} is not it (to {entry['decimals']} decimals). {hint}"
        )

    return attempt(exercise, student, check)


def check_prediction(
    exercise: Exercise,
    student: Solution,
    law: float,
    measured: float,
    explain: Callable[[float, float], str],
    slips: Mapping[str, float] | None = None,
    rtol: float = 0.02,
    shown_as: str = "measured",
) -> CheckResult:
    """Predict, then compare: the student's number must be the prediction the course's law makes
    (``law``, to ``rtol``: a measurement is noisy, so it is shown, not graded). A pass shows the
    law beside ``measured`` and ``explain(law, measured)``, why they differ; a miss says only
    whether the law's value is higher or lower, and names a recognised slip: the measurement
    itself, or one of ``slips`` (what it is → the value it gives) when the number is nearer it.
    ``shown_as`` names what ``measured`` is ("measured", "extrapolated" …)."""

    def check(guarded_student: Solution) -> CheckResult:
        predicted = float(guarded_student())
        if abs(predicted - law) <= rtol * abs(law):
            return exercise.result(
                "passed",
                f"you predicted {predicted:.3g}; {shown_as}: {measured:.3g}. {explain(law, measured)}",
            )
        side = "lower" if law < predicted else "higher"
        known = {f"the value {shown_as}; the exercise asks for what the law predicts": measured}
        slip = _nearest_slip(predicted, law, known | dict(slips or {}), rtol)
        return exercise.result(
            "not yet",
            f"you predicted {predicted:.3g}; the law, with the numbers the notebook printed, "
            f"gives a {side} value.{slip}",
        )

    return attempt(exercise, student, check)


def _nearest_slip(predicted: float, law: float, slips: Mapping[str, float], rtol: float) -> str:
    """ " Your number looks like …" for the slip whose value ``predicted`` matches (to ``rtol``)
    better than it matches ``law``; else ``""``."""
    matching = [
        (abs(predicted - value), what)
        for what, value in slips.items()
        if abs(predicted - value) <= rtol * abs(value)
        and abs(predicted - value) < abs(predicted - law)
    ]
    return f" Your number looks like {min(matching)[1]}." if matching else ""
