"""The GPU path on CUDA: the captured step against the eager one, K trainings at once against
one at a time, fused seeds against separate trainings. Skipped without CUDA (tests/conftest.py);
the same code runs eagerly on a CPU in test_step.py, test_many.py and test_fused.py.

Tolerances: float rounding (CUDA kernels need not add in one order from run to run): losses
within 1e-4 relative, validation curves within 0.01 (1 image in 100).
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch

from budgetnas.space.build import build
from budgetnas.space.spec import ArchSpec, Conv, Head, Transition
from budgetnas.trainers import graphs as graph_module
from budgetnas.trainers.data import load_train_val
from budgetnas.trainers.fused import train_fused
from budgetnas.trainers.many import Job, train_many
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import Training, seeded, train

pytestmark = pytest.mark.gpu

PLAIN = ArchSpec(blocks=(Conv(6, pad=1), Transition(8), Conv(8)), head=Head(hidden=(12,)))
DROPPING = ArchSpec(
    blocks=(
        Conv(6, pad=1, dropout=0.1),
        Transition(8),
        Conv(8, dropout=0.1, dropout_kind="channel"),
    ),
    head=Head(hidden=(12,), dropout=0.2),
)
BASE = TrainConfig(epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def data(synthetic_root):
    return load_train_val(
        "mnist", data_dir=synthetic_root, val_size=100, train_subset=288, device="cuda"
    )


def close(a, b) -> None:
    assert a.loss_curve == pytest.approx(b.loss_curve, rel=1e-4)
    assert a.val_curve == pytest.approx(b.val_curve, abs=0.01)


def test_the_captured_step_is_the_eager_step(data):
    """Captured after the warm-up, with no fallback; the augmentation's generator registered
    with the graph draws what it draws eagerly: the same losses on the same batches."""
    cuda = torch.device("cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error", graph_module.GraphFallbackWarning)
        with seeded(0, cuda):
            gen = torch.Generator(device=cuda).manual_seed(0)
            run = Training(
                build(PLAIN).to(cuda),
                data,
                BASE,
                generators=[gen],
                classes=10,
                capture=graph_module.cuda_capture,
            )
            while run.advance():
                pass
    assert run.runner.captured and run.runner.replays > 0 and run.validate.replay is not None
    (captured,) = run.results()
    close(captured, train(PLAIN, data, BASE, device="cuda", graphs=False))
    # with dropout (the device's generator), the run captures and learns the same way
    dropping = train(DROPPING, data, BASE, device="cuda", graphs=True)
    close(dropping, train(DROPPING, data, BASE, device="cuda", graphs=False))


def test_the_step_never_waits_for_the_device(data):
    """A graph cannot hold a host sync: none in the step (torch's sync debug mode raises)."""
    cuda = torch.device("cuda")
    with seeded(0, cuda):
        gen = torch.Generator(device=cuda).manual_seed(0)
        run = Training(build(DROPPING).to(cuda), data, BASE, generators=[gen], classes=10)
    run.step.start_epoch()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            run.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert int(run.step.t) == 3


def test_k_trainings_at_once_are_each_the_training_alone(data):
    jobs = [Job(DROPPING, data, replace(BASE, seed=s)) for s in range(3)]
    jobs.append(Job(PLAIN, data, replace(BASE, optimizer="adamw", lr=0.01, ema=0.9)))
    results = train_many(jobs, device="cuda")
    for job, result in zip(jobs, results, strict=True):
        close(result, train(job.spec, job.data, job.cfg, device="cuda"))


def test_fused_seeds_train_as_separate_trainings(data):
    """Without dropout (fused copies draw theirs from the device's one generator on CUDA)."""
    fused = train_fused(PLAIN, data, BASE, seeds=[0, 1, 2], device="cuda")
    for seed, result in zip([0, 1, 2], fused, strict=True):
        close(result, train(PLAIN, data, replace(BASE, seed=seed), device="cuda"))
    dropping = train_fused(DROPPING, data, BASE, seeds=[0, 1, 2], device="cuda")
    assert all(r.val_acc > 0 for r in dropping)


def test_bench_prints_the_cuda_rows(synthetic_root):
    from budgetnas.trainers.bench import bench_table

    lines: list[str] = []
    bench_table(
        device="cuda",
        steps=2,
        nets="001",
        batches="32",
        concurrent="",
        loader_workers=0,
        data_dir=synthetic_root,
        at_once="1,2",
        fused_seeds=2,
        echo=lines.append,
    )
    text = "\n".join(lines)
    assert "step, CUDA graph" in text and "2 at once (graphs, streams)" in text
    assert "2 seeds fused" in text
