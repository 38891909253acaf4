"""Element dropout whose mask is cheap to draw on a CPU.

``nn.Dropout`` on a CPU draws its mask with ``bernoulli_``: one random number per element,
turned into a float and compared, which made the masks a third of a small network's CPU
training step; the masked multiply then goes through kernels on boolean tensors, several
times slower on a CPU than a multiply of two float tensors. ``ElementDropout`` instead

- draws 16 random bits per element in bulk: 64-bit words from NumPy's SFC64 generator
  (about three times as fast as the per-element draws of torch's CPU generator), seeded by
  one draw from the device's default torch generator (what ``trainers.train.seeded`` seeds),
  or from ``generator``, so a run's masks follow from its seed;
- keeps an element where its bits are at least a threshold: the drop probability is ``p``
  to within 2**-17;
- turns the bits into the float mask ``0`` or ``1 / (1 - p)`` (the scaling of
  ``nn.Dropout``) with float arithmetic only, and multiplies: the backward pass is one more
  float multiply by the same mask.

On other devices, and in evaluation mode, it is ``nn.Dropout``: a fused kernel there, the
identity here. It is an ``nn.Dropout`` (no parameters, no buffers), so a network built with it
has the state dict and the evaluation outputs of one built with ``nn.Dropout``, which is what
the exported module keeps. Channel dropout (``nn.Dropout2d``) draws one number per channel
and image and stays as it is.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_BITS = 16  # random bits per element
_VALUES = 2**_BITS  # the values of one draw
_LOW = -(2 ** (_BITS - 1))  # the least of them, as a signed integer
_SEED_HIGH = 2**62  # seeds of the bulk generator are drawn from [0, this)


def _threshold(p: float) -> int:
    """Bits at or above this value keep their element: a share ``p`` (to 2**-17) is below."""
    return _LOW + round(p * _VALUES)


def random_bits(
    shape: torch.Size | tuple[int, ...], *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """An int16 tensor of ``shape`` (on the CPU), uniform over the 2**16 values, from an
    SFC64 stream seeded by one draw of ``generator`` (None: torch's default CPU generator)."""
    n = 1
    for d in shape:
        n *= d
    seed = int(torch.randint(0, _SEED_HIGH, (1,), generator=generator))
    words = np.random.SFC64(seed).random_raw((n + 3) // 4)  # 4 draws of 16 bits a word
    return torch.from_numpy(words.view(np.int16)[:n]).view(shape)


def scaled_mask(
    shape: torch.Size | tuple[int, ...],
    p: float,
    *,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The float mask of training-mode dropout: ``0`` where the bits of ``random_bits`` are
    below the threshold of ``p`` (a share ``p`` of them, to 2**-17), ``1 / (1 - p)`` where
    they are not. Computed in float arithmetic (exact for 16-bit integers):
    ``clamp(bits - threshold + 1/2, 0, 1/2) * 2 / (1 - p)``."""
    bits = random_bits(shape, generator=generator).to(torch.float32)
    half = bits.sub_(_threshold(p) - 0.5).clamp_(0.0, 0.5)  # 1/2 where kept, else 0
    return half.mul_(2.0 / (1.0 - p)).to(dtype)


def element_dropout(
    x: torch.Tensor, p: float, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``x`` (on the CPU) with each element zeroed with probability ``p`` and the rest scaled
    by ``1 / (1 - p)`` (training-mode ``F.dropout``, the mask drawn in bulk)."""
    if p <= 0:
        return x
    if p >= 1:
        return x * 0.0
    return x * scaled_mask(x.shape, p, dtype=x.dtype, generator=generator)


class ElementDropout(nn.Dropout):
    """``nn.Dropout(p)`` whose training-mode mask is drawn in bulk on a CPU (see the module)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.device.type != "cpu":
            return F.dropout(x, self.p, self.training, self.inplace)
        return element_dropout(x, self.p)
