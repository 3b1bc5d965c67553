"""`graphflow eval`'s inputs: the annotations file and the image folder are checked before the
app runs (one line naming the file and the JSON path, exit 1, no traceback), and the score is
computed on the images that were really evaluated.

The app here is an oracle (io.ImageLoader → a node that publishes each image's annotated people
→ viz.PredictionWriter): it runs in seconds, and its predictions are the ground truth itself, so
the expected AP is 1.0 by the definition of AP, not by what graphflow computed before."""
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

ORACLE_PACK = '''
import json
import time
from pathlib import Path

import numpy as np

from graphflow import Codelet, Param, Rx, Tx
from graphflow.packs.vision.messages import Image, Skeleton2List


class Oracle(Codelet):
    """Publishes the annotated people of each image it receives, as found skeletons."""
    image = Rx(Image, "Images.")
    skeletons = Tx(Skeleton2List, "Their annotated people.")
    annotations = Param(str, doc="COCO keypoints file.")
    delay_s = Param(float, 0.0, "Seconds each image takes.")

    def start(self):
        data = json.loads(Path(self.annotations).read_text())
        ids = {image["file_name"]: image["id"] for image in data["images"]}
        self.people = {name: [a["keypoints"] for a in data["annotations"] if a["image_id"] == image_id
                              and a["num_keypoints"] > 0 and not a["iscrowd"]] for name, image_id in ids.items()}
        self.tick_on_message(self.image)

    def tick(self):
        found = self.image.read().payload
        time.sleep(self.delay_s)
        joints = np.array(self.people.get(Path(found.source).name, []), dtype=np.float32).reshape(-1, 17, 3)
        joints[:, :, 2] = joints[:, :, 2] > 0  # a labelled joint: found, with score 1
        self.skeletons.publish(Skeleton2List(joints=joints, scores=np.ones(len(joints), np.float32),
                                             source=found.source, frame=found.frame))
'''


def oracle_app(folder: Path, annotations: Path) -> Path:
    (folder / "oracle.py").write_text(ORACLE_PACK)
    app = {"name": "oracle", "modules": ["io", "viz", "oracle.py"], "graph": {
        "nodes": [{"name": "feeder", "components": [{"name": "loader", "type": "io.ImageLoader"}]},
                  {"name": "oracle", "components": [{"name": "oracle", "type": "oracle.Oracle"}]},
                  {"name": "out", "components": [{"name": "writer", "type": "viz.PredictionWriter"}]}],
        "edges": [{"source": "feeder/loader/color", "target": "oracle/oracle/image"},
                  {"source": "oracle/oracle/skeletons", "target": "out/writer/skeletons"}]},
        "config": {"oracle": {"oracle": {"annotations": str(annotations)}},
                   "out": {"writer": {"keypoint_map": list(range(17))}}},
        "io": {"input": "feeder/loader/path", "output": "out/writer/folder"}}
    path = folder / "oracle.app.json"
    path.write_text(json.dumps(app))
    return path


