"""Getting an image out of a request within limits.

The body is read in chunks, refused (413) as soon as it passes the size limit -- before it is
read at all when Content-Length already says so -- and must arrive within the read timeout (408),
so a client that trickles its upload cannot keep a connection busy for ever. The image's size in
pixels is read from its header and checked before anything is decoded (413), which is what stops
decompression bombs: a small file that would decode to gigabytes.
"""
from __future__ import annotations

import asyncio
import io

import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from ..errors import DensePoseError
from ..io.images import ImageTooLargeError, check_pixels, to_rgb_array
from .errors import ServiceError

IMAGE_FIELD = "image"  # the multipart file field of an upload


async def read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole request body; 413 past `max_bytes`, 408 when it takes longer than `timeout_s`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ServiceError(400, f"invalid Content-Length {declared!r}", close_connection=True)
        if int(declared) > max_bytes:
            raise ServiceError(413, f"the upload is {int(declared)} bytes, over the limit of {max_bytes} bytes", close_connection=True)
    chunks: list[bytes] = []
    size = 0

    async def collect() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise ServiceError(413, f"the upload is over the limit of {max_bytes} bytes", close_connection=True)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), timeout_s)
    except asyncio.TimeoutError:
        raise ServiceError(408, f"the request body did not arrive within {timeout_s:g} s", close_connection=True) from None
    except ClientDisconnect:
        raise ServiceError(400, "the client disconnected during the upload", close_connection=True) from None
    return b"".join(chunks)


async def uploaded_image_bytes(request: Request, max_bytes: int, timeout_s: float) -> tuple[bytes, str | None]:
    """(image file bytes, its file name if the client gave one) of a multipart upload (file field
    `image`) or of a raw body (any other content type)."""
    body = await read_body(request, max_bytes, timeout_s)
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return await _multipart_file(request.headers, body)
    return body, None


async def _multipart_file(headers: Headers, body: bytes) -> tuple[bytes, str | None]:
    async def stream():
        yield body

    try:
        form = await MultiPartParser(headers, stream(), max_files=1, max_fields=16).parse()
    except MultiPartException as error:
        raise ServiceError(422, f"unreadable multipart upload: {error.message}") from None
    try:
        upload = form.get(IMAGE_FIELD)
        if not isinstance(upload, UploadFile):
            raise ServiceError(422, f"a multipart upload must carry the image in a file field named {IMAGE_FIELD!r}")
        return await upload.read(), upload.filename
    finally:
        await form.close()


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """HxWx3 uint8 RGB pixels of an image file's bytes, EXIF orientation applied (as
    `io.images.read_image`); 413 above `max_pixels`, 422 when it is not a readable image."""
    if not data:
        raise ServiceError(422, f"no image: send the image file as the request body or as the multipart file field {IMAGE_FIELD!r}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            check_pixels(image, max_pixels, "the image")
            return to_rgb_array(image)
    except ImageTooLargeError as error:
        raise ServiceError(413, str(error)) from None
    except Image.DecompressionBombError as error:
        raise ServiceError(413, f"the image is too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        raise ServiceError(422, "the upload is not an image (or not a format Pillow reads)") from None
    except DensePoseError as error:
        raise ServiceError(422, str(error)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ServiceError(422, f"the image cannot be decoded: {error}") from None
