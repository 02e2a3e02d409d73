"""The routes of the service: the table in `add_routes`, then one plain function per route, each
over the `ServiceState` that `create_app` keeps in `app.state.service`.

Refusals are raised as ServiceError; `create_app` turns them into `{"error": ...}` replies. The
handlers have no docstrings because FastAPI would publish them in /openapi.json.
"""
from __future__ import annotations

import logging
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from ..io.npz import npz_bytes
from ..results import DensePoseResult
from ..surface import SmplSurface
from . import legacy, metrics, replies
from .errors import ServiceError, validation_message
from .settings import DEFAULT_MIN_SCORE
from .state import RETRY_AFTER_LOADING_S, Prediction, ServiceState
from .uploads import IMAGE_FIELD, decode_image, read_body, uploaded_image_bytes

log = logging.getLogger(__name__)
DETECTIONS_HEADER = "X-DensePose-Detections"

_READYZ_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"description": "still loading, the model failed to load, or the model worker stopped"},
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
# FastAPI cannot infer a body that is either a raw image or a multipart upload: it is documented here.
_PREDICT_BODY = {
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
    503: {"description": "model still loading, queue full, or no model time within the request timeout "
                         "(see Retry-After)"},
}
_PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "JSON detections, or the requested PNG / npz",
          "content": {"application/json": {}, "image/png": _BINARY, "application/octet-stream": _BINARY}},
    **_ERROR_RESPONSES,
}
# The legacy handler parses its own body (to answer in our error format), so FastAPI is told its schema.
_LEGACY_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": legacy.LegacyRequest.model_json_schema()}}}}
_LEGACY_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "a path outside the data root, or no --data-root"},
    404: {"description": "no such photo"},
    409: {"description": "the render would replace the photo or a folder"},
    **_ERROR_RESPONSES,
}


async def _service(request: Request) -> ServiceState:
    # Async, so that FastAPI resolves it on the event loop rather than in its thread pool.
    return request.app.state.service


Service = Annotated[ServiceState, Depends(_service)]


def add_routes(app: FastAPI) -> None:
    """Every route of the service, in matching order. Added to the app itself, not through an
    included APIRouter: the metrics middleware labels each request with its route's path, which
    newer FastAPI versions hide behind a lazily expanded router."""
    app.add_api_route("/", web_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/healthz", healthz, methods=["GET"],
                      summary="The process is up (whether or not the model is loaded yet)")
    app.add_api_route("/readyz", readyz, methods=["GET"], responses=_READYZ_RESPONSES,
                      summary="Ready to predict: 200 once the model is loaded and its worker runs, 503 otherwise")
    app.add_api_route("/metrics", metrics_page, methods=["GET"], response_class=PlainTextResponse,
                      summary="Prometheus metrics (text exposition format)")
    app.add_api_route("/v1/models", models, methods=["GET"],
                      summary="The model this server runs, and the outputs /v1/predict offers")
    app.add_api_route("/v1/predict", predict, methods=["POST"], openapi_extra=_PREDICT_BODY,
                      responses=_PREDICT_RESPONSES, summary="DensePose of one uploaded image")
    app.add_api_route("/densepose", densepose_legacy, methods=["POST"], openapi_extra=_LEGACY_BODY,
                      responses=_LEGACY_RESPONSES, description=legacy.__doc__,
                      summary="Legacy: render a photo on the server's disk as VITON image-densepose")
    # Swagger UI from the installed package, so that /docs works offline.
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)


async def web_page(service: Service) -> HTMLResponse:
    return HTMLResponse(service.page)


async def healthz(service: Service) -> dict:
    return {"status": "ok", "model": service.model.status}


async def readyz(service: Service) -> JSONResponse:
    if service.ready:
        return JSONResponse({"status": "ready"})
    model = service.model
    if model.status == "ready":  # loaded, but the worker is gone: only a restart helps
        return JSONResponse({"status": "failed", "error": "the model worker has stopped"}, status_code=503)
    body = {"status": model.status} | ({"error": model.error} if model.error else {})
    headers = {"Retry-After": str(RETRY_AFTER_LOADING_S)} if model.status == "loading" else None
    return JSONResponse(body, status_code=503, headers=headers)


async def metrics_page(service: Service) -> Response:
    queue = service.queue
    text = service.metrics.exposition(metrics.QueueState(queue.depth, queue.capacity, queue.drain_rate), service.ready)
    return Response(text, media_type=metrics.CONTENT_TYPE)


