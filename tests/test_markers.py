"""The ``gpu`` marker, and nothing else, skips a test where CUDA is absent."""

from __future__ import annotations

import pytest

from tests.conftest import needs_cuda


def test_a_test_in_a_folder_named_gpu_is_not_taken_for_a_gpu_test(request):
    """A test's keywords hold its folders' names: a checkout in /work/gpu has "gpu" among
    them, and a check of the keywords skipped every test there."""
    assert "gpu" not in request.node.own_markers
    request.node.keywords["gpu"] = True  # as the folder's name puts it there
    assert not needs_cuda(request.node)


@pytest.mark.gpu
def test_a_gpu_test_is_one(request):
    assert needs_cuda(request.node)
