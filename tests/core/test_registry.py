"""Finding node packs: light imports, and a failed import that a fix in the same process mends."""
import subprocess
import sys
import textwrap

import pytest

from graphflow.registry import Registry

HEAVY = ("cv2", "onnxruntime", "cupy", "tensorrt", "numba", "mcap", "aiohttp")


@pytest.mark.timeout(60)
def test_listing_every_node_imports_no_heavy_library():
    code = textwrap.dedent(f"""
        import sys
        from graphflow.registry import Registry
        registry = Registry()
        assert not registry.load_all()
        assert "openpose.EdgeScores" in registry.types and "io.ImageLoader" in registry.types
        print([name for name in {HEAVY!r} if name in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.timeout(60)
def test_the_opencv_stand_in_imports_opencv_on_first_use():
    code = ("import sys\nfrom graphflow.packs.vision.opencv import cv2\nassert 'cv2' not in sys.modules\n"
            "cv2.imdecode\nassert 'cv2' in sys.modules\nprint(sys.modules['cv2'].getNumThreads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


@pytest.mark.timeout(30)
def test_a_pack_fixed_after_a_failed_import_loads_in_the_same_process(tmp_path, monkeypatch):
    pack = tmp_path / "fixme_pack"
    pack.mkdir()
    (pack / "__init__.py").write_text("")
    (pack / "nodes.py").write_text("from graphflow import Codelet\nclass Fixed(Codelet):\n    pass\nbroken(\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SyntaxError):
        Registry().load_pack("fixme_pack")
    assert not [name for name in sys.modules if name.startswith("fixme_pack")]
    (pack / "nodes.py").write_text("from graphflow import Codelet\nclass Fixed(Codelet):\n    pass\n")
    registry = Registry()
    registry.load_pack("fixme_pack")
    assert "fixme_pack.Fixed" in registry.types


@pytest.mark.timeout(30)
def test_a_pack_file_fixed_after_a_failed_import_loads_in_the_same_process(tmp_path):
    pack = tmp_path / "by_path.py"
    pack.write_text("from graphflow import Codelet\nraise RuntimeError('not yet')\n")
    with pytest.raises(RuntimeError, match="not yet"):
        Registry().load_pack("by_path.py", tmp_path)
    pack.write_text("from graphflow import Codelet\nclass Fine(Codelet):\n    pass\n")
    registry = Registry()
    registry.load_pack("by_path.py", tmp_path)
    assert "by_path.Fine" in registry.types