async def models(service: Service) -> dict:
    return {"models": [_model_entry(service)], "outputs": list(replies.OUTPUTS),
            "array_outputs": list(replies.ARRAY_OUTPUTS), "default_min_score": DEFAULT_MIN_SCORE}


async def predict(
    request: Request,
    service: Service,
    output: str = Query("json", json_schema_extra={"enum": list(replies.OUTPUTS)},
                        description="json (COCO DensePose records), iuv (Caffe2 _IUV.png), npz, or a render preset"),
    min_score: float = Query(DEFAULT_MIN_SCORE, ge=0.0, le=1.0, description="keep detections scoring above this"),
    best_only: bool = Query(False, alias="top_person", description="keep only the highest-scoring person"),
) -> Response:
    if output not in replies.OUTPUTS:
        raise ServiceError(422, f"unknown output {output!r} (choose from {', '.join(replies.OUTPUTS)})")
    settings = service.settings
    service.model.require()  # refuse before reading an upload the model cannot take now
    data, file_name = await uploaded_image_bytes(request, settings.max_upload_bytes, settings.read_timeout_s)
    image = await run_in_threadpool(decode_image, data, settings.max_pixels)
    predictor, result = await service.predict(request, Prediction(image, min_score, best_only))
    headers = {DETECTIONS_HEADER: str(len(result))}
    if output == "json":
        body = await run_in_threadpool(replies.json_reply, result, predictor.model.name, file_name)
        return JSONResponse(body, headers=headers)
    stem = (file_name or "image").rsplit(".", 1)[0] or "image"
    data, media_type, disposition = await run_in_threadpool(_file_reply, output, stem, image, result, service.surface)
    return Response(data, media_type=media_type, headers=headers | {"Content-Disposition": disposition})


async def densepose_legacy(request: Request, service: Service) -> dict:
    settings = service.settings
    body = await read_body(request, settings.max_upload_bytes, settings.read_timeout_s)
    paths = legacy.resolve_paths(settings.data_root, _legacy_fields(body))
    service.model.require()
    source = paths.existing_input()
    paths.check_output()
    image = await run_in_threadpool(lambda: decode_image(legacy.read_photo(source), settings.max_pixels))
    _, result = await service.predict(request, Prediction(image, DEFAULT_MIN_SCORE, top_person=True))
    await run_in_threadpool(legacy.write_legacy_render, paths.output, paths.reply_path, image, result)
    log.info("POST /densepose wrote %s", paths.output)
    return {"path": paths.reply_path, "detections": len(result)}


async def docs() -> HTMLResponse:
    # Relative URLs, so that the page also works behind a reverse proxy's path prefix.
    return get_swagger_ui_html(openapi_url="openapi.json", title="densepose-torch API",
                               swagger_js_url="docs/assets/swagger-ui-bundle.js",
                               swagger_css_url="docs/assets/swagger-ui.css",
                               swagger_favicon_url="docs/assets/favicon-32x32.png")


def _model_entry(service: ServiceState) -> dict[str, Any]:
    """/v1/models' entry for the one model: what is known of it so far."""
    model = service.model
    entry: dict[str, Any] = {"name": service.settings.model_label, "status": model.status}
    if model.predictor is not None:
        predictor = model.predictor
        entry |= {"name": predictor.model.name, "device": str(predictor.device), "precision": predictor.precision,
                  "max_batch": service.queue.max_batch, "architecture": predictor.config.to_dict()}
    elif model.error:
        entry["error"] = model.error
    return entry


def _file_reply(output: str, stem: str, image: np.ndarray, result: DensePoseResult,
                surface: SmplSurface) -> tuple[bytes, str, str]:
    """Body, media type and Content-Disposition of a /v1/predict answer other than JSON."""
    if output == "npz":
        return npz_bytes(result), "application/octet-stream", f'attachment; filename="{stem}.npz"'
    if output == "iuv":
        return replies.iuv_png_bytes(result), "image/png", f'inline; filename="{stem}_IUV.png"'
    png = replies.render_png_bytes(output, image, result, surface)
    return png, "image/png", f'inline; filename="{stem}_{output}.png"'


def _legacy_fields(body: bytes) -> legacy.LegacyRequest:
    """The legacy request's JSON, refused in our one-line error format rather than FastAPI's."""
    try:
        return legacy.LegacyRequest.model_validate_json(body)
    except ValidationError as error:
        raise ServiceError(422, validation_message(list(error.errors()))) from None
