"""The exercise checkers pass correct solutions and explain what is wrong with incorrect ones."""

import numpy as np
import pytest
import torch

from rlteach import checks


def correct_score(logits, action):
    score = -torch.softmax(logits, -1)
    score[action] += 1
    return score


def test_softmax_score_passes_a_correct_solution():
    result = checks.check_softmax_score(correct_score)
    assert result.passed and "agrees" in repr(result)


def test_softmax_score_names_the_difference_of_a_wrong_solution():
    result = checks.check_softmax_score(lambda logits, a: torch.softmax(logits, -1))
    assert not result.passed
    assert "expected" in result.message and "largest difference" in result.message


def test_rewards_to_go_passes_a_loop_and_rejects_a_missing_discount():
    def loop(rewards, gamma):
        return [
            sum(gamma ** (k - t) * rewards[k] for k in range(t, len(rewards)))
            for t in range(len(rewards))
        ]

    assert checks.check_rewards_to_go(loop)
    undiscounted = checks.check_rewards_to_go(lambda r, g: np.cumsum(r[::-1])[::-1])
    assert not undiscounted and "case" in undiscounted.message


def test_placeholder_counts_as_not_attempted_and_wrong_shape_and_crash_are_reported():
    def placeholder(rewards, gamma):
        raise NotImplementedError

    assert "not attempted" in checks.check_rewards_to_go(placeholder).message
    assert "shape" in checks.check_rewards_to_go(lambda r, g: np.zeros(len(r) + 1)).message
    crashed = checks.check_rewards_to_go(lambda r, g: 1 / 0)
    assert "ZeroDivisionError" in crashed.message
    assert "not yet" in crashed._repr_html_()


