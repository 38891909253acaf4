"""Several trainings at once in one process (trainers/many.py), on a CPU: the steps alternate,
and each training is the one ``train`` gives alone, to the bit."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from budgetnas.space.spec import ArchSpec, Conv, Head, Transition
from budgetnas.trainers.data import load_train_val
from budgetnas.trainers.many import Job, train_many
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import TrainingError, train

SPEC = ArchSpec(
    blocks=(
        Conv(6, pad=1, dropout=0.1),
        Transition(8),
        Conv(8, dropout=0.1, dropout_kind="channel"),
    ),
    head=Head(),
)
OTHER = ArchSpec(blocks=(Conv(4, pad=1, dropout=0.2),), head=Head(hidden=(8,), dropout=0.3))
BASE = TrainConfig(epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def data(synthetic_root):
    return load_train_val("mnist", data_dir=synthetic_root, val_size=100, train_subset=192)


def same(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    weights = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    return a.loss_curve == b.loss_curve and a.val_curve == b.val_curve and weights


def test_trainings_at_once_are_each_the_training_alone(data):
    """Different networks, recipes, seeds and lengths (dropout drawn from each one's own
    stream), and the caller's random state left as it was."""
    small = data.first(96)
    jobs = [
        Job(SPEC, data, BASE),
        Job(OTHER, data, replace(BASE, seed=3, optimizer="adamw", lr=0.01, ema=0.9)),
        Job(SPEC, small, replace(BASE, seed=1, epochs=3)),
    ]
    torch.manual_seed(11)
    before = torch.random.get_rng_state()
    results = train_many(jobs)
    assert torch.equal(torch.random.get_rng_state(), before)
    for job, result in zip(jobs, results, strict=True):
        assert same(result, train(job.spec, job.data, job.cfg))


def test_a_failed_or_stopped_training_ends_alone(data):
    class Stop(Exception):
        pass

    seen = []

    def stop(epoch, acc, loss):
        seen.append(epoch)
        raise Stop

    diverging = replace(BASE, lr=1e12, schedule="constant", momentum=0.0)
    jobs = [Job(SPEC, data, diverging), Job(SPEC, data, BASE, on_epoch=stop), Job(SPEC, data, BASE)]
    results = train_many(jobs)
    assert isinstance(results[0], TrainingError) and isinstance(results[1], Stop)
    assert seen == [0]
    assert same(results[2], train(SPEC, data, BASE))
