"""`densepose export`: a model as one ONNX graph (or an int8 OpenVINO / ONNX model) to deploy
without PyTorch. docs/export.md describes the graph's inputs and outputs."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DensePoseError
from .arguments import add_model_file_arguments, model_choice, positive

EXAMPLES = """\
examples:
  densepose export R_50_FPN_s1x -o r50.onnx
  densepose export default -o default.onnx
  densepose export R_50_FPN_s1x --int8 -o r50_int8.xml                      # calibrated on synthetic scenes
  densepose export my_checkpoint.pth --int8 --calibration photos/ -o mine_int8.xml
  densepose predict photo.jpg -o out --model r50_int8.xml                   # runs on OpenVINO
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a model as one ONNX graph (or an int8 OpenVINO model) for ONNX Runtime, OpenVINO, TensorRT",
        description="Write a model as one self-contained ONNX graph from the resized BGR image to boxes, scores and "
                    "raw charts (docs/export.md), or with --int8 as an int8 OpenVINO model calibrated on images.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="zoo name, checkpoint file, or default (the embedded model)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="model.onnx, or with --int8 model.xml (OpenVINO IR, written with model.bin beside it)")
    add_model_file_arguments(parser)
    parser.add_argument("--int8", action="store_true", help="post-training int8 quantisation (OpenVINO's NNCF; needs the openvino extra)")
    parser.add_argument("--calibration", metavar="DIR", help="images to calibrate int8 on (default: synthetic scenes)")
    parser.add_argument("--calibration-size", type=positive(int), default=None, metavar="N",
                        help="images to calibrate on (default: 64 synthetic scenes, or up to 300 of --calibration's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model
    from ..export.onnx_file import export_onnx
    from ..export.quantize import DEFAULT_CALIBRATION_SCENES, calibration_images, quantize
    from ..inference import Predictor

    output = Path(args.output)
    wanted = ".xml" if args.int8 else ".onnx"
    if output.suffix != wanted:
        raise DensePoseError(f"--output must end in {wanted}" + (" (int8 models are OpenVINO IR)" if args.int8 else " (.xml is for --int8)"))
    if output.is_dir():
        raise DensePoseError(f"--output {output} is a folder; name the file to write")
    if output.exists() and not args.overwrite:
        raise DensePoseError(f"{output} exists; use --overwrite to replace it")
    if args.calibration is not None and not args.int8:
        raise DensePoseError("--calibration applies to --int8 only")
    choice = model_choice(args)
    model = load_model(choice.name, config=choice.config, trust_checkpoint=choice.trust_checkpoint)
    if not args.int8:
        export_onnx(model, output)
    else:
        count = args.calibration_size or (DEFAULT_CALIBRATION_SCENES if args.calibration is None else 300)
        predictor = Predictor(model)
        quantize(model, output, calibration_images(args.calibration, count), lambda rgb: predictor.preprocess(rgb).numpy())
    size = sum(path.stat().st_size for path in (output, output.with_suffix(".bin")) if path.is_file() and (args.int8 or path == output))
    print(f"wrote {output}{' and its .bin' if args.int8 else ''} ({size / 2**20:.1f} MB): {model.name}, {'int8' if args.int8 else 'float32'}")
    return 0
