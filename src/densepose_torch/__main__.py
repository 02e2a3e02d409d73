"""`python -m densepose_torch ...` is the `densepose` command."""
import sys

from .cli import main

sys.exit(main())
