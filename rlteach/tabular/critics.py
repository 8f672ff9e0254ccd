"""Imperfect critics and the advantage estimators built on them (notebook 03).

Equation family 3.2–3.3 of notebook 03: sampled episodes fed to :mod:`rlteach.advantages` with a
critic ``V̂``, the bias² and variance of GAE(λ) and n-step return targets against ``Q^π`` (sampled,
and exactly through the first two moments of the targets), the values TD(0) converges to when a
time limit is (wrongly) treated as a termination, and the kinds of critic error
(:data:`CRITIC_ERRORS`) whose effect on the best λ the notebook tabulates.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from rlteach import advantages
from rlteach.tabular.mdp import (
    DTYPE,
    TabularMDP,
    _check_theta,
    action_values,
    default_horizon,
    policy,
    state_values,
)
from rlteach.tabular.reinforce import Episodes, sample_episodes

# ----------------------------------------------------------------------------- critics, sampled


def critic_batch(eps: Episodes, critic: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(rewards, values, next_values)``, ``[H−1, E]`` float64 tensors, of the episodes ``eps`` as
    :mod:`rlteach.advantages` takes them, with ``values[t] = critic[s_t]`` and
    ``next_values[t] = critic[s_{t+1}]``: no episode ends, the last recorded state is bootstrapped."""
    critic = torch.as_tensor(critic, dtype=DTYPE)
    return (
        torch.from_numpy(eps.rewards[:-1]),
        critic[torch.from_numpy(eps.states[:-1])],
        critic[torch.from_numpy(eps.states[1:])],
    )


def advantage_estimator_errors(
    mdp: TabularMDP,
    theta: torch.Tensor,
    critic: torch.Tensor,
    estimators: dict,
    episodes: int = 4000,
    seed: int = 0,
) -> dict:
    """Bias² and variance of advantage estimators at the first step, against the exact ``Q^π``.

    With an imperfect critic ``V̂ = critic[S]`` each estimator trades bias (it trusts ``V̂``) for
    variance (it trusts sampled rewards) — notebook 03, eq. 3.3. ``estimators`` maps a label to
    ``("gae", λ)`` or ``("nstep", n)``; each is computed with :mod:`rlteach.advantages` on the same
    sampled episodes (``[H, E]``, cut at the default horizon and bootstrapped from ``V̂`` there).
    The error measured is that of the return target ``R̂ = Â + V̂(s_0)`` against ``Q^π(s_0, a_0)``:
    the baseline ``V̂(s_0)`` that ``Â`` subtracts does not bias the policy gradient, the error in
    ``R̂`` does. Errors are grouped by ``(s_0, a_0)``: ``bias² = Σ p(s,a) mean(err | s,a)²`` (less
    its sampling noise ``var/(n−1)``), ``variance = Σ p(s,a) var(err | s,a)``.
    Returns ``{label: {"bias2": float, "variance": float, "mse": float}}``.
    """
    horizon = default_horizon(mdp.gamma) + 1
    eps = sample_episodes(mdp, theta, episodes, horizon, seed)
    critic = torch.as_tensor(critic, dtype=DTYPE)
    rewards, values, next_values = critic_batch(eps, critic)
    no_end = torch.zeros_like(rewards, dtype=torch.bool)
    s0, a0 = eps.states[0], eps.actions[0]
    true_q = action_values(mdp, theta).detach().numpy()
    group = s0 * mdp.n_actions + a0
    counts = np.bincount(group, minlength=mdp.n_states * mdp.n_actions)
    seen = counts > 1
    weights = counts[seen] / counts[seen].sum()
    out = {}
    for label, (kind, param) in estimators.items():
        if kind == "gae":
            adv, _ = advantages.gae(rewards, values, next_values, no_end, no_end, mdp.gamma, param)
        elif kind == "nstep":
            adv, _ = advantages.nstep_advantages(
                rewards, values, next_values, no_end, no_end, mdp.gamma, param
            )
        else:
            raise ValueError(f"estimator kind must be 'gae' or 'nstep', got {kind!r} for {label!r}")
        err = adv[0].numpy() + critic.numpy()[s0] - true_q[s0, a0]
        mean = np.bincount(group, err, minlength=len(counts))[seen] / counts[seen]
        sq = np.bincount(group, err**2, minlength=len(counts))[seen] / counts[seen]
        variance_g = sq - mean**2
        # mean² overestimates the squared bias by var/n: subtract it (unbiased, clipped at 0)
        bias2 = max(0.0, float(weights @ (mean**2 - variance_g / (counts[seen] - 1))))
        variance = float(weights @ variance_g)
        out[label] = {"bias2": bias2, "variance": variance, "mse": bias2 + variance}
    return out


