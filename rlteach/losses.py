"""Policy and value objectives, and the diagnostics printed during training.

Names say the direction: an ``*_objective`` is to be maximised (gradient ascent, or minimise its
negative), a ``*_loss`` is to be minimised. Inputs are per-sample tensors of any one shape, usually
``[T, N]`` or a flattened ``[B]``; every function returns a scalar (the mean over samples).
Weights, advantages, returns and old log-probabilities are data, not functions of the parameters:
they are detached here, so a caller cannot leak gradient through them by mistake.
"""

from numbers import Real

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = [
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "kl_penalty_objective",
    "max_ratio_deviation",
    "mean_entropy",
    "policy_gradient_objective",
    "ppo_clip_objective",
    "value_loss",
]


def policy_gradient_objective(logp: Tensor, weights: Tensor) -> Tensor:
    """Surrogate whose gradient is the policy-gradient estimate; to maximise.

    L(θ) = mean_t[ log πθ(a_t|s_t) · Ψ_t ],   so ∇θ L = mean_t[ ∇θ log πθ(a_t|s_t) · Ψ_t ]

    (seed §2.1; the theorem's Q^π replaced by a sampled estimate Ψ). One function, two algorithms:

    - REINFORCE: Ψ_t = the discounted return-to-go (``advantages.returns_to_go``);
    - actor-critic / A2C (seed §2.2, §3.1 step 4): Ψ_t = an advantage, e.g. the TD residual of seed
      §3.1 step 3 or GAE (``advantages.gae``): the return minus the critic's value, a baseline.

    The value of L itself means nothing; only its gradient does. Like the seed and most
    implementations, the weights carry no γ^t factor, which the exact gradient of the discounted
    objective has (seed §2.1, note).

    Args:
        logp: log πθ(a_t|s_t), any shape, carrying the gradient.
        weights: Ψ_t, the shape of ``logp``; detached.

    Returns:
        Scalar tensor.
    """
    _check_same_shape(logp=logp, weights=weights)
    return (logp * weights.detach()).mean()


def ppo_clip_objective(logp_new: Tensor, logp_old: Tensor, adv: Tensor, clip_eps: float) -> Tensor:
    """PPO's clipped surrogate L^CLIP; to maximise.

    L^CLIP(θ) = mean_t[ min( r_t A_t, clip(r_t, 1 − ε, 1 + ε) A_t ) ],
    r_t = πθ(a_t|s_t) / πθ_old(a_t|s_t) = exp(logp_new − logp_old)

    (seed §3.2 step 3; Schulman et al. 2017, eq. (7)). A sample whose ratio has already moved past
    1 ± ε in the direction its advantage favours contributes a constant, hence no gradient; every
    other sample contributes A_t r_t ∇θ log πθ(a_t|s_t). At θ = θ_old the value is mean(A) and the
    gradient is that of :func:`policy_gradient_objective` with weights A.

    Args:
        logp_new: log πθ(a_t|s_t) under the current parameters, any shape, carrying the gradient.
        logp_old: log-probabilities recorded when the data was collected, same shape; detached.
        adv: advantages A_t, same shape; detached.
        clip_eps: ε, in (0, 1).

    Returns:
        Scalar tensor.
    """
    _check_same_shape(logp_new=logp_new, logp_old=logp_old, adv=adv)
    _check_clip_eps(clip_eps, upper=1.0)
    ratio = _ratio(logp_new, logp_old)
    adv = adv.detach()
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps)
    return torch.minimum(ratio * adv, clipped * adv).mean()


