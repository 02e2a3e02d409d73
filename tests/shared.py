"""Where reference material lives: ../shared beside the repository (CI checks it out there), or
the folder DENSEPOSE_TEST_SHARED names (scripts/gpu_check.sh carries a copy to the GPU machine).
Tests that need it fail, not skip, when it is missing."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("DENSEPOSE_TEST_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"reference data missing: {path} (clone the repository with ../shared beside it)")
    return path
