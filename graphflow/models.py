"""Where model files are looked for (any node that loads a model, and packaging), and the user cache folder (TensorRT engines live there too).

``find_model(name)`` tries, in order:

1. ``name`` itself, as an absolute path or a path relative to the working directory,
2. every folder in ``$GRAPHFLOW_MODEL_PATH`` (colon-separated),
3. ``./models``,
4. the user cache: ``$XDG_CACHE_HOME/graphflow/models`` (default ``~/.cache/graphflow/models``).

In each folder both ``folder/name`` and ``folder/<file name of name>`` are tried.
"""
from __future__ import annotations

import os
from pathlib import Path

MODEL_PATH_VARIABLE = "GRAPHFLOW_MODEL_PATH"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/graphflow`` or ``~/.cache/graphflow`` (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.path.expanduser(base)) / "graphflow"


def model_search_path() -> list[Path]:
    """The folders searched for a model given by a bare or relative name, in order."""
    from_env = [Path(os.path.expanduser(p)) for p in os.environ.get(MODEL_PATH_VARIABLE, "").split(os.pathsep) if p]
    return from_env + [Path("models"), user_cache_dir() / "models"]


def find_model(name: str | os.PathLike) -> Path:
    """Return the absolute path of model ``name``, or raise FileNotFoundError saying where it
    looked and how to make the model findable."""
    given = Path(os.path.expanduser(name))
    if given.is_file():
        return given.resolve()
    looked = [f"{given.absolute()} (the path as given{', a folder' if given.is_dir() else ''})"]
    if not given.is_absolute():
        for folder in model_search_path():
            candidates = dict.fromkeys((folder / given, folder / given.name))
            for candidate in candidates:
                if candidate.is_file():
                    return candidate.resolve()
            folders = [c for c in candidates if c.is_dir()]  # a name taken by a folder: say so, not just "not found"
            looked.append(str(folder.absolute()) + (f" (its {folders[0].name} is a folder)" if folders else ""))
    if not os.environ.get(MODEL_PATH_VARIABLE):
        looked.insert(1, f"${MODEL_PATH_VARIABLE} (not set)")
    cache = user_cache_dir() / "models"
    raise FileNotFoundError(
        f"model {str(name)!r} not found. Looked in:\n  - " + "\n  - ".join(looked) +
        f"\nTo make it findable, set {MODEL_PATH_VARIABLE} to the folder that holds it "
        f"(e.g. export {MODEL_PATH_VARIABLE}=/path/to/shared/models, the shared models folder), "
        f"or copy it into ./models or {cache}.")
