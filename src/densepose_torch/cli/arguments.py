"""Argument types shared by the sub-commands."""
from __future__ import annotations

import argparse
from typing import Callable


def positive(kind: type = int) -> Callable[[str], int | float]:
    """argparse type: a number of `kind` (int or float) above 0, with a one-line error otherwise."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be a positive {'whole ' if kind is int else ''}number, not {text!r}")
        return value

    return parse
