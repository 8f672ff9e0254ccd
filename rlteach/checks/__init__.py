"""Checkers for the notebooks' exercises, one ``check_*`` function per exercise.

Each calls the student's function and returns a :class:`CheckResult` that prints as a pass, as what
differs, or as "not attempted yet" (see :mod:`rlteach.checks.core` for how answers are stored and
how a solution that calls the library's own answer is refused). One module per part of the course:
``policy_gradient`` (01–02), ``actor_critic`` (03–04), ``patterns`` (05), ``da3c`` (06), ``dppo``
(07), ``collectives`` (08), ``impala`` (09).
"""

from rlteach.checks import (
    actor_critic,
    collectives,
    da3c,
    dppo,
    impala,
    patterns,
    policy_gradient,
)
from rlteach.checks.actor_critic import *  # noqa: F403
from rlteach.checks.collectives import *  # noqa: F403
from rlteach.checks.core import CheckResult, Exercise
from rlteach.checks.da3c import *  # noqa: F403
from rlteach.checks.dppo import *  # noqa: F403
from rlteach.checks.impala import *  # noqa: F403
from rlteach.checks.patterns import *  # noqa: F403
from rlteach.checks.policy_gradient import *  # noqa: F403

MODULES = (policy_gradient, actor_critic, patterns, da3c, dppo, collectives, impala)
EXERCISES = tuple(
    exercise
    for module in MODULES
    for exercise in vars(module).values()
    if isinstance(exercise, Exercise)
)
__all__ = ["EXERCISES", "CheckResult", "Exercise"] + [name for m in MODULES for name in m.__all__]
