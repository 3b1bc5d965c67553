"""graphflow: JSON node graphs of codelets wired through typed message channels."""
from .codelet import Codelet
from .messages import Header, Message, MessageType, field
from .params import REQUIRED, Param, Period
from .ports import Rx, Tx
from . import scheduler as _scheduler

__all__ = ["Codelet", "Header", "Message", "MessageType", "Param", "Period", "REQUIRED", "Rx", "Tx",
           "field"]
__version__ = "0.1.0"
COMPILED = not _scheduler.__file__.endswith(".py")  # the core was built by mypyc (setup.py)
