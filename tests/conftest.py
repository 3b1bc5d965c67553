"""Shared test settings: where the staged models and data live (shared/ beside the checkout)."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GRAPHFLOW_SHARED", REPO.parent / "shared"))
MODELS = SHARED / "models"
DATA = SHARED / "data"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def shared_data() -> Path:
    if not DATA.exists():
        pytest.skip(f"shared test data not found at {DATA}")
    return DATA


@pytest.fixture
def model_path(monkeypatch) -> Path:
    """Points the model search path at the shared models folder."""
    if not (MODELS / "openpose_mobilenet_thin.onnx").exists():
        pytest.skip(f"models not found at {MODELS}")
    monkeypatch.setenv("GRAPHFLOW_MODEL_PATH", str(MODELS))
    return MODELS
