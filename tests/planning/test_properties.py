"""Property tests of the public planning API: any input gives finite actions in the action space, or a
ValueError / TypeError with a message; never another exception, never NaN."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffplan.planning import ValueGuidedRLPipeline


@pytest.fixture(scope="module")
def pipe(tiny_run: Path) -> ValueGuidedRLPipeline:
    return ValueGuidedRLPipeline.from_pretrained(tiny_run)


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-3, max_value=3),
    st.sampled_from([0.0, 1e6, -1e20, 1.25]),
)
observations = st.one_of(
    st.lists(numbers, min_size=0, max_size=13),  # one observation of any length
    st.integers(0, 3).flatmap(lambda n: st.lists(st.lists(numbers, min_size=11, max_size=11), min_size=n, max_size=n)),
    st.sampled_from([None, "hopper", 3.0, [[1.0] * 11] * 2 + [[1.0] * 10], np.zeros((0, 11)), np.ones((1, 2, 11))]),
)
counts = st.one_of(st.none(), st.integers(-3, 5), st.sampled_from([0.5, True, 2.0]))
plan_settings = st.fixed_dictionaries(
    {},
    optional={
        "batch_size": counts,
        "num_inference_steps": counts,
        "n_guide_steps": counts,
        "t_stopgrad": counts,
        "goal_arrivals": counts,
        "scale": st.one_of(st.none(), numbers),
        "sampler": st.sampled_from(["ddpm", "ddim", "euler", None]),
    },
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(obs=observations, kwargs=plan_settings)
def test_any_input_gives_finite_actions_in_the_action_space_or_a_clear_error(
    pipe: ValueGuidedRLPipeline, obs: object, kwargs: dict
) -> None:
    try:
        actions = pipe(obs, **kwargs)
    except (ValueError, TypeError) as err:
        assert str(err), "an error without a message"
        return
    assert np.isfinite(actions).all() and actions.shape[-1] == 3
    assert (np.abs(actions) <= 1.0).all()  # Hopper-v5's action space


flag_values = st.one_of(st.integers(-2, 4).map(str), st.sampled_from(["nan", "inf", "-1e9", "0.5", "abc", "1e999"]))


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batch=flag_values, steps=flag_values, scale=flag_values, episodes=flag_values)
def test_the_cli_answers_any_numeric_flag_with_a_result_or_exit_2(
    tiny_run: Path, capsys: pytest.CaptureFixture, batch: str, steps: str, scale: str, episodes: str
) -> None:
    from diffplan.cli import main

    argv = ["evaluate", str(tiny_run), "--max-episode-steps", "2", "--episodes", episodes, "--plan.batch-size", batch,
            "--plan.num-inference-steps", steps, "--plan.scale", scale]  # fmt: skip
    try:
        code = main(argv)
    except SystemExit as done:  # a value the flag's type refuses: a usage error
        code = done.code
    out = capsys.readouterr()
    assert code in (0, 2), (argv, out.err)
    if code == 0:
        assert "normalized score" in out.out and "nan" not in out.out.split("normalized score")[1].split("\n")[0]