def td_fixed_point(mdp: TabularMDP, eps: Episodes, cut_is_terminal: bool) -> torch.Tensor:
    """The values TD(0) converges to on the sampled transitions of ``eps`` (batch LSTD), ``[S]``.

    Every episode of ``eps`` is treated as cut by a time limit after its last recorded transition:
    step ``t`` goes from ``states[t]`` to ``states[t+1]`` for ``t < H−1`` (so ``eps`` needs one extra
    state at the end). The fixed point solves ``Σ φ(s)(φ(s) − γ c φ(s'))ᵀ V = Σ φ(s) r`` with
    one-hot ``φ`` and ``c = 1``, except ``c = 0`` at the cut when ``cut_is_terminal`` — the bug of
    treating a truncation as a termination (notebook 03, section 3).
    """
    S = mdp.n_states
    s, s_next = eps.states[:-1].ravel(), eps.states[1:].ravel()
    r = eps.rewards[:-1].ravel()
    bootstrap = np.full(eps.states[:-1].shape, mdp.gamma)
    if cut_is_terminal:
        bootstrap[-1] = 0.0
    A = np.zeros((S, S))
    np.add.at(A, (s, s), 1.0)
    np.add.at(A, (s, s_next), -bootstrap.ravel())
    b = np.bincount(s, weights=r, minlength=S)
    return torch.from_numpy(np.linalg.solve(A, b))


# ----------------------------------------------------------------------------- critic errors, exact

CRITIC_ERRORS = ("noise", "offset", "shrunk", "other policy")


def critic_error_shape(
    mdp: TabularMDP, theta: torch.Tensor, kind: str, seed: int = 0
) -> torch.Tensor:
    """The direction ``e[S]`` of a critic's error ``V̂ − V^π``, scaled to root-mean-square 1 over states.

    * ``"noise"``: independent standard normal per state (drawn with ``seed``): a critic that is
      wrong by a different, unrelated amount in every state;
    * ``"offset"``: ``1`` in every state, the critic ``V^π + c``;
    * ``"shrunk"``: ``−V^π``, the critic ``(1 − k) V^π``, pulled towards 0 as one initialised at 0
      and trained part of the way would be;
    * ``"other policy"``: ``V^{π'} − V^π`` for ``π'`` with logits ``θ + 3 Z`` (``Z`` standard normal,
      drawn with ``seed``): a critic fitted to a policy the actor has moved away from.
    """
    V = state_values(mdp, theta).detach()
    rng = np.random.default_rng(seed)
    if kind == "noise":
        e = torch.from_numpy(rng.normal(size=mdp.n_states))
    elif kind == "offset":
        e = torch.ones(mdp.n_states, dtype=DTYPE)
    elif kind == "shrunk":
        e = -V
    elif kind == "other policy":
        other = _check_theta(mdp, theta) + 3.0 * torch.from_numpy(rng.normal(size=theta.shape))
        e = state_values(mdp, other).detach() - V
    else:
        raise ValueError(
            f"kind = {kind!r} is not allowed: must be one of {', '.join(CRITIC_ERRORS)}"
        )
    return e / e.pow(2).mean().sqrt()


def critic_with_error(
    mdp: TabularMDP, theta: torch.Tensor, kind: str, size: float, seed: int = 0
) -> torch.Tensor:
    """``V̂ = V^π + size · e``, ``[S]``, with ``e`` from :func:`critic_error_shape`: ``size`` is the
    root-mean-square error of the critic over states, the same for every ``kind``."""
    return state_values(mdp, theta).detach() + size * critic_error_shape(mdp, theta, kind, seed)


