"""Message types of the demo pack."""
from graphflow import MessageType, field


class Number(MessageType, wire="demo/Number"):
    """One number."""
    value: float = field(doc="The number.")
