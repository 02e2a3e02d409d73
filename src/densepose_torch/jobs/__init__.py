"""Running DensePose over many inputs: a `densepose predict` job (predict.py), on one machine or
spread over a Ray cluster (ray.py)."""
