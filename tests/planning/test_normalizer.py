import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from diffplan.data.normalization import TrajectoryNormalizer
from diffplan.planning import ValueGuidedRLPipeline
from diffplan.planning.normalizer import Normalizer
from diffplan.planning.runs import NORMALIZER, RUN_INFO


def _normalizer() -> TrajectoryNormalizer:
    rng = np.random.default_rng(0)
    return TrajectoryNormalizer.fit(observations=rng.normal(size=(50, 4)) / 3, actions=rng.normal(size=(50, 2)) / 7)


def test_component_saves_and_loads_its_float64_constants_bit_for_bit(tmp_path: Path) -> None:
    norm = _normalizer()
    component = Normalizer.of(norm)
    assert (component.obs_dim, component.act_dim) == (4, 2)
    x = np.random.default_rng(1).normal(size=(3, 6))
    np.testing.assert_array_equal(component.normalize(x), norm.normalize(x))
    np.testing.assert_array_equal(component.unnormalize(x), norm.unnormalize(x))
    component.save_pretrained(tmp_path / "n")
    loaded = Normalizer.from_pretrained(tmp_path / "n")
    assert loaded.trajectory.to_dict() == norm.to_dict()
    np.testing.assert_array_equal(loaded.observations.scale, norm.observations.scale)
    assert loaded.to(torch.float16).observations.shift.dtype == np.float64  # no float tensor to cast
    assert loaded.dims.tolist() == [4, 2]


def test_malformed_component_records_are_refused() -> None:
    record = _normalizer().to_dict()
    with pytest.raises(ValueError, match="scale strictly positive"):
        Normalizer(observations={**record["observations"], "scale": [0.0, 1.0, 1.0, 1.0]}, actions=record["actions"])


def test_a_saved_pipeline_is_loaded_by_diffusers_own_loader(tiny_run: Path, tmp_path: Path) -> None:
    ours = ValueGuidedRLPipeline.from_pretrained(tiny_run)
    assert ours.components[NORMALIZER] is ours.normalizer
    ours.save_pretrained(tmp_path / "copy")
    assert json.loads((tmp_path / "copy" / "model_index.json").read_text())[NORMALIZER] == [
        "diffplan.planning.normalizer",
        "Normalizer",
    ]
    # diffusers' generic loader: components from model_index.json, planner defaults passed in
    theirs = DiffusionPipeline.from_pretrained.__func__(
        ValueGuidedRLPipeline, tmp_path / "copy", plan_config=ours.plan_config
    )
    assert isinstance(theirs.normalizer, Normalizer)
    obs = ours.normalizer.observations.shift
    a = ours(obs, generator=torch.Generator().manual_seed(2))
    b = theirs(obs, generator=torch.Generator().manual_seed(2))
    np.testing.assert_array_equal(a, b)
    # diffusers' idiom: a pipeline made of another's components
    clone = ValueGuidedRLPipeline(**ours.components, plan_config=ours.plan_config)
    np.testing.assert_array_equal(clone(obs, generator=torch.Generator().manual_seed(2)), a)
    # a normalizer assigned later is the one the calls use
    shifted = TrajectoryNormalizer.from_dict(ours.normalizer.trajectory.to_dict())
    theirs.normalizer = Normalizer.of(
        TrajectoryNormalizer(observations=replace(shifted.observations, shift=shifted.observations.shift + 1.0),
                             actions=shifted.actions)
    )  # fmt: skip
    assert theirs.components[NORMALIZER] is theirs.normalizer
    assert not np.array_equal(theirs(obs, generator=torch.Generator().manual_seed(2)), a)
    # without diffplan.json the folder loads in ours too: the normalizer comes from normalizer/
    (tmp_path / "copy" / RUN_INFO).unlink()
    bare = ValueGuidedRLPipeline.from_pretrained(tmp_path / "copy")
    assert bare.info is None and bare.normalizer.trajectory.to_dict() == ours.normalizer.trajectory.to_dict()


def test_old_folders_load_and_a_normalizer_that_disagrees_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    ours = ValueGuidedRLPipeline.from_pretrained(tiny_run)
    ours.save_pretrained(tmp_path / "run")
    old = tmp_path / "old"  # a folder written before the normalizer was registered: diffplan.json alone
    shutil.copytree(tmp_path / "run", old)
    shutil.rmtree(old / NORMALIZER)
    loaded = ValueGuidedRLPipeline.from_pretrained(old)
    assert loaded.normalizer.trajectory.to_dict() == ours.normalizer.trajectory.to_dict()
    config = tmp_path / "run" / NORMALIZER / "config.json"
    record = json.loads(config.read_text())
    record["observations"]["shift"][0] += 1.0
    config.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="record different normalizers"):
        ValueGuidedRLPipeline.from_pretrained(tmp_path / "run")
