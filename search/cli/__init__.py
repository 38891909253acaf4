"""The ``budgetnas`` command line: one module per command (or group of small ones), each a
few lines over the library call it wraps; ``app`` holds what they share. The modules are
imported in the order ``budgetnas --help`` lists their commands."""

# isort: skip_file
from budgetnas.search.cli.app import app, main
from budgetnas.search.cli import search, worker, report, export, verify  # noqa: F401
from budgetnas.search.cli import cache, bench, inspect  # noqa: F401

__all__ = ["app", "main"]
