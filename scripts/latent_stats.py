"""Write a model folder's latent ``scale``/``shift`` (``1/std`` and ``mean`` per channel) into its config.json.

    python scripts/latent_stats.py wfvae_cli/assets/wfvae-tiny --recipe recipes/wfvae-tiny.toml --clips 64

Why: ``LatentNormalizer`` (and diffusion trainers) standardise latents with these; after a fine-tune the
latent distribution moves, so the numbers inherited from the initial weights would be wrong. The clips are
the recipe's training clips (slots 0..N-1), so the statistics describe the data the model was trained on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from wfvae_cli.model import load_model
from wfvae_cli.train.data import SyntheticClips
from wfvae_cli.train.recipe import load_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--clips", type=int, default=64)
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    syn = recipe.data.synthetic
    if syn is None:
        raise SystemExit("the recipe has no [data.synthetic] section")
    data = SyntheticClips.from_section(syn, recipe.data.frames, recipe.data.size, recipe.seed)
    model = load_model(args.model_dir).eval()
    latents = []
    with torch.no_grad():
        for i in range(args.clips):
            latents.append(model.encode(data[i][None]).mode().transpose(0, 1).flatten(1))  # (C, N)
    z = torch.cat(latents, dim=1).double()
    mean, std = z.mean(dim=1), z.std(dim=1)
    path = Path(args.model_dir) / "config.json"
    config = json.loads(path.read_text())
    config["scale"] = [round(float(1 / s), 5) for s in std]
    config["shift"] = [round(float(m), 5) for m in mean]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    print(f"{path}: scale {config['scale']}\n shift {config['shift']}")


if __name__ == "__main__":
    main()