def lambda_return_moments(
    mdp: TabularMDP, theta: torch.Tensor, critic: torch.Tensor, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and second moment of GAE's return target given the first step, ``[S, A]`` each.

    The target ``R̂_t = Â^λ_t + V̂(s_t)`` (notebook 03, eq. 3.2) of an episode without end obeys
    ``R̂_t = c(s_t, a_t, s_{t+1}) + γλ R̂_{t+1}`` with ``c(s, a, s') = R[s, a] + γ(1−λ) V̂(s')``.
    Given ``(s, a, s')`` the future ``R̂_{t+1}`` is independent of the past, so with
    ``u(s) = E[R̂ | s]`` and ``m(s) = E[R̂² | s]``:
    ``u = (I − γλ P_π)⁻¹ Σ_a π Σ_s' P c`` and ``m = (I − γ²λ² P_π)⁻¹ Σ_a π b``, where
    ``b(s, a) = Σ_s' P[s, a, s'] (c² + 2γλ c u(s'))``; then
    ``E[R̂ | s, a] = Σ_s' P (c + γλ u(s'))`` and ``E[R̂² | s, a] = b + γ²λ² Σ_s' P m(s')``.
    """
    return _lambda_return_moments(mdp, policy(_check_theta(mdp, theta)).detach(), critic, lam)


def _lambda_return_moments(
    mdp: TabularMDP, pi: torch.Tensor, critic: torch.Tensor, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lambda_return_moments` for the policy table ``pi[S, A]``."""
    P_pi = torch.einsum("sa,sat->st", pi, mdp.P)
    g, critic = mdp.gamma, torch.as_tensor(critic, dtype=DTYPE)
    eye = torch.eye(mdp.n_states, dtype=DTYPE)
    c = mdp.R[:, :, None] + g * (1 - lam) * critic  # [S, A, S']
    u = torch.linalg.solve(eye - g * lam * P_pi, (pi * (mdp.P * c).sum(-1)).sum(-1))
    b = (mdp.P * (c**2 + 2 * g * lam * c * u)).sum(-1)
    m = torch.linalg.solve(eye - (g * lam) ** 2 * P_pi, (pi * b).sum(-1))
    mean = (mdp.P * (c + g * lam * u)).sum(-1)
    return mean, b + (g * lam) ** 2 * mdp.P @ m


