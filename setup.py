"""The package layout, which pyproject.toml alone cannot say: node packs live in the repo's
top-level ``nodes/`` folder but install as ``graphflow.packs.<pack>`` (no generic top-level
``nodes`` package in site-packages), and ``schemas/`` ships as ``graphflow/schemas``. Everything
is pure Python: one ``py3-none-any`` wheel for every platform."""
from setuptools import find_packages, setup

PACKS = find_packages("nodes")  # "demo", "openpose", "openpose.sub", ...
setup(
    packages=find_packages(include=["graphflow", "graphflow.*"]) + [f"graphflow.packs.{p}" for p in PACKS]
    + ["graphflow.schemas"],
    package_dir={**{f"graphflow.packs.{p}": f"nodes/{p.replace('.', '/')}" for p in PACKS},
                 "graphflow.schemas": "schemas"},
    package_data={"graphflow": ["viewer/static/*"], "graphflow.schemas": ["*.json", "messages/*.json"]},
)
