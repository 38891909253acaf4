from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import write_synthetic_mnist

# No test reads or writes the user's results cache (search.cache): the CLI, and the processes
# tests start, see it off; a test of the cache passes its own folder.
os.environ["BUDGETNAS_CACHE"] = "off"

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def needs_cuda(item: pytest.Item) -> bool:
    """Whether a test is marked ``gpu``: its marker, not its keywords (those hold the names of
    its folders too, and a checkout in a folder named gpu would skip every test)."""
    return item.get_closest_marker("gpu") is not None


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; no GPU here")
    for item in items:
        if needs_cuda(item):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The real MNIST root from $BUDGETNAS_DATA; tests that need it skip without it."""
    env = os.environ.get("BUDGETNAS_DATA")
    if not env:
        pytest.skip("BUDGETNAS_DATA is not set: no real MNIST for this test")
    root = Path(env)
    missing = [f for f in MNIST_FILES if not (root / "MNIST" / "raw" / f).is_file()]
    if missing:
        pytest.skip(f"BUDGETNAS_DATA={root} lacks MNIST/raw/{missing[0]}")
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A data root with a small synthetic, learnable data set in MNIST's IDX layout."""
    return write_synthetic_mnist(tmp_path_factory.mktemp("synthetic-data"))
