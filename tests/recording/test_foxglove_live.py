"""``graphflow run --foxglove``: a real WebSocket client speaking Foxglove's protocol subscribes to
the image channel and gets the app's images as foxglove.CompressedImage."""
from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import subprocess
import sys
import time

import aiohttp
import cv2
import numpy as np
import pytest

MESSAGE_DATA = 1  # Foxglove WebSocket protocol: binary opcode of a message


def feed_app(tmp_path, image):
    app = {"name": "feed", "modules": ["io"],
           "graph": {"nodes": [{"name": "feeder", "components": [{"name": "image_loader", "type": "io.ImageLoader"}]}],
                     "edges": []},
           "config": {"feeder": {"image_loader": {"path": str(image), "tick_period": "20Hz", "loop": True}}}}
    path = tmp_path / "feed.app.json"
    path.write_text(json.dumps(app))
    return path


async def first_image(url: str, topic: str, timeout: float = 20.0) -> tuple[dict, dict, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=("foxglove.sdk.v1", "foxglove.websocket.v1")) as ws:
            deadline = time.monotonic() + timeout
            channel = None
            while time.monotonic() < deadline:
                message = await ws.receive(timeout=deadline - time.monotonic())
                if message.type == aiohttp.WSMsgType.TEXT:
                    body = json.loads(message.data)
                    if body.get("op") == "advertise":
                        for advertised in body["channels"]:
                            if advertised["topic"] == topic:
                                channel = advertised
                                await ws.send_str(json.dumps({"op": "subscribe",
                                                              "subscriptions": [{"id": 7, "channelId": advertised["id"]}]}))
                elif message.type == aiohttp.WSMsgType.BINARY and message.data[0] == MESSAGE_DATA:
                    subscription, log_time = struct.unpack_from("<IQ", message.data, 1)
                    assert subscription == 7
                    return channel, {"log_time": log_time}, message.data[13:]
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
    raise AssertionError(f"no message on {topic} within {timeout} s")


@pytest.mark.timeout(90)
def test_foxglove_server_sends_the_images(repo, shared_data, tmp_path):
    image = shared_data / "images" / "bus.jpg"
    process = subprocess.Popen([sys.executable, "-m", "graphflow.cli", "run", str(feed_app(tmp_path, image)),
                                "--no-viewer", "--quiet", "--foxglove", "--foxglove-port", "0", "--duration", "30"],
                               cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in process.stdout:
            found = re.search(r"foxglove: (ws://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the server did not say where it listens"
        channel, header, payload = asyncio.run(first_image(url, "/foxglove/feeder/image_loader/color"))
        assert channel["schemaName"] == "foxglove.CompressedImage" and channel["encoding"] == "json"
        body = json.loads(payload)
        assert body["format"] == "jpeg" and body["frame_id"] == "feeder/image_loader/color"
        assert body["timestamp"]["sec"] * 10**9 + body["timestamp"]["nsec"] == header["log_time"]
        pixels = cv2.imdecode(np.frombuffer(base64.b64decode(body["data"]), np.uint8), cv2.IMREAD_COLOR)
        assert cv2.PSNR(pixels, cv2.imread(str(image))) > 30
    finally:
        process.terminate()
        process.wait(20)


def test_a_taken_port_is_one_line(repo, shared_data, tmp_path):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = subprocess.run([sys.executable, "-m", "graphflow.cli", "run",
                                 str(feed_app(tmp_path, shared_data / "images" / "bus.jpg")), "--no-viewer", "--quiet",
                                 "--foxglove", "--foxglove-port", str(port), "--duration", "1"],
                                cwd=repo, capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert result.returncode == 2
    assert f"--foxglove: cannot serve on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr
