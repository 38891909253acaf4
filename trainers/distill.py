"""Distillation from a teacher's soft targets (``TrainConfig.distill``).

A teacher is a larger network trained once per data set and recipe (``search.teacher``). Its
soft targets are its logits on each training image, computed once, un-augmented, in eval mode
and fp32 (``soft_targets``); the student reads them by the batch's image indices, so that an
augmented image is matched with the teacher's reading of the plain one. The loss is

    (1 - a) x cross-entropy(student, labels) + a x T^2 x KL(teacher/T || student/T)

with ``a = distill`` and ``T = temperature``; T^2 keeps the soft term's gradients at the scale
of the hard one's (Hinton et al., 2015). The recipe names the teacher by ``targets_id``, the
sha256 of its soft targets, so a result's cache key and a study's fingerprint change with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from budgetnas.trainers.data import Split
from budgetnas.trainers.recipe import ConfigError, TrainConfig

__all__ = ["SoftTargets", "distill_loss", "soft_targets", "targets_id"]


def targets_id(logits: torch.Tensor) -> str:
    """The sha256 of a teacher's logits (their shape, dtype and bytes): its identity."""
    t = logits.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(f"soft targets:{tuple(t.shape)}:{t.dtype}".encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class SoftTargets:
    """A teacher's logits (N, classes) float32, row i for training image i, and their
    identity (``targets_id`` of the logits of the whole training split they were made for;
    a subset keeps it: the data digest says which images it holds)."""

    logits: torch.Tensor
    id: str

    @classmethod
    def of(cls, logits: torch.Tensor) -> SoftTargets:
        logits = logits.detach().float()
        return cls(logits, targets_id(logits))

    def take(self, keep: torch.Tensor) -> SoftTargets:
        """The rows of the images ``keep`` (``TrainVal.first``)."""
        return SoftTargets(self.logits[keep.to(self.logits.device)], self.id)

    def __len__(self) -> int:
        return int(self.logits.shape[0])


@torch.inference_mode()
def soft_targets(model: nn.Module, split: Split, *, batch_size: int = 2000) -> torch.Tensor:
    """``model``'s logits on every image of ``split``, un-augmented, in eval mode and fp32."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(split), batch_size):
        x = split.x[i : i + batch_size].float().div_(255)  # (B, C, H, W) in [0, 1]
        out.append(model(x).float())
    model.train(was_training)
    return torch.cat(out)


def check_targets(cfg: TrainConfig, soft: SoftTargets | None, train: Split, classes: int) -> None:
    """Refuse, in one line, soft targets that are not the recipe's teacher's or do not fit the
    training images (one row each, one column per class)."""
    if soft is None:
        raise ConfigError(
            f"the recipe distils from teacher {cfg.teacher}, but the training data carries no "
            "soft targets (attach the teacher's to the data: TrainVal.soft)"
        )
    if soft.id != cfg.teacher:
        raise ConfigError(
            f"the training data carries the soft targets of teacher {soft.id[:12]}, the recipe "
            f"names teacher {str(cfg.teacher)[:12]}"
        )
    if tuple(soft.logits.shape) != (len(train), classes):
        raise ConfigError(
            f"soft targets of shape {tuple(soft.logits.shape)} do not fit {len(train)} training "
            f"images of {classes} classes"
        )


def distill_loss(
    out: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, cfg: TrainConfig
) -> torch.Tensor:
    """(1 - a) x CE + a x T^2 x KL(teacher/T || student/T), averaged over the batch."""
    t, a = cfg.temperature, cfg.distill
    out = out.float()  # (B, classes)
    hard = F.cross_entropy(out, labels, label_smoothing=cfg.label_smoothing)
    soft = F.kl_div(
        F.log_softmax(out / t, dim=1),
        F.log_softmax(teacher / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - a) * hard + a * (t * t) * soft
