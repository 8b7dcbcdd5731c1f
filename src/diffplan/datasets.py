"""The table of local Minari datasets shown by ``diffplan datasets``."""

from __future__ import annotations

import numpy as np

from diffplan.data.episodes import datasets_root, load_minari
from diffplan.envs.specs import reference_scores


def dataset_rows() -> list[dict[str, object]]:
    """One row per local dataset: id, env, episodes, steps, mean return, normalized score; a dataset
    that cannot be read gets a row with its ``error`` instead.

    Raises:
        ValueError: the datasets root (``MINARI_DATASETS_PATH``) is not a folder.
    """
    import minari

    datasets_root()  # ValueError when the root is a file
    rows: list[dict[str, object]] = []
    for dataset_id in sorted(minari.list_local_datasets()):
        try:
            eps = load_minari(dataset_id)
        except Exception as err:  # a broken dataset is named, the others still listed
            rows.append({"id": dataset_id, "error": f"{type(err).__name__}: {err}".splitlines()[0]})
            continue
        returns = eps.returns()
        refs = reference_scores(eps.env_id, ref_min=eps.ref_min_score, ref_max=eps.ref_max_score)
        rows.append(
            {
                "id": dataset_id,
                "env": eps.env_id or "?",
                "episodes": len(eps.episodes),
                "steps": eps.num_steps,
                "mean_return": float(np.mean(returns)),
                "normalized_score": refs.normalize(float(np.mean(returns))) if refs else None,
            }
        )
    return rows


def dataset_table() -> str:
    """``dataset_rows`` as an aligned text table, then the broken datasets and unfinished collections."""
    all_rows = dataset_rows()
    rows = [r for r in all_rows if "error" not in r]
    notes = [f"broken: {r['id']} ({r['error']})" for r in all_rows if "error" in r]
    root = datasets_root()
    leftovers = sorted(p.name for p in root.glob(".collect-*"))
    if leftovers:
        notes.append(f"unfinished collections (killed while writing; safe to delete): {', '.join(leftovers)} in {root}")
    if not rows:
        return "\n".join(["no local Minari datasets (MINARI_DATASETS_PATH or ~/.minari/datasets)", *notes])
    header = ("id", "env", "episodes", "steps", "mean return", "normalized")
    cells = [header] + [
        (
            r["id"],
            r["env"],
            str(r["episodes"]),
            str(r["steps"]),
            f"{r['mean_return']:.1f}",
            "n/a" if r["normalized_score"] is None else f"{r['normalized_score']:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(header))]
    lines = ["  ".join(str(c[i]).ljust(widths[i]) for i in range(len(header))) for c in cells]
    return "\n".join(lines + notes)
