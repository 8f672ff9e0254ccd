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

import torch
from torch import Tensor

__all__ = [
    "gae",
    "nstep_advantages",
    "nstep_returns",
    "normalize",
    "returns_to_go",
    "td_residuals",
]


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
