"""Advantage and return estimators against plain Python loops written episode by episode.

The references below never use the backward recursion of the library: they split each
environment's column into episodes and evaluate each defining sum forwards, over Python floats.
Inputs are float64, so the library and the loops agree to rounding (~1e-13 for these sizes); the
1e-6 tolerance leaves ample room for that and still catches any wrong term (terms are O(0.1..1)).
"""

import math

import pytest
import torch

from rlteach import advantages as A

TOL = 1e-6


# ---------------------------------------------------------------- plain-loop references


def _episodes(term, trunc):
    """(start, end) of each episode in one column, end inclusive; the batch end closes the last."""
    segments, start = [], 0
    for t in range(len(term)):
        if term[t] or trunc[t] or t == len(term) - 1:
            segments.append((start, t))
            start = t + 1
    return segments


def _columns(batch):
    """Yield (j, column as Python lists) for each environment j of a batch dict."""
    T, N = batch["rewards"].shape
    for j in range(N):
        yield j, {key: value[:, j].tolist() for key, value in batch.items()}


def ref_gae(batch, gamma, lam):
    """A_t = Σ_{k=0}^{e−t} (γλ)^k δ_{t+k} within the episode [s, e] containing t."""
    out = [[0.0] * batch["rewards"].shape[1] for _ in range(batch["rewards"].shape[0])]
    for j, c in _columns(batch):

        def delta(u, c=c):
            bootstrap = 0.0 if c["terminated"][u] else c["next_values"][u]
            return c["rewards"][u] + gamma * bootstrap - c["values"][u]

        for start, end in _episodes(c["terminated"], c["truncated"]):
            for t in range(start, end + 1):
                out[t][j] = sum((gamma * lam) ** k * delta(t + k) for k in range(end - t + 1))
    return torch.tensor(out, dtype=torch.float64)


def ref_returns_to_go(batch, gamma, bootstrap):
    """G_t = Σ_{k=0}^{e−t} γ^k r_{t+k} + γ^{e−t+1} V(s_{e+1}) if cut (and bootstrap asked)."""
    out = [[0.0] * batch["rewards"].shape[1] for _ in range(batch["rewards"].shape[0])]
    for j, c in _columns(batch):
        for start, end in _episodes(c["terminated"], c["truncated"]):
            tail = 0.0 if (c["terminated"][end] or not bootstrap) else c["next_values"][end]
            for t in range(start, end + 1):
                rewards = sum(gamma**k * c["rewards"][t + k] for k in range(end - t + 1))
                out[t][j] = rewards + gamma ** (end - t + 1) * tail
    return torch.tensor(out, dtype=torch.float64)


def ref_nstep(batch, gamma, n):
    """G_t = Σ_{k<m} γ^k r_{t+k} + γ^m (1 − term_{t+m−1}) V(s_{t+m}), m = min(n, e − t + 1)."""
    out = [[0.0] * batch["rewards"].shape[1] for _ in range(batch["rewards"].shape[0])]
    for j, c in _columns(batch):
        for start, end in _episodes(c["terminated"], c["truncated"]):
            for t in range(start, end + 1):
                m = min(n, end - t + 1)
                last = t + m - 1
                tail = 0.0 if c["terminated"][last] else c["next_values"][last]
                rewards = sum(gamma**k * c["rewards"][t + k] for k in range(m))
                out[t][j] = rewards + gamma**m * tail
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- batches


