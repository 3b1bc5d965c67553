"""graphflow: JSON node graphs of codelets wired through typed message channels."""
from .codelet import Codelet, NodeError
from .messages import Header, Message, MessageType, field
from .params import REQUIRED, Param, Period
from .ports import Rx, Tx

__all__ = ["Codelet", "Header", "NodeError", "Message", "MessageType", "Param", "Period", "REQUIRED", "Rx", "Tx",
           "field"]
__version__ = "0.1.0"
