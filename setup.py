"""Builds graphflow, with its scheduling core compiled to C by mypyc wherever it can be.

    pip install ".[cpu]"                        # compiled core (a C compiler; mypy is fetched for the build)
    pip install -e ".[dev]"                     # the same, editable: compiled files beside the sources
    GRAPHFLOW_COMPILE=0 pip install ...         # interpreted core
    GRAPHFLOW_COMPILE=1 pip install ...         # compiled core, or fail

The compiled modules are the same Python source, so there is one implementation. Compiling takes
more than half off the framework's time per tick (figures: README, benchmarks/bench_core.py),
so it is the default. Where compiling fails (no C compiler) the install goes on without it and
the core runs interpreted; ``graphflow.COMPILED`` says which one runs. Beside the compiled files
the build records the digest of each source it compiled: once a source changes (an edit in an
editable checkout), graphflow runs the core from its sources until rebuilt (graphflow/corebuild.py).
"""
import importlib.util
import json
import os
import shutil
import sys
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext


def load_corebuild():
    """graphflow/corebuild.py on its own (importing the package would need its dependencies): it
    names the core modules and writes the record that graphflow checks the build against."""
    spec = importlib.util.spec_from_file_location("graphflow_corebuild", "graphflow/corebuild.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


corebuild = load_corebuild()
CORE_MODULES = corebuild.CORE_MODULES
COMPILED_FROM = corebuild.COMPILED_FROM
COMPILED_MODULES = [f"graphflow/{name}.py" for name in CORE_MODULES]
MYPY = "mypy==1.13.0"  # mypyc ships with mypy; pinned so every build compiles the same C

CHOICE = os.environ.get("GRAPHFLOW_COMPILE")  # "1": compile or fail; "0": do not; unset: try
EDITABLE = "editable_wheel" in sys.argv  # the command pip's editable build runs


class BuildCore(build_ext):
    """Builds the compiled core, all of it or none (a partly built core would not import), and
    records the digests of the sources it was built from beside it."""

    def run(self):
        try:
            super().run()
        except Exception as error:  # no C compiler, no Python headers
            if CHOICE == "1":
                raise
            for path in self.get_outputs():
                if os.path.exists(path):
                    os.remove(path)
            shutil.rmtree(self.build_temp, ignore_errors=True)
            print(f"WARNING: graphflow's core could not be compiled ({error}); it is installed "
                  f"interpreted (GRAPHFLOW_COMPILE=0 skips trying)", file=sys.stderr)
            return
        digests = {Path(source).name: corebuild.source_digest(Path(source)) for source in COMPILED_MODULES}
        folders = [os.path.join(self.build_lib, "graphflow")] + (["graphflow"] if self.inplace else [])
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, COMPILED_FROM), "w") as record:
                json.dump(digests, record, indent=1)


def remove_compiled_core_from_checkout():
    """An editable install without compiling: compiled files left beside the sources by an earlier
    compiled editable install would still be imported."""
    leftovers = [path for name in CORE_MODULES for path in glob(f"graphflow/{name}.*.so") + glob(f"graphflow/{name}.*.pyd")]
    leftovers += glob("*__mypyc.*.so") + glob("*__mypyc.*.pyd") + glob(f"graphflow/{COMPILED_FROM}")
    for path in leftovers:
        os.remove(path)


# The repo's schemas/ folder ships inside the package (graphflow/schemas) so installed apps validate.
LAYOUT = {"packages": find_packages(include=["graphflow*", "nodes*"]) + ["graphflow.schemas"],
          "package_dir": {"graphflow.schemas": "schemas"},
          "package_data": {"graphflow": ["viewer/static/*"], "graphflow.schemas": ["*.json", "messages/*.json"]}}

if CHOICE != "0":
    try:
        from mypyc.build import mypycify
    except ImportError:  # the build front end first asks which packages the build needs
        setup(setup_requires=[MYPY], **LAYOUT)
    else:
        setup(ext_modules=mypycify(COMPILED_MODULES, opt_level="3"), setup_requires=[MYPY],
              cmdclass={"build_ext": BuildCore}, **LAYOUT)
else:
    if EDITABLE:
        remove_compiled_core_from_checkout()
    setup(**LAYOUT)
