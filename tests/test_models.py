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
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; expected one of \['dv', 'dv-small', .*'tiny'\]"):
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


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """The zero-initialised gates and output layer of a DiT make it output 0: give every weight a value."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def test_dit_denoises_any_horizon_and_depends_on_the_step() -> None:
    from diffplan.config import DiTConfig
    from diffplan.transformer import DiT1DModel

    dit = build_denoiser(config=DiTConfig(hidden_size=32, depth=2, num_heads=4), transition_dim=14)
    assert isinstance(dit, DiT1DModel)
    x = torch.randn(3, 14, 9)
    assert dit(x, torch.tensor([0, 5, 19])).sample.abs().max() == 0  # adaLN-Zero: starts at zero output
    _perturbed(dit)
    for horizon in (1, 9, 32):  # no down-sampling: any horizon
        assert dit(torch.randn(2, 14, horizon), 3).sample.shape == (2, 14, horizon)
    a, b = dit(x, 1).sample, dit(x, 15).sample
    assert not torch.allclose(a, b)  # the diffusion step conditions the output
    assert torch.allclose(dit(x, torch.tensor([1, 1, 1])).sample, a)  # one step or one per sample
    # the position embedding: swapping two steps of the input does not just swap the output
    swapped = x[:, :, [1, 0, *range(2, 9)]]
    assert not torch.allclose(dit(swapped, 1).sample[:, :, [1, 0, *range(2, 9)]], a, atol=1e-5)


def test_dit_saves_and_loads_as_a_diffusers_model(tmp_path: Path) -> None:
    from diffplan.config import DiTConfig
    from diffplan.transformer import DiT1DModel

    dit = _perturbed(build_denoiser(config=DiTConfig(hidden_size=32, depth=1, num_heads=2), transition_dim=5))
    dit.save_pretrained(tmp_path / "unet")
    loaded = DiT1DModel.from_pretrained(tmp_path / "unet")
    assert type(loaded) is type(dit) and loaded.config.hidden_size == 32
    x = torch.randn(2, 5, 7)
    assert torch.equal(loaded(x, 4).sample, dit(x, 4).sample)


def test_dit_and_q_function_refuse_bad_sizes() -> None:
    from diffplan.config import DiTConfig
    from diffplan.models import QFunction
    from diffplan.transformer import DiT1DModel

    with pytest.raises(ValueError, match="divisible by num_heads"):
        DiTConfig(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="DiTConfig.depth >= 1"):
        DiTConfig(depth=0)
    with pytest.raises(ValueError, match="hidden_size divisible by num_heads"):
        DiT1DModel(in_channels=4, hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="QFunction sizes"):
        QFunction(obs_dim=0, act_dim=3)
    q = QFunction(obs_dim=11, act_dim=3, hidden=16)
    assert q(torch.zeros(4, 11), torch.zeros(4, 3)).shape == (4,)


def test_transformer_presets_take_odd_horizons_and_round_trip() -> None:
    from diffplan.config import DiTConfig

    check_horizon(config=DiTConfig(), horizon=5)  # a U-Net of 3 blocks would refuse it
    with pytest.raises(ValueError, match="multiple of 4"):
        check_horizon(config=UNetConfig(block_out_channels=(32, 64, 128)), horizon=5)
    for name in ("small-dit", "small-states", "small-mc", "small-c2f", "dv-small", "maze-large-small-dv"):
        preset = PRESETS[name]
        assert Preset.from_dict(preset.to_dict()) == preset, name
        assert preset.description
    c2f = PRESETS["small-c2f"]
    assert c2f.fine is not None and c2f.fine.train.horizon == c2f.train.stride + 1 == 5
    assert isinstance(PRESETS["dv-small"].unet, DiTConfig) and PRESETS["dv-small"].diffusion.states_only


def test_presets_refuse_states_only_without_inverse_dynamics_and_mismatched_levels() -> None:
    from dataclasses import replace

    small = PRESETS["small"]
    with pytest.raises(ValueError, match="expected inverse_steps >= 1"):
        replace(small, diffusion=replace(small.diffusion, states_only=True))
    c2f = PRESETS["small-c2f"]
    assert c2f.fine is not None
    wrong = replace(c2f.fine, train=replace(c2f.fine.train, horizon=8))
    with pytest.raises(ValueError, match="horizon 5 \\(the coarse stride \\+ 1\\), got stride 1 and horizon 8"):
        replace(c2f, fine=wrong)
