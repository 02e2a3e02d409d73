"""Copy a trained default model into the package, as the file `load_model()` loads by default.

    densepose train configs/default_model.yaml
    python scripts/export_default_model.py out/default_model/model_final.pth

Weights are stored as float16 (half the bytes; biases and batch-norm statistics stay float32 and
loading turns everything back into float32), so the package stays small. Measure the exported
file, not the training output: `densepose train configs/default_model.yaml --eval-only --model
src/densepose_torch/assets/default_model.pth`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from densepose_torch import DensePoseError, load_model
from densepose_torch.checkpoint import DEFAULT_MODEL_FILE, save_checkpoint

ASSET = Path(__file__).resolve().parents[1] / "src" / "densepose_torch" / "assets" / DEFAULT_MODEL_FILE
MAX_BYTES = 20 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint written by `densepose train` (model_final.pth)")
    parser.add_argument("--output", default=str(ASSET), help=f"where to write it (default: {ASSET})")
    args = parser.parse_args()
    try:
        model = load_model(args.checkpoint)
    except DensePoseError as error:
        raise SystemExit(f"export_default_model: error: {error}") from None
    model.name = "default"
    path = save_checkpoint(model, args.output, half=True)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{path} is {size / 2**20:.1f} MiB, over the 20 MiB the package allows")
    print(f"wrote {path} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
