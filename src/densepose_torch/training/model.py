"""The training forward pass of DensePose R-CNN: one batch of samples in, a dict of losses out.

It drives the inference model's own modules (backbone, RPN head, box head, DensePose decoder,
head and predictor), so the trained weights are the inference model's weights; what differs from
inference is in the middle: anchors and proposals are matched to the ground truth and sampled
(as detectron2's ROI heads do), proposals come from the RPN's training top-k, and pooling is differentiable.
`TrainingModel` is the module DDP wraps.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.mapper import TrainingSample
from ..definitions import NUM_KEYPOINTS
from ..modeling import DensePoseRCNN
from .config import LossConfig
from .losses import (
    box_losses,
    densepose_losses,
    keypoint_loss,
    mask_loss,
    pack_densepose_targets,
    rpn_losses,
)
from .pooling import multilevel_roi_align_trainable
from .sampling import SampledROIs, label_anchors, sample_rois, select_densepose_rois


class TrainingModel(nn.Module):
    def __init__(self, model: DensePoseRCNN, loss: LossConfig):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, samples: list[TrainingSample]) -> dict[str, torch.Tensor]:
        model = self.model
        device = model.device
        images = [torch.from_numpy(sample.image).to(device).float() for sample in samples]
        batch, sizes = model.batch_images(images)
        # Channels-last convolutions train about a third faster on CPUs (oneDNN) and GPUs.
        features = model.backbone(batch.contiguous(memory_format=torch.channels_last))
        gt_boxes = [torch.from_numpy(sample.boxes).to(device) for sample in samples]
        generators = [torch.Generator().manual_seed(sample.seed) for sample in samples]

        losses, proposals = self.rpn(features, sizes, gt_boxes, generators)
        loss = self.loss
        rois = [
            sample_rois(p, g, loss.roi_iou_threshold, loss.roi_batch_size_per_image, loss.roi_positive_fraction, gen)
            for p, g, gen in zip(proposals, gt_boxes, generators)
        ]
        losses.update(self.box_head(features, rois, gt_boxes))
        losses.update(self.densepose(features, rois, samples, gt_boxes, generators))
        return losses

    def rpn(
        self, features: list[torch.Tensor], sizes: list[tuple[int, int]], gt_boxes: list[torch.Tensor], generators: list[torch.Generator]
    ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """RPN losses, and the proposals (best first, no gradient) that train the ROI heads."""
        rpn = self.model.proposal_generator
        loss = self.loss
        logits, deltas = rpn.rpn_head(features)
        anchors = rpn.anchors(features)
        all_anchors = torch.cat(anchors)
        labels, targets = [], []
        for boxes, generator in zip(gt_boxes, generators):
            sampled, matches = label_anchors(
                all_anchors, boxes, loss.rpn_iou_thresholds, loss.rpn_batch_size_per_image, loss.rpn_positive_fraction, generator
            )
            positive = sampled == 1
            labels.append(sampled)
            targets.append(rpn.box_coder.encode(all_anchors[positive], boxes[matches[positive]]))
        losses = rpn_losses(
            torch.cat(logits, dim=1).float(), torch.cat(deltas, dim=1).float(), torch.stack(labels), torch.cat(targets), loss.rpn_batch_size_per_image
        )
        with torch.no_grad():
            found = rpn.find_top_proposals(
                [x.detach().float() for x in logits], [x.detach().float() for x in deltas], anchors, sizes,
                loss.rpn_pre_nms_topk_train, loss.rpn_post_nms_topk_train,
            )
        return losses, [boxes for boxes, _ in found]

    def box_head(self, features: list[torch.Tensor], rois: list[SampledROIs], gt_boxes: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        heads = self.model.roi_heads
        pooled = heads.pool_box_features(features, [r.boxes for r in rois], pool=multilevel_roi_align_trainable)
        class_logits, deltas = heads.box_predictor(heads.box_head(pooled))
        targets = []
        for r, boxes in zip(rois, gt_boxes):
            foreground = r.classes == 0
            targets.append(heads.box_coder.encode(r.boxes[foreground], boxes[r.matched[foreground]]))
        classes = torch.cat([r.classes for r in rois])
        return box_losses(class_logits.float(), deltas.float(), classes, torch.cat(targets))

    def densepose(
        self, features: list[torch.Tensor], rois: list[SampledROIs], samples: list[TrainingSample], gt_boxes: list[torch.Tensor],
        generators: list[torch.Generator],
    ) -> dict[str, torch.Tensor]:
        """DensePose losses on the chosen foreground proposals, pooled with the proposal boxes.
        The head always runs (on zero ROIs if need be) so every parameter joins the graph."""
        heads = self.model.roi_heads
        config = self.model.config
        loss = self.loss
        boxes, matched_gt, instances, keypoints = [], [], [], []
        for r, sample, image_gt, generator in zip(rois, samples, gt_boxes, generators):
            has_densepose = torch.tensor([d is not None for d in sample.densepose], dtype=torch.bool, device=r.boxes.device)
            chosen = select_densepose_rois(r, has_densepose, loss.densepose_iou_threshold, loss.densepose_rois_per_image, generator)
            boxes.append(r.boxes[chosen])
            matched_gt.append(image_gt[r.matched[chosen]])
            instances += [sample.densepose[int(g)] for g in r.matched[chosen].tolist()]
            if config.cascade_keypoints:
                if sample.keypoints is None:  # a sample made without keypoints: none visible
                    person_keypoints = torch.zeros((len(sample.densepose), NUM_KEYPOINTS, 3), device=r.boxes.device)
                else:
                    person_keypoints = torch.from_numpy(sample.keypoints).to(r.boxes.device)
                keypoints.append(person_keypoints[r.matched[chosen]])
        pooled = heads.pool_densepose_features(features, boxes, pool=multilevel_roi_align_trainable)
        targets = pack_densepose_targets(torch.cat(boxes), torch.cat(matched_gt), instances) if instances else None
        if targets is not None and config.cascade_keypoints:
            targets.keypoints = torch.cat(keypoints).float()
        losses = {}
        # Every stage is supervised (a cascade has two); stage one keeps the plain names, stage two adds "_stage2".
        for suffix, stage in zip(("", "_stage2"), heads.branch_outputs(pooled)):
            outputs = {name: value.float() for name, value in stage.items()}
            charts = {name: value for name, value in outputs.items() if name in heads.densepose_predictor.fields}
            stage_losses = densepose_losses(charts, targets, config, loss)
            if config.cascade_mask:
                stage_losses["loss_mask"] = mask_loss(outputs["mask"], targets, loss.mask_weight)
            if config.cascade_keypoints:
                stage_losses["loss_keypoint"] = keypoint_loss(outputs["keypoints"], targets, loss.keypoint_weight)
            losses.update({name + suffix: value for name, value in stage_losses.items()})
        return losses

