"""graphflow.models: the model search order and the missing-model message."""
import pytest

from graphflow.models import find_model, model_search_path, user_cache_dir


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("GRAPHFLOW_MODEL_PATH", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_given_path_wins(clean_env):
    model = clean_env / "here.onnx"
    model.write_bytes(b"x")
    assert find_model(str(model)) == model.resolve()
    assert find_model("here.onnx") == model.resolve()


def test_search_order_env_then_models_then_cache(clean_env, monkeypatch):
    first, second = clean_env / "a", clean_env / "b"
    for folder in (first, second, clean_env / "models", clean_env / "cache" / "graphflow" / "models"):
        folder.mkdir(parents=True)
    cached = clean_env / "cache" / "graphflow" / "models" / "m.onnx"
    cached.write_bytes(b"x")
    assert find_model("m.onnx") == cached.resolve()
    local = clean_env / "models" / "m.onnx"
    local.write_bytes(b"x")
    assert find_model("m.onnx") == local.resolve()
    (second / "m.onnx").write_bytes(b"x")
    monkeypatch.setenv("GRAPHFLOW_MODEL_PATH", f"{first}:{second}")
    assert find_model("m.onnx") == (second / "m.onnx").resolve()
    assert find_model("some/dir/m.onnx") == (second / "m.onnx").resolve()  # by file name too
    assert model_search_path()[:2] == [first, second]
    assert user_cache_dir() == clean_env / "cache" / "graphflow"


def test_missing_model_lists_every_folder_and_says_how_to_get_it(clean_env, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODEL_PATH", "/nowhere/one:/nowhere/two")
    with pytest.raises(FileNotFoundError) as info:
        find_model("openpose_mobilenet_thin.onnx")
    text = str(info.value)
    for folder in ("/nowhere/one", "/nowhere/two", str(clean_env / "models"),
                   str(clean_env / "cache" / "graphflow" / "models")):
        assert folder in text
    assert "set GRAPHFLOW_MODEL_PATH" in text and "./models" in text


def test_unset_variable_is_mentioned(clean_env):
    with pytest.raises(FileNotFoundError, match=r"\$GRAPHFLOW_MODEL_PATH \(not set\)"):
        find_model("missing.onnx")


def test_a_folder_under_the_model_name_is_said_to_be_a_folder(clean_env, monkeypatch, tmp_path):
    """An unpacked archive left a folder named like the model: 'not found' alone was puzzling."""
    (tmp_path / "openpose_mobilenet_thin.onnx").mkdir()
    monkeypatch.setenv("GRAPHFLOW_MODEL_PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        find_model("openpose_mobilenet_thin.onnx")
    assert f"  - {tmp_path} (its openpose_mobilenet_thin.onnx is a folder)\n" in str(info.value)
