"""The viewer's command-line flags of ``graphflow run`` and what they start."""
from __future__ import annotations

import sys

from ..arguments import seconds, viewer_host, viewer_port


def add_viewer_arguments(parser) -> None:
    parser.add_argument("--no-viewer", action="store_true", help="do not serve the web viewer")
    parser.add_argument("--viewer-port", type=viewer_port, default=3000, metavar="PORT",
                        help="port of the web viewer (default 3000; 0 picks a free one)")
    parser.add_argument("--viewer-host", type=viewer_host, default="127.0.0.1", metavar="HOST",
                        help="address the viewer listens on (default 127.0.0.1; another address, e.g. 0.0.0.0, "
                             "needs the token printed at start unless --viewer-insecure)")
    parser.add_argument("--viewer-insecure", action="store_true",
                        help="serve the viewer off loopback without a token (trusted networks only)")
    parser.add_argument("--serve-view", metavar="[HOST:]PORT",
                        help="also serve this app's view to `graphflow view --connect` on another machine "
                             "(binds 127.0.0.1 unless HOST is given; off loopback needs --serve-view-key or --insecure)")
    parser.add_argument("--serve-view-key", metavar="FILE.key_secret",
                        help="CURVE secret key of the view endpoint (graphflow keys NAME); viewers then need NAME.key")
    parser.add_argument("--serve-view-clients", metavar="DIR",
                        help="with --serve-view-key: only viewers whose public keys (*.key) are in DIR may connect")


def add_connect_arguments(view) -> None:
    """``graphflow view --connect HOST:PORT`` (the view command itself is the recording's)."""
    view.add_argument("--connect", metavar="HOST:PORT",
                      help="view an app running elsewhere with --serve-view PORT, instead of a recording")
    view.add_argument("--server-key", metavar="FILE.key",
                      help="with --connect: the app's CURVE public key (when it serves with --serve-view-key)")
    view.add_argument("--key", metavar="FILE.key_secret",
                      help="with --connect: this viewer's CURVE secret key (when the app allows only some viewers)")
    view.add_argument("--timeout", type=seconds, default=5.0,
                      help="with --connect: seconds to wait for the app to answer (default 5)")


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
        print(f"warning: viewer off: {exc} (or --no-viewer)", file=err or sys.stderr, flush=True)
        return None


def start_view_server(args, app):
    """``--serve-view``: the app's view server (started), or None."""
    if not getattr(args, "serve_view", None):
        return None
    from .remote import start_view_server as start

    return start(args, app)
