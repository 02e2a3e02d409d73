"""The FastAPI application: the routes of `routes.py` over one `state.ServiceState` (the model
loaded at startup, its batch queue, the metrics), with error replies and request metrics.

Routes: `GET /` (web page), `POST /v1/predict`, `GET /v1/models`, `POST /densepose` (legacy,
path based), `GET /healthz` (the process answers), `GET /readyz` (the model is loaded and its worker runs),
`GET /metrics` (Prometheus text), `GET /docs` (Swagger UI, served from the installed
`swagger-ui-bundle-v2` package, so it works offline) and `GET /openapi.json`.

Every refusal is `{"error": "<one line>"}` with its status; an unexpected failure answers 500
with no detail (the traceback goes to the server log).
"""
from __future__ import annotations

import time
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import DensePoseError
from ..inference import Predictor
from . import metrics
from .errors import ServiceError, one_line, validation_message
from .routes import add_routes
from .settings import ServiceSettings
from .state import ServiceState


def create_app(settings: ServiceSettings, load_predictor: Callable[[], Predictor],
               on_load_failure: Callable[[str], None] = lambda message: None) -> FastAPI:
    """The service. `load_predictor` runs once, in a background thread, when the application
    starts; until it returns, /readyz and the prediction endpoints answer 503. If it raises,
    `on_load_failure(message)` is called (the CLI stops the server)."""
    service = ServiceState(settings, load_predictor, on_load_failure)
    app = FastAPI(title="densepose-torch", version=__version__, lifespan=service.lifespan,
                  docs_url=None, redoc_url=None,  # /docs is our own page, served offline
                  description="DensePose (body part and surface coordinates of every human pixel) over HTTP.")
    app.state.service = service
    # The middleware holds the route list itself, so it also sees the routes added below.
    app.add_middleware(_MetricsMiddleware, metrics_=service.metrics, routes=app.router.routes)
    _add_error_replies(app)
    add_routes(app)
    return app


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


async def _service_error(request: Request, error: ServiceError) -> JSONResponse:
    return _error(error.status, error.message, error.headers)


async def _densepose_error(request: Request, error: DensePoseError) -> JSONResponse:
    return _error(422, str(error))


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return _error(422, validation_message(list(error.errors())))


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return _error(error.status_code, str(error.detail), dict(error.headers or {}))


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    # Starlette re-raises the error after this reply, and uvicorn logs its traceback.
    return _error(500, "internal error (the server log has the details)")


def _add_error_replies(app: FastAPI) -> None:
    """Every refusal and failure answers `{"error": "<one line>"}` instead of FastAPI's bodies."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(DensePoseError, _densepose_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def _endpoint(routes: list[BaseRoute], scope: Scope) -> str:
    """The path template of the route serving `scope` (bounded label values, unlike raw paths)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "path", "unmatched")
        if match is Match.PARTIAL and partial is None:
            partial = getattr(route, "path", None)
    return partial or "unmatched"


class _MetricsMiddleware:
    """Counts every HTTP answer by endpoint, method and status."""

    def __init__(self, app: ASGIApp, metrics_: metrics.Metrics, routes: list[BaseRoute]):
        self.app = app
        self.metrics = metrics_
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        endpoint = _endpoint(self.routes, scope)  # before routing rewrites the scope (mounts do)
        status = 500  # what the client gets if the application raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe_request(endpoint, scope["method"], status, time.perf_counter() - started)
