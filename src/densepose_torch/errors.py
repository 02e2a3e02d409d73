"""The one exception type users see: its message is a complete, one-line explanation."""


class DensePoseError(Exception):
    """Bad input or an unmet precondition, explained in one line. The CLI prints the message
    (no traceback) and exits with `exit_code`."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
