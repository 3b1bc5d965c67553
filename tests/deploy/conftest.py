"""Fixtures of the deploy tests: the test sshd (tests/deploy/sshd.py) and the packages."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import MODELS
from tests.deploy.sshd import Device, SshdError, running_sshd


@pytest.fixture(scope="session")
def device(tmp_path_factory) -> Device:
    try:
        with running_sshd(tmp_path_factory.mktemp("sshd")) as started:
            yield started
    except SshdError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def graphflow_wheel(tmp_path_factory) -> Path:
    """graphflow built once as a wheel for every package the tests make."""
    from graphflow.deploy.package import build_graphflow_wheel

    return build_graphflow_wheel(tmp_path_factory.mktemp("wheel"), progress=lambda _: None)


@pytest.fixture(scope="session")
def openpose_packages(tmp_path_factory, graphflow_wheel) -> dict[str, Path]:
    """The OpenPose app for linux-x86_64, as 1.0.0 and as 1.1.0 (a config overlay changed)."""
    from graphflow.deploy.package import build_package

    if not (MODELS / "openpose_mobilenet_thin.onnx").exists():
        pytest.fail(f"the OpenPose model is not at {MODELS}")
    os.environ["GRAPHFLOW_MODEL_PATH"] = str(MODELS)
    out = tmp_path_factory.mktemp("packages")
    repo = Path(__file__).resolve().parents[2]
    overlay = out / "overlay.json"
    overlay.write_text('{"viz": {"visualizer": {"min_confidence": 0.2}}}')
    quiet = dict(progress=lambda _: None, graphflow_wheel=graphflow_wheel, target="linux-x86_64")
    return {"1.0.0": build_package(repo / "apps" / "openpose.app.json", out / "v1", version="1.0.0", **quiet),
            "1.1.0": build_package(repo / "apps" / "openpose.app.json", out / "v2", version="1.1.0",
                                   overlays=[overlay], **quiet)}