def gae_loop(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Plain loop, one env at a time, written from the definition (not the library's recursion)."""
    T, N = rewards.shape
    adv = torch.zeros(T, N, dtype=torch.float64)
    for i in range(N):
        for t in range(T):
            total, weight, k = 0.0, 1.0, t
            while True:
                bootstrap = 0.0 if terminated[k, i] else gamma * next_values[k, i]
                total += weight * (rewards[k, i] + bootstrap - values[k, i])
                if terminated[k, i] or truncated[k, i] or k == T - 1:
                    break
                weight *= gamma * lam
                k += 1
            adv[t, i] = total
    return adv


def test_gae_check_passes_a_loop_and_catches_a_trace_that_crosses_truncations():
    assert checks.check_gae(gae_loop)

    def ignores_truncation(rewards, values, next_values, terminated, truncated, gamma, lam):
        return gae_loop(
            rewards, values, next_values, terminated, torch.zeros_like(truncated), gamma, lam
        )

    assert not checks.check_gae(ignores_truncation)


def test_td_residual_check_catches_bootstrapping_after_termination():
    def right(r, v, nv, term, gamma):
        return r + gamma * nv * (~term) - v

    assert checks.check_td_residuals(right)
    assert not checks.check_td_residuals(lambda r, v, nv, term, gamma: r + gamma * nv - v)


def test_ppo_clip_check_compares_value_and_gradient():
    def per_sample_loop(logp_new, logp_old, adv, eps):
        terms = []
        for new, old, a in zip(logp_new, logp_old, adv, strict=True):
            r = torch.exp(new - old)
            terms.append(torch.minimum(r * a, torch.clamp(r, 1 - eps, 1 + eps) * a))
        return torch.stack(terms).mean()

    assert checks.check_ppo_clip_objective(per_sample_loop)

    def clipped_without_min(logp_new, logp_old, adv, eps):
        return (torch.clamp(torch.exp(logp_new - logp_old), 1 - eps, 1 + eps) * adv).mean()

    assert not checks.check_ppo_clip_objective(clipped_without_min)


def test_reinforce_loss_check_wants_a_loss_to_minimise():
    assert checks.check_reinforce_loss(lambda logp, ret: -(logp * ret).mean())
    assert not checks.check_reinforce_loss(lambda logp, ret: (logp * ret).mean())


def test_discounted_returns_check_wants_the_sum_to_stop_at_episode_ends():
    def loop(rewards, dones, gamma):
        out, running = np.zeros(len(rewards)), 0.0
        for t in reversed(range(len(rewards))):
            running = rewards[t] + (0.0 if dones[t] else gamma * running)
            out[t] = running
        return out

    assert checks.check_discounted_returns(loop)
    assert not checks.check_discounted_returns(lambda r, d, g: loop(r, np.zeros_like(d), g))


def test_approx_kl_check():
    assert checks.check_approx_kl(lambda new, old: ((new - old).exp() - 1 - (new - old)).mean())
    assert not checks.check_approx_kl(lambda new, old: (old - new).mean())


def not_attempted(*args):
    raise NotImplementedError()


def test_every_check_of_notebooks_01_to_04_reports_the_untouched_template_as_not_attempted():
    for check in (
        checks.check_softmax_score,
        checks.check_rewards_to_go,
        checks.check_unbiased_baselines,
        checks.check_reinforce_loss,
        checks.check_discounted_returns,
        checks.check_constant_reward_return,
        checks.check_td_residuals,
        checks.check_gae,
        checks.check_gae_limits,
        checks.check_ppo_clip_objective,
        checks.check_approx_kl,
        checks.check_clip_slope,
    ):
        result = check(not_attempted)
        assert result.status == "not attempted" and "not attempted yet" in repr(result), check


def test_a_solution_that_calls_the_library_is_refused_whatever_name_it_uses():
    from rlteach import advantages, losses
    from rlteach.advantages import gae as renamed
    from rlteach.tabular import rewards_to_go

    refused = [
        checks.check_rewards_to_go(lambda r, g: rewards_to_go(r, g)),
        checks.check_gae(lambda *args: renamed(*args)[0]),
        checks.check_td_residuals(lambda *args: advantages.td_residuals(*args)),
        checks.check_ppo_clip_objective(losses.ppo_clip_objective),
        checks.check_approx_kl(lambda new, old: losses.approx_kl(new, old)),
        checks.check_reinforce_loss(lambda lp, ret: -losses.policy_gradient_objective(lp, ret)),
        checks.check_discounted_returns(
            lambda r, d, g: advantages.returns_to_go(
                torch.as_tensor(r)[:, None],
                torch.as_tensor(d)[:, None],
                torch.zeros(len(d), 1, dtype=torch.bool),
                g,
            )[:, 0]
        ),
    ]
    for result in refused:
        assert not result and "the library's own answer" in result.message, result


def test_the_softmax_score_without_autograd_means_without_autograd():
    def with_autograd(logits, action):
        logits = logits.clone().requires_grad_(True)
        torch.log_softmax(logits, -1)[action].backward()
        return logits.grad

    result = checks.check_softmax_score(with_autograd)
    assert not result and "torch._tensor.Tensor.backward" in result.message


def test_reinforce_loss_names_the_sum_and_the_sign():
    assert "divide by M" in checks.check_reinforce_loss(lambda lp, ret: -(lp * ret).sum()).message
    assert "negate it" in checks.check_reinforce_loss(lambda lp, ret: (lp * ret).mean()).message


def test_unbiased_baselines_wants_both_state_baselines_and_explains_each_option_once_found():
    right = checks.check_unbiased_baselines(lambda: "B, A")
    assert right and all(f"  {k}: " in right.message for k in "ABCD")
    for wrong in ("A", ["A", "B", "C"], "ABCD"):
        result = checks.check_unbiased_baselines(lambda wrong=wrong: wrong)
        assert not result and "not this choice" in result.message and "(1.9)" in result.message
        assert not any(f"  {k}: " in result.message for k in "ABCD")  # the key stays hidden
    assert "letters A, B, C, D" in checks.check_unbiased_baselines(lambda: "E").message


def test_constant_reward_return_needs_the_closed_form_at_gamma_one_too():
    def closed_form(r, gamma, T):
        return r * T if gamma == 1 else r * (1 - gamma**T) / (1 - gamma)

    def loop(r, gamma, T):
        return sum(r * gamma**t for t in range(T))

    assert checks.check_constant_reward_return(closed_form)
    assert checks.check_constant_reward_return(loop)
    no_limit = checks.check_constant_reward_return(lambda r, g, T: r * (1 - g**T) / (1 - g))
    assert not no_limit and "ZeroDivisionError" in no_limit.message
    infinite = checks.check_constant_reward_return(lambda r, g, T: r / (1 - g) if g < 1 else r * T)
    assert not infinite and "largest difference" in infinite.message


def test_gae_limits_and_clip_slope():
    assert checks.check_gae_limits(lambda: "a")
    swapped = checks.check_gae_limits(lambda: "B")
    assert (
        not swapped
        and "telescope" not in swapped.message
        and "λ = 0, then λ = 1" in swapped.message
    )
    assert checks.check_clip_slope(lambda: 2.0000001)
    clipped = checks.check_clip_slope(lambda: 0.0)  # believes the clip stops every gradient
    assert not clipped and "both branches of the min" in clipped.message
    assert not checks.check_clip_slope(lambda: 1.2)


def test_ppo_clip_names_the_loss_and_the_sum_and_labels_value_and_gradient():
    def objective(new, old, adv, eps):
        ratio = torch.exp(new - old)
        return torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)

    loss = checks.check_ppo_clip_objective(lambda *a: -objective(*a).mean())
    assert not loss and "the loss to minimise" in loss.message and "entry 0 is" in loss.message
    summed = checks.check_ppo_clip_objective(lambda *a: objective(*a).sum())
    assert not summed and "the sum over the minibatch" in summed.message


def test_a_solution_that_changes_its_inputs_in_place_passes_every_time():
    def in_place(rewards, gamma):
        for t in reversed(range(len(rewards) - 1)):
            rewards[t] += gamma * rewards[t + 1]
        return rewards

    assert checks.check_rewards_to_go(in_place) and checks.check_rewards_to_go(in_place)


def test_results_go_to_the_grade_log_and_fail_loudly_under_nbgrader(tmp_path, monkeypatch):
    import json

    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv("RLTEACH_GRADE_LOG", str(log))
    checks.check_clip_slope(lambda: 2.0)
    checks.check_gae_limits(not_attempted)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["id"], e["status"]) for e in entries] == [
        ("04.3", "passed"),
        ("03.3", "not attempted"),
    ]
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(AssertionError, match="04.3"):
        checks.check_clip_slope(lambda: 0.0)
    assert checks.check_clip_slope(lambda: 2.0)


