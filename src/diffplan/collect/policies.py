"""Behaviour policies as files: stable-baselines3 SAC actors saved as safetensors, shipped or local."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from diffplan.io import read_json


def require_sb3() -> Any:
    """The stable_baselines3 module (ImportError naming the extra to install when it is missing)."""
    try:
        import stable_baselines3
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "training behaviour policies needs stable-baselines3: pip install 'diffplan[collect]'"
        ) from err
    return stable_baselines3


def policies_dir() -> Path:
    """Folder of the behaviour policies shipped inside the package."""
    from importlib import resources

    return Path(str(resources.files("diffplan"))) / "policies"


def resolve_policy(*, env_id: str, policy: str) -> Path:
    """A shipped policy name (``medium``/``expert``) for ``env_id``, or a path to a policy file.

    Raises:
        FileNotFoundError: no shipped policy of that name for the env, and no such file.
    """
    path = Path(policy)
    if path.is_file():
        return path
    shipped = policies_dir() / env_id / f"{policy}.safetensors"
    if shipped.is_file():
        return shipped
    registry_path = policies_dir() / "policies.json"
    known = read_json(registry_path) if registry_path.exists() else {}
    raise FileNotFoundError(
        f"no policy file at {path} and no shipped {policy!r} policy for {env_id}; shipped: "
        f"{ {k: sorted(v) for k, v in known.items()} or 'none' }"
    )


def load_sac_actor(*, path: str | Path, env: Any, deterministic: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A SAC actor saved as safetensors (by ``behavior train``) as ``obs -> action``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the weights do not fit this environment's spaces.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    sb3 = require_sb3()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a policy file (.safetensors) at {path}, found nothing")
    try:
        with safe_open(str(path), "pt") as f:
            recorded = (f.metadata() or {}).get("env_id")
    except Exception as err:
        raise ValueError(f"{path} is not a readable safetensors policy file ({err})") from err
    if recorded is not None and recorded != env.spec.id:
        raise ValueError(f"policy {path} was trained for {recorded}, not {env.spec.id}")
    model = sb3.SAC("MlpPolicy", env, verbose=0, buffer_size=1, learning_starts=0)
    try:
        model.policy.actor.load_state_dict(load_file(str(path)))
    except Exception as err:
        raise ValueError(f"policy {path} does not fit {env.spec.id}: {type(err).__name__}: {err}") from err
    return lambda obs: model.predict(obs, deterministic=deterministic)[0]
