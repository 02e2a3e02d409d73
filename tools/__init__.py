"""Developer tools run from a source checkout (`python -m tools.<name>` from the repository root);
they are not part of the installed `densepose_torch` package."""
