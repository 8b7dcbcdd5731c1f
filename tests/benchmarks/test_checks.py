"""The comparison of evaluate_equivalence outputs, the shipped-run choices table, and collections under
kernel variants."""

from __future__ import annotations

from benchmarks.evaluate_equivalence import differences


def test_equivalence_compare_ignores_wall_clock_digits_and_finds_real_changes() -> None:
    a = {"hopper": {"returns": [1.5, 2.0], "plans_ratio": 0.358974358974359}}
    assert differences(a, {"hopper": {"returns": [1.5, 2.0], "plans_ratio": 0.35897435897435903}}) == []
    changed = {"hopper": {"returns": [1.5, 2.25], "plans_ratio": 0.36}}
    assert differences(a, changed) == [
        "hopper plans_ratio: 0.358974358974359 != 0.36",
        "hopper returns: [1.5, 2.0] != [1.5, 2.25]",
    ]
    assert differences(a, {}) == ["hopper: only in one file"]


def test_every_shipped_run_has_chosen_settings_that_are_valid() -> None:
    from benchmarks.shipped_scores import UNSEEN, choices
    from diffplan.config import EvalConfig, PlanConfig
    from diffplan.planning.runs import list_runs

    table = choices()
    assert set(list_runs()) <= set(table)
    for choice in table.values():
        PlanConfig().override(**choice.plan)  # known settings, valid values
        ev = EvalConfig().override(**choice.evaluation, **UNSEEN)
        assert ev.seed >= 5000 and ev.episodes == 20  # reset seeds apart from every choice's (0-49, 1000-1099)
        first, last = map(int, choice.chosen_on["episodes"].removeprefix("reset seeds ").split("-"))
        assert 0 <= first <= last < ev.seed  # chosen on episodes the unseen figure never meets


def test_collection_under_kernel_variants_is_repeatable_and_sees_its_variables() -> None:
    from benchmarks.collection_kernels import one

    first = one("Hopper-v5", 300, {})
    assert first == one("Hopper-v5", 300, {})  # the same machine and branch: the same episodes
    assert first["episodes"] >= 1 and len(first["sha256"]) == 64
    assert one("Hopper-v5", 300, {"ATEN_CPU_CAPABILITY": "default"})["capability"] == "DEFAULT"
