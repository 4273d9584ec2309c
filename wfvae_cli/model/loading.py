"""``load_model(spec)``: one place that turns a preset, directory, file or hub id into a WF-VAE.

Accepted specs, in the order they are tried:

1. a preset name: ``wfvae-tiny`` loads the trained weights shipped in the package; the architecture
   presets (``wfvae-s``, ``wfvae-l-8ch``, ``wfvae-s-8chn`` ...) have no trained weights and are refused
   unless ``random_weights=True`` (CLI ``--random-weights``) asks for a seeded random init, so two calls give
   the same weights (speed benchmarks and tests need no download). Like diffusers' ``from_config``, random
   weights are never the silent default: latents of an untrained VAE look plausible and are worthless;
2. a directory: ``config.json`` + ``diffusion_pytorch_model.safetensors`` (the HF release), or any
   ``*.safetensors`` / ``*.ckpt`` / ``*.pt`` / ``*.bin`` in it;
3. a single weights file, with ``config.json`` beside it or the config inferred from tensor shapes;
4. a hub id (``chestnutlzj/WF-VAE-L-16Chn``): looked up in the local Hugging Face cache, downloaded
   only when ``huggingface_hub`` is installed and the machine is online.

Training checkpoints are unwrapped (``state_dict``/``gen_model``, ``ema_state_dict``, ``model``) and
key prefixes such as ``module.`` are removed. Pickles are read with ``torch.load(weights_only=True)``
only: a checkpoint can never run code on load.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from wfvae_cli.errors import CheckpointError, OfflineError
from wfvae_cli.model.autoencoder import CONFIG_NAME, WEIGHTS_NAME, WFVAE
from wfvae_cli.model.config import BUNDLED_PRESETS, WFVAEConfig, bundled_dir, preset_config, preset_names
from wfvae_cli.model.wavelets import HAAR2D_NAMES, HAAR3D_NAMES

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_PREFIXES = ("module.", "_orig_mod.", "vae.", "autoencoder.", "model.", "first_stage_model.")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PRESET_SEED = 0


# ---------------------------------------------------------------------------------------------- public
def load_model(
    spec: str | os.PathLike[str],
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    ema: bool = True,
    seed: int = PRESET_SEED,
    random_weights: bool = False,
) -> WFVAE:
    """Build a WF-VAE from ``spec`` (see the module docstring), in eval mode on ``device``/``dtype``.

    ``ema=True`` prefers the EMA weights of a training checkpoint when it holds them.
    ``random_weights=True`` builds a preset's architecture with seeded random weights (``seed``); without
    it a preset that has no trained weights is a :class:`CheckpointError`. The returned model's
    ``random_weights`` attribute says which one it is (recorded in stores and shown by ``wfvae info``).
    """
    spec_str = os.fspath(spec)
    path = Path(spec_str).expanduser()
    is_preset = not path.exists() and _is_preset(spec_str)
    if random_weights and not is_preset:
        raise CheckpointError(
            f"{spec_str}: random weights are built from a preset's architecture (e.g. wfvae-l), not from a "
            "checkpoint; drop --random-weights (random_weights=True) to load these weights"
        )
    if random_weights:
        model = _build_preset(spec_str, seed)
    elif is_preset and spec_str.lower() in BUNDLED_PRESETS:  # trained weights shipped in the package
        model = _load_directory(bundled_dir(spec_str), ema, source=f"bundled:{spec_str.lower()}")
    elif is_preset:
        raise CheckpointError(
            f"{spec_str}: this preset has no trained weights; pass a checkpoint (a directory with config.json + "
            "diffusion_pytorch_model.safetensors, a weights file, or a hub id in the local cache), use the "
            "trained wfvae-tiny, or add --random-weights (API: random_weights=True) for a random init"
        )
    elif path.is_dir():
        model = _load_directory(path, ema)
    elif path.is_file():
        model = _load_file(path, ema)
    elif _HUB_ID.match(spec_str) and not spec_str.startswith((".", "/")):
        model = _load_directory(_resolve_hub(spec_str), ema, source=f"hub:{spec_str}")
    else:
        raise CheckpointError(
            f"{spec_str}: no such file, directory or preset; presets are {', '.join(preset_names()[:4])}, ... "
            "(see `wfvae info --help`), or pass a checkpoint path"
        )
    model.random_weights = random_weights
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


def is_weightless_preset(spec: str | os.PathLike[str]) -> bool:
    """True for a preset name that is only an architecture (no trained weights ship with it)."""
    spec_str = os.fspath(spec)
    return (
        not Path(spec_str).expanduser().exists()
        and _is_preset(spec_str)
        and spec_str.lower() not in BUNDLED_PRESETS
    )


def load_state_dict_file(path: str | Path, ema: bool = True) -> dict[str, torch.Tensor]:
    """Read a weights file into a flat ``{official key: tensor}`` dict (wrappers and prefixes removed)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Mapping = load_file(str(path), device="cpu")
        else:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file not found") from exc
    except PermissionError as exc:
        raise CheckpointError(f"{path}: permission denied (check the file's read permission)") from exc
    except Exception as exc:  # corrupted file, not a checkpoint, or a pickle with code in it
        raise CheckpointError(
            f"{path}: cannot read weights ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "expected a safetensors file or a torch checkpoint of plain tensors"
        ) from exc
    return _strip_prefixes(_unwrap(raw, ema, path), path)


