"""Checkers for the notebooks' exercises.

Each ``check_*`` function calls the student's function and the library's reference on the same random
inputs and returns a :class:`CheckResult` that prints as a clear pass, or says what differs: the input,
the expected and the received value, and the largest difference. An exercise still holding its
``raise NotImplementedError`` placeholder is reported as not attempted, not as an error.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from rlteach import tabular


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one exercise check; truthy when it passed."""

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        return f"[{mark}] {self.exercise}: {self.message}"

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.passed else "#b35900"
        mark = "✔ passed" if self.passed else "✘ not yet"
        return (
            f"<div style='border-left:4px solid {color};padding:4px 8px'>"
            f"<b style='color:{color}'>{mark}</b> — <b>{html.escape(self.exercise)}</b>: "
            f"<pre style='display:inline;white-space:pre-wrap'>{html.escape(self.message)}</pre></div>"
        )


def _as_array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value, dtype=float)


def compare(
    exercise: str,
    student: Callable,
    reference: Callable,
    cases: Iterable[tuple],
    atol: float = 1e-6,
) -> CheckResult:
    """Call ``student(*args)`` and ``reference(*args)`` for each ``args`` in ``cases``; compare them
    elementwise with tolerance ``atol`` (absolute, plus the same relative)."""
    cases = list(cases)
    for i, args in enumerate(cases):
        try:
            got = student(*args)
        except NotImplementedError:
            return CheckResult(
                exercise, False, "not attempted yet: replace `raise NotImplementedError`"
            )
        except Exception as exc:  # the student's bug, reported rather than raised
            return CheckResult(exercise, False, f"case {i}: raised {type(exc).__name__}: {exc}")
        want, got = _as_array(reference(*args)), _as_array(got)
        if got.shape != want.shape:
            return CheckResult(
                exercise, False, f"case {i}: expected shape {want.shape}, got shape {got.shape}"
            )
        if not np.allclose(got, want, atol=atol, rtol=atol):
            worst = (
                np.unravel_index(np.argmax(np.abs(got - want)), want.shape) if want.shape else ()
            )
            return CheckResult(
                exercise,
                False,
                f"case {i}: inputs {_describe(args)}\n  expected {np.array2string(want, precision=5)}"
                f"\n  got      {np.array2string(got, precision=5)}"
                f"\n  largest difference {np.abs(got - want).max():.3g} at index {worst}",
            )
    return CheckResult(exercise, True, f"agrees with the reference on {len(cases)} random cases")


def _describe(args) -> str:
    parts = []
    for a in args:
        if isinstance(a, (torch.Tensor, np.ndarray)):
            parts.append(np.array2string(_as_array(a), precision=3))
        else:
            parts.append(repr(a))
    return "(" + ", ".join(parts) + ")"


# ----------------------------------------------------------------------------- notebook 01


def _reference_softmax_score(logits: torch.Tensor, action: int) -> torch.Tensor:
    logits = logits.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.log_softmax(logits, -1)[action], logits)
    return grad


def check_softmax_score(student: Callable, trials: int = 6, seed: int = 0) -> CheckResult:
    """Exercise 01.1: ``softmax_score(logits[A], action) -> ∇_logits log π(action)``, ``[A]``.

    The reference differentiates ``log_softmax`` with autograd.
    """
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for _ in range(trials):
        n = int(torch.randint(2, 6, (), generator=gen))
        logits = torch.randn(n, dtype=torch.float64, generator=gen) * 2
        cases.append((logits, int(torch.randint(n, (), generator=gen))))
    return compare("softmax score ∇ log π(a)", student, _reference_softmax_score, cases)


def check_rewards_to_go(student: Callable, trials: int = 6, seed: int = 0) -> CheckResult:
    """Exercise 01.2: ``rewards_to_go(rewards[T], gamma) -> G[T]`` with ``G_t = Σ_{k≥t} γ^{k−t} r_k``.

    Inputs are float64 numpy arrays; a list or a tensor of the same values is accepted as output.
    """
    rng = np.random.default_rng(seed)
    cases = [
        (rng.normal(size=int(rng.integers(1, 12))), float(rng.choice([0.0, 0.5, 0.9, 0.99])))
        for _ in range(trials)
    ]
    return compare("rewards-to-go", student, tabular.rewards_to_go, cases)