def random_batch(T, N, seed, p_term=0.1, p_trunc=0.1):
    """Random float64 batch with independent random episode ends (so some steps are both)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "rewards": torch.randn(T, N, generator=g, dtype=torch.float64),
        "values": torch.randn(T, N, generator=g, dtype=torch.float64),
        "next_values": torch.randn(T, N, generator=g, dtype=torch.float64),
        "terminated": torch.rand(T, N, generator=g) < p_term,
        "truncated": torch.rand(T, N, generator=g) < p_trunc,
    }


def consistent_batch(T, N, seed):
    """Random batch whose next_values[t] = values[t+1] inside episodes, as a rollout produces."""
    b = random_batch(T, N, seed)
    inside = ~(b["terminated"] | b["truncated"])[:-1]
    b["next_values"][:-1] = torch.where(inside, b["values"][1:], b["next_values"][:-1])
    return b


def edge_batch():
    """T = 4, one edge case per column; rewards/values random but fixed."""
    term = [
        [0, 0, 0, 1],  # 0: terminated at the last step
        [0, 0, 0, 0],  # 1: truncated at the last step (below)
        [0, 1, 0, 1],  # 2: consecutive boundaries: term at 1, trunc at 2, term at 3
        [0, 1, 0, 0],  # 3: terminated and truncated at step 1
        [0, 0, 0, 0],  # 4: no boundary, only the batch end
    ]
    trunc = [
        [0, 0, 0, 0],
        [0, 0, 0, 1],
        [0, 0, 1, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 0],
    ]
    batch = random_batch(4, 5, seed=7)
    batch["terminated"] = torch.tensor(term, dtype=torch.bool).T.contiguous()
    batch["truncated"] = torch.tensor(trunc, dtype=torch.bool).T.contiguous()
    return batch


def gae_of(batch, gamma, lam):
    b = batch
    return A.gae(
        b["rewards"], b["values"], b["next_values"], b["terminated"], b["truncated"], gamma, lam
    )


def rtg_of(batch, gamma, bootstrap):
    b = batch
    next_values = b["next_values"] if bootstrap else None
    return A.returns_to_go(b["rewards"], b["terminated"], b["truncated"], gamma, next_values)


def nstep_of(batch, gamma, n):
    b = batch
    return A.nstep_returns(
        b["rewards"], b["next_values"], b["terminated"], b["truncated"], gamma, n
    )


SHAPES = [(37, 5), (1, 3), (12, 1), (1, 1)]


# ---------------------------------------------------------------- against the loops


@pytest.mark.parametrize("T,N", SHAPES)
@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.0), (0.9, 1.0), (0.0, 0.5)])
def test_gae_matches_episode_loop(T, N, gamma, lam):
    batch = random_batch(T, N, seed=T * 100 + N)
    adv, ret = gae_of(batch, gamma, lam)
    expected = ref_gae(batch, gamma, lam)
    torch.testing.assert_close(adv, expected, atol=TOL, rtol=0)
    torch.testing.assert_close(ret, expected + batch["values"], atol=TOL, rtol=0)


@pytest.mark.parametrize("T,N", SHAPES)
@pytest.mark.parametrize("bootstrap", [True, False])
def test_returns_to_go_matches_episode_loop(T, N, bootstrap):
    batch = random_batch(T, N, seed=T * 100 + N + 1)
    expected = ref_returns_to_go(batch, 0.97, bootstrap)
    torch.testing.assert_close(rtg_of(batch, 0.97, bootstrap), expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("T,N", SHAPES)
@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_nstep_returns_match_episode_loop(T, N, n):
    batch = random_batch(T, N, seed=T * 100 + N + 2)
    expected = ref_nstep(batch, 0.95, n)
    torch.testing.assert_close(nstep_of(batch, 0.95, n), expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("lam", [0.0, 0.8, 1.0])
@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_edge_cases_match_episode_loop(lam, n):
    batch = edge_batch()
    torch.testing.assert_close(
        gae_of(batch, 0.9, lam)[0], ref_gae(batch, 0.9, lam), atol=TOL, rtol=0
    )
    for bootstrap in (True, False):
        expected = ref_returns_to_go(batch, 0.9, bootstrap)
        torch.testing.assert_close(rtg_of(batch, 0.9, bootstrap), expected, atol=TOL, rtol=0)
    torch.testing.assert_close(nstep_of(batch, 0.9, n), ref_nstep(batch, 0.9, n), atol=TOL, rtol=0)


def test_edge_cases_closed_form():
    """A few entries of the edge batch written out by hand."""
    b, gamma = edge_batch(), 0.9
    r, v, nv = b["rewards"], b["values"], b["next_values"]
    adv, _ = gae_of(b, gamma, lam=1.0)
    rtg = rtg_of(b, gamma, bootstrap=True)
    # terminated at the last step: no bootstrap; truncated there: bootstrap from V(s_T)
    assert rtg[3, 0].item() == pytest.approx(r[3, 0].item(), abs=TOL)
    assert rtg[3, 1].item() == pytest.approx(r[3, 1].item() + gamma * nv[3, 1].item(), abs=TOL)
    # terminated and truncated at step 1: terminated wins, and the sum stops there
    assert rtg[1, 3].item() == pytest.approx(r[1, 3].item(), abs=TOL)
    assert adv[1, 3].item() == pytest.approx(r[1, 3].item() - v[1, 3].item(), abs=TOL)
    assert rtg[0, 3].item() == pytest.approx(r[0, 3].item() + gamma * r[1, 3].item(), abs=TOL)
    # one-step episode between two boundaries (column 2, step 2, truncated): r + γ V(s_3)
    assert rtg[2, 2].item() == pytest.approx(r[2, 2].item() + gamma * nv[2, 2].item(), abs=TOL)


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("seed", [0, 1])
def test_gae_lambda_zero_is_td_residual(seed):
    b = random_batch(30, 4, seed)
    delta = A.td_residuals(b["rewards"], b["values"], b["next_values"], b["terminated"], 0.99)
    expected = b["rewards"] + 0.99 * (~b["terminated"]) * b["next_values"] - b["values"]
    torch.testing.assert_close(delta, expected, atol=TOL, rtol=0)
    torch.testing.assert_close(gae_of(b, 0.99, 0.0)[0], delta, atol=TOL, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_gae_lambda_one_is_returns_to_go_minus_values(seed):
    # the sum of δ telescopes only when V(s_{t+1}) is the same number in δ_t and δ_{t+1}
    b = consistent_batch(30, 4, seed)
    expected = rtg_of(b, 0.99, bootstrap=True) - b["values"]
    torch.testing.assert_close(gae_of(b, 0.99, 1.0)[0], expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("n", [30, 31, 1000])
def test_nstep_beyond_batch_is_returns_to_go(n):
    b = random_batch(30, 4, seed=3)
    expected = rtg_of(b, 0.99, bootstrap=True)
    torch.testing.assert_close(nstep_of(b, 0.99, n), expected, atol=TOL, rtol=0)


def test_one_step_return_and_advantage():
    b = random_batch(30, 4, seed=4)
    expected = b["rewards"] + 0.99 * (~b["terminated"]) * b["next_values"]
    torch.testing.assert_close(nstep_of(b, 0.99, 1), expected, atol=TOL, rtol=0)
    adv, ret = A.nstep_advantages(
        b["rewards"], b["values"], b["next_values"], b["terminated"], b["truncated"], 0.99, 1
    )
    torch.testing.assert_close(ret, expected, atol=TOL, rtol=0)
    torch.testing.assert_close(adv, expected - b["values"], atol=TOL, rtol=0)


@pytest.mark.parametrize("flag", ["terminated", "truncated"])
def test_step_after_an_episode_end_affects_only_its_own_entry(flag):
    """What a rollout's invalid reset step (after a done step) holds changes no other entry."""
    b = random_batch(12, 3, seed=6, p_term=0.0, p_trunc=0.0)
    b[flag][4, 1] = True
    changed = {k: x.clone() for k, x in b.items()}
    for key in ("rewards", "values", "next_values"):
        changed[key][5, 1] += 10.0
    others = torch.ones(12, 3, dtype=torch.bool)
    others[5, 1] = False
    estimators = [
        lambda x: gae_of(x, 0.9, 0.9)[0],
        lambda x: rtg_of(x, 0.9, bootstrap=True),
        lambda x: nstep_of(x, 0.9, 4),
    ]
    for fn in estimators:
        assert torch.equal(fn(b)[others], fn(changed)[others])
        assert not torch.equal(fn(b)[5, 1], fn(changed)[5, 1])


