"""--precision: what auto resolves to per device, and that the search stores it resolved."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import budgetnas.trainers.precision as precision
from budgetnas.search.study.options import new_config
from budgetnas.trainers.precision import recipe_settings
from budgetnas.trainers.recipe import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_in_channels_last_only_on_a_cpu_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: native)
    fast = {"precision": "bf16", "channels_last": True}
    plain = {"precision": "fp32", "channels_last": False}
    assert recipe_settings("auto", CPU) == (fast if native else plain)
    assert recipe_settings("auto", CUDA) == plain  # not measured on a GPU yet
    assert recipe_settings("fp32", CPU) == plain
    assert recipe_settings("bf16", CPU) == fast
    assert recipe_settings("bf16", CUDA) == {"precision": "bf16", "channels_last": False}


def test_a_bad_precision_is_one_line():
    with pytest.raises(ConfigError, match="--precision must be one of auto, fp32, bf16"):
        recipe_settings("fp16", CPU)


def test_native_bf16_is_what_the_cpu_flags_say():
    """On Linux the kernel lists the CPU's features: AVX512-BF16 or AMX-BF16 is native bf16."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        pytest.skip("no /proc/cpuinfo here")
    flags = set()
    for line in info.read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    assert precision.native_bf16_cpu() == bool(flags & {"avx512_bf16", "amx_bf16"})


@pytest.mark.parametrize("native", [True, False])
def test_a_new_search_stores_the_precision_it_resolved(monkeypatch, tmp_path, native):
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: native)
    auto = new_config(out=tmp_path / "a", caps=(5000,), device="cpu")
    assert (auto.recipe.precision, auto.recipe.channels_last) == (
        ("bf16", True) if native else ("fp32", False)
    )
    assert auto.to_dict()["recipe"].get("precision", "fp32") == auto.recipe.precision
    chosen = new_config(out=tmp_path / "b", caps=(5000,), device="cpu", precision="fp32")
    assert (chosen.recipe.precision, chosen.recipe.channels_last) == ("fp32", False)


def test_a_search_in_bf16_trains_stores_and_says_it(tmp_path, synthetic_root, capsys):
    from budgetnas.search.pipeline import run_search
    from budgetnas.search.study.runs import read_config
    from tests.helpers import quick_config

    cfg = quick_config(synthetic_root, tmp_path / "r", trials=2, precision="bf16", verify_seeds=1)
    study = run_search(cfg)
    assert all(t.state.is_finished() for t in study.trials)
    assert read_config(tmp_path / "r").recipe.precision == "bf16"
    err = capsys.readouterr().err
    assert "on cpu in bf16" in err  # the header
    verify = [line for line in err.splitlines() if line.startswith("verify ")]
    assert verify and all(line.endswith(" bf16)") for line in verify)  # their recipe
