import numpy as np
import pytest
import torch

from diffplan.data.normalization import DimNormalizer, TrajectoryNormalizer


@pytest.mark.parametrize("kind", ["gaussian", "limits"])
def test_round_trip_numpy_and_torch(kind: str) -> None:
    rng = np.random.default_rng(0)
    obs = rng.normal(3.0, [1.0, 5.0, 0.1], size=(200, 3))
    act = rng.uniform(-2, 2, size=(200, 2))
    norm = TrajectoryNormalizer.fit(observations=obs, actions=act, kind=kind)
    x = np.concatenate([act, obs], axis=1)
    z = norm.normalize(x)
    if kind == "gaussian":
        np.testing.assert_allclose(z.mean(0), 0, atol=1e-9)
        np.testing.assert_allclose(z.std(0), 1, atol=1e-9)
    else:
        np.testing.assert_allclose(z.min(0), -1, atol=1e-9)
        np.testing.assert_allclose(z.max(0), 1, atol=1e-9)
    np.testing.assert_allclose(norm.unnormalize(z), x, atol=1e-9)
    zt = norm.normalize(torch.as_tensor(x, dtype=torch.float64))
    np.testing.assert_allclose(zt.numpy(), z, atol=1e-9)


def test_per_dimension_not_scalar() -> None:
    obs = np.stack([np.linspace(0, 1, 50), np.linspace(0, 100, 50)], 1)
    n = DimNormalizer.fit(obs)
    assert n.scale[1] / n.scale[0] == pytest.approx(100.0)


def test_json_round_trip_and_constant_dims() -> None:
    obs = np.ones((10, 2))
    obs[:, 1] = np.arange(10)
    norm = TrajectoryNormalizer.fit(observations=obs, actions=np.zeros((10, 1)))
    assert norm.observations.scale[0] == 1.0  # constant dimension: no division by zero
    again = TrajectoryNormalizer.from_dict(norm.to_dict())
    np.testing.assert_array_equal(again.observations.shift, norm.observations.shift)
    np.testing.assert_array_equal(again.actions.scale, norm.actions.scale)


def test_bad_records_are_rejected() -> None:
    with pytest.raises(ValueError, match="observations"):
        TrajectoryNormalizer.from_dict({"actions": {"kind": "gaussian", "shift": [0], "scale": [1]}})
    with pytest.raises(ValueError, match="strictly positive"):
        DimNormalizer.from_dict({"kind": "gaussian", "shift": [0.0], "scale": [0.0]})
    with pytest.raises(ValueError, match="unknown normalizer kind"):
        DimNormalizer.fit(np.zeros((3, 1)), kind="minmax")
