"""Advantage and return estimators on a time-major batch.

Every function takes ``[T, N]`` tensors: T time steps of N parallel environments. Episode ends
follow Gymnasium >= 1.0 semantics:

- ``terminated[t]``: s_{t+1} is terminal. Its value is 0 by definition, so nothing is bootstrapped.
- ``truncated[t]``: the episode was cut after step t (a time limit). s_{t+1} is not terminal, so the
  estimate bootstraps from ``next_values[t] = V(s_{t+1})``, the value of the real final observation;
  but step t+1 of the batch belongs to the next episode, so no sum runs across the cut.
- The end of the batch (t = T-1) is a cut too: bootstrap from ``next_values[T-1]`` unless
  terminated.
- A step both terminated and truncated counts as terminated: no bootstrap.

Every estimate at step t reads only steps t, t+1, ... of its own episode. So a step that a rollout
marks invalid (the reset step of NEXT_STEP autoreset, right after a done step, with both flags
False) spoils only its own entry: compute on the whole batch, then drop the invalid entries.

Functions compute targets: call them under ``torch.no_grad()`` or on detached tensors.
"""

from numbers import Real
from typing import Protocol

import torch
from torch import Tensor

__all__ = [
    "gae",
    "identity_gaps",
    "lambda_weights",
    "nstep_advantages",
    "nstep_mixture",
    "nstep_returns",
    "normalize",
    "returns_to_go",
    "td_residuals",
    "truncation_targets",
    "vtrace",
]


class BatchFields(Protocol):
    """The ``[T, N]`` fields of a collected batch that :func:`identity_gaps` and
    :func:`truncation_targets` read: a :class:`rlteach.rollout.Batch` has them (not imported here:
    this module sits below the rollout)."""

    rewards: Tensor
    values: Tensor
    next_values: Tensor
    terminated: Tensor
    truncated: Tensor
    valid: Tensor


