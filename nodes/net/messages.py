"""The bridges' port type before their ``message_type`` param names the real one."""
from graphflow import MessageType


class AnyMessage(MessageType, wire="net/Any"):
    """Stands for the message type a bridge's ``message_type`` param names: the loader checks
    the bridge's edges against that type, not this one."""
