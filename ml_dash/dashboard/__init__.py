"""``ml-dash serve``: a local web dashboard of the runs under a dash root.

Needs the ``ui`` extra (Starlette, uvicorn, PyYAML and the Plotly bundle;
:func:`ml_dash.extras.install_hint` says how to install it); ``import ml_dash``
never imports it.  See docs/dashboard.md.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket

from ..extras import install_hint
from ..paths import resolve_root

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """True when ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(dash_root: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          token: str | None = None, open_browser: bool = False, quiet: bool = False) -> None:
    """Serve the dashboard until interrupted.

    On a non-loopback ``host`` a token is always required (a random one
    when none is given); the printed URL carries it.  ``dash_root``
    defaults to ``$ML_DASH_ROOT``, else ``.dash``.
    """
    dash_root = resolve_root(dash_root)
    try:
        import uvicorn

        from .app import create_app, plotly_bundle
        plotly_bundle()
    except ImportError as exc:
        raise SystemExit(f"the dashboard needs the ui extra: {install_hint('ui')} ({exc})") from None
    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)
    app = create_app(dash_root, token=token, warm=True)
    shown = host if host not in ("0.0.0.0", "::") else socket.gethostname()
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    if token:
        url += f"?token={token}"
    if not quiet:
        print(f"ml-dash dashboard of {dash_root!r} at {url}", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
