"""Element dropout whose mask is cheap to draw on a CPU.

``nn.Dropout`` on a CPU draws its mask with ``bernoulli_``: one random number per element,
turned into a float and compared, which made the masks a third of a small network's CPU
training step. ``ElementDropout`` draws 32 random bits per element in bulk (64-bit words from
the generator, viewed as 32-bit integers) and keeps an element where its bits are at least a
threshold: the drop probability is ``p`` to within 2**-33, the scaling of the kept elements
is ``1 / (1 - p)`` as in ``nn.Dropout``, and the bits come from the device's default generator
(what ``trainers.train.seeded`` seeds), or from ``generator``.

On other devices, and in evaluation mode, it is ``nn.Dropout``: a fused kernel there, the
identity here. It is an ``nn.Dropout`` (no parameters, no buffers), so a network built with it
has the state dict and the evaluation outputs of one built with ``nn.Dropout``, which is what
the exported module keeps. Channel dropout (``nn.Dropout2d``) draws one number per channel
and image and stays as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_WORD = 2**32  # the values of one 32-bit draw
_LOW = -(2**31)  # the least of them, as a signed integer


def keep_mask(
    shape: torch.Size | tuple[int, ...],
    p: float,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A bool tensor of ``shape``, each element False with probability ``p`` (to 2**-33)."""
    n = 1
    for d in shape:
        n *= d
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=device)
    words.random_(-(2**63), None, generator=generator)  # every one of the 2**64 values
    bits = words.view(torch.int32)[:n].view(shape)  # (…): uniform over the 2**32 values
    return bits >= _LOW + round(p * _WORD)


def element_dropout(
    x: torch.Tensor, p: float, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``x`` with each element zeroed with probability ``p`` and the rest scaled by
    ``1 / (1 - p)`` (training-mode ``F.dropout``, the mask drawn in bulk)."""
    if p <= 0:
        return x
    if p >= 1:
        return x * 0.0
    keep = keep_mask(x.shape, p, device=x.device, generator=generator)
    return x * torch.where(keep, 1.0 / (1.0 - p), 0.0).to(x.dtype)


class ElementDropout(nn.Dropout):
    """``nn.Dropout(p)`` whose training-mode mask is drawn in bulk on a CPU (see the module)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.device.type != "cpu":
            return F.dropout(x, self.p, self.training, self.inplace)
        return element_dropout(x, self.p)