def test_inputs_are_not_modified_and_float32_is_kept():
    b = random_batch(10, 3, seed=5)
    b32 = {k: (x.float() if x.is_floating_point() else x) for k, x in b.items()}
    before = {k: x.clone() for k, x in b32.items()}
    outputs = [*gae_of(b32, 0.9, 0.9), rtg_of(b32, 0.9, True), nstep_of(b32, 0.9, 3)]
    for key in b32:
        assert torch.equal(b32[key], before[key]), key
    assert all(out.dtype == torch.float32 for out in outputs)
    # float32 against the float64 reference: values O(1), float32 spacing ~1e-7 per operation
    torch.testing.assert_close(outputs[0], ref_gae(b, 0.9, 0.9).float(), atol=1e-5, rtol=0)


def test_normalize():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 2
    flat = x.flatten().tolist()
    mean = sum(flat) / len(flat)
    std = math.sqrt(sum((f - mean) ** 2 for f in flat) / len(flat))
    expected = torch.tensor([[(f - mean) / (std + 1e-8) for f in row] for row in x.tolist()])
    torch.testing.assert_close(A.normalize(x), expected.double(), atol=TOL, rtol=0)
    # equal advantages (and a single one) map to 0 instead of nan
    assert torch.equal(A.normalize(torch.full((3, 2), 5.0)), torch.zeros(3, 2))
    assert torch.equal(A.normalize(torch.tensor([[4.0]])), torch.zeros(1, 1))


