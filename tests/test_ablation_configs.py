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
    names = ("distillation", "cascade", "fully_convolutional", "fully_convolutional_crops")
    rows = {name: load_train_config(ABLATION / f"{name}.yaml") for name in names}
    # Distillation also scales the U/V weight down: those losses are sums over points, and the
    # teacher adds several points per sparse one, so the same weight would multiply their pull.
    assert _differences(region, rows["distillation"].to_dict()) == {"output", "distillation", "loss.point_weight"}
    assert rows["distillation"].loss.point_weight < region["loss"]["point_weight"]
    assert _differences(rows["distillation"].to_dict(), rows["cascade"].to_dict()) == {"output", "model.cascade_keypoints"}
    assert rows["cascade"].distillation == rows["distillation"].distillation  # one teacher, one set of dense labels
    teacher = rows["distillation"].distillation.teacher
    crops = rows["fully_convolutional_crops"].distillation
    assert crops.teacher == teacher.__class__(**{**teacher.__dict__, "segmentation": True})
    # The whole-image row: the region-based row's widths, images per iteration, iterations and
    # image size, with no RoI pooling in the DensePose branch.
    whole = rows["fully_convolutional"].distillation.teacher
    model = region["model"]
    assert whole.whole_image and whole.segmentation and not teacher.whole_image
    assert (whole.base_channels, whole.fpn_channels, whole.head_channels, whole.head_convs) == (
        model["base_channels"], model["fpn_channels"], model["head_channels"], model["head_convs"])
    assert (whole.crops_per_batch, whole.max_iter) == (region["solver"]["ims_per_batch"], region["solver"]["max_iter"])
    assert whole.crop_size == region["data"]["train"][0]["synthetic"]["size"]
    outputs = {rows[name].distillation.output for name in names}
    assert len(outputs) == 3  # the two evaluated networks do not share a folder with the distillation teacher
