"""Shared test settings: where the staged models and data live, and what CI does about missing ones.

Models: the first folder on ``GRAPHFLOW_MODEL_PATH`` (colon-separated, as graphflow reads it) that
holds the OpenPose model, else ``shared/models`` beside the checkout. Data: ``GRAPHFLOW_SHARED/data``,
else ``shared/data`` beside the checkout, else ``data`` beside the models folder.

In CI (``CI`` set to true, as GitHub Actions and .ci/run do) nothing may skip except what needs a
CUDA GPU: a skip whose reason does not match ``SKIP_ALLOWED_IN_CI`` is turned into a failure, so a
missing model, data set, browser or compiler fails the run instead of hiding tests.
"""
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODEL_FILE = "openpose_mobilenet_thin.onnx"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
# Skips CI accepts: tests for a CUDA GPU (or for the fallback where one is present).
SKIP_ALLOWED_IN_CI = re.compile(r"CUDA (GPU|device)|without CUDA|TensorRT is missing")


def _models_folder() -> Path:
    for folder in filter(None, os.environ.get("GRAPHFLOW_MODEL_PATH", "").split(os.pathsep)):
        if (Path(folder).expanduser() / MODEL_FILE).exists():
            return Path(folder).expanduser().resolve()
    return Path(os.environ.get("GRAPHFLOW_SHARED", REPO.parent / "shared")) / "models"


def _shared_folder() -> Path:
    if "GRAPHFLOW_SHARED" in os.environ:
        return Path(os.environ["GRAPHFLOW_SHARED"])
    beside = REPO.parent / "shared"
    if not beside.exists() and (_models_folder().parent / "data").exists():
        return _models_folder().parent
    return beside


MODELS = _models_folder()
SHARED = _shared_folder()
DATA = SHARED / "data"


def missing(what: str) -> None:
    """Skip the test for want of ``what``; in CI, fail it (see the module doc)."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: only tests that need a CUDA GPU may skip)", pytrace=False)
    pytest.skip(what)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not SKIP_ALLOWED_IN_CI.search(reason):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where only tests that need a CUDA GPU may skip: {reason}"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def shared_data() -> Path:
    if not DATA.exists():
        missing(f"shared test data not found at {DATA} (set GRAPHFLOW_SHARED)")
    return DATA


@pytest.fixture
def model_path(monkeypatch) -> Path:
    """Points the model search path at the shared models folder."""
    if not (MODELS / MODEL_FILE).exists():
        missing(f"models not found at {MODELS} (set GRAPHFLOW_MODEL_PATH)")
    monkeypatch.setenv("GRAPHFLOW_MODEL_PATH", str(MODELS))
    return MODELS
