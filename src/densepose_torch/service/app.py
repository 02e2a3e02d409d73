"""The FastAPI application: routes, model readiness, error replies, metrics.

Routes: `GET /` (web page), `POST /v1/predict`, `GET /v1/models`, `POST /densepose` (legacy,
path based), `GET /healthz` (the process answers), `GET /readyz` (the model is loaded and its worker runs),
`GET /metrics` (Prometheus text), `GET /docs` (Swagger UI, served from the installed
`swagger-ui-bundle-v2` package, so it works offline) and `GET /openapi.json`.

Every refusal is `{"error": "<one line>"}` with its status; an unexpected failure answers 500
with no detail (the traceback goes to the server log).
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from .. import __version__
from ..errors import DensePoseError
from ..inference import Predictor
from ..io.npz import npz_bytes
from ..results import DensePoseResult
from ..surface import SmplSurface
from . import legacy, metrics, replies
from .batching import BatchQueue
from .errors import ServiceError
from .settings import DEFAULT_MIN_SCORE, ServiceSettings
from .uploads import IMAGE_FIELD, decode_image, read_body, uploaded_image_bytes

log = logging.getLogger(__name__)
RETRY_AFTER_LOADING_S = 5
# nginx's status for "client closed the connection before the answer": nobody reads it, but the
# metrics count it apart from the answers that were sent.
CLIENT_CLOSED_REQUEST = 499
LOADER_JOIN_TIMEOUT_S = 120.0
DETECTIONS_HEADER = "X-DensePose-Detections"

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "description": f"The image file: as the raw body, or as the multipart file field `{IMAGE_FIELD}`.",
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": [IMAGE_FIELD],
                                               "properties": {IMAGE_FIELD: {"type": "string", "format": "binary"}}}},
            "image/jpeg": _BINARY, "image/png": _BINARY, "application/octet-stream": _BINARY,
        },
    },
}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    408: {"description": "the request body did not arrive within the read timeout"},
    413: {"description": "upload over the byte limit, or image over the pixel limit"},
    422: {"description": "bad option, or not a decodable image"},
    503: {"description": "model still loading, queue full, or no model time within the request timeout (see Retry-After)"},
}


class _ModelSlot:
    """The one shared predictor, loaded in a background thread; `status` says how far."""

    def __init__(self) -> None:
        self.status = "loading"  # then "ready" or "failed"
        self.error: str | None = None
        self.predictor: Predictor | None = None

    def require(self) -> Predictor:
        if self.predictor is None:
            if self.status == "failed":
                raise ServiceError(503, f"the model failed to load: {self.error}")
            raise ServiceError(503, "the model is still loading; retry later", RETRY_AFTER_LOADING_S)
        return self.predictor


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects. Only for after the body was read: from then on the
    server's next message is the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": _one_line(message)}, status_code=status, headers=headers)


def _validation_message(errors: list[dict]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def _endpoint(routes: list[BaseRoute], scope: dict) -> str:
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

    def __init__(self, app, metrics_: metrics.Metrics, routes: list[BaseRoute]):
        self.app = app
        self.metrics = metrics_
        self.routes = routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        endpoint = _endpoint(self.routes, scope)  # before routing rewrites the scope (mounts do)
        status = 500  # what the client gets if the application raises before answering

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe_request(endpoint, scope["method"], status, time.perf_counter() - started)


@dataclass(frozen=True, eq=False)
class _Prediction:
    """What one request asks of the model: an image, and which detections to keep (applied in
    the box predictor, so the DensePose head runs only on those)."""

    image: np.ndarray
    min_score: float
    top_person: bool


def _run_predictions(predictor: Predictor, requests: Sequence[_Prediction]) -> list[DensePoseResult]:
    """One predictor call per distinct (min_score, top_person) among the batch's requests."""
    results: list[DensePoseResult | None] = [None] * len(requests)
    groups: dict[tuple[float, bool], list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault((request.min_score, request.top_person), []).append(index)
    for (min_score, best_only), members in groups.items():
        found = predictor.batch([requests[i].image for i in members], min_score=min_score, top_person=best_only)
        for index, result in zip(members, found):
            results[index] = result
    return results  # type: ignore[return-value]


def create_app(settings: ServiceSettings, load_predictor: Callable[[], Predictor],
               on_load_failure: Callable[[str], None] = lambda message: None) -> FastAPI:
    """The service. `load_predictor` runs once, in a background thread, when the application
    starts; until it returns, /readyz and the prediction endpoints answer 503. If it raises,
    `on_load_failure(message)` is called (the CLI stops the server)."""
    slot = _ModelSlot()
    counters = metrics.Metrics()
    surface = SmplSurface()  # for the smpl output; loaded on its first request

    def run_batch(requests: Sequence[_Prediction]) -> list[DensePoseResult]:
        return _run_predictions(slot.require(), requests)

    queue = BatchQueue(run_batch, settings.queue_size, settings.batch_size_for("cpu"), settings.batch_window_ms / 1000.0,
                       counters)

    def ready() -> bool:
        return slot.status == "ready" and queue.healthy

    def load() -> None:
        started = time.perf_counter()
        try:
            predictor = load_predictor()
        except Exception as error:  # reported, then the server stops
            message = str(error) if isinstance(error, DensePoseError) else f"{type(error).__name__}: {error}"
            log.error("model failed to load: %s", message, exc_info=None if isinstance(error, DensePoseError) else error)
            slot.error, slot.status = _one_line(message), "failed"
            on_load_failure(message)
            return
        queue.max_batch = settings.batch_size_for(predictor.device.type)
        slot.predictor, slot.status = predictor, "ready"
        log.info("model %s ready on %s (%s, batches of up to %d) in %.1f s", predictor.model.name, predictor.device,
                 predictor.precision, queue.max_batch, time.perf_counter() - started)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.start()
        loader = threading.Thread(target=load, name="densepose-load", daemon=True)
        loader.start()
        try:
            yield
        finally:
            queue.stop()
            # Exiting while torch still loads in another thread aborts the interpreter.
            await run_in_threadpool(loader.join, LOADER_JOIN_TIMEOUT_S)

    app = FastAPI(title="densepose-torch", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="DensePose (body part and surface coordinates of every human pixel) over HTTP.")
    app.add_middleware(_MetricsMiddleware, metrics_=counters, routes=app.router.routes)
    page = importlib.resources.files(__package__).joinpath("static", "index.html").read_text(encoding="utf-8")

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError):
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(DensePoseError)
    async def densepose_error(request: Request, error: DensePoseError):
        return _error(422, str(error))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        return _error(422, _validation_message(list(error.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        return _error(error.status_code, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception):
        # Starlette re-raises the error after this reply, and uvicorn logs its traceback.
        return _error(500, "internal error (the server log has the details)")

    async def predict_one(request: Request, wanted: _Prediction) -> tuple[Predictor, DensePoseResult]:
        """The model's result for a request; withdrawn from the queue if the client hangs up first."""
        predictor = slot.require()
        prediction = asyncio.ensure_future(queue.predict(wanted, settings.request_timeout_s))
        hang_up = asyncio.ensure_future(_client_gone(request))
        try:
            await asyncio.wait({prediction, hang_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hang_up.cancel()
            abandoned = not prediction.done()
            if abandoned:
                prediction.cancel()  # withdraws the image from the queue
        if abandoned:
            raise ServiceError(CLIENT_CLOSED_REQUEST, "the client disconnected before its result was ready")
        return predictor, prediction.result()

    @app.get("/", include_in_schema=False)
    async def web_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/healthz", summary="The process is up (whether or not the model is loaded yet)")
    async def healthz() -> dict:
        return {"status": "ok", "model": slot.status}

    @app.get("/readyz", summary="Ready to predict: 200 once the model is loaded and its worker runs, 503 otherwise",
             responses={503: {"description": "still loading, the model failed to load, or the model worker stopped"}})
    async def readyz() -> JSONResponse:
        if ready():
            return JSONResponse({"status": "ready"})
        if slot.status == "ready":  # loaded, but the worker is gone: only a restart helps
            return JSONResponse({"status": "failed", "error": "the model worker has stopped"}, status_code=503)
        body = {"status": slot.status} | ({"error": slot.error} if slot.error else {})
        headers = {"Retry-After": str(RETRY_AFTER_LOADING_S)} if slot.status == "loading" else None
        return JSONResponse(body, status_code=503, headers=headers)

    @app.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=PlainTextResponse)
    async def metrics_page() -> Response:
        state = metrics.QueueState(queue.depth, queue.capacity, queue.drain_rate)
        return Response(counters.exposition(state, ready()), media_type=metrics.CONTENT_TYPE)

    @app.get("/v1/models", summary="The model this server runs, and the outputs /v1/predict offers")
    async def models() -> dict:
        entry: dict[str, Any] = {"name": settings.model_label, "status": slot.status}
        if slot.predictor is not None:
            predictor = slot.predictor
            entry |= {"name": predictor.model.name, "device": str(predictor.device), "precision": predictor.precision,
                      "max_batch": queue.max_batch, "architecture": predictor.config.to_dict()}
        elif slot.error:
            entry["error"] = slot.error
        return {"models": [entry], "outputs": list(replies.OUTPUTS), "array_outputs": list(replies.ARRAY_OUTPUTS),
                "default_min_score": DEFAULT_MIN_SCORE}

    @app.post("/v1/predict", summary="DensePose of one uploaded image", openapi_extra=_PREDICT_OPENAPI,
              responses={200: {"description": "JSON detections, or the requested PNG / npz",
                               "content": {"application/json": {}, "image/png": _BINARY, "application/octet-stream": _BINARY}},
                         **_ERROR_RESPONSES})
    async def predict(
        request: Request,
        output: str = Query("json", description="json (COCO DensePose records), iuv (Caffe2 _IUV.png), npz, or a render preset",
                            json_schema_extra={"enum": list(replies.OUTPUTS)}),
        min_score: float = Query(DEFAULT_MIN_SCORE, ge=0.0, le=1.0, description="keep detections scoring above this"),
        best_only: bool = Query(False, alias="top_person", description="keep only the highest-scoring person"),
    ) -> Response:
        if output not in replies.OUTPUTS:
            raise ServiceError(422, f"unknown output {output!r} (choose from {', '.join(replies.OUTPUTS)})")
        slot.require()  # refuse before reading an upload the model cannot take now
        data, file_name = await uploaded_image_bytes(request, settings.max_upload_bytes, settings.read_timeout_s)
        image = await run_in_threadpool(decode_image, data, settings.max_pixels)
        predictor, result = await predict_one(request, _Prediction(image, min_score, best_only))
        headers = {DETECTIONS_HEADER: str(len(result))}
        stem = (file_name or "image").rsplit(".", 1)[0] or "image"
        if output == "json":
            body = await run_in_threadpool(replies.json_reply, result, predictor.model.name, file_name)
            return JSONResponse(body, headers=headers)
        if output == "npz":
            data = await run_in_threadpool(npz_bytes, result)
            headers["Content-Disposition"] = f'attachment; filename="{stem}.npz"'
            return Response(data, media_type="application/octet-stream", headers=headers)
        if output == "iuv":
            data = await run_in_threadpool(replies.iuv_png_bytes, result)
            headers["Content-Disposition"] = f'inline; filename="{stem}_IUV.png"'
            return Response(data, media_type="image/png", headers=headers)
        data = await run_in_threadpool(replies.render_png_bytes, output, image, result, surface)
        headers["Content-Disposition"] = f'inline; filename="{stem}_{output}.png"'
        return Response(data, media_type="image/png", headers=headers)

    @app.post("/densepose", summary="Legacy: render a photo on the server's disk as VITON image-densepose",
              description=legacy.__doc__, openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": legacy.LegacyRequest.model_json_schema()}}}},
              responses={403: {"description": "a path outside the data root, or no --data-root"},
                         404: {"description": "no such photo"},
                         409: {"description": "the render would replace the photo or a folder"}, **_ERROR_RESPONSES})
    async def densepose_legacy(request: Request) -> dict:
        body = await read_body(request, settings.max_upload_bytes, settings.read_timeout_s)
        try:
            fields = legacy.LegacyRequest.model_validate_json(body)
        except ValidationError as error:
            raise ServiceError(422, _validation_message(list(error.errors()))) from None
        paths = legacy.resolve_paths(settings.data_root, fields)
        slot.require()
        source = paths.existing_input()
        paths.check_output()
        image = await run_in_threadpool(lambda: decode_image(legacy.read_photo(source), settings.max_pixels))
        _, result = await predict_one(request, _Prediction(image, DEFAULT_MIN_SCORE, top_person=True))
        await run_in_threadpool(legacy.write_legacy_render, paths.output, paths.reply_path, image, result)
        log.info("POST /densepose wrote %s", paths.output)
        return {"path": paths.reply_path, "detections": len(result)}

    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        # Relative URLs, so that the page also works behind a reverse proxy's path prefix.
        return get_swagger_ui_html(openapi_url="openapi.json", title="densepose-torch API",
                                   swagger_js_url="docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="docs/assets/swagger-ui.css",
                                   swagger_favicon_url="docs/assets/favicon-32x32.png")

    return app
