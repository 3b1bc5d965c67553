"""The test harness, message headers, read-only payloads and the wire form."""
from typing import NamedTuple

import msgpack
import numpy as np
import pytest

from graphflow import MessageType, field, wire
from graphflow.messages import Header, Message
from graphflow.ports import QueueFull
from graphflow.messages import message_types, wire_schema
from graphflow.testing import Harness
from graphflow.packs.demo.add import Add
from graphflow.packs.demo.counter import Counter
from graphflow.packs.demo.messages import Number
from graphflow.packs.demo.scale import Scale
from graphflow.packs.vision.messages import Image, Tensors

from . import testpack


def test_harness_feeds_ticks_and_reads_outputs():
    h = Harness(Scale, {"gain": 3.0}).start()
    message = h.feed("number", Number(2.0), acqtime=1.5)
    assert h.ready()
    assert h.run_pending() == 1
    (out,) = h.outputs("scaled")
    assert out.payload.value == 6.0 and out.acqtime == 1.5
    assert out.header.uuid != message.header.uuid and len(out.header.uuid) == 36


def test_harness_source_with_manual_clock():
    h = Harness(Counter, {"count": 3, "start_value": 5.0}).start()
    for _ in range(3):
        h.tick()
        h.clock.advance(0.1)
    taken = h.take("number")
    assert [m.payload.value for m in taken] == [5.0, 6.0, 7.0]
    assert [m.acqtime for m in taken] == pytest.approx([0.0, 0.1, 0.2])  # stamped by the manual clock
    assert h.outputs("number") == []  # take() forgot them
    assert h.component.exhausted


def test_harness_runs_a_periodic_source_by_its_clock_until_exhausted():
    """run_until moves the ManualClock to each due time, as the scheduler's run_until does (a
    newcomer moved the clock and saw nothing tick; forced ticks ignored `count`)."""
    h = Harness(Counter, {"count": 3, "tick_period": "10Hz"}).start()
    assert h.ready()  # due at start
    assert h.run_until(0.15) == 2 and h.clock() == 0.15
    assert h.run_until(0.15) == 0  # nothing due before 0.2
    assert h.run_until(1.0) == 1 and h.component.exhausted and not h.ready()
    assert [m.acqtime for m in h.outputs("number")] == pytest.approx([0.0, 0.1, 0.2])
    # moved past several slots at once, a late tick skips the missed ones (the policy's rule)
    h = Harness(Counter, {"count": 0, "tick_period": "10Hz"}).start()
    h.clock.advance(0.35)
    assert h.run_pending() == 1 and h.due == pytest.approx(0.4)


def test_harness_synchronized_policy():
    h = Harness(Add, {"tolerance": "10ms"}).start()
    h.feed("a", Number(1.0), acqtime=0.0)
    assert not h.ready()
    h.feed("b", Number(2.0), acqtime=0.005)
    assert h.run_pending() == 1
    assert h.outputs("total")[0].payload.value == 3.0


def test_harness_live_params_and_errors():
    h = Harness(Scale).start()
    h.set_param("gain", 5.0)
    h.feed("number", Number(1.0))
    h.tick()
    assert h.outputs("scaled")[0].payload.value == 5.0
    with pytest.raises(KeyError, match="has no input 'nmber'"):
        h.feed("nmber", Number(1.0))
    with pytest.raises(TypeError, match="takes demo/Number"):
        h.feed("number", Image(np.zeros((2, 2, 3), np.uint8)))


def test_a_param_read_only_at_start_refuses_a_live_change_and_says_so():
    from graphflow.packs.demo.counter import Counter

    h = Harness(Counter, {"tick_period": "10Hz"}).start()
    with pytest.raises(ValueError, match="^is read only when the app starts: set it in the app file, --config or --set$"):
        h.component.set_param("tick_period", "1Hz")
    assert h.component.param_values()["tick_period"] == 0.1
    assert h.component.set_param("count", 3) == 3  # a live one next to it
    described = Counter.describe()["params"]
    assert described["tick_period"]["live"] is False and "live" not in described["count"]