def graphflow(*args):
    return subprocess.run([sys.executable, "-m", "graphflow.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=100, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def coco(shared_data, tmp_path):
    """The mini COCO set's annotations (a dict) and a copy of its images in a folder of our own."""
    source = shared_data / "coco_val2017_mini"
    annotations = json.loads((source / "person_keypoints_val2017_mini.json").read_text())
    images = tmp_path / "images"
    shutil.copytree(source / "images", images)
    return annotations, images


def _drop(key):
    def change(data):
        del data["annotations"][3][key]
    return change


def _short_keypoints(data):
    data["annotations"][3]["keypoints"] = data["annotations"][3]["keypoints"][:10]


BAD_ANNOTATIONS = {  # what the file holds: (how it is made from the good one, the line expected after "FILE: ")
    "truncated": (lambda text: text[:5000], "$: not valid JSON: Expecting property name enclosed in double quotes "
                                            "at line 1 column 5001"),
    "a list": (lambda text: "[1, 2, 3]", '$: expected a JSON object with "images", "annotations" and '
                                        '"categories", got list'),
    "no categories": (lambda data: data.pop("categories"), '$: no "categories"'),
    "no bbox": (_drop("bbox"), '$.annotations[3]: no "bbox"'),
    "no area": (_drop("area"), '$.annotations[3]: no "area"'),
    "short keypoints": (_short_keypoints, "$.annotations[3].keypoints: expected 51 numbers (17 keypoints, "
                                          "each x, y, visibility), got a list of 10"),
    # pycocotools keys both by id: a repeat replaced the first (AP -1, or a wrong image scored)
    "an annotation id twice": (lambda data: data["annotations"][3].update(id=data["annotations"][0]["id"]),
                               "$.annotations[3].id: 192858 is also the id of $.annotations[0]"),
    "an image id twice": (lambda data: data["images"][2].update(id=data["images"][0]["id"]),
                          "$.images[2].id: 415727 is also the id of $.images[0]"),
    "a negative area": (lambda data: data["annotations"][1].update(area=-5),
                        "$.annotations[1].area: expected a number, 0 or more, got -5"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS) + ["a folder"])
def test_a_bad_annotations_file_is_one_line_naming_the_json_path_before_the_app_runs(case, coco, tmp_path):
    annotations, images = coco
    file = tmp_path / "ann.json"
    if case == "a folder":
        file.mkdir()
        expected = "$: is a folder, expected a COCO annotations JSON file"
    else:
        change, expected = BAD_ANNOTATIONS[case]
        if case in ("truncated", "a list"):
            file.write_text(change(json.dumps(annotations)))
        else:
            data = copy.deepcopy(annotations)
            change(data)
            file.write_text(json.dumps(data))
    out = tmp_path / "out"
    result = graphflow("eval", str(oracle_app(tmp_path, file)), "--annotations", str(file), "--images", str(images),
                       "--output", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[0] == f"error: {file}: {expected}"
    assert not out.exists()  # checked before the app ran: it wrote nothing


def _small_coco():
    """Two images, three people (one a crowd), the person category: a valid keypoints document."""
    person = {"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(17)], "skeleton": [[1, 2]]}
    keypoints = [v for k in range(17) for v in (10.0 + k, 20.0 + 2 * k, 2)]
    annotation = {"id": 1, "image_id": 1, "category_id": 1, "keypoints": keypoints, "num_keypoints": 17,
                  "bbox": [10.0, 20.0, 16.0, 32.0], "area": 400.0, "iscrowd": 0}
    return {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
            "annotations": [annotation, {**annotation, "id": 2, "image_id": 2},
                            {**annotation, "id": 3, "image_id": 2, "iscrowd": 1, "num_keypoints": 0}],
            "categories": [person]}


@pytest.mark.timeout(600)
def test_fuzzed_annotations_are_refused_in_one_line_or_scored_by_pycocotools_without_an_exception():
    """What the checker lets through, pycocotools' keypoint evaluation takes (with the ground truth
    as predictions); what it refuses is one line with a JSON path."""
    import contextlib
    import io

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from graphflow.evaluation import coco_keypoints_problem
    sys.path.insert(0, str(REPO / "tests" / "core"))
    from test_loader_fuzz import json_values, paths_of

    @st.composite
    def mutated(draw):
        data = _small_coco()
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from([p for p in paths_of(data) if p]))
            parent = data
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()):
                parent[path[-1]] = draw(json_values)
            else:
                del parent[path[-1]]
        return data

    @settings(max_examples=int(os.environ.get("GRAPHFLOW_FUZZ_EXAMPLES", 1500)), deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated())
    def check(data):
        problem = coco_keypoints_problem(copy.deepcopy(data))
        if problem is not None:
            where, what = problem
            assert where.startswith("$") and "\n" not in what
            return
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            gt = COCO()
            gt.dataset = data
            gt.createIndex()
            images = {image["id"] for image in data["images"]}
            results = [{"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"],
                        "score": 1.0} for a in data["annotations"] if a["image_id"] in images]
            if results:
                evaluation = COCOeval(gt, gt.loadRes(results), "keypoints")
                evaluation.evaluate()
                evaluation.accumulate()
                evaluation.summarize()

    check()


def _eval(tmp_path, annotations: dict, images: Path):
    file = tmp_path / "ann.json"
    file.write_text(json.dumps(annotations))
    return file, graphflow("eval", str(oracle_app(tmp_path, file)), "--annotations", str(file), "--images",
                           str(images), "--output", str(tmp_path / "out"))


@pytest.mark.timeout(120)
def test_a_folder_with_none_of_the_annotated_images_is_refused_before_the_run(coco, tmp_path):
    annotations, images = coco
    for image in annotations["images"]:
        image["file_name"] = "x_" + image["file_name"]
    file, result = _eval(tmp_path, annotations, images)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[0] == f"error: {file}: $.images: none of its 16 images (file_name) is in {images}"
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(120)
def test_annotations_without_a_person_with_keypoints_are_refused_before_the_run(coco, tmp_path):
    annotations, images = coco
    for annotation in annotations["annotations"]:
        annotation["num_keypoints"], annotation["keypoints"] = 0, [0] * 51
    file, result = _eval(tmp_path, annotations, images)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[0] == (f"error: {file}: $.annotations: no person with keypoints (num_keypoints "
                                             f"> 0, not a crowd) on its images in {images}: nothing to score")
    assert not (tmp_path / "out").exists()


def _with_people(annotations: dict) -> list[str]:
    ids = {a["image_id"] for a in annotations["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]}
    return sorted(image["file_name"] for image in annotations["images"] if image["id"] in ids)


@pytest.mark.timeout(120)
def test_annotated_images_missing_from_the_folder_are_counted_in_a_warning_and_left_out_of_the_score(coco, tmp_path):
    annotations, images = coco
    kept = _with_people(annotations)[:3]
    for image in images.iterdir():
        if image.name not in kept:
            image.unlink()
    file, result = _eval(tmp_path, annotations, images)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert (f"13 of the 16 images in {file} are not in {images}; evaluating on the 3 that are"
            in result.stderr)
    assert " predictions on 3 images (of 16 annotated: 13 not evaluated)\n" in result.stdout
    assert "AP 1.000  AP50 1.000  AP75 1.000  AR 1.000" in result.stdout  # the oracle's, on the images it saw


@pytest.mark.timeout(120)
def test_an_image_the_app_skips_is_not_counted_or_scored(coco, tmp_path):
    annotations, images = coco
    corrupt = images / _with_people(annotations)[0]
    corrupt.write_bytes(corrupt.read_bytes()[:5000])  # a JPEG cut short: the loader skips it
    file, result = _eval(tmp_path, annotations, images)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"1 annotated image was not evaluated (the app skipped it): {corrupt.name}" in result.stderr
    assert " predictions on 15 images (of 16 annotated: 1 not evaluated)\n" in result.stdout
    assert "AP 1.000  AP50 1.000  AP75 1.000  AR 1.000" in result.stdout


@pytest.mark.timeout(120)
def test_results_of_a_category_the_annotations_do_not_have_are_an_error_not_ap_0(coco, tmp_path):
    """The annotations' person category is 2; the writer's results are category 1 (its default):
    nothing could match, and AP 0.000 was printed with exit 0."""
    annotations, images = coco
    for category in annotations["categories"]:
        category["id"] = 2
    for annotation in annotations["annotations"]:
        annotation["category_id"] = 2
    file, result = _eval(tmp_path, annotations, images)
    assert result.returncode == 1 and "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the app's results are of category [1], which the annotations do not have (their categories: "
        "[2]): set the prediction writer's category_id")
    fixed = graphflow("eval", str(oracle_app(tmp_path, file)), "--annotations", str(file), "--images", str(images),
                      "--set", "out/writer/category_id=2")
    assert fixed.returncode == 0 and "AP 1.000  AP50 1.000  AP75 1.000  AR 1.000" in fixed.stdout


@pytest.mark.timeout(120)
def test_an_eval_stopped_by_ctrl_c_scores_nothing_and_says_so(coco, tmp_path):
    """Ctrl-C after a few of the 16 images: the score of those few (AP 0.685 where the set's is
    0.446) was printed and written as the result, exit 0."""
    annotations, images = coco
    file = tmp_path / "ann.json"
    file.write_text(json.dumps(annotations))
    scores = tmp_path / "scores.json"
    process = subprocess.Popen([sys.executable, "-m", "graphflow.cli", "eval", str(oracle_app(tmp_path, file)),
                                "--annotations", str(file), "--images", str(images), "--json", str(scores),
                                "--output", str(tmp_path / "out"), "--set", "oracle/oracle/delay_s=0.5"],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    stream = tmp_path / "out" / "predictions.jsonl"
    deadline = time.monotonic() + 60
    while not (stream.exists() and stream.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted before the app went through the images: nothing scored"
    assert "AP" not in stdout and not scores.exists()


@pytest.mark.timeout(120)
def test_an_output_folder_that_is_the_images_folder_is_refused_before_the_run(coco, tmp_path):
    annotations, images = coco
    file = tmp_path / "ann.json"
    file.write_text(json.dumps(annotations))
    before = sorted((p.name, p.stat().st_size) for p in images.iterdir())
    result = graphflow("eval", str(oracle_app(tmp_path, file)), "--annotations", str(file), "--images", str(images),
                       "--output", str(images))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == (f"error: <command line>: --output: {images} is the folder of the images: "
                                             f"outputs named like the images would replace them; choose another folder")
    assert sorted((p.name, p.stat().st_size) for p in images.iterdir()) == before