def kl_penalty_objective(
    logp_new: Tensor, logp_old: Tensor, adv: Tensor, kl: Tensor, kl_coef: float
) -> Tensor:
    """PPO's adaptive-KL-penalty surrogate L^KLPEN; to maximise.

    L^KLPEN(θ) = mean_t[ r_t A_t − β KL[π_old(·|s_t), πθ(·|s_t)] ],   r_t = exp(logp_new − logp_old)

    (Schulman et al. 2017, eq. (8); notebook 04, eq. 4.5), with the exact KL of each sample's state,
    as in the paper. No clip.

    Args:
        logp_new: log πθ(a_t|s_t) under the current parameters, shape ``[M]``, carrying the gradient.
        logp_old: log-probabilities recorded when the data was collected, ``[M]``; detached.
        adv: advantages A_t, ``[M]``; detached.
        kl: KL[π_old(·|s_t), πθ(·|s_t)] of each sample's state, ``[M]``, carrying the gradient.
        kl_coef: β >= 0, the weight of the penalty.

    Returns:
        Scalar tensor.
    """
    _check_same_shape(logp_new=logp_new, logp_old=logp_old, adv=adv, kl=kl)
    if isinstance(kl_coef, bool) or not isinstance(kl_coef, Real) or not kl_coef >= 0:
        raise ValueError(f"kl_coef must be a number >= 0, got {kl_coef!r}")
    ratio = _ratio(logp_new, logp_old)
    return (ratio * adv.detach() - kl_coef * kl).mean()


def value_loss(
    values: Tensor,
    returns: Tensor,
    old_values: Tensor | None = None,
    clip_eps: float | None = None,
) -> Tensor:
    """Squared error of the critic against its targets; to minimise.

    Without clipping: 0.5 · mean[ (V_t − R_t)² ] (the critic's TD regression, seed §2.2).
    With clipping (PPO2 style, as in OpenAI baselines):
    0.5 · mean[ max( (V_t − R_t)², (V_old,t + clip(V_t − V_old,t, −ε, ε) − R_t)² ) ],
    which removes the gradient of samples whose value moved more than ε away from ``old_values``
    in the direction that makes the error smaller.

    Args:
        values: V_t under the current parameters, any shape, carrying the gradient.
        returns: targets R_t (e.g. the ``ret`` of ``advantages.gae``), same shape; detached.
        old_values: values recorded at collection, same shape; detached. Give with ``clip_eps``.
        clip_eps: ε > 0 in units of the value; give with ``old_values``.

    Returns:
        Scalar tensor.
    """
    _check_same_shape(values=values, returns=returns)
    if (old_values is None) != (clip_eps is None):
        raise ValueError(
            "old_values and clip_eps must be given together (for the clipped loss) or both left "
            f"as None, got old_values={_describe(old_values)} and clip_eps={clip_eps!r}"
        )
    error = (values - returns.detach()) ** 2
    if old_values is not None and clip_eps is not None:  # given together, checked above
        _check_same_shape(values=values, old_values=old_values)
        _check_clip_eps(clip_eps, upper=None)
        old_values = old_values.detach()
        clipped_values = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
        error = torch.maximum(error, (clipped_values - returns.detach()) ** 2)
    return 0.5 * error.mean()


def mean_entropy(dist: Distribution) -> Tensor:
    """Mean entropy of a batch of action distributions, for the entropy bonus; to maximise.

    H = mean_t[ −Σ_a π(a|s_t) log π(a|s_t) ] (an integral for continuous actions). For a Gaussian
    policy, pass a distribution whose ``entropy()`` already sums over action dimensions (wrap it in
    ``torch.distributions.Independent``); otherwise the mean runs over those dimensions too.

    Args:
        dist: a ``torch.distributions.Distribution`` with any batch shape.

    Returns:
        Scalar tensor, carrying the gradient of the distribution's parameters.
    """
    if not isinstance(dist, Distribution):
        raise ValueError(
            f"dist must be a torch.distributions.Distribution, got {type(dist).__name__}"
        )
    return dist.entropy().mean()


@torch.no_grad()
def approx_kl(logp_new: Tensor, logp_old: Tensor) -> float:
    """Estimate of KL(π_old ‖ π_new) from samples of π_old; a diagnostic, no gradient.

    KL ≈ mean_t[ (r_t − 1) − log r_t ],   r_t = exp(logp_new − logp_old).

    Each term is ≥ 0 (since log r ≤ r − 1) and unbiased because E_old[r] = 1; it has a lower
    variance than the naive mean(−log r) (J. Schulman, "Approximating KL divergence", 2020).

    Args:
        logp_new, logp_old: log-probabilities of the sampled actions, same shape.

    Returns:
        A Python float ≥ 0.
    """
    _check_same_shape(logp_new=logp_new, logp_old=logp_old)
    log_ratio = logp_new - logp_old
    return (torch.expm1(log_ratio) - log_ratio).mean().item()