def test_harness_block_queue_full_is_an_error_not_a_hang():
    h = Harness(testpack.Collect).start()
    for value in range(4):
        h.feed("number", Number(float(value)))
    with pytest.raises(QueueFull):
        h.feed("number", Number(9.0))


def test_published_arrays_are_read_only_and_shared():
    h = Harness(_Passthrough).start()
    pixels = np.zeros((4, 4, 3), np.uint8)
    h.feed("image", Image(pixels))
    h.tick()
    out = h.outputs("image_out")[0].payload
    assert out.pixels is pixels  # by reference, no copy
    with pytest.raises(ValueError):
        out.pixels[0, 0, 0] = 1


class _Outer(MessageType, wire="test/Outer"):
    inner: Image | None = field(None)
    arrays: list = field(default_factory=list)
    label: str = field("")


class _OuterWithMore(_Outer, wire="test/OuterWithMore"):
    extra: np.ndarray | None = field(None)


def test_freeze_reaches_nested_messages_containers_and_subclass_fields():
    parent = _Outer(Image(np.zeros((2, 2, 3), np.uint8)), [np.zeros(3), {"k": np.zeros(2)}])
    parent.freeze()  # the parent's freeze plan is made first: the subclass needs its own
    child = _OuterWithMore(None, [], "x", np.zeros(5))
    child.freeze()
    for array in (parent.inner.pixels, parent.arrays[0], parent.arrays[1]["k"], child.extra):
        assert not array.flags.writeable
    later = _Outer(Image(np.zeros((1, 1, 3), np.uint8)))
    later.inner.freeze()  # already frozen nested payloads are skipped, not an error
    later.freeze()
    assert not later.inner.pixels.flags.writeable


from graphflow import Codelet, Rx, Tx  # noqa: E402


class _Passthrough(Codelet):
    image = Rx(Image)
    image_out = Tx(Image)

    def tick(self):
        self.image_out.publish(self.image.read().payload)


def test_wire_round_trip_through_msgpack():
    tensors = Tensors(["a", "b"], [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2, np.int64)])
    h = Harness(_TensorSource).start()
    h.component.payload = tensors
    h.tick()
    message = h.outputs("out")[0]
    frames = wire.encode(message)
    unpacked = msgpack.unpackb(frames[0])
    assert unpacked["type"] == "vision/Tensors"
    assert {"uuid", "acqtime", "pubtime"} <= set(unpacked)
    decoded = wire.decode([bytes(frame) for frame in frames])
    assert decoded.uuid == message.uuid and isinstance(decoded.payload, message_types()[unpacked["type"]])
    back = decoded.payload
    assert back.names == ["a", "b"]
    np.testing.assert_array_equal(back.tensors[0], tensors.tensors[0])
    assert back.tensors[1].dtype == np.int64


class _Track(NamedTuple):
    """What a plain tracking function returns."""
    ids: np.ndarray
    boxes: np.ndarray
    velocity: np.ndarray | None = None


class _Tracks(MessageType, wire="test/Tracks"):
    tracks: _Track = field(doc="Tracked boxes.")
    frame: int = field(0)


def test_a_record_field_is_frozen_sent_by_field_name_and_described_in_the_schema():
    payload = _Tracks(_Track(np.arange(3, dtype=np.int32), np.zeros((3, 4), np.float32)), 5)
    payload.freeze()
    assert not payload.tracks.ids.flags.writeable and not payload.tracks.boxes.flags.writeable
    fields = msgpack.unpackb(wire.encode(Message(Header(0.0, 0.0), payload))[0])["fields"]
    assert set(fields["tracks"]) == {"ids", "boxes", "velocity"} and fields["tracks"]["velocity"] is None
    back = wire.unpack(wire.pack(Message(Header(0.0, 0.0), payload))).payload
    assert isinstance(back.tracks, _Track) and back.frame == 5 and back.tracks.velocity is None
    np.testing.assert_array_equal(back.tracks.ids, [0, 1, 2])
    assert back.tracks.boxes.shape == (3, 4) and back.tracks.boxes.dtype == np.float32
    schema = wire_schema(_Tracks)["properties"]["payload"]["properties"]["tracks"]
    assert schema["required"] == ["ids", "boxes"] and schema["additionalProperties"] is False
    assert "dtype" in schema["properties"]["ids"]["properties"]
    assert _Tracks.describe()["fields"]["tracks"]["type"] == "_Track(ids, boxes, velocity)"


