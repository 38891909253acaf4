from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from budgetnas.trainers.bench import BenchRow, bench_table, time_budgetnas
from budgetnas.trainers.bench_loader import time_dataloader
from budgetnas.trainers.data import load_train_val
from budgetnas.trainers.recipe import ConfigError
from budgetnas.trainers.step import Update


@pytest.fixture
def optimizer_steps(monkeypatch):
    """The parameter count of every optimizer step taken while the fixture is alive: torch's
    optimizers' (the DataLoader pipeline) and budgetnas's step's."""
    steps: list[int] = []

    def hook(opt, args, kwargs):
        params = sum(p.numel() for g in opt.param_groups for p in g["params"])
        steps.append(params)

    real_update = Update.__call__

    def counted(self, scalars):
        real_update(self, scalars)
        steps.append(sum(p.numel() for p in self.params))

    monkeypatch.setattr(Update, "__call__", counted)
    handle = register_optimizer_step_post_hook(hook)
    yield steps
    handle.remove()


def test_both_pipelines_time_the_same_steps_of_the_same_net(synthetic_root, optimizer_steps):
    cpu = torch.device("cpu")
    data = load_train_val("mnist", data_dir=synthetic_root, val_size=100)
    ours = time_budgetnas("001", data, batch=32, steps=5, device=cpu)
    ours_steps = list(optimizer_steps)
    optimizer_steps.clear()
    theirs = time_dataloader("001", str(synthetic_root), batch=32, steps=5, device=cpu, workers=0)
    assert ours > 0 and theirs > 0
    # both: 3 warm-up steps, then the 5 timed ones, all on seed 001's 9,798 parameters
    assert ours_steps == optimizer_steps == [9_798] * 8
    row = BenchRow("001", 32, "budgetnas", 3, 2.0)
    assert row.epochs_per_s == pytest.approx(3 * 32 / 60_000 / 2.0)


def test_bench_table_rejects_unknown_nets_and_bad_lists(synthetic_root):
    common = dict(device="cpu", steps=1, concurrent="", loader_workers=0, data_dir=synthetic_root)
    with pytest.raises(ConfigError, match="no zoo entry '999'"):
        bench_table(nets="001,999", batches="32", **common)
    with pytest.raises(ConfigError, match="--batches must be a comma-separated list"):
        bench_table(nets="001", batches="32,big", **common)


def test_bench_table_prints_every_pipeline_side_by_side(synthetic_root):
    """Tiny sizes on a CPU: the rows that apply here, each a positive rate, the eager step the
    yardstick (1.00x); CUDA graphs said to be CUDA only."""
    lines: list[str] = []
    bench_table(
        device="cpu",
        steps=2,
        nets="001",
        batches="16",
        concurrent="",
        loader_workers=0,
        data_dir=synthetic_root,
        at_once="2",
        fused_seeds=2,
        echo=lines.append,
    )
    rows = {line[12:52].strip(): line.split() for line in lines if line.startswith("001")}
    assert list(rows) == [
        "DataLoader (0 workers)",
        "loop before the step, torch.optim",
        "step, eager",
        "2 at once (taking turns), in total",
        "2 seeds fused, in total",
    ]
    assert all(float(r[-2]) > 0 for r in rows.values())
    assert rows["step, eager"][-1] == "1.00x"
    assert any("CUDA graphs: CUDA only" in line for line in lines)
    with pytest.raises(ConfigError, match="--at-once"):
        bench_table(
            device="cpu",
            steps=1,
            nets="001",
            batches="16",
            concurrent="",
            loader_workers=0,
            data_dir=synthetic_root,
            at_once="0",
            loader=False,
        )
