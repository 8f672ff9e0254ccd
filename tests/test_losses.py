"""Objectives, losses and diagnostics against plain loops, closed forms and autograd.

Inputs are float64 unless a test says otherwise, so the library and the loops agree to rounding
(~1e-15 relative); TOL = 1e-9 is far above that and far below any wrong term (O(1e-2) or more).
"""

import math

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from rlteach import losses as L

TOL = 1e-9


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def ppo_inputs(seed, size=200, spread=0.5):
    """Per-sample logp_new, logp_old, adv: ratios spread around 1 so both clip sides occur."""
    g = _gen(seed)
    logp_old = -torch.rand(size, generator=g, dtype=torch.float64) * 2
    logp_new = logp_old + spread * torch.randn(size, generator=g, dtype=torch.float64)
    adv = torch.randn(size, generator=g, dtype=torch.float64)
    return logp_new, logp_old, adv


def clip_is_active(ratio, adv, eps):
    """The clipped term is the min and is constant: the ratio went past the bound A favours."""
    return (adv > 0 and ratio > 1 + eps) or (adv < 0 and ratio < 1 - eps)


# ---------------------------------------------------------------- policy-gradient surrogate


def test_policy_gradient_objective_value_and_gradient():
    g = _gen(0)
    logp = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    objective = L.policy_gradient_objective(logp, weights)
    pairs = list(zip(logp.flatten().tolist(), weights.flatten().tolist(), strict=True))
    assert objective.item() == pytest.approx(sum(lp * w for lp, w in pairs) / 18, abs=TOL)
    grad_logp, grad_weights = torch.autograd.grad(objective, (logp, weights), allow_unused=True)
    torch.testing.assert_close(grad_logp, weights.detach() / 18, atol=TOL, rtol=0)
    assert grad_weights is None  # the weights are data: detached


# ---------------------------------------------------------------- PPO clip


@pytest.mark.parametrize("eps", [0.1, 0.2, 0.5])
def test_ppo_clip_objective_matches_loop(eps):
    logp_new, logp_old, adv = ppo_inputs(seed=1)
    total = 0.0
    for lp_new, lp_old, a in zip(logp_new.tolist(), logp_old.tolist(), adv.tolist(), strict=True):
        ratio = math.exp(lp_new - lp_old)
        total += min(ratio * a, min(max(ratio, 1 - eps), 1 + eps) * a)
    value = L.ppo_clip_objective(logp_new, logp_old, adv, eps)
    assert value.item() == pytest.approx(total / len(adv), abs=TOL)


def test_ppo_clip_gradient_per_sample():
    """Through a tabular softmax policy: ∇ = mean over unclipped samples of A r ∇log π."""
    g, eps, size = _gen(2), 0.2, 120
    theta = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    states = torch.randint(0, 4, (size,), generator=g)
    actions = torch.randint(0, 3, (size,), generator=g)
    adv = torch.randn(size, generator=g, dtype=torch.float64)
    logp_new = torch.log_softmax(theta, dim=-1)[states, actions]
    logp_old = logp_new.detach() + 0.4 * torch.randn(size, generator=g, dtype=torch.float64)

    objective = L.ppo_clip_objective(logp_new, logp_old, adv, eps)
    grad = torch.autograd.grad(objective, theta, retain_graph=True)[0]

    expected, n_clipped = torch.zeros_like(theta), 0
    for i in range(size):
        ratio = math.exp(logp_new[i].item() - logp_old[i].item())
        if clip_is_active(ratio, adv[i].item(), eps):
            n_clipped += 1
            continue
        grad_logp_i = torch.autograd.grad(logp_new[i], theta, retain_graph=True)[0]
        expected += adv[i].item() * ratio * grad_logp_i / size
    assert 0 < n_clipped < size  # both kinds of samples are present, or the test proves nothing
    torch.testing.assert_close(grad, expected, atol=TOL, rtol=0)


