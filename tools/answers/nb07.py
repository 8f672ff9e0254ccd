"""Answers of notebook 07's exercises."""

import numpy as np

from tools.answers import cases, choice


def round_mean_gradient(grads: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(7.1) with mean-loss gradients: ``s_w = n_w g_w``, so ``ḡ = Σ_w n_w g_w / Σ_w n_w``."""
    return sizes @ grads / sizes.sum()


def answers() -> dict:
    rng = np.random.default_rng(7)
    rounds = [
        (rng.normal(size=(4, 6)), np.array([64, 63, 62, 64])),  # a round of §4: reset steps dropped
        (rng.normal(size=(2, 5)), np.array([10, 30])),
        (rng.normal(size=(3, 4)), np.array([32, 32, 32])),  # equal shares: the plain mean is right
        (rng.normal(size=(5, 3)), np.array([1, 7, 2, 60, 9])),
        (rng.normal(size=(1, 4)), np.array([17])),
    ]
    return {
        "07.1": cases(round_mean_gradient, rounds),
        "07.3": choice(
            "07.3",
            "ABC",
            {
                "A": "differs: the plain mean weighs every share alike, so a sample of a share of "
                "62 counts for more than one of a share of 64; PPO's mean loss weighs every sample "
                "alike, which (7.1) gets by weighing each share by its n_w.",
                "B": "differs: clipping is not linear. The mean of clipped gradients is not the "
                "clipped mean, and PPO clips the gradient of its whole minibatch, once: the server "
                "clips ḡ.",
                "C": "differs: PPO standardises the advantages with its minibatch's mean and "
                "standard deviation, here the global minibatch's; a share's own statistics shift "
                "and scale each share differently. That is why each worker sends n, ΣA and ΣA² of "
                "its shares once per batch (advantage_sums, normalize_with).",
                "D": "no difference: this is (7.1). Σ s_w / Σ n_w is the mean over all N samples "
                "whatever the sizes; §4's cell compares the two on shares of different sizes.",
                "E": "no difference: that is PPO's own optimizer, one Adam on the global θ, taking "
                "one step per minibatch. It is parameter averaging (§3) that keeps Adam's state on "
                "the nodes.",
            },
        ),
    }