# ---------------------------------------------------------------- bad arguments


def _call_gae(**overrides):
    b = random_batch(5, 2, seed=0)
    args = {**b, "gamma": 0.99, "lam": 0.95, **overrides}
    return A.gae(**args)


@pytest.mark.parametrize(
    "overrides,name",
    [
        ({"gamma": -0.1}, "gamma"),
        ({"gamma": 1.5}, "gamma"),
        ({"gamma": float("nan")}, "gamma"),
        ({"gamma": "0.9"}, "gamma"),
        ({"lam": 1.01}, "lam"),
        ({"lam": None}, "lam"),
        ({"values": torch.zeros(4, 2, dtype=torch.float64)}, "values"),
        ({"next_values": torch.zeros(5, dtype=torch.float64)}, "next_values"),
        ({"terminated": torch.zeros(5, 2)}, "terminated"),
        ({"truncated": torch.zeros(5, 3, dtype=torch.bool)}, "truncated"),
        ({"rewards": torch.zeros(5, 2, dtype=torch.long)}, "rewards"),
        ({"rewards": [[0.0, 0.0]] * 5}, "rewards"),
    ],
)
def test_gae_rejects_bad_arguments(overrides, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        _call_gae(**overrides)


@pytest.mark.parametrize("n", [0, -2, 2.0, True, None])
def test_nstep_rejects_bad_n(n):
    b = random_batch(5, 2, seed=0)
    with pytest.raises(ValueError, match=r"^n must be"):
        A.nstep_returns(b["rewards"], b["next_values"], b["terminated"], b["truncated"], 0.9, n)


def test_returns_to_go_and_normalize_reject_bad_arguments():
    b = random_batch(5, 2, seed=0)
    with pytest.raises(ValueError, match=r"^next_values "):
        A.returns_to_go(b["rewards"], b["terminated"], b["truncated"], 0.9, torch.zeros(5, 1))
    with pytest.raises(ValueError, match=r"^gamma "):
        A.returns_to_go(b["rewards"], b["terminated"], b["truncated"], 2)
    with pytest.raises(ValueError, match=r"^eps "):
        A.normalize(b["rewards"], eps=0.0)
    with pytest.raises(ValueError, match=r"^adv "):
        A.normalize(torch.zeros(0))
    with pytest.raises(ValueError, match=r"^adv "):
        A.normalize(torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^eps "):
        A.normalize(b["rewards"], eps="small")


# ---------------------------------------------------------------- V-trace (notebook 09)


def ref_vtrace(batch, gamma, rho_bar, c_bar, lam):
    """Espeholt et al.'s forward sum within the episode [s, e] containing t:
    vs_t = V(s_t) + Σ_{k=t}^{e} γ^{k−t} (Π_{i=t}^{k−1} c_i) δ_k,  δ_k = ρ_k (r_k + γ V' − V(s_k)),
    and pg_adv_t = ρ_t (r_t + γ v_{t+1} − V(s_t)), v_{t+1} = vs_{t+1} before e, else the
    bootstrap of step e (0 after a termination)."""
    T, N = batch["rewards"].shape
    vs = [[0.0] * N for _ in range(T)]
    pg = [[0.0] * N for _ in range(T)]
    for j, c in _columns(batch):
        ratio = [
            math.exp(p - q) for p, q in zip(c["target_logp"], c["behaviour_logp"], strict=True)
        ]
        rho = [min(rho_bar, x) for x in ratio]
        trace = [lam * min(c_bar, x) for x in ratio]

        def bootstrap(u, c=c):
            return 0.0 if c["terminated"][u] else c["next_values"][u]

        def delta(u, c=c, rho=rho):
            return rho[u] * (c["rewards"][u] + gamma * bootstrap(u) - c["values"][u])

        for start, end in _episodes(c["terminated"], c["truncated"]):
            for t in range(start, end + 1):
                total = 0.0
                for k in range(t, end + 1):
                    total += gamma ** (k - t) * math.prod(trace[t:k]) * delta(k)
                vs[t][j] = c["values"][t] + total
            for t in range(start, end + 1):
                after = vs[t + 1][j] if t < end else bootstrap(t)
                pg[t][j] = rho[t] * (c["rewards"][t] + gamma * after - c["values"][t])
    return torch.tensor(vs, dtype=torch.float64), torch.tensor(pg, dtype=torch.float64)


def off_policy(batch, seed, spread=0.7):
    """``batch`` with log-probabilities of a behaviour and a target policy that differ, so the
    ratios π/μ spread on both sides of 1 and of the truncation levels."""
    g = torch.Generator().manual_seed(seed)
    shape = batch["rewards"].shape
    behaviour = -torch.rand(shape, generator=g, dtype=torch.float64) * 2
    target = behaviour + spread * torch.randn(shape, generator=g, dtype=torch.float64)
    return {**batch, "behaviour_logp": behaviour, "target_logp": target}


def vtrace_of(b, gamma, **levels):
    return A.vtrace(
        b["behaviour_logp"], b["target_logp"], b["rewards"], b["values"], b["next_values"],
        b["terminated"], b["truncated"], gamma, **levels,
    )  # fmt: skip


@pytest.mark.parametrize("T,N", SHAPES)
@pytest.mark.parametrize(
    "rho_bar,c_bar,lam",
    [(1.0, 1.0, 1.0), (2.0, 0.5, 0.9), (math.inf, math.inf, 1.0), (1.0, 1.0, 0.0)],
)
def test_vtrace_matches_the_forward_sums_with_random_episode_ends(T, N, rho_bar, c_bar, lam):
    b = off_policy(random_batch(T, N, seed=T + N), seed=N)
    got = vtrace_of(b, 0.97, rho_bar=rho_bar, c_bar=c_bar, lam=lam)
    expected = ref_vtrace(b, 0.97, rho_bar, c_bar, lam)
    for name, x, y in zip(("vs", "pg_adv"), got, expected, strict=True):
        torch.testing.assert_close(x, y, atol=TOL, rtol=0, msg=name)


def test_vtrace_matches_the_forward_sums_at_the_edge_cases():
    b = off_policy(edge_batch(), seed=3)
    got, expected = vtrace_of(b, 0.9, rho_bar=1.5), ref_vtrace(b, 0.9, 1.5, 1.0, 1.0)
    for x, y in zip(got, expected, strict=True):
        torch.testing.assert_close(x, y, atol=TOL, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_on_policy_vtrace_without_truncation_is_the_lambda_one_return(seed):
    """π = μ and ρ̄, c̄ ≥ 1: every ratio is 1, so vs is the n-step return to the episode's end (or
    the batch's, bootstrapped there) and pg_adv is GAE's advantage at λ = 1."""
    b = consistent_batch(30, 4, seed)
    b = {**b, "behaviour_logp": torch.zeros(30, 4, dtype=torch.float64)}
    b["target_logp"] = b["behaviour_logp"].clone()
    vs, pg_adv = vtrace_of(b, 0.99, rho_bar=math.inf, c_bar=math.inf)
    torch.testing.assert_close(vs, nstep_of(b, 0.99, n=1000), atol=TOL, rtol=0)
    torch.testing.assert_close(pg_adv, gae_of(b, 0.99, 1.0)[0], atol=TOL, rtol=0)


@pytest.mark.parametrize(
    "levels, message",
    [
        (dict(rho_bar=0.0), "rho_bar"),
        (dict(c_bar=-1.0), "c_bar"),
        (dict(rho_bar=True), "rho_bar"),
        (dict(lam=1.5), "lam"),
    ],
)
def test_vtrace_rejects_bad_levels(levels, message):
    b = off_policy(random_batch(5, 2, seed=0), seed=0)
    with pytest.raises(ValueError, match=message):
        vtrace_of(b, 0.9, **levels)