def test_ppo_clip_gradient_is_zero_exactly_where_clip_is_active():
    eps = 0.2
    logp_new, logp_old, adv = ppo_inputs(seed=3)
    logp_new.requires_grad_(True)
    grad = torch.autograd.grad(L.ppo_clip_objective(logp_new, logp_old, adv, eps), logp_new)[0]
    for i in range(len(adv)):
        ratio = math.exp(logp_new[i].item() - logp_old[i].item())
        expected = 0.0 if clip_is_active(ratio, adv[i].item(), eps) else adv[i].item() * ratio
        assert grad[i].item() == pytest.approx(expected / len(adv), abs=TOL)


def test_ppo_clip_at_old_policy_is_vanilla_policy_gradient():
    g = _gen(4)
    theta = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    states = torch.randint(0, 4, (50,), generator=g)
    actions = torch.randint(0, 3, (50,), generator=g)
    adv = torch.randn(50, generator=g, dtype=torch.float64)
    logp = torch.log_softmax(theta, dim=-1)[states, actions]

    clip = L.ppo_clip_objective(logp, logp.detach(), adv, 0.2)
    assert clip.item() == pytest.approx(adv.mean().item(), abs=TOL)
    grad_clip = torch.autograd.grad(clip, theta, retain_graph=True)[0]
    grad_pg = torch.autograd.grad(L.policy_gradient_objective(logp, adv), theta)[0]
    torch.testing.assert_close(grad_clip, grad_pg, atol=TOL, rtol=0)


# ---------------------------------------------------------------- value loss


def test_value_loss_unclipped_and_clipped_match_loops():
    g, eps = _gen(5), 0.3
    values = torch.randn(40, generator=g, dtype=torch.float64)
    returns = torch.randn(40, generator=g, dtype=torch.float64)
    old_values = values + 0.5 * torch.randn(40, generator=g, dtype=torch.float64)
    triples = list(zip(values.tolist(), returns.tolist(), old_values.tolist(), strict=True))

    plain = sum((v - r) ** 2 for v, r, _ in triples) / 40 / 2
    assert L.value_loss(values, returns).item() == pytest.approx(plain, abs=TOL)

    clipped = 0.0
    for v, r, old in triples:
        v_clipped = old + min(max(v - old, -eps), eps)
        clipped += max((v - r) ** 2, (v_clipped - r) ** 2)
    result = L.value_loss(values, returns, old_values, clip_eps=eps).item()
    assert result == pytest.approx(clipped / 40 / 2, abs=TOL)
    assert result != pytest.approx(plain, abs=1e-3)  # clipping changed something here


# ---------------------------------------------------------------- entropy


def test_mean_entropy_matches_closed_form():
    logits = torch.randn(5, 2, 4, generator=_gen(6), dtype=torch.float64)
    p = torch.softmax(logits, dim=-1)
    expected = -(p * p.log()).sum(-1).mean()
    result = L.mean_entropy(Categorical(logits=logits))
    assert result.item() == pytest.approx(expected.item(), abs=TOL)
    # Gaussian with std σ: ½ log(2πe σ²) per dimension
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    gaussian = Normal(torch.zeros(2, dtype=torch.float64), sigma)
    expected = (0.5 * torch.log(2 * math.pi * math.e * sigma**2)).mean()
    assert L.mean_entropy(gaussian).item() == pytest.approx(expected.item(), abs=TOL)


# ---------------------------------------------------------------- diagnostics


