"""Builds graphflow, with its scheduling core compiled to C by mypyc wherever it can be.

    pip install ".[cpu]"                        # compiled core (a C compiler; mypy is fetched for the build)
    GRAPHFLOW_COMPILE=0 pip install ".[cpu]"    # interpreted core
    pip install -e ".[dev]"                     # editable: interpreted unless GRAPHFLOW_COMPILE=1

The compiled modules are the same Python source, so there is one implementation. Compiling takes
more than half off the framework's time per tick (figures: README, benchmarks/bench_core.py),
so it is the default for installs. Where compiling fails (no C compiler) the install goes on
without it and the core runs interpreted; ``graphflow.COMPILED`` says which one runs. Editable
installs stay interpreted unless asked: a compiled editable install puts the compiled files
beside the sources, and they shadow edits to those sources until rebuilt.
"""
import os
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext

COMPILED_MODULES = ["graphflow/envelope.py", "graphflow/ledger.py", "graphflow/policies.py",
                    "graphflow/ports.py", "graphflow/runtime.py", "graphflow/scheduler.py"]
MYPY = "mypy==1.13.0"  # mypyc ships with mypy; pinned so every build compiles the same C


class BuildCoreIfPossible(build_ext):
    """Builds the compiled core, all of it or none: a partly built core would not import."""

    def run(self):
        try:
            super().run()
        except Exception as error:  # no C compiler, no Python headers
            for path in self.get_outputs():
                if os.path.exists(path):
                    os.remove(path)
            shutil.rmtree(self.build_temp, ignore_errors=True)
            print(f"WARNING: graphflow's core could not be compiled ({error}); it is installed "
                  f"interpreted (GRAPHFLOW_COMPILE=0 skips trying)", file=sys.stderr)


# The repo's schemas/ folder ships inside the package (graphflow/schemas) so installed apps validate.
LAYOUT = {"packages": find_packages(include=["graphflow*", "nodes*"]) + ["graphflow.schemas"],
          "package_dir": {"graphflow.schemas": "schemas"},
          "package_data": {"graphflow": ["viewer/static/*"], "graphflow.schemas": ["*.json", "messages/*.json"]}}

CHOICE = os.environ.get("GRAPHFLOW_COMPILE")  # "1": compile or fail; "0": do not; unset: try
EDITABLE = "editable_wheel" in sys.argv  # the command pip's editable build runs

if CHOICE == "1" or (CHOICE is None and not EDITABLE):
    try:
        from mypyc.build import mypycify
    except ImportError:  # the build front end first asks which packages the build needs
        setup(setup_requires=[MYPY], **LAYOUT)
    else:
        setup(ext_modules=mypycify(COMPILED_MODULES, opt_level="3"), setup_requires=[MYPY],
              cmdclass={} if CHOICE == "1" else {"build_ext": BuildCoreIfPossible}, **LAYOUT)
else:
    setup(**LAYOUT)