def td_residuals(
    rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, gamma: float
) -> Tensor:
    """One-step TD residuals, the seed's advantage estimate.

    δ_t = r_t + γ (1 − term_t) V(s_{t+1}) − V(s_t)   (seed §3.1 step 3, with the terminal case)

    Truncation does not enter: a cut episode still bootstraps from ``next_values``.

    Args:
        rewards, values, next_values: ``[T, N]`` float; ``values[t] = V(s_t)``,
            ``next_values[t] = V(s_{t+1})``.
        terminated: ``[T, N]`` bool.
        gamma: discount in [0, 1].

    Returns:
        δ, ``[T, N]``.
    """
    _check_batch(rewards=rewards, values=values, next_values=next_values, terminated=terminated)
    _check_unit_interval("gamma", gamma)
    return rewards + next_values * ~terminated * gamma - values


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) with correct episode ends.

    A_t = δ_t + γλ (1 − term_t)(1 − trunc_t) A_{t+1},   A_T = 0,   ret_t = A_t + V(s_t),

    with δ from :func:`td_residuals`; equivalently A_t = Σ_k (γλ)^k δ_{t+k} summed up to the end of
    the episode or of the batch. ``lam=0`` gives δ (seed §3.1 step 3). ``lam=1`` gives the
    discounted return-to-go, bootstrapped at cuts, minus V(s_t), provided
    ``next_values[t] = values[t+1]`` inside episodes (as a rollout records them), so that the sum
    of δ telescopes.

    Args:
        rewards, values, next_values: ``[T, N]`` float, as in :func:`td_residuals`.
        terminated, truncated: ``[T, N]`` bool.
        gamma: discount in [0, 1].
        lam: trace parameter λ in [0, 1].

    Returns:
        ``(adv, ret)``, both ``[T, N]``: the advantages and the value targets ``adv + values``.
    """
    _check_batch(
        rewards=rewards,
        values=values,
        next_values=next_values,
        terminated=terminated,
        truncated=truncated,
    )
    _check_unit_interval("lam", lam)
    deltas = td_residuals(rewards, values, next_values, terminated, gamma)
    adv = _backward_discounted_sum(
        deltas, _continues(terminated, truncated, deltas) * (gamma * lam)
    )
    return adv, adv + values


def vtrace(
    behaviour_logp: Tensor,
    target_logp: Tensor,
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
    lam: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """V-trace targets and policy-gradient advantages (Espeholt et al. 2018, notebook 09) for data
    that a behaviour policy μ collected and a target policy π learns from, with the episode ends
    of :func:`gae`.

    With the importance ratio π(a_t|s_t)/μ(a_t|s_t) = exp(target_logp − behaviour_logp),
    ρ_t = min(ρ̄, π/μ) and c_t = λ · min(c̄, π/μ)::

        vs_t − V(s_t) = δ_t + γ c_t (1 − term_t)(1 − trunc_t) (vs_{t+1} − V(s_{t+1})),
        δ_t = ρ_t (r_t + γ (1 − term_t) V(s_{t+1}) − V(s_t)),        V(s_{t+1}) = next_values[t],

    the recursion stopping at a termination, a truncation and the end of the batch (like GAE's
    trace), and::

        pg_adv_t = ρ_t (r_t + γ v_{t+1} − V(s_t)),

    with v_{t+1} = vs_{t+1} inside an episode, ``next_values[t]`` at a truncation or the batch's
    last row, and 0 after a termination. On-policy data (π = μ) with ρ̄, c̄ ≥ 1 and λ = 1 gives
    the returns of :func:`gae` with λ = 1: vs = ret and pg_adv = adv.

    Args:
        behaviour_logp, target_logp: ``[T, N]`` float, log μ(a_t|s_t) and log π(a_t|s_t).
        rewards, values, next_values: ``[T, N]`` float, as in :func:`td_residuals`.
        terminated, truncated: ``[T, N]`` bool.
        gamma: discount in [0, 1].
        rho_bar, c_bar: truncation levels ρ̄ and c̄, > 0 (``math.inf``: no truncation).
        lam: λ in [0, 1], the trace's extra decay.

    Returns:
        ``(vs, pg_adv)``, both ``[T, N]``: the value targets and the policy-gradient advantages.
    """
    _check_batch(
        behaviour_logp=behaviour_logp,
        target_logp=target_logp,
        rewards=rewards,
        values=values,
        next_values=next_values,
        terminated=terminated,
        truncated=truncated,
    )
    _check_unit_interval("lam", lam)
    for name, level in (("rho_bar", rho_bar), ("c_bar", c_bar)):
        if isinstance(level, bool) or not isinstance(level, Real) or not level > 0:
            raise ValueError(
                f"{name} must be a number > 0 (math.inf: no truncation), got {level!r}"
            )
    ratio = torch.exp(target_logp - behaviour_logp)
    rho, c = ratio.clamp(max=rho_bar), lam * ratio.clamp(max=c_bar)
    deltas = rho * td_residuals(rewards, values, next_values, terminated, gamma)
    vs = values + _backward_discounted_sum(deltas, gamma * c * _continues(terminated, truncated, c))
    after = torch.where(_episode_ends(terminated, truncated), next_values, _ahead(vs, 1))
    pg_adv = rho * (rewards + gamma * after * ~terminated - values)
    return vs, pg_adv


def returns_to_go(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    next_values: Tensor | None = None,
) -> Tensor:
    """Discounted reward-to-go within each episode (REINFORCE's weights, seed §2.1).

    G_t = r_t + γ G_{t+1} inside an episode. After the episode's last step e in the batch,
    G_e = r_e + γ (1 − term_e) V(s_{e+1}) at a cut (truncation or batch end) when ``next_values`` is
    given, and G_e = r_e otherwise.

    Args:
        rewards: ``[T, N]`` float.
        terminated, truncated: ``[T, N]`` bool.
        gamma: discount in [0, 1].
        next_values: optional ``[T, N]`` float, ``V(s_{t+1})``; only its entries at cuts are used.

    Returns:
        G, ``[T, N]``.
    """
    _check_batch(rewards=rewards, terminated=terminated, truncated=truncated)
    _check_unit_interval("gamma", gamma)
    targets = rewards
    if next_values is not None:
        _check_batch(rewards=rewards, next_values=next_values)
        cut = _episode_ends(terminated, truncated) & ~terminated
        targets = rewards + next_values * cut * gamma
    return _backward_discounted_sum(targets, _continues(terminated, truncated, rewards) * gamma)


def nstep_returns(
    rewards: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    n: int,
) -> Tensor:
    """n-step bootstrapped returns (the A2C/A3C targets).

    G^(n)_t = Σ_{k<m} γ^k r_{t+k} + γ^m (1 − term_{t+m−1}) V(s_{t+m}),

    with m = min(n, steps from t to the end of the episode or of the batch), and
    V(s_{t+m}) = ``next_values[t+m−1]``. ``n=1`` gives r_t + γ (1 − term_t) V(s_{t+1});
    ``n >= T`` gives :func:`returns_to_go` with ``next_values``.

    Args:
        rewards, next_values: ``[T, N]`` float.
        terminated, truncated: ``[T, N]`` bool.
        gamma: discount in [0, 1].
        n: number of steps, an int >= 1.

    Returns:
        G^(n), ``[T, N]``.
    """
    _check_batch(
        rewards=rewards, next_values=next_values, terminated=terminated, truncated=truncated
    )
    _check_unit_interval("gamma", gamma)
    _check_steps(n)
    ends = _episode_ends(terminated, truncated)
    bootstrap = next_values * ~terminated
    alive = torch.ones_like(ends)  # alive[t]: the episode of step t has not ended before t + k
    total = torch.zeros_like(rewards)
    for k in range(min(n, len(rewards))):
        if not alive.any():  # every sum has reached its episode's end
            break
        ends_k = _ahead(ends, k)
        last = alive & (ends_k | (k == n - 1))  # step t + k is step t + m − 1
        total = total + _ahead(rewards, k) * alive * gamma**k
        total = total + _ahead(bootstrap, k) * last * gamma ** (k + 1)
        alive = alive & ~ends_k
    return total


def nstep_advantages(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    n: int,
) -> tuple[Tensor, Tensor]:
    """n-step advantages A^(n)_t = G^(n)_t − V(s_t), with G^(n) from :func:`nstep_returns`.

    ``n=1`` gives the TD residual δ_t of seed §3.1 step 3.

    Args:
        rewards, values, next_values: ``[T, N]`` float.
        terminated, truncated: ``[T, N]`` bool.
        gamma: discount in [0, 1].
        n: number of steps, an int >= 1.

    Returns:
        ``(adv, ret)``, both ``[T, N]``: A^(n) and the value targets G^(n), as :func:`gae` returns.
    """
    _check_batch(rewards=rewards, values=values)
    ret = nstep_returns(rewards, next_values, terminated, truncated, gamma, n)
    return ret - values, ret


def lambda_weights(lam: float, m: int) -> Tensor:
    """Weights of the n-step advantages n = 1..m in GAE(λ) over m steps left in the batch, ``[m]``
    float64: ``(1 − λ) λ^(n−1)`` for ``n < m`` and the tail ``λ^(m−1)`` for ``n = m`` (notebook 03,
    eq. 3.2b). They sum to 1; ``λ = 0`` puts all weight on n = 1, ``λ = 1`` all on n = m."""
    _check_unit_interval("lam", lam)
    _check_steps(m)
    n = torch.arange(1, m + 1, dtype=torch.float64)
    weights = (1 - lam) * lam ** (n - 1)
    weights[-1] = lam ** (m - 1)
    return weights


def nstep_mixture(
    rewards: Tensor, values: Tensor, next_values: Tensor, gamma: float, lam: float
) -> Tensor:
    """GAE(λ) written as a mixture of n-step advantages (notebook 03, eq. 3.2b), ``[T, N]``.

    Â_t = Σ_{n=1}^{m} w_n Â^(n)_t with m = T − t steps left in the batch and w from
    :func:`lambda_weights`: the infinite mixture (1 − λ) Σ_n λ^(n−1) Â^(n)_t of Schulman et al.
    (2016) with every n >= m folded into the tail weight, since Â^(n)_t = Â^(m)_t there (the
    batch end cuts the sum and bootstraps). For batches without episode ends, and with
    ``next_values[t] = values[t+1]``; it then equals :func:`gae`, term by term.

    Args:
        rewards, values, next_values: ``[T, N]`` float, as in :func:`gae`.
        gamma: discount in [0, 1].
        lam: trace parameter λ in [0, 1].
    """
    _check_batch(rewards=rewards, values=values, next_values=next_values)
    no_end = torch.zeros_like(rewards, dtype=torch.bool)
    T = len(rewards)
    weights = torch.zeros(T, T, dtype=rewards.dtype)  # weights[t, n − 1]; 0 for n > T − t
    for t in range(T):
        weights[t, : T - t] = lambda_weights(lam, T - t)
    total = torch.zeros_like(rewards)
    for n in range(1, T + 1):
        adv_n, _ = nstep_advantages(rewards, values, next_values, no_end, no_end, gamma, n)
        total = total + weights[:, n - 1, None] * adv_n
    return total


def identity_gaps(batch: BatchFields, gamma: float) -> list[tuple[str, float]]:
    """How far four identities of notebook 03 are from exact on a collected ``batch``: the largest
    ``|difference|`` over its valid steps (``batch.valid``) for GAE(λ=0) and the 1-step advantage
    against the TD error (eq. 3.1), and GAE(λ=1) and the T-step advantage against the return to
    go minus V (eq. 3.2 at λ = 1). ``batch`` has the ``[T, N]`` fields of
    ``rlteach.rollout.Batch``. Returns ``[(identity, largest difference)]``."""
    args = (batch.rewards, batch.values, batch.next_values, batch.terminated, batch.truncated)
    td = td_residuals(batch.rewards, batch.values, batch.next_values, batch.terminated, gamma)
    mc = (
        returns_to_go(batch.rewards, batch.terminated, batch.truncated, gamma, batch.next_values)
        - batch.values
    )
    longest = len(batch.rewards)

    def gap(a: Tensor, b: Tensor) -> float:
        return (a - b)[batch.valid].abs().max().item()

    return [
        ("GAE(λ=0) vs TD error (3.1)", gap(gae(*args, gamma, 0.0)[0], td)),
        ("1-step advantage vs TD error", gap(nstep_advantages(*args, gamma, 1)[0], td)),
        ("GAE(λ=1) vs Monte Carlo G_t − V(s_t)", gap(gae(*args, gamma, 1.0)[0], mc)),
        (
            f"{longest}-step advantage vs Monte Carlo",
            gap(nstep_advantages(*args, gamma, longest)[0], mc),
        ),
    ]


def truncation_targets(
    batch: BatchFields, gamma: float, rows: int = 6
) -> list[tuple[int, int, float, float, float]]:
    """The one-step targets at the first ``rows`` time-limit cuts of ``batch`` (notebook 03,
    section 3), bootstrapped as they should be and with the cut conflated with a termination.

    Returns ``[(t, env, V(s_{t+1}), r_t + γV(s_{t+1}), r_t)]``: the correct target of eq. 3.1 and the
    one of code that treats ``truncated`` as ``terminated`` (both computed with :func:`gae` at
    λ = 0, plus ``V(s_t)``). ``batch`` has the ``[T, N]`` fields of ``rlteach.rollout.Batch``."""
    b = batch
    correct, _ = gae(b.rewards, b.values, b.next_values, b.terminated, b.truncated, gamma, 0.0)
    conflated, _ = gae(
        b.rewards, b.values, b.next_values, b.terminated | b.truncated, b.truncated, gamma, 0.0
    )
    return [
        (
            int(t),
            int(i),
            float(b.next_values[t, i]),
            float(correct[t, i] + b.values[t, i]),
            float(conflated[t, i] + b.values[t, i]),
        )
        for t, i in b.truncated.nonzero()[:rows]
    ]


def normalize(adv: Tensor, eps: float = 1e-8) -> Tensor:
    """Standardise advantages over the whole batch: (A − mean(A)) / (std(A) + eps).

    The standard deviation is the population one (divides by the number of elements), so a batch of
    one element gives 0 rather than nan. Pass only valid samples (after dropping a rollout's invalid
    steps), or they shift the statistics.

    Args:
        adv: floating-point tensor of any shape with at least one element.
        eps: positive constant that keeps the division finite when all advantages are equal.

    Returns:
        A tensor of the shape of ``adv``, with mean 0 and standard deviation close to 1.
    """
    if not isinstance(adv, Tensor) or not adv.is_floating_point() or adv.numel() == 0:
        raise ValueError(f"adv must be a non-empty floating-point tensor, got {_describe(adv)}")
    if isinstance(eps, bool) or not isinstance(eps, Real) or not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    return (adv - adv.mean()) / (adv.std(correction=0) + eps)


def _backward_discounted_sum(x: Tensor, decay: Tensor) -> Tensor:
    """y_t = x_t + decay_t · y_{t+1}, y_T = 0, on ``[T, N]`` tensors: the one backward recursion."""
    rows = []
    acc = torch.zeros_like(x[0])
    for t in reversed(range(len(x))):
        acc = x[t] + decay[t] * acc
        rows.append(acc)
    return torch.stack(rows[::-1])


def _episode_ends(terminated: Tensor, truncated: Tensor) -> Tensor:
    """Bool ``[T, N]``: step t is the last of its episode within the batch (end, cut or row T-1)."""
    ends = terminated | truncated
    ends[-1] = True
    return ends


def _continues(terminated: Tensor, truncated: Tensor, like: Tensor) -> Tensor:
    """(1 − term_t)(1 − trunc_t) in the dtype of ``like``: 1 where a sum crosses from t to t+1."""
    return (~(terminated | truncated)).to(like.dtype)


def _ahead(x: Tensor, k: int) -> Tensor:
    """x shifted k steps back in time: result[t] = x[t + k], zero (or False) where t + k >= T."""
    return torch.cat([x[k:], torch.zeros_like(x[:k])])


def _check_batch(**tensors: Tensor) -> None:
    """Arguments are ``[T, N]`` tensors of the first one's shape; masks bool, the others float."""
    reference_name, reference = next(iter(tensors.items()))
    for name, x in tensors.items():
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must be a [T, N] tensor with T >= 1, got {_describe(x)}")
        if x.shape != reference.shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}, but {reference_name} has shape "
                f"{tuple(reference.shape)}; all [T, N] inputs must have the same shape"
            )
        is_mask = name in ("terminated", "truncated")
        if is_mask and x.dtype != torch.bool:
            raise ValueError(f"{name} must be a bool tensor, got dtype {x.dtype}")
        if not is_mask and not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_unit_interval(name: str, value: float) -> None:
    """``value`` is a real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def _check_steps(n: int) -> None:
    """``n`` is an int >= 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")


def _describe(x: object) -> str:
    """Short description of a bad argument for error messages."""
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"
