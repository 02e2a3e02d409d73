"""`python -m densepose_torch.cli ...` (what torchrun runs: `torchrun ... -m densepose_torch.cli train CONFIG`)
is the `densepose` command."""
import sys

from . import main

sys.exit(main())
