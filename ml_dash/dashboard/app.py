"""The dashboard's web application: a Starlette app over a :class:`Catalog`.

Starlette (with uvicorn to serve it) because the API is a dozen small JSON
routes and static files: it routes, parses queries and streams files, and
runs plain functions in a thread pool, where numpy releases the GIL and
both cores reduce buckets at once.  Rejected: Flask on a WSGI server (one
thread per request, no async for the live polls of many open pages) and
the standard library's ``http.server`` (no keep-alive handling worth the
name, and every route and error would be ours to write).

Access: a request needs the token when one is set (``?token=`` or an
``Authorization: Bearer`` header); without a token the server answers only
requests whose ``Host`` is a loopback name, so a web page on another site
cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import contextlib
import hmac
import importlib.resources
import json
import mimetypes
import os
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import dashrc
from .data import BadRequest, Catalog, NotFound

STATIC = os.path.join(os.path.dirname(__file__), "static")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
MAX_BODY = dashrc.MAX_BYTES + 4096


def plotly_bundle() -> str:
    """Path of ``plotly.min.js`` in the installed ``plotly`` package (the ui extra)."""
    return str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js")


class AccessGuard:
    """Refuses requests without the token, or, with no token set, from a non-loopback Host."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)
        if refusal:
            await JSONResponse({"error": refusal}, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, request: Request) -> str | None:
        if self.token is None:
            host = _host_name(request.headers.get("host") or "")
            if host not in LOOPBACK_HOSTS:
                return f"this dashboard answers only on a loopback address, not on host {host!r}"
            return None
        given = request.query_params.get("token") or ""
        header = request.headers.get("authorization") or ""
        if header.lower().startswith("bearer "):
            given = given or header[7:].strip()
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return "a valid token is needed: open the URL that 'ml-dash serve' printed"
        return None


def _host_name(header: str) -> str:
    """The name in a ``Host`` header without its port: ``[::1]:8765`` -> ``[::1]``."""
    header = header.lower()  # host names are case-insensitive
    if header.startswith("["):
        name, _, rest = header.partition("]")
        return name + "]" if rest == "" or rest[1:].isdigit() and rest[0] == ":" else header
    return header.rpartition(":")[0] if ":" in header else header


def _int(request: Request, name: str, default: int) -> int:
    value = _optional_int(request, name)
    return default if value is None else value


def _optional_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {raw!r}") from None


def _keys(request: Request, name: str = "keys") -> list[str]:
    raw = request.query_params.get(name) or ""
    return [k for k in raw.split(",") if k]


def _required(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise BadRequest(f"the query needs {name}=")
    return value


def _answer(function: Callable[[Request], Any]) -> Callable[[Request], Response]:
    """A plain (thread-pool) endpoint that answers JSON, errors included."""

    def endpoint(request: Request) -> Response:
        try:
            result = function(request)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except NotFound as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        if isinstance(result, Response):
            return result
        return Response(json.dumps(result, allow_nan=False, separators=(",", ":")),
                        media_type="application/json", headers={"Cache-Control": "no-store"})

    endpoint.__name__ = function.__name__
    return endpoint


def create_app(dash_root: str, token: str | None = None, warm: bool = False) -> Starlette:
    """The dashboard app for ``dash_root``; ``token``: required on every request when set.

    ``warm``: read every run's table row in a background thread at start,
    so that the first page load of a large dash root finds them cached.
    """
    catalog = Catalog(dash_root)

    def runs(request: Request):
        return {"root": catalog.root, "runs": catalog.runs(request.query_params.get("pattern"))}

    def run(request: Request):
        prefix = _required(request, "prefix")
        out = catalog.run(prefix)
        out["dashrc"] = dashrc.read(catalog.root, out["info"]["prefix"]).get("parsed")
        return out

    def buckets(request: Request):
        return catalog.buckets(
            _required(request, "prefix"), request.query_params.get("stream"), _keys(request),
            _int(request, "width", 1000), _optional_int(request, "start"), _optional_int(request, "stop"),
            request.query_params.get("x") or "index")

    def tail(request: Request):
        return catalog.tail(
            _required(request, "prefix"), request.query_params.get("stream"), _keys(request),
            _int(request, "after", -1), request.query_params.get("x") or "index", _int(request, "limit", 5000))

    def aggregate(request: Request):
        return catalog.aggregate(
            _keys(request, "prefixes"), request.query_params.get("stream"), _required(request, "key"),
            _int(request, "width", 1000), request.query_params.get("x") or "index")

    def logs(request: Request):
        return catalog.logs(_required(request, "prefix"), _int(request, "start", 0), _int(request, "limit", 200),
                            request.query_params.get("level"), request.query_params.get("q"))

    def file(request: Request):
        data, name = catalog.file(_required(request, "prefix"), _required(request, "path"))
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if media in ("text/html", "image/svg+xml", "application/javascript", "text/javascript"):
            media = "text/plain"  # a stored page or script is shown as text, never run in our origin
        return Response(data, media_type=media, headers={
            "Content-Disposition": f"inline; filename*=UTF-8''{_quote(name)}",
            "X-Content-Type-Options": "nosniff"})

    def dashrc_get(request: Request):
        return dashrc.read(catalog.root, request.query_params.get("folder") or "")

    async def dashrc_post(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": f"request body larger than {MAX_BODY} bytes"}, status_code=400)
        try:
            payload = json.loads(body or b"null")
            if not isinstance(payload, dict):
                raise BadRequest("the body must be a JSON object {folder, content}")
            return JSONResponse(dashrc.write(catalog.root, payload.get("folder", ""), payload.get("content")))
        except (ValueError, BadRequest) as exc:  # json.JSONDecodeError is a ValueError
            return JSONResponse({"error": str(exc)}, status_code=400)
        except NotFound as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except OSError as exc:  # a full disk or a read-only folder: the old .dashrc stays as it was
            return JSONResponse({"error": f"could not write .dashrc: {exc.strerror or exc}"}, status_code=507)

    def index(request: Request):
        return FileResponse(os.path.join(STATIC, "index.html"), headers={"Cache-Control": "no-store"})

    def static(request: Request):
        name = request.path_params["name"]
        if name == "plotly.min.js":
            return FileResponse(plotly_bundle(), media_type="text/javascript",
                                headers={"Cache-Control": "max-age=86400"})
        if name not in _static_files():
            return JSONResponse({"error": f"no static file {name!r}"}, status_code=404)
        return FileResponse(os.path.join(STATIC, name), headers={"Cache-Control": "no-cache"})

    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/runs", _answer(runs)),
        Route("/api/run", _answer(run)),
        Route("/api/buckets", _answer(buckets)),
        Route("/api/tail", _answer(tail)),
        Route("/api/aggregate", _answer(aggregate)),
        Route("/api/logs", _answer(logs)),
        Route("/api/file", _answer(file)),
        Route("/api/dashrc", _answer(dashrc_get), methods=["GET"]),
        Route("/api/dashrc", dashrc_post, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if warm:
            threading.Thread(target=_warm, args=(catalog,), name="ml-dash-warm", daemon=True).start()
        yield
        catalog.close()

    app = Starlette(routes=routes, middleware=[Middleware(AccessGuard, token=token)], lifespan=lifespan)
    app.state.catalog = catalog
    return app


def _warm(catalog: Catalog) -> None:
    try:
        catalog.runs()
    except Exception:  # noqa: BLE001 - a failed warm-up only means a slower first page
        pass


def _static_files() -> set[str]:
    try:
        return {name for name in os.listdir(STATIC) if not name.startswith(".")}
    except OSError:
        return set()


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
