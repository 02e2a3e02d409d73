"""The error replies of the service: an HTTP status and a one-line message, sent as
`{"error": message}`; details of unexpected failures go to the server log only."""
from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses or cannot serve, with the status to answer."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None, close_connection: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s
        # For answers sent before the request body was read to its end: the connection cannot
        # carry another request, so it is closed now rather than after the keep-alive timeout.
        self.close_connection = close_connection

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}
        return headers | ({"Connection": "close"} if self.close_connection else {})


def one_line(text: str) -> str:
    """`text` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(text.split())


def validation_message(errors: list[dict]) -> str:
    """One line from pydantic's error list: `field: problem; field: problem`."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"
