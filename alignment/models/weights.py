"""Reading checkpoint files safely and explaining hub failures."""

from __future__ import annotations

from pathlib import Path

import torch

from alignment.models.base import ModelError, ModelSpec


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (.safetensors, or a torch file read with ``weights_only``).

    A Lightning/trainer checkpoint's ``state_dict`` (or ``model``) entry is unwrapped and a
    ``module.`` prefix left by DataParallel is dropped.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"checkpoint {path} holds no state dict of tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def hub_error(spec: ModelSpec, local_example: str, err: Exception) -> ModelError:
    """One clear line for a hub weight that could not be fetched (offline, unknown id, ...)."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelError(
        f"cannot load {spec.raw!r} from the model hub ({reason[:160]}). If this machine is offline, "
        f"download the files on a machine that is online and pass a local path: {local_example}"
    )
