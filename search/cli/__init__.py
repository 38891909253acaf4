"""The ``budgetnas`` command line: one module per command, each a few lines over the library
call it wraps."""

from budgetnas.search.cli.app import app, main

__all__ = ["app", "main"]
