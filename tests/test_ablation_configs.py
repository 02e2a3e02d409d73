"""The ablation table's configs (configs/ablation/): each row changes one thing from the
region-based row, so differences in the table come from that thing alone."""
from __future__ import annotations

from pathlib import Path

from densepose_torch.training.config import load_train_config

ABLATION = Path(__file__).resolve().parents[1] / "configs" / "ablation"


def _differences(a: dict, b: dict, prefix: str = "") -> set[str]:
    keys = set(a) | set(b)
    out = set()
    for key in keys:
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            out |= _differences(left, right, f"{prefix}{key}.")
        elif left != right:
            out.add(prefix + key)
    return out


def test_each_row_changes_one_thing_from_the_region_based_row():
    region = load_train_config(ABLATION / "region.yaml").to_dict()
    rows = {name: load_train_config(ABLATION / f"{name}.yaml") for name in ("distillation", "cascade", "fully_convolutional")}
    # Distillation also scales the U/V weight down: those losses are sums over points, and the
    # teacher adds several points per sparse one, so the same weight would multiply their pull.
    assert _differences(region, rows["distillation"].to_dict()) == {"output", "distillation", "loss.point_weight"}
    assert rows["distillation"].loss.point_weight < region["loss"]["point_weight"]
    assert _differences(rows["distillation"].to_dict(), rows["cascade"].to_dict()) == {"output", "model.cascade_keypoints"}
    assert rows["cascade"].distillation == rows["distillation"].distillation  # one teacher, one set of dense labels
    fcn = rows["fully_convolutional"].distillation
    assert fcn.teacher.segmentation and not rows["distillation"].distillation.teacher.segmentation
    assert fcn.output != rows["distillation"].distillation.output
    assert fcn.teacher == rows["distillation"].distillation.teacher.__class__(
        **{**rows["distillation"].distillation.teacher.__dict__, "segmentation": True})
