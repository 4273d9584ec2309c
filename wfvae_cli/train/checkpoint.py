"""Training checkpoints (save / load / export) in a safe, official-compatible layout.

Why this layout: the official ``checkpoint-{step}.ckpt`` keys are kept (``state_dict.gen_model``,
``state_dict.dics_model`` (sic), ``ema_state_dict``, ``optimizer_state``, ``current_step``), so the official
loader, :func:`wfvae_cli.model.load_model` and ``wfvae info`` read our checkpoints directly (EMA by default);
everything else needed to *continue* a run exactly is added beside them: schedulers, grad scaler, the RNG
states of torch/CUDA/numpy/python, the data sampler position, and the resolved recipe.

Why safe: the file holds only tensors and plain Python containers of str/int/float/bool/None (numpy RNG
state is converted to a tensor), so it loads with ``torch.load(weights_only=True)`` and can never execute
code. Writes go to a temporary file that is renamed into place, so a crash mid-save never leaves a
truncated "latest" checkpoint.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wfvae_cli.errors import CheckpointError, WfvaeError, one_line

FORMAT = "wfvae-train/1"
CKPT_GLOB = "step_*.pt"
_STEP = re.compile(r"step_(\d+)\.pt$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Training checkpoints in ``directory``, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.glob(CKPT_GLOB) if (m := _STEP.search(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def prune_checkpoints(directory: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints (``keep`` = 0 keeps all); returns the deleted ones."""
    found = list_checkpoints(directory)
    if keep <= 0 or len(found) <= keep:
        return []
    doomed = found[:-keep]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


# ------------------------------------------------------------------------------------------------ RNG
def capture_rng() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy (legacy global) and python RNG states, as safe types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------ I/O
def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (tensors and plain containers only) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found (training checkpoints are output_dir/checkpoints/step_*.pt)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: cannot read the checkpoint ({one_line(exc, limit=160)})"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a `wfvae train` checkpoint (format {ckpt.get('format') if isinstance(ckpt, dict) else '?'}); "
            "to start from other weights use model.init instead of --resume"
        )
    return ckpt


def export_checkpoint(
    checkpoint: str | Path, out_dir: str | Path, *, ema: bool = True, dtype: torch.dtype | None = None
) -> Path:
    """Write the official HF layout (``config.json`` + ``diffusion_pytorch_model.safetensors``) from a
    training checkpoint; EMA weights by default (what the paper evaluates and releases).

    ``dtype`` (e.g. float16) stores the trainable weights in that precision to halve the file; the fixed Haar
    filters stay float32 (0.3536 is not exact in float16, and the loader copies stored constants).
    """
    from safetensors.torch import save_file

    from wfvae_cli.model import WFVAE, WFVAEConfig
    from wfvae_cli.model.autoencoder import CONFIG_NAME, WEIGHTS_NAME
    from wfvae_cli.model.loading import _is_wavelet_constant

    ckpt = load_checkpoint(checkpoint)
    config = WFVAEConfig.from_dict(ckpt["config"], source=f"{checkpoint}:config")
    if ema and not ckpt.get("ema_state_dict"):
        raise WfvaeError(f"{checkpoint}: the run had no EMA (ema.enabled = false); export with --raw")
    state = ckpt["ema_state_dict"] if ema else ckpt["state_dict"]["gen_model"]
    model = WFVAE(config)
    model.load_state_dict(state, strict=True)  # a full state dict: EMA params overlaid on the raw model
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.to_json(out / CONFIG_NAME)
    tensors = {}
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu").contiguous()
        if dtype is not None and t.is_floating_point() and not _is_wavelet_constant(k):
            t = t.to(dtype)
        tensors[k] = t
    meta = {"format": "pt", "step": str(ckpt.get("current_step", "")), "weights": "ema" if ema else "raw"}
    save_file(tensors, str(out / WEIGHTS_NAME), metadata=meta)
    os.chmod(out / WEIGHTS_NAME, 0o644)  # safetensors creates 0600; a shared/packaged model must be readable
    return out
