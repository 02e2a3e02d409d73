"""The ablation table's configs (configs/ablation/): each row is written as its change to the row
it builds on (`base:`), region.yaml at the root; these are the relations between rows that
inheritance alone does not give."""
from __future__ import annotations

from pathlib import Path

from densepose_torch.training.config import load_train_config

ABLATION = Path(__file__).resolve().parents[1] / "configs" / "ablation"


def _rows() -> dict:
    names = ("region", "distillation", "cascade", "fully_convolutional", "fully_convolutional_crops")
    return {name: load_train_config(ABLATION / f"{name}.yaml") for name in names}


def test_distillation_scales_the_uv_weight_and_the_cascade_reuses_its_teacher():
    rows = _rows()
    # U/V losses are sums over points and the teacher adds several points per sparse one, so the
    # region-based row's weight would multiply their pull.
    assert rows["distillation"].loss.point_weight < rows["region"].loss.point_weight
    assert rows["cascade"].distillation == rows["distillation"].distillation  # one teacher, one set of dense labels
    assert rows["cascade"].model.cascade_keypoints and not rows["distillation"].model.cascade_keypoints


def test_the_fully_convolutional_rows_match_the_region_based_row():
    rows = _rows()
    region, teacher = rows["region"], rows["distillation"].distillation.teacher
    # The whole-image row: the region-based row's widths, images per iteration, iterations and
    # image size, with no RoI pooling in the DensePose branch.
    whole = rows["fully_convolutional"].distillation.teacher
    assert whole.whole_image and whole.segmentation and not teacher.whole_image
    assert (whole.base_channels, whole.fpn_channels, whole.head_channels, whole.head_convs) == (
        region.model.base_channels, region.model.fpn_channels, region.model.head_channels, region.model.head_convs)
    assert (whole.crops_per_batch, whole.max_iter) == (region.solver.ims_per_batch, region.solver.max_iter)
    assert whole.crop_size == region.data.train[0].synthetic.size
    assert rows["fully_convolutional_crops"].distillation.teacher.segmentation and not teacher.segmentation
    outputs = {rows[name].distillation.output for name in ("distillation", "fully_convolutional", "fully_convolutional_crops")}
    assert len(outputs) == 3  # the two evaluated networks do not share a folder with the distillation teacher
