"""Reading JSON files users hand in, with one-line errors that say which file and what is wrong."""
from __future__ import annotations

import json
import os
from typing import Any

from ..errors import DensePoseError


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The parsed content of a JSON file; `what` names the file in errors ("results file", ...)."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise DensePoseError(f"no such {what}: {name}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DensePoseError(f"cannot read {what} {name}: {error}") from None
    except json.JSONDecodeError as error:
        raise DensePoseError(f"{what} {name} is not valid JSON ({error})") from None
