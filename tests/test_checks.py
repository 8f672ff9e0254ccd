"""The exercise checkers pass correct solutions and explain what is wrong with incorrect ones."""

import numpy as np
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