class _MaybeTracks(MessageType, wire="test/MaybeTracks"):
    kept: _Track | None = field(None, doc="An optional record.")


def test_an_optional_record_field_is_frozen_like_a_record():
    from graphflow import messages
    assert ("kept", messages.RECORD) in messages.freeze_plan(_MaybeTracks)
    payload = _MaybeTracks(_Track(np.arange(3), np.zeros((3, 4)), np.ones(3)))
    payload.freeze()
    assert not any(array.flags.writeable for array in payload.kept)
    _MaybeTracks(None).freeze()  # and None is fine


class _TensorSource(Codelet):
    out = Tx(Tensors)

    def tick(self):
        self.out.publish(self.payload)


def test_publish_checks_the_message_type():
    h = Harness(_TensorSource).start()
    h.component.payload = Number(1.0)
    with pytest.raises(TypeError, match="publishes vision/Tensors, got Number"):
        h.tick()


def test_a_new_runtime_reaches_the_components_channels():
    from graphflow.runtime import Runtime
    from graphflow.scheduler import ManualClock

    h = Harness(_Passthrough).start()
    moved = Runtime(clock=ManualClock(42.0))
    moved.tap.subscribe(h._capture)
    h.component.runtime = moved
    h.feed("image", Image(np.zeros((1, 1, 3), np.uint8)), acqtime=41.0)
    h.tick()
    message = h.outputs("image_out")[0]
    assert message.pubtime == 42.0  # stamped by the new runtime's clock, not the harness's
    assert h.component.image.latency.values()[-1] == pytest.approx(1.0)


def test_uuids_are_version_4_rfc_4122_and_unique_per_message():
    import uuid
    from graphflow import messages
    headers = [Header(0.0, 0.0) for _ in range(3)]
    texts = [h.uuid for h in headers]
    assert len(set(texts)) == 3
    for header, text in zip(headers, texts):
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert parsed.int == uuid.UUID(int=(messages._PROCESS_ID << 64) | header._sequence, version=4).int
    for sequence in (0, 2**62 - 1, 2**62, 2**64 - 1):  # the low word's top bits become the variant
        assert messages._uuid_text(sequence) == str(uuid.UUID(int=(messages._PROCESS_ID << 64) | sequence, version=4))


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_the_number_writer_refuses_a_value_json_cannot_hold_and_keeps_the_lines_before(tmp_path, value):
    """Infinity and NaN are no JSON: the file held 'Infinity', which JSON readers refuse."""
    import json

    from graphflow import NodeError
    from graphflow.packs.demo.messages import Number
    from graphflow.packs.demo.writer import NumberWriter

    path = tmp_path / "numbers.jsonl"
    h = Harness(NumberWriter, {"path": str(path)}).start()
    h.feed("number", Number(1.5), acqtime=1.0)
    h.run_pending()
    h.feed("number", Number(value), acqtime=2.0)
    with pytest.raises(NodeError, match=r"cannot be written to .* as JSON \(acqtime 2.0\)"):
        h.run_pending()
    h.stop()
    assert [json.loads(line, parse_constant=lambda text: pytest.fail(f"not JSON: {text}"))
            for line in path.read_text().splitlines()] == [{"acqtime": 1.0, "value": 1.5}]


def test_a_lines_file_opened_to_append_loses_only_a_line_a_crash_cut_short(tmp_path):
    from graphflow.files import open_lines

    path = tmp_path / "stream.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3')  # killed while writing the third line
    with open_lines(path, append=True) as f:
        f.write(b'{"a": 4}\n')
    assert path.read_bytes() == b'{"a": 1}\n{"a": 2}\n{"a": 4}\n'
    path.write_bytes(b'{"a": 1')  # not one whole line
    with open_lines(path, append=True) as f:
        f.write(b'{"a": 5}\n')
    assert path.read_bytes() == b'{"a": 5}\n'
    with open_lines(path, append=False) as f:  # a new run: a new file
        f.write(b'{"a": 6}\n')
    assert path.read_bytes() == b'{"a": 6}\n'
