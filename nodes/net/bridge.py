"""net.Publisher and net.Subscriber: one edge of a graph, carried between processes or hosts."""
from __future__ import annotations

import logging

from graphflow import Codelet, NodeError, Param, Rx, Tx
from graphflow.channels import transport
from graphflow.channels.security import ChannelConfigError
from graphflow.messages import message_types
from graphflow.tick import TickPolicy

from .messages import AnyMessage

QUEUE_POLICIES = ["latest", "block", "reject"]


def _resolve(type_name: str, who: str):
    message_type = message_types().get(type_name)
    if message_type is None or message_type is AnyMessage:
        raise ValueError(f"{who}: message_type {type_name!r} is not a known message type "
                         f"(is its pack in the app's modules?)")
    return message_type


class _MessageTypeParam(Param):
    """A message type's wire name, checked against the declared types when the app is validated."""

    def convert(self, value):
        value = super().convert(value)
        known = message_types()
        if value not in known or known[value] is AnyMessage:
            import difflib
            near = difflib.get_close_matches(value, [k for k in known if k != AnyMessage.wire_name], n=3)
            hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else " (is its pack in the app's modules?)"
            raise ValueError(f"unknown message type {value!r}{hint}")
        return value


class _Bridge(Codelet):
    endpoint = Param(str, "tcp://127.0.0.1:5555",
                     "ZeroMQ endpoint: tcp://HOST:PORT or ipc:///path. The publisher binds it, subscribers connect.", live=False)
    message_type = _MessageTypeParam(str, doc="Wire name of the message type carried, e.g. 'vision/Image'; "
                                  "both ends must agree (checked when they connect).", live=False)
    queue_size = Param(int, 8, "Messages in flight per subscriber before the policy applies.", range=(1, None), live=False)
    curve_secret_key = Param(str, "", "This end's CURVE secret key file (graphflow keys NAME makes NAME.key_secret); "
                                      "empty: no encryption.", live=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.carried = _resolve(self.message_type, self.full_name)
        self.message.message_type = self.carried  # its port (Rx or Tx, named message) carries that type

    def channel_problem(self, error) -> NodeError:
        """A channel that cannot work (keys, endpoint, a refusal) is the user's to fix: one line,
        no traceback, the node named once (the failure line names it)."""
        return NodeError(str(error).removeprefix(f"{self.full_name}: "))

    @classmethod
    def port_message_type(cls, port: str, params: dict):
        """For the loader: the type this bridge's port carries (named by its message_type param)."""
        name = params.get("message_type")
        return message_types().get(name) if isinstance(name, str) else None


class Publisher(_Bridge):
    """Sends every message it receives to the net.Subscribers connected to its endpoint
    (frames over ZeroMQ; on one host arrays of 64 KB and more through shared memory). Binds
    loopback unless given CURVE keys or insecure."""

    message = Rx(AnyMessage, "The messages to send.", queue_size=8, policy="block")
    policy = Param(str, "block", "When a subscriber's queue is full: latest (drop its oldest), "
                                 "block (wait: nothing is lost), reject (drop the new one).", choices=QUEUE_POLICIES, live=False)
    curve_clients = Param(str, "", "Folder of the CURVE public keys (*.key) allowed to connect; empty: any "
                                   "client with the right server key.", live=False)
    insecure = Param(bool, False, "Allow binding off loopback without CURVE keys.", live=False)
    shm_threshold = Param(int, transport.SHM_THRESHOLD, "Arrays of this many bytes and more go through shared "
                                                        "memory to subscribers on this host.", range=(0, None), live=False)
    flush_timeout = Param(float, 5.0, "At the end: seconds to wait for subscribers to take what is queued.",
                          range=(0.0, None), live=False)
    await_subscriber = Param(float, 0.0, "At the start: seconds the graph waits for a first subscriber before it "
                                         "ticks (0: no wait). An app split into processes waits, so that no early "
                                         "message is lost to a process still starting.", range=(0.0, None), live=False)

    def start(self):
        try:
            self.sender = transport.Sender(
                self.endpoint, self.carried, name=self.full_name, queue_size=self.queue_size, policy=self.policy,
                curve_secret_key=self.curve_secret_key, curve_clients=self.curve_clients, insecure=self.insecure,
                shm_threshold=self.shm_threshold, stopping=lambda: getattr(self.runtime, "finished", False),
                draining=lambda: getattr(self.runtime, "stopped_early", False))
            self.sender.start()
        except (ChannelConfigError, transport.ChannelError) as exc:
            raise self.channel_problem(exc) from None
        self._counted = 0  # the sender's drops already added to this channel's
        self.tick_on_message(self.message)

    def wait_ready(self):
        stopping = lambda: getattr(self.runtime, "stop_requested", False)  # noqa: E731
        if self.await_subscriber > 0 and not self.sender.wait_for_receiver(self.await_subscriber, stopping) \
                and not stopping():
            self.log.warning("%s: no subscriber within %g s; the graph starts anyway (queue policy %s, %d "
                             "queued until one connects)", self.sender.bound_endpoint, self.await_subscriber,
                             self.policy, self.queue_size)

    def tick(self):
        messages = []  # every message waiting now, handed over in one go (one lock, one wake-up)
        for _ in range(self.message.available()):
            message = self.message.read()
            if message is None:
                break
            messages.append(message)
        if messages:
            self.sender.send_many(messages)
        self._count_drops()

    def _count_drops(self) -> None:
        """Dropped on the wire, counted on this channel's drops: the new messages refused, the
        queued ones pushed out (policy latest), those queued for a subscriber that went silent,
        and those undelivered at the end; all in the sender's count, which its I/O thread raises too."""
        dropped = self.sender.dropped
        self.message.dropped += dropped - self._counted
        self._counted = dropped

    def stop(self):
        sender = getattr(self, "sender", None)
        if sender is not None:
            sender.close(self.flush_timeout)
            self._count_drops()
            # A summary line when the user must look (bad frames, refusals, losses the policy did not
            # ask for: 'latest' and 'reject' drop by design, the job report counts those); else a detail.
            trouble = sender.bad_frames or sender.refused or (sender.dropped and self.policy == "block")
            self.log.log(logging.WARNING if trouble else logging.DEBUG, "%s: %d sent, %d dropped, %d bad frames%s",
                         sender.bound_endpoint, sender.sent, sender.dropped, sender.bad_frames,
                         f", {len(sender.refused)} subscriber{'s' * (len(sender.refused) != 1)} refused"
                         if sender.refused else "")


class _Received(TickPolicy):
    """Due when the receiver holds messages, an end or an error (woken by its I/O thread)."""

    self_driven = True  # the network makes it due: a source, whose end the app's end waits for

    def __init__(self, receiver: transport.Receiver):
        self.receiver = receiver

    def ready(self) -> bool:
        r = self.receiver
        return bool(r._inbox) or r.ended or r.error is not None

    def describe(self) -> str:
        return f"on messages from {self.receiver.endpoint}"


class Subscriber(_Bridge):
    """Publishes every message a net.Publisher at its endpoint sends; resumes by itself when the
    publisher starts late, restarts or the network drops. Exhausted when the publisher's app ends."""

    message = Tx(AnyMessage, "The messages received.")
    curve_server_key = Param(str, "", "The publisher's CURVE public key file (NAME.key); empty: no encryption.", live=False)
    max_message_bytes = Param(int, transport.MAX_MESSAGE_BYTES, "Larger messages are dropped and counted.",
                              range=(1, None), live=False)

    def start(self):
        try:
            self.receiver = transport.Receiver(
                self.endpoint, self.carried, name=self.full_name, queue_size=self.queue_size,
                wake=lambda: self.runtime.input_ready(self), curve_server_key=self.curve_server_key,
                curve_secret_key=self.curve_secret_key, max_message_bytes=self.max_message_bytes)
            self.receiver.start()
        except (ChannelConfigError, transport.ChannelError) as exc:
            raise self.channel_problem(exc) from None
        self.tick_policy = _Received(self.receiver)

    def tick(self):
        receiver = self.receiver
        for message in receiver.take():
            self.message.publish(message.payload, acqtime=message.acqtime)
        if receiver.error is not None:
            raise self.channel_problem(receiver.error)
        if receiver.ended and not receiver.pending():
            self.report_exhausted()

    def stop(self):
        receiver = getattr(self, "receiver", None)
        if receiver is not None:
            receiver.close()
            trouble = receiver.bad_frames or receiver.silences  # (drops upstream: the publisher's policy)
            self.log.log(logging.WARNING if trouble else logging.DEBUG,
                         "%s: %d received, %d bad frames dropped, %d dropped upstream, %d silences",
                         receiver.endpoint, receiver.received, receiver.bad_frames, receiver.upstream_dropped,
                         receiver.silences)
