"""What DensePose's numbers mean: the body parts, their names and mirror images, the raw chart
output fields, and the COCO keypoints. Every other module takes these facts from here.

Fine parts (I = 1..24; "right"/"left" are the person's own):
 1 torso back, 2 torso front, 3 right hand, 4 left hand, 5 left foot, 6 right foot,
 7/9 right upper leg back/front, 8/10 left upper leg back/front,
 11/13 right lower leg back/front, 12/14 left lower leg back/front,
 15/17 left upper arm front/back, 16/18 right upper arm front/back,
 19/21 left lower arm front(palm side)/back, 20/22 right lower arm front/back,
 23 head right half, 24 head left half.
Coarse parts (the order of DensePose-COCO `dp_masks`): 1 torso, 2 right hand, 3 left hand,
4 left foot, 5 right foot, 6 right upper leg, 7 left upper leg, 8 right lower leg,
9 left lower leg, 10 left upper arm, 11 right upper arm, 12 left lower arm, 13 right lower arm,
14 head.
"""
from __future__ import annotations

import numpy as np

NUM_PARTS = 24
NUM_COARSE_PARTS = 14
# Labels of a fine part map: background (0) and the parts; the fine segmentation, U and V
# outputs have one channel per label.
NUM_PART_LABELS = NUM_PARTS + 1
PARTS = range(1, NUM_PARTS + 1)

PART_NAMES = (
    "background", "torso back", "torso front", "right hand", "left hand", "left foot", "right foot",
    "right upper leg back", "left upper leg back", "right upper leg front", "left upper leg front",
    "right lower leg back", "left lower leg back", "right lower leg front", "left lower leg front",
    "left upper arm front", "right upper arm front", "left upper arm back", "right upper arm back",
    "left lower arm front", "right lower arm front", "left lower arm back", "right lower arm back",
    "head right", "head left",
)

COARSE_PART_NAMES = (
    "background", "torso", "right hand", "left hand", "left foot", "right foot", "right upper leg",
    "left upper leg", "right lower leg", "left lower leg", "left upper arm", "right upper arm",
    "left lower arm", "right lower arm", "head",
)

# FINE_TO_COARSE[i] is the coarse part of fine part i (index 0 = background).
FINE_TO_COARSE = np.array(
    [0, 1, 1, 2, 3, 4, 5, 6, 7, 6, 7, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 14], dtype=np.uint8
)
FINE_TO_COARSE.setflags(write=False)

# Horizontal flip: fine part i becomes PART_SYMMETRY[i] (detectron2's POINT_LABEL_SYMMETRIES),
# coarse part c becomes COARSE_PART_SYMMETRY[c] (MASK_LABEL_SYMMETRIES).
PART_SYMMETRY = (0, 1, 2, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19, 22, 21, 24, 23)
COARSE_PART_SYMMETRY = (0, 1, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 14)
# Parts that are their own mirror image (the torso's back and front).
SELF_SYMMETRIC_PARTS = (1, 2)

# Raw chart outputs of the DensePose head, each (R, C, S, S) for R detections: the coarse (person
# vs background, or 15 coarse parts for legacy models) and fine segmentation logits, and U, V
# per fine label. Confidence fields exist only for models that predict them: sigma_2 (and
# kappa_u, kappa_v) per fine label, the segmentation confidences one channel for the whole box.
CHART_FIELDS = ("coarse_segm", "fine_segm", "u", "v")
UV_CONFIDENCE_FIELDS = {"iid_iso": ("sigma_2",), "indep_aniso": ("sigma_2", "kappa_u", "kappa_v")}
SEGM_CONFIDENCE_FIELDS = ("fine_segm_confidence", "coarse_segm_confidence")
CONFIDENCE_FIELDS = UV_CONFIDENCE_FIELDS["indep_aniso"] + SEGM_CONFIDENCE_FIELDS
# Fields read at each pixel from the channel of that pixel's part.
PER_PART_FIELDS = ("u", "v") + UV_CONFIDENCE_FIELDS["indep_aniso"]

# COCO person keypoints, in COCO's order (the cascade's keypoint branch and DensePose-COCO).
KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
