"""DensePose from an exported model with ONNX Runtime and numpy only (Pillow just decodes the file).
    densepose export default -o default.onnx && python onnxruntime_numpy.py default.onnx photo.jpg iuv.npy"""
import json
import sys

import numpy as np
import onnxruntime


def resize(maps, h, w):  # charts: (C, H, W) -> (C, h, w), bilinear, half-pixel centres (torch's align_corners=False)
    _, H, W = maps.shape
    ys = np.clip((np.arange(h) + 0.5) * H / h - 0.5, 0, H - 1)
    xs = np.clip((np.arange(w) + 0.5) * W / w - 0.5, 0, W - 1)
    y0, x0 = ys.astype(int), xs.astype(int)
    y1, x1, fy, fx = np.minimum(y0 + 1, H - 1), np.minimum(x0 + 1, W - 1), (ys - y0)[:, None], xs - x0
    rows = lambda y: maps[:, y][:, :, x0] * (1 - fx) + maps[:, y][:, :, x1] * fx  # noqa: E731
    return rows(y0) * (1 - fy) + rows(y1) * fy


def photo_resize(rgb, h, w):  # Pillow's BILINEAR (a triangle filter as wide as the scale): (H, W, 3) -> (3, h, w) BGR
    def taps(n_out, n_in):
        scale = n_in / n_out
        weight = np.clip(1 - np.abs(np.arange(n_in)[None] + 0.5 - (np.arange(n_out)[:, None] + 0.5) * scale) / max(scale, 1), 0, None)
        return weight / weight.sum(axis=1, keepdims=True)
    resized = taps(h, rgb.shape[0]) @ rgb[:, :, ::-1].transpose(2, 0, 1).astype(np.float64) @ taps(w, rgb.shape[1]).T
    return np.clip(np.rint(resized), 0, 255).astype(np.float32)


def densepose(session, rgb, min_score=0.8):  # rgb: (H, W, 3) uint8 -> (3, H, W) float32 I, U, V
    config = json.loads(session.get_modelmeta().custom_metadata_map["densepose_torch.config"])
    height, width = rgb.shape[:2]  # short side to min_size_test (zoo: 800), long side at most max_size_test (1333)
    scale = min(config["min_size_test"] / min(height, width), config["max_size_test"] / max(height, width))
    h, w = int(height * scale + 0.5), int(width * scale + 0.5)
    image = photo_resize(rgb, h, w)[None]  # (1, 3, h, w) BGR 0..255
    inputs = {"image": image, "score_threshold": np.array(min_score, np.float32),
              "max_detections": np.array(100, np.int64), "given_boxes": np.zeros((0, 4), np.float32)}
    boxes, scores, coarse, fine, u, v = session.run(["boxes", "scores", "coarse_segm", "fine_segm", "u", "v"], inputs)
    iuv = np.zeros((3, height, width), np.float32)
    for i in np.argsort(scores):  # best person painted last
        x0, y0, x1, y1 = np.clip(boxes[i] * np.tile([width / w, height / h], 2), 0, np.tile([width, height], 2))
        x, y, bw, bh = int(x0), int(y0), max(int(x1 - x0), 1), max(int(y1 - y0), 1)
        labels = resize(fine[i], bh, bw).argmax(0) * (resize(coarse[i], bh, bw).argmax(0) > 0)
        pick = lambda maps: np.take_along_axis(resize(maps, bh, bw), labels[None], 0)[0]  # noqa: E731
        chart = np.stack([labels, pick(u[i]), pick(v[i])])[:, : height - y, : width - x]
        body = chart[0] > 0
        iuv[:, y : y + bh, x : x + bw][:, body] = chart[:, body]
    return iuv


if __name__ == "__main__":
    from PIL import Image

    session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    np.save(sys.argv[3], densepose(session, np.asarray(Image.open(sys.argv[2]).convert("RGB"))))
