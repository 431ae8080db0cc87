"""Shared fixtures: the real files in ../shared/data, temporary output folders."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# The test process runs napari viewers (Mesa OpenGL) and torch in one process, as napari does:
# keep Triton out the way the plugin's widgets do (see napari_vbmd/widgets/__init__.py).
import napari_vbmd.widgets  # noqa: F401,E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VBMD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Scanco and DICOM files beside the checkout; skip when this clone has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test files not found at {SHARED_DATA} (they sit beside the project checkout in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def scanco_dir(shared_data) -> Path:
    path = shared_data / "scanco"
    if not path.is_dir():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def dicom_dir(shared_data) -> Path:
    path = shared_data / "dicom-elscint-ct"
    if not path.is_dir():
        pytest.skip(f"{path} is missing")
    return path
