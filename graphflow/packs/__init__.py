"""The node packs that ship with graphflow, as ``graphflow.packs.<pack>``.

In the repository they live in the top-level ``nodes/`` folder (one folder a pack, one node or
tight family a file); an install puts them here (setup.py), so graphflow adds no generic
top-level package. The framework itself never imports a pack: the registry finds them by name."""
from pathlib import Path

_CHECKOUT_PACKS = Path(__file__).resolve().parents[2] / "nodes"
if (_CHECKOUT_PACKS / "__init__.py").is_file():  # a checkout (or an editable install of one)
    __path__.append(str(_CHECKOUT_PACKS))  # noqa: F821  (a package's __path__)
