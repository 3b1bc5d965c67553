"""graphflow: JSON node graphs of codelets wired through typed message channels."""
from .corebuild import use_current_core

use_current_core()  # before the core is imported: a compiled core older than its sources is not used

from .codelet import Codelet  # noqa: E402
from .messages import Header, Message, MessageType, field  # noqa: E402
from .params import REQUIRED, Param, Period  # noqa: E402
from .ports import Rx, Tx  # noqa: E402
from . import scheduler as _scheduler  # noqa: E402

__all__ = ["Codelet", "Header", "Message", "MessageType", "Param", "Period", "REQUIRED", "Rx", "Tx",
           "field"]
__version__ = "0.1.0"
COMPILED = not _scheduler.__file__.endswith(".py")  # the core was built by mypyc (setup.py)
