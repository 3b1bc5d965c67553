"""The viewer's command-line flags of ``graphflow run`` and what they start."""
from __future__ import annotations

import sys


def add_viewer_arguments(parser) -> None:
    parser.add_argument("--no-viewer", action="store_true", help="do not serve the web viewer")
    parser.add_argument("--viewer-port", type=int, default=3000, metavar="PORT",
                        help="port of the web viewer (default 3000; 0 picks a free one)")
    parser.add_argument("--viewer-host", default="127.0.0.1", metavar="HOST",
                        help="address the viewer listens on (default 127.0.0.1; another address, e.g. 0.0.0.0, "
                             "needs the token printed at start unless --viewer-insecure)")
    parser.add_argument("--viewer-insecure", action="store_true",
                        help="serve the viewer off loopback without a token (trusted networks only)")


def open_viewer(args, err=None):
    """The viewer session for ``graphflow run``, or None. A viewer that cannot start (its port is
    taken) is not a reason to stop the app: one line says so and the app runs without it."""
    if args.no_viewer:
        return None
    from .http import ViewerError
    from .session import ViewerSession

    try:
        return ViewerSession(args.viewer_host, args.viewer_port, insecure=args.viewer_insecure)
    except ViewerError as exc:
        print(f"warning: viewer off: {exc}", file=err or sys.stderr, flush=True)
        return None