def nstep_return_moments(
    mdp: TabularMDP, theta: torch.Tensor, critic: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and second moment of the n-step target ``G^(n)_t = Â^(n)_t + V̂(s_t)`` given
    ``(s_t, a_t)``, ``[S, A]`` each, by the recursion ``G^(k) = R[s, a] + γ G^(k−1)(s')`` from
    ``G^(0)(s) = V̂(s)`` (``R`` is deterministic given ``(s, a)``, only ``s'`` and later actions are
    random)."""
    return _nstep_return_moments(mdp, policy(_check_theta(mdp, theta)).detach(), critic, n)


def _nstep_return_moments(
    mdp: TabularMDP, pi: torch.Tensor, critic: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`nstep_return_moments` for the policy table ``pi[S, A]``."""
    g = mdp.gamma
    mean_s = torch.as_tensor(critic, dtype=DTYPE)
    second_s = mean_s**2
    for _ in range(n):
        next_mean, next_second = mdp.P @ mean_s, mdp.P @ second_s  # [S, A]
        mean = mdp.R + g * next_mean
        second = mdp.R**2 + 2 * g * mdp.R * next_mean + g**2 * next_second
        mean_s, second_s = (pi * mean).sum(-1), (pi * second).sum(-1)
    return mean, second


def exact_estimator_errors(
    mdp: TabularMDP, theta: torch.Tensor, critic: torch.Tensor, estimators: dict
) -> dict:
    """Exact bias², variance and mean squared error of advantage estimators (notebook 03, eq. 3.3).

    What :func:`advantage_estimator_errors` samples, computed in closed form: the error of the
    return target ``R̂`` against ``Q^π(s_0, a_0)`` given the first step, with ``s_0 ~ μ0`` and
    ``a_0 ~ π``: ``bias² = Σ p(s,a) (E[R̂|s,a] − Q^π(s,a))²`` and
    ``variance = Σ p(s,a) Var[R̂|s,a]``, ``p(s,a) = μ0(s) π(a|s)``. ``estimators`` maps a label to
    ``("gae", λ)`` (:func:`lambda_return_moments`) or ``("nstep", n)``
    (:func:`nstep_return_moments`). Returns ``{label: {"bias2", "variance", "mse"}}`` (floats).
    """
    moments = {"gae": _lambda_return_moments, "nstep": _nstep_return_moments}
    pi = policy(_check_theta(mdp, theta)).detach()
    weights = mdp.mu0[:, None] * pi
    true_q = action_values(mdp, theta).detach()
    out = {}
    for label, (kind, param) in estimators.items():
        if kind not in moments:
            raise ValueError(f"estimator kind must be 'gae' or 'nstep', got {kind!r} for {label!r}")
        mean, second = moments[kind](mdp, pi, critic, param)
        bias2 = float((weights * (mean - true_q) ** 2).sum())
        variance = float((weights * (second - mean**2).clamp(min=0)).sum())
        out[label] = {"bias2": bias2, "variance": variance, "mse": bias2 + variance}
    return out


def critic_error_summary(
    mdp: TabularMDP, theta: torch.Tensor, size: float, lambdas: Iterable[float], seed: int = 0
) -> list[tuple]:
    """Where GAE(λ) is best, for the exact critic and each kind of :data:`CRITIC_ERRORS` at
    root-mean-square ``size`` (exact errors, :func:`exact_estimator_errors`, over ``lambdas``).

    One row per critic: ``(kind, λ of least bias², λ of least variance, λ of least MSE, largest
    bias² over λ, variance at lambdas[0], that variance ÷ the exact critic's, variance at
    lambdas[-1], MSE at lambdas[0], least MSE)``. When no bias² exceeds 1e-12 of the largest error
    (the exact critic), the λ of least bias² is ``"every λ"``.
    """
    lambdas = list(lambdas)
    rows = []
    critics = {"exact": state_values(mdp, theta).detach()}
    critics |= {kind: critic_with_error(mdp, theta, kind, size, seed) for kind in CRITIC_ERRORS}
    exact_variance = _gae_error_columns(mdp, theta, critics["exact"], lambdas)["variance"][0]
    for kind, critic in critics.items():
        column = _gae_error_columns(mdp, theta, critic, lambdas)
        least: list[float | str] = [
            lambdas[int(np.argmin(column[key]))] for key in ("bias2", "variance", "mse")
        ]
        if column["bias2"].max() <= 1e-12 * column["mse"].max():
            least[0] = "every λ"
        variance, mse = column["variance"], column["mse"]
        rows.append(
            (
                kind,
                *least,
                column["bias2"].max(),
                variance[0],
                variance[0] / exact_variance,
                variance[-1],
                mse[0],
                mse.min(),
            )
        )
    return rows


def _gae_error_columns(
    mdp: TabularMDP, theta: torch.Tensor, critic: torch.Tensor, lambdas: list[float]
) -> dict[str, np.ndarray]:
    """``{"bias2", "variance", "mse"}``: exact errors of GAE(λ) over ``lambdas``, arrays ``[L]``."""
    stats = exact_estimator_errors(mdp, theta, critic, {lam: ("gae", lam) for lam in lambdas})
    return {key: np.array([stats[lam][key] for lam in lambdas]) for key in stats[lambdas[0]]}


def critic_error_draws(
    mdp: TabularMDP,
    theta: torch.Tensor,
    size: float,
    lambdas: Iterable[float],
    kinds: Iterable[str],
    seeds: Iterable[int],
) -> list[tuple]:
    """How much the reading of a random kind of critic error depends on its draw: for each kind
    in ``kinds`` (``"noise"``, ``"other policy"``) and each seed in ``seeds``, the critic
    :func:`critic_with_error` draws, its GAE(λ) variance over ``lambdas`` (exact).

    One row per kind: ``(kind, λ of least variance of each draw (text), number of draws with the
    least variance at lambdas[0], smallest and largest ratio of the variance at lambdas[0] to the
    exact critic's)``.
    """
    lambdas = list(lambdas)
    exact = _gae_error_columns(mdp, theta, state_values(mdp, theta).detach(), lambdas)
    rows = []
    for kind in kinds:
        least, ratios = [], []
        for seed in seeds:
            critic = critic_with_error(mdp, theta, kind, size, seed)
            variance = _gae_error_columns(mdp, theta, critic, lambdas)["variance"]
            least.append(lambdas[int(np.argmin(variance))])
            ratios.append(variance[0] / exact["variance"][0])
        at_first = sum(lam == lambdas[0] for lam in least)
        rows.append(
            (kind, ", ".join(f"{lam:g}" for lam in least), at_first, min(ratios), max(ratios))
        )
    return rows
