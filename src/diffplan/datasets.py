"""The table of local Minari datasets shown by ``diffplan datasets``."""

from __future__ import annotations

import numpy as np

from diffplan.data.episodes import load_minari
from diffplan.envs.specs import reference_scores


def dataset_rows() -> list[dict[str, object]]:
    """One row per local dataset: id, env, episodes, steps, mean return, normalized score."""
    import minari

    rows = []
    for dataset_id in sorted(minari.list_local_datasets()):
        eps = load_minari(dataset_id)
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
    """``dataset_rows`` as an aligned text table."""
    rows = dataset_rows()
    if not rows:
        return "no local Minari datasets (MINARI_DATASETS_PATH or ~/.minari/datasets)"
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
    return "\n".join("  ".join(str(c[i]).ljust(widths[i]) for i in range(len(header))) for c in cells)