@torch.no_grad()
def clip_fraction(logp_new: Tensor, logp_old: Tensor, clip_eps: float) -> float:
    """Fraction of samples whose ratio lies outside [1 − ε, 1 + ε]; a diagnostic, no gradient.

    fraction = mean_t[ |r_t − 1| > ε ],   r_t = exp(logp_new − logp_old)

    (a sample outside may still carry gradient in :func:`ppo_clip_objective` if its advantage
    points back into the interval).

    Args:
        logp_new, logp_old: log-probabilities of the sampled actions, same shape.
        clip_eps: ε, in (0, 1).

    Returns:
        A Python float in [0, 1].
    """
    _check_same_shape(logp_new=logp_new, logp_old=logp_old)
    _check_clip_eps(clip_eps, upper=1.0)
    outside = (_ratio(logp_new, logp_old) - 1).abs() > clip_eps
    return outside.double().mean().item()


@torch.no_grad()
def max_ratio_deviation(logp_new: Tensor, logp_old: Tensor) -> float:
    """Largest ``|r_t − 1|`` over the samples, ``r_t = exp(logp_new − logp_old)``; a diagnostic.

    Compared with ε it shows how far the clip let the ratio go: clipping removes the gradient of a
    sample once its ratio is past 1 ± ε, it does not stop other samples' steps from moving it on.

    Args:
        logp_new, logp_old: log-probabilities of the sampled actions, same shape.

    Returns:
        A Python float >= 0.
    """
    _check_same_shape(logp_new=logp_new, logp_old=logp_old)
    return (_ratio(logp_new, logp_old) - 1).abs().max().item()


@torch.no_grad()
def explained_variance(values: Tensor, returns: Tensor) -> float:
    """How much of the returns' variance the critic explains; a diagnostic, no gradient.

    EV = 1 − Var[R − V] / Var[R]: 1 for perfect predictions, 0 for predicting the mean of R,
    negative when worse than that. Returns ``nan`` when Var[R] = 0 (the ratio is undefined).

    Args:
        values: critic predictions V_t, any shape.
        returns: targets R_t, same shape.

    Returns:
        A Python float ≤ 1, or nan.
    """
    _check_same_shape(values=values, returns=returns)
    var_returns = returns.var(correction=0)
    if var_returns == 0:
        return float("nan")
    return (1 - (returns - values).var(correction=0) / var_returns).item()


def _ratio(logp_new: Tensor, logp_old: Tensor) -> Tensor:
    """Importance ratio r = exp(logp_new − logp_old), with logp_old treated as a constant."""
    return torch.exp(logp_new - logp_old.detach())


def _check_same_shape(**tensors: Tensor) -> None:
    """All arguments are non-empty floating-point tensors of the first one's shape."""
    reference_name, reference = next(iter(tensors.items()))
    for name, x in tensors.items():
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.numel() == 0:
            raise ValueError(
                f"{name} must be a non-empty floating-point tensor, got {_describe(x)}"
            )
        if x.shape != reference.shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}, but {reference_name} has shape "
                f"{tuple(reference.shape)}; they must be equal"
            )


def _check_clip_eps(clip_eps: float, upper: float | None) -> None:
    """``clip_eps`` is a real number > 0, and < ``upper`` when given."""
    ok = isinstance(clip_eps, Real) and not isinstance(clip_eps, bool) and clip_eps > 0
    if upper is not None:
        ok = ok and clip_eps < upper
        allowed = f"a number in (0, {upper})"
    else:
        allowed = "a number > 0"
    if not ok:
        raise ValueError(f"clip_eps must be {allowed}, got {clip_eps!r}")


def _describe(x: object) -> str:
    """Short description of a bad argument for error messages."""
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"