def infer_config(state_dict: Mapping[str, torch.Tensor]) -> WFVAEConfig:
    """Recover a config from tensor shapes (``t_interpolation`` cannot be seen: the release's trilinear)."""
    keys = set(state_dict)

    def count(prefix: str) -> int:
        return len({k[len(prefix) :].split(".")[0] for k in keys if k.startswith(prefix)})

    try:
        c = state_dict["encoder.down1.0.weight"].shape[0]
        e = state_dict["encoder.connect_l1.weight"].shape[0]
        z = state_dict["encoder.conv_out.conv.weight"].shape[0] // 2
        d = state_dict["decoder.mid.2.conv1.conv.weight"].shape[0] - 4 * c if "decoder.mid.2.conv1.conv.weight" in keys else (
            state_dict["decoder.mid.1.conv1.conv.weight"].shape[0] - 4 * c
        )
    except KeyError as exc:
        raise CheckpointError(f"cannot infer a WF-VAE config: key {exc} is missing; put config.json next to the weights") from exc
    use_attention = "encoder.mid.1.q.conv.weight" in keys
    layernorm = "encoder.norm_out.norm.weight" in keys
    n_enc = count("encoder.down1.") - 2
    n_dec = count("decoder.up1.") - 2
    eight = state_dict.get(f"encoder.down1.{n_enc + 1}.conv.conv.weight") is not None
    r = count("decoder.connect_l1.") - 1
    return WFVAEConfig(
        latent_dim=z,
        base_channels=c,
        encoder_num_resblocks=n_enc,
        encoder_energy_flow_hidden_size=e,
        decoder_num_resblocks=n_dec,
        decoder_energy_flow_hidden_size=d,
        use_attention=use_attention,
        norm_type="layernorm" if layernorm else "groupnorm",
        t_interpolation="trilinear",
        connect_res_layer_num=r,
        l1_dowmsample_block="Spatial2xTime2x3DDownsample" if eight else "Downsample",
        l1_downsample_wavelet="HaarWaveletTransform3D" if eight else "HaarWaveletTransform2D",
        l1_upsample_block="Spatial2xTime2x3DUpsample" if eight else "Upsample",
        l1_upsample_wavelet="InverseHaarWaveletTransform3D" if eight else "InverseHaarWaveletTransform2D",
        scale=[0.18215] * 4,
        shift=[0.0] * 4,
    )


# ---------------------------------------------------------------------------------------------- builders
def _is_preset(spec: str) -> bool:
    try:
        preset_config(spec)
    except KeyError:
        return False
    return True


def _build_preset(name: str, seed: int) -> WFVAE:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WFVAE(preset_config(name))
    model.source = f"preset:{name.lower()} (random init, seed {seed})"
    return model


def _load_directory(directory: Path, ema: bool, source: str | None = None) -> WFVAE:
    weights = _pick_weights(directory)
    config_path = directory / CONFIG_NAME
    config = WFVAEConfig.from_json(config_path) if config_path.is_file() else None
    return _instantiate(weights, config, ema, source)


def _load_file(path: Path, ema: bool) -> WFVAE:
    if path.suffix == ".json":
        raise CheckpointError(f"{path}: this is a config, not weights; pass its directory instead")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise CheckpointError(f"{path}: unknown weights format; expected one of {', '.join(WEIGHT_SUFFIXES)}")
    config_path = path.with_name(CONFIG_NAME)
    config = WFVAEConfig.from_json(config_path) if config_path.is_file() else None
    return _instantiate(path, config, ema, None)


