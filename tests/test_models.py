from pathlib import Path

import numpy as np
import pytest
import torch

from diffplan.config import Preset, UNetConfig
from diffplan.models import build_denoiser, build_value_function, check_horizon
from diffplan.planning import ValueGuidedRLPipeline
from diffplan.presets import PRESETS, get_preset


@pytest.mark.parametrize("name,horizon", [("tiny", 8), ("small", 32), ("paper", 32)])
def test_preset_networks_have_expected_shapes(name: str, horizon: int) -> None:
    preset = get_preset(name)
    assert preset.train.horizon == horizon
    unet = build_denoiser(config=preset.unet, transition_dim=14)
    vf = build_value_function(config=preset.value_net, transition_dim=14)
    x = torch.randn(3, 14, horizon)
    t = torch.tensor([0, 5, 19])
    assert unet(x, t).sample.shape == (3, 14, horizon)
    assert vf(x, t).sample.shape == (3, 1)


def test_paper_preset_is_the_published_hopper_architecture() -> None:
    unet = build_denoiser(config=PRESETS["paper"].unet, transition_dim=14)
    vf = build_value_function(config=PRESETS["paper"].value_net, transition_dim=14)
    assert unet.config.block_out_channels == (32, 64, 128, 256)
    assert unet.config.mid_block_type == "MidResTemporalBlock1D"
    assert unet.config.out_block_type == "OutConv1DBlock"
    assert unet.config.time_embedding_type == "positional" and unet.config.act_fn == "mish"
    assert vf.config.mid_block_type == "ValueFunctionMidBlock1D" and vf.config.out_block_type == "ValueFunction"
    # parameter count of the published Hopper H32 denoiser (diffusers hub hopper-medium-v2 hor32)
    assert 3.9e6 < sum(p.numel() for p in unet.parameters()) < 4.0e6


def test_horizon_checks() -> None:
    cfg = UNetConfig(block_out_channels=(32, 64, 128, 256))
    check_horizon(config=cfg, horizon=32)
    check_horizon(config=cfg, horizon=32, value_network=True)
    check_horizon(config=cfg, horizon=128)  # the denoiser takes any multiple of 8
    with pytest.raises(ValueError, match="multiple of 8"):
        check_horizon(config=cfg, horizon=12)
    with pytest.raises(ValueError, match="value network: expected at most 64"):
        check_horizon(config=cfg, horizon=128, value_network=True)


def test_unknown_preset_and_override() -> None:
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; expected one of \['maze-large', .*'tiny'\]"):
        get_preset("huge")
    with pytest.raises(ValueError, match="unknown training settings"):
        get_preset("tiny", epochs=3)
    p = get_preset("tiny", horizon=16)
    assert p.train.horizon == 16 and p.plan.planning_horizon == 16


def test_preset_json_round_trip() -> None:
    p = get_preset("small")
    assert Preset.from_dict(p.to_dict()) == p


@pytest.mark.parametrize(
    "name,horizon,steps",
    [("maze-umaze", 128, 64), ("maze-medium", 256, 256), ("maze-large", 384, 256), ("maze-umaze-small", 48, 32)],
)
def test_maze_presets_are_the_paper_sizes(name: str, horizon: int, steps: int) -> None:
    preset = get_preset(name)
    assert preset.train.horizon == horizon and preset.diffusion.num_train_timesteps == steps
    assert preset.normalizer == "limits" and preset.train.value_steps == 0
    check_horizon(config=preset.unet, horizon=horizon)
    unet = build_denoiser(config=preset.unet, transition_dim=6)
    assert unet(torch.randn(1, 6, horizon), torch.tensor([1])).sample.shape == (1, 6, horizon)


# ---- goal-conditioned planning in PointMaze (fixture maze_run: tests/conftest.py)


def test_inverse_dynamics_predicts_the_datasets_actions(maze_run: Path) -> None:
    from diffplan.data.episodes import load_episodes

    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    assert pipe.inverse_dynamics is not None and pipe.inverse_dynamics.config.max_lookahead == 1
    eps = load_episodes("test/umaze-tiny-v0")
    obs = np.concatenate([e.observations[:-1] for e in eps.episodes])
    nxt = np.concatenate([e.observations[1:] for e in eps.episodes])
    act = np.concatenate([e.actions[:-1] for e in eps.episodes])
    pred = pipe.inverse_action(state=obs, target=nxt, lookahead=np.ones(len(obs)))
    assert pred.shape == act.shape
    assert ((pred - act) ** 2).mean() < 0.5 * ((act - act.mean(0)) ** 2).mean()