def forward_discounting(rewards, gamma):
    """G_t = Σ_{k≤t} γ^{t−k} r_k: the sum runs the wrong way in time."""
    out, running = np.zeros(len(rewards)), 0.0
    for t in range(len(rewards)):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


TYPICAL_MISTAKES = {  # check: two wrong answers a student is likely to write
    "check_softmax_score": (
        lambda logits, a: torch.softmax(logits, -1),
        lambda logits, a: (
            torch.softmax(logits, -1) - torch.nn.functional.one_hot(torch.tensor(a), len(logits))
        ),
    ),
    "check_rewards_to_go": (lambda r, g: np.cumsum(r[::-1])[::-1], forward_discounting),
    "check_discounted_returns": (
        lambda r, d, g: forward_discounting(r, g),
        lambda r, d, g: np.where(d, 0.0, r),
    ),
    "check_td_residuals": (
        lambda r, v, nv, term, g: r + g * nv - v,
        lambda r, v, nv, term, g: r + g * nv * (~term),
    ),
    "check_gae": (
        lambda r, v, nv, term, trunc, g, lam: r + g * nv * (~term) - v,
        lambda r, v, nv, term, trunc, g, lam: gae_loop(
            r, v, nv, term, torch.zeros_like(trunc), g, lam
        ),
    ),
    "check_ppo_clip_objective": (
        lambda new, old, adv, eps: (torch.exp(new - old) * adv).mean(),
        lambda new, old, adv, eps: (
            torch.clamp(torch.exp(new - old), 1 - eps, 1 + eps) * adv
        ).mean(),
    ),
    "check_approx_kl": (
        lambda new, old: float((old - new).mean()),
        lambda new, old: float(((new - old).exp() - 1).mean()),
    ),
}


@pytest.mark.parametrize("name", sorted(TYPICAL_MISTAKES))
def test_typical_mistakes_fail_with_the_case_and_the_difference(name):
    for wrong in TYPICAL_MISTAKES[name]:
        result = getattr(checks, name)(wrong)
        assert result.status == "not yet", name
        assert "case" in result.message and (
            "largest difference" in result.message or "shape" in result.message
        ), result.message
