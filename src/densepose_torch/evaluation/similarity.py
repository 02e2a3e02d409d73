"""Similarities between detections and ground-truth persons of one image, as
DensePoseCocoEval computes them:
GPS (geodesic point similarity), DensePose mask IoU and box IoU, each a (D, G) matrix.

Detections are given as `bboxes` (D, 4) XYWH floats and `charts`, each (3, h, w) uint8
[I, U*255, V*255] anchored at (int(x), int(y)).
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils
from scipy.ndimage import zoom

from ..errors import DensePoseError
from .surface import BodySurface

# GPS normalisers: the mean geodesic distance (metres) of each coarse body region, indexed by
# COARSE_REGION_OF_PART[part] (0 background, then torso, hands, feet, upper legs, lower legs,
# upper arms, lower arms, head). The paper's single kappa = 0.255 is not what the code uses.
MEAN_GEODESIC_DISTANCES = np.array([0, 0.351, 0.107, 0.126, 0.237, 0.173, 0.142, 0.128, 0.150])
COARSE_REGION_OF_PART = np.array([0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8])
DP_MASK_SIZE = 256
NUM_COARSE_MASKS = 14


def _gps_of_person(ann: dict, bboxes: np.ndarray, charts: list[np.ndarray], surface: BodySurface) -> np.ndarray:
    """GPS of every detection against one densely annotated person, (D,)."""
    parts = np.asarray(ann["dp_I"], np.float64).astype(np.int64)
    if parts.size == 0:
        return np.zeros(len(charts))
    gx, gy, gw, gh = (float(value) for value in ann["bbox"])
    # The evaluator maps dp_x with /255 (training uses /256); the operation order is kept so
    # that the integer truncation below sees the same floats.
    point_x = np.asarray(ann["dp_x"], np.float64) * gw / 255.0 + gx
    point_y = np.asarray(ann["dp_y"], np.float64) * gh / 255.0 + gy
    # astype(int) truncates toward zero: a point up to one pixel left of / above the
    # detection box lands in column / row 0 and counts as inside.
    px = (point_x[None, :] - bboxes[:, 0:1]).astype(np.int64)
    py = (point_y[None, :] - bboxes[:, 1:2]).astype(np.int64)
    box_w = np.array([int(w) for w in bboxes[:, 2]])[:, None]
    box_h = np.array([int(h) for h in bboxes[:, 3]])[:, None]
    chart_h = np.array([chart.shape[1] for chart in charts])[:, None]
    chart_w = np.array([chart.shape[2] for chart in charts])[:, None]
    # The chart bound only matters for results whose uv_shape disagrees with their bbox.
    inside = (px >= 0) & (py >= 0) & (px < np.minimum(box_w, chart_w)) & (py < np.minimum(box_h, chart_h))

    predicted = np.zeros((3,) + px.shape, np.uint8)  # I, U, V at each point; I = 0 outside
    for index, chart in enumerate(charts):
        hit = inside[index]
        predicted[:, index, hit] = chart[:, py[index, hit], px[index, hit]]
    predicted_vertices = surface.nearest_vertices(
        predicted[0].reshape(-1), predicted[1].reshape(-1) / 255.0, predicted[2].reshape(-1) / 255.0
    ).reshape(px.shape)

    gt_vertices = surface.nearest_vertices(parts, np.asarray(ann["dp_U"], np.float64), np.asarray(ann["dp_V"], np.float64))
    annotated = gt_vertices >= 0  # GT points on a part the surface has
    if not annotated.any():
        return np.zeros(len(charts))
    normaliser = MEAN_GEODESIC_DISTANCES[COARSE_REGION_OF_PART[parts[annotated]]]
    gt_vertices = np.broadcast_to(gt_vertices[annotated], (len(charts), int(annotated.sum())))
    predicted_vertices = predicted_vertices[:, annotated]
    found = predicted_vertices >= 0
    distance = np.full(predicted_vertices.shape, np.inf)
    distance[found] = surface.geodesic_distances(gt_vertices[found], predicted_vertices[found])
    return np.exp(-(distance**2) / (2 * normaliser**2)).mean(axis=1)


def gps_matrix(anns: list[dict], bboxes: np.ndarray, charts: list[np.ndarray], surface: BodySurface) -> np.ndarray:
    """(D, G) GPS; 0 for persons without DensePose points (they are ignored anyway)."""
    gps = np.zeros((len(charts), len(anns)))
    if len(charts) == 0:
        return gps
    for column, ann in enumerate(anns):
        if "dp_x" in ann:
            gps[:, column] = _gps_of_person(ann, bboxes, charts, surface)
    return gps


def _paste_rle(mask: np.ndarray | None, bbox, image_size: tuple[int, int]) -> dict:
    """RLE of `mask` pasted at (int(x), int(y)) into the image, clipped to the image and to
    int(x + w), int(y + h) as the official evaluator does (None: an empty mask)."""
    height, width = image_size
    canvas = np.zeros((height, width), np.uint8, order="F")  # pycocotools encodes column-major
    if mask is not None:
        x, y, w, h = (float(value) for value in bbox)
        xi, yi = int(x), int(y)
        x0, x1 = max(xi, 0), min(int(x + w), width, xi + mask.shape[1])
        y0, y1 = max(yi, 0), min(int(y + h), height, yi + mask.shape[0])
        if x1 > x0 and y1 > y0:
            canvas[y0:y1, x0:x1] = mask[y0 - yi : y1 - yi, x0 - xi : x1 - xi] > 0
    return mask_utils.encode(canvas)


def _decode_rle(rle: dict, what: str) -> np.ndarray:
    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    try:
        return mask_utils.decode(rle)
    except Exception as error:  # pycocotools raises bare TypeErrors/ValueErrors on bad RLEs
        raise DensePoseError(f"unreadable RLE in {what} ({error})") from None


def _person_mask_rle(ann: dict, image_size: tuple[int, int]) -> dict:
    """Mask of a ground-truth person: the union of its coarse-part masks (256 x 256 over the
    box) resized to the box, else its COCO segmentation, else empty."""
    height, width = image_size
    if "dp_masks" in ann:
        union = np.zeros((DP_MASK_SIZE, DP_MASK_SIZE))
        for part_rle in ann["dp_masks"][:NUM_COARSE_MASKS]:
            if part_rle:
                decoded = _decode_rle(part_rle, f"dp_masks of annotation {ann.get('id')}")
                if decoded.shape != (DP_MASK_SIZE, DP_MASK_SIZE):
                    raise DensePoseError(f"dp_masks of annotation {ann.get('id')} are {decoded.shape}, expected 256 x 256")
                union[decoded > 0] = 1.0
        _, _, w, h = (float(value) for value in ann["bbox"])
        resized = zoom(union, (max(h, 1) / DP_MASK_SIZE, max(w, 1) / DP_MASK_SIZE), order=1, prefilter=False)
        return _paste_rle((resized > 0.5).astype(np.uint8), ann["bbox"], image_size)
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, list) and segmentation:
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict):
        if isinstance(segmentation.get("counts"), list):
            return mask_utils.frPyObjects(segmentation, height, width)
        return segmentation
    return _paste_rle(None, ann["bbox"], image_size)


def mask_iou_matrix(anns: list[dict], bboxes: np.ndarray, charts: list[np.ndarray], image_size: tuple[int, int]) -> np.ndarray:
    """(D, G) IoU of the detections' body masks (I > 0) with the persons' masks; against a
    crowd, intersection over the detection's area (COCO's rule)."""
    if len(charts) == 0 or len(anns) == 0:
        return np.zeros((len(charts), len(anns)))
    detection_rles = [_paste_rle(chart[0], bbox, image_size) for chart, bbox in zip(charts, bboxes)]
    person_rles = [_person_mask_rle(ann, image_size) for ann in anns]
    crowd = [int(ann.get("iscrowd", 0)) for ann in anns]
    return np.asarray(mask_utils.iou(detection_rles, person_rles, crowd), np.float64).reshape(len(charts), len(anns))


def box_iou_matrix(anns: list[dict], bboxes: np.ndarray) -> np.ndarray:
    """(D, G) box IoU (XYWH), intersection over the detection's area against a crowd."""
    if len(bboxes) == 0 or len(anns) == 0:
        return np.zeros((len(bboxes), len(anns)))
    person_boxes = np.array([[float(v) for v in ann["bbox"]] for ann in anns], np.float64)
    crowd = [int(ann.get("iscrowd", 0)) for ann in anns]
    return np.asarray(mask_utils.iou(np.asarray(bboxes, np.float64), person_boxes, crowd), np.float64).reshape(len(bboxes), len(anns))
