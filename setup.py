"""Builds graphflow. With ``GRAPHFLOW_COMPILE=1`` the scheduling core is compiled to C by mypyc.

    GRAPHFLOW_COMPILE=1 pip install ".[cpu]"      # needs a C compiler; mypy is fetched for the build

The compiled modules are the same Python source, so there is one implementation and
``pip install .`` without the variable runs it interpreted. Compiling takes more than half off
the framework's time per tick (figures: README, benchmarks/bench_core.py); use it on
devices and for benchmarks. Leave it off while editing these modules: an editable compiled
install puts the compiled files beside the sources, and they shadow edits until rebuilt.
"""
import os

from setuptools import setup

COMPILED_MODULES = ["graphflow/envelope.py", "graphflow/ledger.py", "graphflow/policies.py",
                    "graphflow/ports.py", "graphflow/runtime.py", "graphflow/scheduler.py"]
MYPY = "mypy==1.13.0"  # mypyc ships with mypy; pinned so every build compiles the same C

if os.environ.get("GRAPHFLOW_COMPILE") == "1":
    try:
        from mypyc.build import mypycify
    except ImportError:  # the build front end first asks which packages the build needs
        setup(setup_requires=[MYPY])
    else:
        core = mypycify(COMPILED_MODULES, opt_level="3")
        setup(ext_modules=core, setup_requires=[MYPY])
else:
    setup()
