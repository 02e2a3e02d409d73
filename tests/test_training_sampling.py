"""Anchor and proposal matching, balanced sampling and the DensePose ROI choice (detectron2's rules)."""
from __future__ import annotations

import torch

from densepose_torch.training.sampling import (
    SampledROIs,
    label_anchors,
    match,
    sample_rois,
    select_densepose_rois,
    subsample,
)


def test_match_labels_by_half_open_iou_intervals_and_low_quality_matches():
    iou = torch.tensor([[0.1, 0.3, 0.69, 0.7, 0.2], [0.05, 0.1, 0.2, 0.1, 0.25]])
    matches, labels = match(iou, (0.3, 0.7), (0, -1, 1), allow_low_quality=False)
    assert labels.tolist() == [0, -1, -1, 1, 0] and matches.tolist() == [0, 0, 0, 0, 1]
    # Ground truth 1's best column (IoU 0.25, column 4) becomes positive anyway.
    _, labels = match(iou, (0.3, 0.7), (0, -1, 1), allow_low_quality=True)
    assert labels.tolist() == [0, -1, -1, 1, 1]
    matches, labels = match(torch.zeros(0, 3), (0.5,), (0, 1), allow_low_quality=False)
    assert labels.tolist() == [0, 0, 0] and matches.tolist() == [0, 0, 0]


def test_subsample_caps_positives_and_fills_with_negatives():
    labels = torch.tensor([1] * 10 + [0] * 100 + [-1] * 5)
    positive, negative = subsample(labels, 16, 0.25, background=0, generator=torch.Generator().manual_seed(0))
    assert len(positive) == 4 and len(negative) == 12
    assert (labels[positive] == 1).all() and (labels[negative] == 0).all()
    assert len(set(positive.tolist())) == 4 and len(set(negative.tolist())) == 12
    few = torch.tensor([1, 0, 0, -1])
    positive, negative = subsample(few, 16, 0.5, background=0, generator=torch.Generator().manual_seed(0))
    assert positive.tolist() == [0] and sorted(negative.tolist()) == [1, 2]


def test_label_anchors_samples_at_most_the_batch_size():
    grid = torch.stack(torch.meshgrid(torch.arange(0, 200, 4.0), torch.arange(0, 200, 4.0), indexing="ij"), -1).reshape(-1, 2)
    anchors = torch.cat([grid, grid + 32], dim=1)
    gt = torch.tensor([[50.0, 50.0, 90.0, 100.0]])
    labels, matches = label_anchors(anchors, gt, (0.3, 0.7), 256, 0.5, torch.Generator().manual_seed(0))
    assert (labels >= 0).sum() == 256
    assert 0 < (labels == 1).sum() <= 128
    assert (matches == 0).all()


def test_sample_rois_appends_ground_truth_and_keeps_a_quarter_foreground():
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 50 + [[100.0, 100.0, 140.0, 150.0]] * 3)
    gt = torch.tensor([[100.0, 100.0, 140.0, 150.0], [0.0, 0.0, 200.0, 200.0]])
    rois = sample_rois(proposals, gt, 0.5, 16, 0.25, torch.Generator().manual_seed(0))
    assert len(rois.boxes) == 16
    foreground = rois.classes == 0
    assert foreground.sum() == 4  # 3 proposals + 2 GT boxes are foreground; a quarter of 16 kept
    assert (rois.iou[foreground] >= 0.5).all() and (rois.iou[~foreground] < 0.5).all()
    assert foreground[:4].all()  # foreground first
    none = sample_rois(proposals, torch.zeros(0, 4), 0.5, 16, 0.25, torch.Generator().manual_seed(0))
    assert (none.classes == 1).all() and len(none.boxes) == 16


def test_densepose_rois_need_foreground_iou_above_0_7_and_annotations():
    rois = SampledROIs(
        boxes=torch.zeros(6, 4),
        classes=torch.tensor([0, 0, 0, 0, 1, 0]),
        matched=torch.tensor([0, 0, 1, 0, 0, 0]),
        iou=torch.tensor([0.9, 0.7, 0.95, 0.71, 0.99, 1.0]),
    )
    has_densepose = torch.tensor([True, False])
    chosen = select_densepose_rois(rois, has_densepose, 0.7, None, torch.Generator())
    assert chosen.tolist() == [0, 3, 5]  # 0.7 is not > 0.7; ROI 2's person has no points; ROI 4 is background
    limited = select_densepose_rois(rois, has_densepose, 0.7, 2, torch.Generator().manual_seed(0))
    assert len(limited) == 2 and set(limited.tolist()) <= {0, 3, 5} and limited.tolist() == sorted(limited.tolist())
