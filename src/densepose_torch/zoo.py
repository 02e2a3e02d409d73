"""The 27 chart-based DensePose R-CNN models of detectron2's model zoo.

Each entry carries its architecture (a ModelConfig), where its official weights live, the md5
prefix in their file name, and the figures published for it (DENSEPOSE_IUV.md). Architectures
follow from the name's tokens: R_50/R_101 depth, `legacy` (no decoder, 14x14 pooling, 15 coarse
channels), `DL` (DeepLab head), `WC1`/`WC2` (iid_iso / indep_aniso UV confidence), `M`
(segmentation confidence), `Atop10P_CA` (ROIAlignV2 with adaptive sampling in the box pooler).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from .config import ModelConfig
from .errors import DensePoseError

URL_ROOT = "https://dl.fbaipublicfiles.com/densepose"


@dataclass(frozen=True)
class PublishedMetrics:
    """Figures from detectron2's DensePose model zoo table (COCO minival, or densepose_chimps for
    the Atop10P family, whose `gps_apex` is AP with IoU thresholds from 0.2)."""

    box_ap: float
    segm_ap: float
    gps_ap: float
    gpsm_ap: float
    gps_apex: float | None
    train_s_per_iter: float
    infer_s_per_image: float
    train_mem_gb: float


@dataclass(frozen=True)
class ZooModel:
    name: str  # short name, e.g. "R_50_FPN_s1x"
    model_id: int
    md5_prefix: str
    metrics: PublishedMetrics

    @property
    def evolution(self) -> bool:
        return "Atop10P" in self.name

    @property
    def full_name(self) -> str:
        return ("densepose_" if self.evolution else "densepose_rcnn_") + self.name

    @property
    def config_file(self) -> str:
        return ("evolution/" if self.evolution else "") + self.full_name + ".yaml"

    @property
    def file_name(self) -> str:
        return f"model_final_{self.md5_prefix}.pkl"

    @property
    def url(self) -> str:
        folder = "evolution/" if self.evolution else ""
        return f"{URL_ROOT}/{folder}{self.full_name}/{self.model_id}/{self.file_name}"

    @property
    def architecture(self) -> ModelConfig:
        return architecture_from_name(self.name)

    @property
    def head(self) -> str:
        """One-line description of the DensePose head, for listings."""
        config = self.architecture
        trunk = "legacy V1ConvX 14x14, K=15" if not config.decoder else ("DeepLab" if config.densepose_head == "deeplab" else "V1ConvX")
        return f"R{config.depth} {trunk}"

    @property
    def confidences(self) -> str:
        config = self.architecture
        parts = []
        if config.uv_confidence:
            parts.append("UV " + config.uv_confidence)
        if config.segm_confidence:
            parts.append("segm")
        return ", ".join(parts) or "-"


def architecture_from_name(name: str) -> ModelConfig:
    """The architecture a zoo name describes."""
    tokens = name.split("_")
    legacy = "legacy" in tokens
    confidence = next((t for t in tokens if t.startswith("WC")), "")
    evolution = "Atop10P" in tokens
    return ModelConfig(
        depth=101 if "101" in tokens else 50,
        densepose_head="deeplab" if "DL" in tokens else "v1convx",
        decoder=not legacy,
        pooler_resolution=14 if legacy else 28,
        coarse_segm_channels=15 if legacy else 2,
        uv_confidence={"WC1": "iid_iso", "WC2": "indep_aniso"}.get(confidence.rstrip("M")),
        segm_confidence=confidence.endswith("M"),
        box_pooler_aligned=evolution,
        box_pooler_sampling_ratio=0 if evolution else 2,
    )


def _m(box, segm, gps, gpsm, train_s, infer_s, mem, apex=None) -> PublishedMetrics:
    return PublishedMetrics(box, segm, gps, gpsm, apex, train_s, infer_s, mem)


ZOO: tuple[ZooModel, ...] = (
    ZooModel("R_50_FPN_s1x_legacy", 164832157, "d366fa", _m(58.1, 58.2, 52.1, 54.9, 0.307, 0.051, 3.2)),
    ZooModel("R_101_FPN_s1x_legacy", 164832182, "10af0e", _m(59.5, 59.3, 53.2, 56.0, 0.390, 0.063, 4.3)),
    ZooModel("R_50_FPN_s1x", 165712039, "162be9", _m(61.2, 67.2, 63.7, 65.3, 0.359, 0.066, 4.5)),
    ZooModel("R_101_FPN_s1x", 165712084, "c6ab63", _m(62.3, 67.8, 64.5, 66.2, 0.428, 0.079, 5.8)),
    ZooModel("R_50_FPN_DL_s1x", 165712097, "0ed407", _m(61.1, 68.3, 65.6, 66.7, 0.392, 0.070, 6.7)),
    ZooModel("R_101_FPN_DL_s1x", 165712116, "844d15", _m(62.3, 68.7, 66.3, 67.6, 0.478, 0.083, 7.0)),
    ZooModel("R_50_FPN_WC1_s1x", 173862049, "289019", _m(60.5, 67.0, 64.2, 65.4, 0.353, 0.064, 4.6)),
    ZooModel("R_50_FPN_WC2_s1x", 173861455, "3abe14", _m(60.7, 66.9, 64.2, 65.7, 0.364, 0.066, 4.8)),
    ZooModel("R_50_FPN_DL_WC1_s1x", 173067973, "b1e525", _m(61.1, 68.1, 65.8, 67.0, 0.397, 0.068, 6.7)),
    ZooModel("R_50_FPN_DL_WC2_s1x", 173859335, "60fed4", _m(60.8, 67.9, 65.6, 66.7, 0.410, 0.070, 6.8)),
    ZooModel("R_101_FPN_WC1_s1x", 171402969, "9e47f0", _m(62.5, 67.6, 64.9, 66.3, 0.435, 0.076, 5.7)),
    ZooModel("R_101_FPN_WC2_s1x", 173860702, "5ea023", _m(62.3, 67.6, 64.8, 66.4, 0.450, 0.078, 5.7)),
    ZooModel("R_101_FPN_DL_WC1_s1x", 173858525, "f359f3", _m(62.0, 68.4, 66.2, 67.2, 0.479, 0.081, 7.9)),
    ZooModel("R_101_FPN_DL_WC2_s1x", 173294801, "6e1ed1", _m(61.7, 68.3, 65.9, 67.2, 0.491, 0.082, 7.6)),
    ZooModel("R_50_FPN_WC1M_s1x", 217144516, "48a9d9", _m(60.6, 66.7, 64.0, 65.4, 0.381, 0.066, 4.8)),
    ZooModel("R_50_FPN_WC2M_s1x", 216245640, "d79ada", _m(60.7, 66.9, 64.2, 65.5, 0.342, 0.068, 5.0)),
    ZooModel("R_50_FPN_DL_WC1M_s1x", 216245703, "61971e", _m(60.7, 68.0, 65.2, 66.7, 0.371, 0.068, 6.0)),
    ZooModel("R_50_FPN_DL_WC2M_s1x", 216245758, "7bfb43", _m(60.8, 68.1, 65.0, 66.4, 0.385, 0.071, 6.1)),
    ZooModel("R_101_FPN_WC1M_s1x", 216453687, "0a7287", _m(62.0, 67.3, 64.8, 66.0, 0.423, 0.079, 5.9)),
    ZooModel("R_101_FPN_WC2M_s1x", 216245682, "e354d9", _m(62.5, 67.4, 64.5, 66.0, 0.436, 0.080, 5.9)),
    ZooModel("R_101_FPN_DL_WC1M_s1x", 216245771, "0ebeb3", _m(62.0, 68.1, 66.4, 67.1, 0.453, 0.079, 6.8)),
    ZooModel("R_101_FPN_DL_WC2M_s1x", 216245790, "de6e7a", _m(61.9, 68.2, 66.1, 67.1, 0.464, 0.080, 6.9)),
    ZooModel("R_50_FPN_DL_WC1M_3x_Atop10P_CA", 217578784, "9fe1cc", _m(61.3, 59.1, 20.0, 30.2, 0.522, 0.073, 9.7, apex=36.2)),
    ZooModel("R_50_FPN_DL_WC1M_3x_Atop10P_CA_B_uniform", 256453729, "241ff5", _m(60.9, 58.5, 21.5, 31.0, 1.939, 0.072, 10.1, apex=37.2)),
    ZooModel("R_50_FPN_DL_WC1M_3x_Atop10P_CA_B_uv", 256452095, "d689e2", _m(61.4, 58.9, 22.2, 32.1, 1.985, 0.072, 9.6, apex=38.3)),
    ZooModel("R_50_FPN_DL_WC1M_3x_Atop10P_CA_B_finesegm", 256452819, "cb4ac6", _m(60.9, 58.5, 20.7, 30.7, 2.047, 0.072, 10.3, apex=36.7)),
    ZooModel("R_50_FPN_DL_WC1M_3x_Atop10P_CA_B_coarsesegm", 256455697, "a6a4bf", _m(61.3, 59.2, 21.5, 31.6, 1.830, 0.070, 9.6, apex=37.9)),
)


def get_zoo_model(name: str) -> ZooModel:
    """Look a model up by short name (`R_50_FPN_s1x`), full name (`densepose_rcnn_R_50_FPN_s1x`,
    optionally with `.yaml`), or checkpoint file name (`model_final_162be9.pkl`)."""
    key = name.strip()
    for suffix in (".yaml", ".pkl"):
        key = key.removesuffix(suffix)
    key = key.rsplit("/", 1)[-1]
    for model in ZOO:
        if key in (model.name, model.full_name, model.file_name.removesuffix(".pkl"), str(model.model_id)):
            return model
    close = difflib.get_close_matches(key, [m.name for m in ZOO], n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `densepose models` lists them"
    raise DensePoseError(f"unknown model {name!r}{hint}")
