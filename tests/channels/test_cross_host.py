"""Cross-host for real: two network namespaces joined by a veth pair, each with its own hostname,
run the split OpenPose app one process in each, over TCP with CURVE keys. Needs root (CI runs as
root); skips only where namespaces cannot be made."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, graphflow_env

SUFFIX = f"{os.getpid() % 100000}"
NS_A, NS_B = f"gfa{SUFFIX}", f"gfb{SUFFIX}"
VETH_A, VETH_B = f"gfva{SUFFIX}", f"gfvb{SUFFIX}"
SUBNET = 10 + os.getpid() % 200
ADDR_A, ADDR_B = f"10.77.{SUBNET}.1", f"10.77.{SUBNET}.2"


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def namespaces():
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        pytest.skip("ip (iproute2) or unshare is not installed")
    made = _ip("netns", "add", NS_A)
    if made.returncode:
        pytest.skip(f"cannot make network namespaces here: {made.stderr.strip()}")
    try:
        for command in (["netns", "add", NS_B],
                        ["link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B],
                        ["link", "set", VETH_A, "netns", NS_A], ["link", "set", VETH_B, "netns", NS_B],
                        ["-n", NS_A, "addr", "add", f"{ADDR_A}/24", "dev", VETH_A],
                        ["-n", NS_B, "addr", "add", f"{ADDR_B}/24", "dev", VETH_B],
                        ["-n", NS_A, "link", "set", VETH_A, "up"], ["-n", NS_B, "link", "set", VETH_B, "up"],
                        ["-n", NS_A, "link", "set", "lo", "up"], ["-n", NS_B, "link", "set", "lo", "up"]):
            result = _ip(*command)
            assert result.returncode == 0, f"ip {' '.join(command)}: {result.stderr}"
        yield
    finally:
        _ip("netns", "del", NS_A)
        _ip("netns", "del", NS_B)


def in_namespace(namespace: str, hostname: str, args: list[str]) -> subprocess.Popen:
    """`graphflow ARGS` inside a network namespace, in a UTS namespace of its own (its own host name)."""
    command = ["ip", "netns", "exec", namespace, "unshare", "--uts", "sh", "-c",
               f'hostname {hostname} && exec "$0" "$@"', sys.executable, "-m", "graphflow.cli", *args]
    return subprocess.Popen(command, cwd=REPO, env=graphflow_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float) -> str:
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            return process.communicate(timeout=15)[0] + "\n(stopped: it did not end in time)"
        except subprocess.TimeoutExpired:
            pass
        process.kill()
        return process.communicate()[0] + "\n(killed: it did not end in time)"


def split_app(tmp_path: Path, name: str, keys_a: Path, keys_b: Path) -> Path:
    app = json.loads((REPO / "apps" / "openpose_split.app.json").read_text())
    app["processes"] = {"inference": {"host": ADDR_A, "port": 5560, "keys": str(keys_a)},
                        "post": {"keys": str(keys_b)}}
    app["graph"]["nodes"][3]["subgraph"] = str(REPO / "apps" / "openpose_decoder.subgraph.json")
    path = tmp_path / f"{name}.app.json"
    path.write_text(json.dumps(app))
    return path


def make_keys(folder: Path, *names: str) -> None:
    for name in names:
        result = subprocess.run([sys.executable, "-m", "graphflow.cli", "keys", name, "--dir", str(folder)],
                                cwd=REPO, env=graphflow_env(), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_split_app_across_two_hosts_over_tcp_with_curve_keys(namespaces, tmp_path, model_path, shared_data):
    image = shared_data / "images" / "bus.jpg"
    keys_a, keys_b = tmp_path / "keys_a", tmp_path / "keys_b"
    make_keys(keys_a, "inference", "post")
    keys_b.mkdir()
    for file in ("post.key_secret", "post.key", "inference.key"):  # b gets its own pair and a's public key
        shutil.copy(keys_a / file, keys_b / file)
    app = split_app(tmp_path, "split", keys_a, keys_b)
    common = ["--input", str(image), "--output", str(tmp_path / "out"), "--no-viewer"]
    post = in_namespace(NS_B, "host-b", ["run", str(app), "--process", "post", *common])
    # -v: how the publisher reaches each subscriber (frames or shared memory) is a detail line
    inference = in_namespace(NS_A, "host-a", ["-v", "run", str(app), "--process", "inference", *common])
    inference_output = finish(inference, 300)
    post_output = finish(post, 60)
    assert inference.returncode == 0 and post.returncode == 0, inference_output + post_output
    assert "connected (frames)" in inference_output  # another host: frames over TCP, not shared memory
    single = subprocess.run([sys.executable, "-m", "graphflow.cli", "run", "apps/openpose.app.json",
                             "--input", str(image), "--output", str(tmp_path / "single"), "--no-viewer"],
                            cwd=REPO, env=graphflow_env(), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    expected = json.loads((tmp_path / "single" / "predictions.json").read_text())
    assert json.loads((tmp_path / "out" / "predictions.json").read_text()) == expected and expected

    # a subscriber whose key the publisher does not know is refused, and says so
    intruder = tmp_path / "keys_intruder"
    make_keys(intruder, "post")
    shutil.copy(keys_a / "inference.key", intruder / "inference.key")
    bad_app = split_app(tmp_path, "intruder", keys_a, intruder)
    inference = in_namespace(NS_A, "host-a", ["run", str(bad_app), "--process", "inference", *common,
                                              "--duration", "20"])
    post = in_namespace(NS_B, "host-b", ["run", str(bad_app), "--process", "post", *common, "--duration", "20"])
    post_output = finish(post, 120)
    inference.terminate()  # the supervisor stops its child
    finish(inference, 60)
    assert post.returncode == 1
    assert "authentication refused" in post_output


@pytest.mark.timeout(60)
def test_binding_off_loopback_without_keys_is_refused_unless_insecure(namespaces, tmp_path, model_path, shared_data):
    app = json.loads((REPO / "apps" / "openpose_split.app.json").read_text())
    app["processes"] = {"inference": {"host": ADDR_A}, "post": {}}
    app["graph"]["nodes"][3]["subgraph"] = str(REPO / "apps" / "openpose_decoder.subgraph.json")
    path = tmp_path / "open.app.json"
    path.write_text(json.dumps(app))
    common = ["run", str(path), "--process", "inference", "--no-viewer", "--input",
              str(shared_data / "images" / "bus.jpg"), "--output", str(tmp_path / "out"), "--duration", "4"]
    refused = in_namespace(NS_A, "host-a", common)
    output, _ = refused.communicate(timeout=60)
    assert refused.returncode == 1
    assert f"binding tcp://{ADDR_A}:5560 exposes the channel off this host" in output
    allowed = in_namespace(NS_A, "host-a", common + ["--insecure"])  # runs; nobody subscribes, --duration ends it
    output, _ = allowed.communicate(timeout=60)
    assert "exposes the channel" not in output and "cannot bind" not in output


@pytest.mark.timeout(120)
def test_a_network_drop_is_noticed_and_the_link_resumes_without_restart(namespaces, tmp_path, shared_data):
    app = {"name": "drop", "modules": ["io", "viz"],
           "graph": {"nodes": [
               {"name": "feeder", "process": "a", "components": [{"name": "loader", "type": "io.ImageLoader"}]},
               {"name": "writer", "process": "b", "components": [{"name": "writer", "type": "viz.ImageWriter"}]}],
               "edges": [{"source": "feeder/loader/color", "target": "writer/writer/image",
                          "queue": {"size": 4, "policy": "block"}}]},
           "processes": {"a": {"host": ADDR_A, "port": 5570}, "b": {}},
           "config": {"feeder": {"loader": {"path": str(shared_data / "images"), "tick_period": "20Hz", "loop": True}},
                      "writer": {"writer": {"folder": str(tmp_path / "out"), "format": "png"}}}}
    path = tmp_path / "drop.app.json"
    path.write_text(json.dumps(app))
    b = in_namespace(NS_B, "host-b", ["run", str(path), "--process", "b", "--no-viewer", "--duration", "30"])
    a = in_namespace(NS_A, "host-a", ["run", str(path), "--process", "a", "--no-viewer", "--insecure",
                                      "--duration", "14"])
    import time
    time.sleep(5)
    assert _ip("-n", NS_B, "link", "set", VETH_B, "down").returncode == 0  # the cable is pulled for 3 s
    time.sleep(3)
    assert _ip("-n", NS_B, "link", "set", VETH_B, "up").returncode == 0
    a_output, b_output = finish(a, 60), finish(b, 60)
    assert a.returncode == 0 and b.returncode == 0, a_output + b_output
    silent = b_output.find("silent for")
    assert silent > 0, b_output  # noticed by heartbeats (within 2 s: PEER_TIMEOUT_S 1.5 plus one poll)
    assert b_output.find("connected to", silent) > silent  # and said hello again: resumed, no restart
    received = [line for line in b_output.splitlines() if "net.rx0/subscriber/message" in line]
    assert received and int(received[0].split()[2]) > 150  # channel, receiver, messages: ~14 s at 20 Hz, minus the outage
