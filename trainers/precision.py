"""The precision and memory format a search trains in, per device, from a measurement.

On a CPU whose oneDNN computes bf16 natively (AVX512-BF16 or AMX), seed 001's training step
under bf16 autocast in channels_last order took 0.68x the fp32 step's time with one thread (the
search's trial processes) and its validation accuracy was unchanged (98.98% ± 0.10% against
98.99% ± 0.06%, 3 seeds; docs/benchmarks.md, "CPU step: precision and memory format"). On other
CPUs bf16 is emulated, and on CUDA it is not measured yet: fp32 there.
"""

from __future__ import annotations

from typing import Any

import torch

from budgetnas.trainers.recipe import ConfigError

PRECISION_CHOICES = ("auto", "fp32", "bf16")


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 in hardware (torch's own checks; False where this torch
    has none of them)."""
    checks = [
        getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    try:
        hardware = any(check() for check in checks if check is not None)
        mkldnn = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return hardware and (mkldnn is None or bool(mkldnn()))
    except (RuntimeError, AttributeError):
        return False


def recipe_settings(precision: str, device: torch.device) -> dict[str, Any]:
    """The recipe's ``precision`` and ``channels_last`` for ``--precision`` on ``device``:
    ``auto`` is bf16 in channels_last order on a CPU with native bf16 and fp32 elsewhere;
    ``bf16`` is bf16 (channels_last too on a CPU); ``fp32`` is fp32 in the default order."""
    if precision not in PRECISION_CHOICES:
        raise ConfigError(
            f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}"
        )
    cpu = device.type == "cpu"
    if precision == "auto":
        precision = "bf16" if cpu and native_bf16_cpu() else "fp32"
    if precision == "bf16":
        return {"precision": "bf16", "channels_last": cpu}
    return {"precision": "fp32", "channels_last": False}