def test_approx_kl_is_nonnegative_and_estimates_true_kl():
    g = _gen(7)
    old_logits = torch.randn(6, generator=g, dtype=torch.float64)
    new_logits = old_logits + 0.3 * torch.randn(6, generator=g, dtype=torch.float64)
    old, new = Categorical(logits=old_logits), Categorical(logits=new_logits)
    actions = torch.multinomial(old.probs, 100_000, replacement=True, generator=g)
    logp_old, logp_new = old.log_prob(actions), new.log_prob(actions)

    estimate = L.approx_kl(logp_new, logp_old)
    true_kl = kl_divergence(old, new).item()  # KL(old ‖ new): the samples come from old
    # The estimator is a mean of i.i.d. terms; its standard error is their std / √M. Five standard
    # errors bound a false failure by ~1e-6 (CLT); the check is meaningful because true_kl is much
    # larger than that band.
    log_ratio = logp_new - logp_old
    terms = torch.expm1(log_ratio) - log_ratio
    standard_error = terms.std().item() / math.sqrt(len(terms))
    assert true_kl > 20 * standard_error
    assert abs(estimate - true_kl) < 5 * standard_error
    assert estimate >= 0
    far = ppo_inputs(seed=8, spread=2.0)
    assert L.approx_kl(far[0], far[1]) >= 0


def test_clip_fraction_matches_loop():
    eps = 0.2
    logp_new, logp_old, _ = ppo_inputs(seed=9)
    pairs = zip(logp_new.tolist(), logp_old.tolist(), strict=True)
    outside = sum(abs(math.exp(a - b) - 1) > eps for a, b in pairs)
    assert 0 < outside < len(logp_new)
    assert L.clip_fraction(logp_new, logp_old, eps) == pytest.approx(outside / len(logp_new))


def test_explained_variance():
    g = _gen(10)
    returns = torch.randn(30, 2, generator=g, dtype=torch.float64)
    values = returns + 0.5 * torch.randn(30, 2, generator=g, dtype=torch.float64)
    assert L.explained_variance(returns.clone(), returns) == pytest.approx(1.0, abs=TOL)
    mean_prediction = torch.full_like(returns, returns.mean().item())
    assert L.explained_variance(mean_prediction, returns) == pytest.approx(0.0, abs=TOL)
    r, v = returns.flatten().tolist(), values.flatten().tolist()

    def variance(xs):
        mean = sum(xs) / len(xs)
        return sum((x - mean) ** 2 for x in xs) / len(xs)

    expected = 1 - variance([a - b for a, b in zip(r, v, strict=True)]) / variance(r)
    assert L.explained_variance(values, returns) == pytest.approx(expected, abs=TOL)
    assert math.isnan(L.explained_variance(values, torch.ones_like(returns)))


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("eps", [0.0, -0.1, 1.0, float("nan"), "0.2", None])
def test_ppo_clip_rejects_bad_clip_eps(eps):
    logp_new, logp_old, adv = ppo_inputs(seed=0, size=5)
    with pytest.raises(ValueError, match=r"^clip_eps "):
        L.ppo_clip_objective(logp_new, logp_old, adv, eps)
    with pytest.raises(ValueError, match=r"^clip_eps "):
        L.clip_fraction(logp_new, logp_old, eps)


def test_shape_and_type_errors_name_the_argument():
    x = torch.zeros(5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^adv "):
        L.ppo_clip_objective(x, x, torch.zeros(4), 0.2)
    with pytest.raises(ValueError, match=r"^weights "):
        L.policy_gradient_objective(x, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^returns "):
        L.value_loss(x, [0.0] * 5)
    with pytest.raises(ValueError, match=r"^logp_old "):
        L.approx_kl(x, torch.zeros(5, 1))
    with pytest.raises(ValueError, match=r"^values "):
        L.explained_variance(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match=r"^dist "):
        L.mean_entropy(torch.zeros(3))


def test_value_loss_clipping_arguments():
    x = torch.zeros(5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^old_values and clip_eps "):
        L.value_loss(x, x, clip_eps=0.2)
    with pytest.raises(ValueError, match=r"^old_values and clip_eps "):
        L.value_loss(x, x, old_values=x)
    with pytest.raises(ValueError, match=r"^clip_eps "):
        L.value_loss(x, x, old_values=x, clip_eps=0.0)
    with pytest.raises(ValueError, match=r"^old_values "):
        L.value_loss(x, x, old_values=torch.zeros(4), clip_eps=0.2)
