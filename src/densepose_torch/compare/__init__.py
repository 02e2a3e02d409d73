"""`densepose compare`: many DensePose models on your own images, side by side.

    from densepose_torch.compare import CompareConfig, compare
    compare(CompareConfig(models=("all",), images=Path("photos"), output=Path("report")))

Each model is loaded once and runs over the images in batches; every (model, image) result is
cached under REPORT_DIR/cache, so an interrupted comparison resumes where it stopped. The report
(REPORT_DIR/index.html, results.csv, results.json) gives per model the load time, latency,
throughput, peak memory and detections, GPS/GPSm/IOU/box AP against ground truth if there is
some, the part-map agreement between models, and a grid of pictures.

Modules: models (which models, loading), inputs (which images), runner (running and caching),
agreement (pairwise part-map mIoU), summary (the table's figures), report (HTML, CSV, JSON,
thumbnails; report.html is the page template), comparison (all of it in order).
"""
from .comparison import CompareConfig, Comparison, compare, evaluate_run
from .models import ModelSpec, resolve_models
from .runner import ModelRun, RunSettings, run_models

__all__ = [
    "CompareConfig",
    "Comparison",
    "ModelRun",
    "ModelSpec",
    "RunSettings",
    "compare",
    "evaluate_run",
    "resolve_models",
    "run_models",
]
