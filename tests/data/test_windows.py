import numpy as np
import pytest
import torch

from diffplan.data.episodes import Episode, EpisodeSet
from diffplan.data.windows import WindowDataset, discounted_returns


def _episode(n: int, terminated: bool, offset: float = 0.0) -> Episode:
    t = np.arange(n, dtype=np.float64)
    return Episode(
        observations=np.stack([t + offset, -t], 1),
        actions=(t + offset)[:, None] * 0.1,
        rewards=np.ones(n) + offset,
        terminated=terminated,
    )


def test_discounted_returns_by_hand() -> None:
    r = np.array([1.0, 2.0, 3.0])
    out = discounted_returns(r, discount=0.5, terminated=True, termination_penalty=-100.0)
    # last reward 3 - 100 = -97
    assert out[2] == pytest.approx(-97.0)
    assert out[1] == pytest.approx(2.0 + 0.5 * -97.0)
    assert out[0] == pytest.approx(1.0 + 0.5 * 2.0 + 0.25 * -97.0)
    timeout = discounted_returns(r, discount=0.5, terminated=False, termination_penalty=-100.0)
    assert timeout[0] == pytest.approx(1.0 + 1.0 + 0.75)


def test_windows_every_start_with_end_padding() -> None:
    eps = EpisodeSet(episodes=[_episode(6, True), _episode(3, False, offset=10.0)], dataset_id="mem")
    with pytest.warns(UserWarning, match="shorter than the horizon"):
        ds = WindowDataset(episodes=eps, horizon=4, discount=1.0, termination_penalty=-100.0)
    assert len(ds) == 9  # one window per step of every episode
    x, v = ds.batch(torch.tensor([0, 5, 6, 8]))
    assert x.shape == (4, 4, 3)  # [batch, horizon, act_dim + obs_dim], actions first
    raw = ds.normalizer.unnormalize(x.double().numpy())
    np.testing.assert_allclose(raw[0, :, 1], [0, 1, 2, 3], atol=1e-5)  # obs dim 0 of episode 0
    np.testing.assert_allclose(raw[1, :, 1], [5, 5, 5, 5], atol=1e-5)  # last step repeated
    np.testing.assert_allclose(raw[2, :, 1], [10, 11, 12, 12], atol=1e-5)  # second episode, padded
    np.testing.assert_allclose(raw[0, :, 0], 0.1 * raw[0, :, 1], atol=1e-5)  # action column
    # value of window start = undiscounted return to the episode's end (discount 1)
    assert v[0].item() == pytest.approx(6.0 - 100.0)
    assert v[1].item() == pytest.approx(1.0 - 100.0)
    assert v[2].item() == pytest.approx(33.0)
    assert v[3].item() == pytest.approx(11.0)


def test_horizon_longer_than_every_episode() -> None:
    eps = EpisodeSet(episodes=[_episode(5, True), _episode(7, True)], dataset_id="short-ds")
    with pytest.raises(
        ValueError, match=r"horizon 8 \(stride 1: 8 steps\) is longer than every episode of short-ds \(longest 7"
    ):
        WindowDataset(episodes=eps, horizon=8)
    with pytest.raises(ValueError, match=r"horizon 3 \(stride 4: 9 steps\)"):
        WindowDataset(episodes=eps, horizon=3, stride=4)


def test_stride_takes_every_kth_step_and_pads_the_end() -> None:
    eps = EpisodeSet(episodes=[_episode(10, False)], dataset_id="mem")
    ds = WindowDataset(episodes=eps, horizon=3, stride=4, discount=1.0)
    x, _ = ds.batch(torch.tensor([0, 1, 9]))
    raw = ds.normalizer.unnormalize(x.double().numpy())
    np.testing.assert_allclose(raw[0, :, 1], [0, 4, 8], atol=1e-5)
    np.testing.assert_allclose(raw[1, :, 1], [1, 5, 9], atol=1e-5)
    np.testing.assert_allclose(raw[2, :, 1], [9, 9, 9], atol=1e-5)  # last step repeated


def test_sampling_is_seeded() -> None:
    eps = EpisodeSet(episodes=[_episode(20, False)], dataset_id="mem")
    ds = WindowDataset(episodes=eps, horizon=4)
    a, _ = ds.sample(5, generator=torch.Generator().manual_seed(3))
    b, _ = ds.sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_td_transitions_carry_the_penalty_on_the_terminal_step_only() -> None:
    eps = EpisodeSet(episodes=[_episode(3, True), _episode(2, False, offset=10.0)], dataset_id="mem")
    ds = WindowDataset(episodes=eps, horizon=1, discount=1.0, termination_penalty=-100.0)
    state, reward, nxt, terminal = ds.td_transitions(200, generator=torch.Generator().manual_seed(0))
    raw_s = ds.normalizer.unnormalize(np.concatenate([np.zeros((200, 1)), state.double().numpy()], 1))[:, 1]
    raw_n = ds.normalizer.unnormalize(np.concatenate([np.zeros((200, 1)), nxt.double().numpy()], 1))[:, 1]
    seen = {}
    for s, r, n, d in zip(raw_s.round(3), reward.tolist(), raw_n.round(3), terminal.tolist()):
        seen[float(s)] = (r, float(n), d)
    # episode 1 (obs 0, 1, 2, terminated): the last step's reward holds the penalty and is terminal
    assert seen[0.0] == (1.0, 1.0, False) and seen[1.0] == (1.0, 2.0, False)
    assert seen[2.0] == (1.0 - 100.0, 2.0, True)
    # episode 2 (obs 10, 11, timed out): no penalty, not terminal; its last step's next state is itself
    assert seen[10.0] == (11.0, 11.0, False) and seen[11.0] == (11.0, 11.0, False)


def test_value_weights_run_from_the_worst_to_the_best_window() -> None:
    eps = EpisodeSet(episodes=[_episode(6, True), _episode(3, False, offset=10.0)], dataset_id="mem")
    with pytest.warns(UserWarning):
        ds = WindowDataset(episodes=eps, horizon=4, discount=1.0, termination_penalty=-100.0)
    low, high = ds.value_range
    assert (low, high) == (pytest.approx(-99.0), pytest.approx(33.0))
    w = ds.value_weights(torch.tensor([low, high, (low + high) / 2]), factor=2.0)
    np.testing.assert_allclose(w.numpy(), [np.exp(-4.0), 1.0, np.exp(-2.0)], rtol=1e-5)
    assert ds.value_scale == pytest.approx(99.0)
