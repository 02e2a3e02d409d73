"""The error replies of the service: an HTTP status and a one-line message, sent as
`{"error": message}`; details of unexpected failures go to the server log only."""
from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses or cannot serve, with the status to answer."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}
