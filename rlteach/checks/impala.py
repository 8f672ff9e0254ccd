"""Checkers of notebook 09 (actors and a learner): V-trace's targets, the mean policy lag of
IMPALA's actors, and what Hogwild and IMPALA share and do not."""

from __future__ import annotations

from rlteach import advantages
from rlteach.checks.core import (
    CheckResult,
    Exercise,
    Solution,
    check_cases,
    check_choice,
    check_prediction,
)
from rlteach.checks.patterns import PREDICTION_RTOL

VTRACE = Exercise("09.1", "V-trace targets", "implement", forbidden=(advantages.vtrace,))
MEAN_LAG = Exercise("09.2", "the mean policy lag of IMPALA's segments", "predict")
DESIGNS = Exercise("09.3", "Hogwild, IMPALA and their corrections", "explain")

__all__ = ["check_vtrace_targets", "check_lag_prediction", "check_designs"]


def check_vtrace_targets(student: Solution) -> CheckResult:
    """Exercise 09.1: ``vtrace_targets(behaviour_logp, target_logp, rewards, values, next_values,
    terminated, truncated, gamma, rho_bar, c_bar)``, all ``[T, N]`` but the last four, returning
    the targets ``v_s`` ``[T, N]`` of (9.3) with the episode ends of ``advantages.gae``."""
    return check_cases(VTRACE, student)


def check_lag_prediction(
    student: Solution, actors: int, batch_segments: int, injected: int, measured: float
) -> CheckResult:
    """Exercise 09.2: ``predicted_lag() -> ℓ``, graded against the model (9.5) for
    ``actors`` actors, ``batch_segments`` segments per learner step and an injected lag of
    ``injected`` pulls; ``measured`` (the mean lag of section 3's runs) is shown after a pass."""
    per_pull = actors / batch_segments  # learner steps while one actor collects one segment
    law = (injected + 1) * per_pull
    slips = {
        "the injected lag alone; the segment's own collection adds W/B steps": injected * per_pull,
        "k + 1 pulls, not learner steps; each pull is W/B learner steps apart": injected + 1.0,
    }

    def explain(law: float, measured: float) -> str:
        return (
            f"The model counts (k + 1)·W/B = {law:g} learner steps between the publication of the "
            "θ a segment was collected with and the step that learns from it, for an instant "
            "learner and actors of one speed. What it leaves out moves a measurement either way: "
            "an actor's first k segments act with the initial θ (a shorter lag), a segment waits "
            "in the queue while the learner works on the ones before it (a longer one), and the "
            "actors and the learner share the machine's cores."
        )

    return check_prediction(MEAN_LAG, student, law, measured, explain, slips, PREDICTION_RTOL)


def check_designs(student: Solution) -> CheckResult:
    """Exercise 09.3: the letters of the true statements on Hogwild A3C, IMPALA and V-trace."""
    return check_choice(
        DESIGNS,
        student,
        hint="Re-read section 1's table (what is sent, who waits), section 2's table (where each "
        "evaluation lands) and SharedOptimizer.step in section 4 (what is locked, and why).",
    )