def _pick_weights(directory: Path) -> Path:
    """The official file if present, else the single / newest-step weights file in ``directory``."""
    official = directory / WEIGHTS_NAME
    if official.is_file():
        return official
    found = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    safetensors = [p for p in found if p.suffix == ".safetensors"]
    candidates = safetensors or found
    if not candidates:
        raise CheckpointError(
            f"{directory}: no weights found (expected {WEIGHTS_NAME} or a *.safetensors/*.ckpt/*.pt/*.bin file)"
        )

    def step(p: Path) -> tuple[int, str]:
        numbers = re.findall(r"\d+", p.stem)
        return (int(numbers[-1]) if numbers else -1, p.name)

    return max(candidates, key=step)


def _instantiate(weights: Path, config: WFVAEConfig | None, ema: bool, source: str | None) -> WFVAE:
    state = load_state_dict_file(weights, ema)
    inferred = config is None
    if config is None:
        config = infer_config(state)
    with torch.device("meta"):
        model = WFVAE(config)
    model.to_empty(device="cpu")
    model.reset_wavelet_constants()
    _load_into(model, state, weights)
    model.source = source or str(weights)
    if inferred:
        model.source += " (config inferred from shapes)"
    return model


def _is_wavelet_constant(key: str) -> bool:
    """Haar filters: constants in every official checkpoint, absent from EMA state dicts."""
    leaf = key.split(".")[-1]
    if key.endswith(".conv.weight") and "wavelet_transform" in key:
        return key.split(".")[-3].removesuffix("_conv") in HAAR3D_NAMES
    return "wavelet_transform" in key and leaf in (*HAAR3D_NAMES, *HAAR2D_NAMES)


def _load_into(model: WFVAE, state: Mapping[str, torch.Tensor], source: Path) -> None:
    """Strict load: every non-constant key present with the right shape, nothing unexpected."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not _is_wavelet_constant(k)]
    unexpected = [k for k in state if k not in own]
    conflicts = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or conflicts:
        parts = []
        if conflicts:
            parts.append(f"{len(conflicts)} shape conflict(s), first: {conflicts[0]}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), first: {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), first: {', '.join(unexpected[:3])}")
        raise CheckpointError(
            f"{source}: weights do not match the config ({'; '.join(parts)}); check that config.json belongs to "
            "these weights"
        )
    with torch.no_grad():
        for k, t in own.items():
            if k in state:
                t.copy_(state[k])


def _unwrap(raw: Mapping, ema: bool, path: Path) -> Mapping[str, torch.Tensor]:
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(raw).__name__}")
    if ema and isinstance(raw.get("ema_state_dict"), Mapping) and raw["ema_state_dict"]:
        return raw["ema_state_dict"]
    for wrapper in ("state_dict", "model", "module", "vae"):
        inner = raw.get(wrapper)
        if isinstance(inner, Mapping) and inner:
            if isinstance(inner.get("gen_model"), Mapping):
                return inner["gen_model"]
            return _unwrap(inner, ema, path) if not _looks_flat(inner) else inner
    if not _looks_flat(raw):
        raise CheckpointError(
            f"{path}: no weights found (keys: {', '.join(list(raw)[:6])}); expected a state dict or a training "
            "checkpoint with state_dict / ema_state_dict"
        )
    return raw


def _looks_flat(d: Mapping) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def _strip_prefixes(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out = dict(state)
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if out and all(k.startswith(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                changed = True
    # keep only the VAE: training checkpoints may carry e.g. a discriminator next to it
    vae = {k: v for k, v in out.items() if k.startswith(("encoder.", "decoder."))}
    if not vae:
        raise CheckpointError(f"{path}: no encoder.*/decoder.* weights found (first keys: {', '.join(list(out)[:3])})")
    return vae


# ---------------------------------------------------------------------------------------------- hub
def _hub_cache_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    return dirs


def _resolve_hub(repo_id: str) -> Path:
    """A snapshot directory of ``repo_id`` from the local cache, or a fresh download when possible."""
    folder = "models--" + repo_id.replace("/", "--")
    for cache in _hub_cache_dirs():
        snapshots = cache / folder / "snapshots"
        if snapshots.is_dir():
            ref = cache / folder / "refs" / "main"
            if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
                return snapshots / ref.read_text().strip()
            found = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime)
            if found:
                return found[-1]
    how = (
        f"download it on a connected machine (`huggingface-cli download {repo_id} --local-dir DIR`) and pass DIR "
        "as the model path"
    )
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise OfflineError(f"{repo_id}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {how}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise OfflineError(
            f"{repo_id}: not in the local Hugging Face cache and huggingface_hub is not installed; {how}"
        ) from exc
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as exc:
        raise OfflineError(f"{repo_id}: download failed ({type(exc).__name__}); {how}") from exc
