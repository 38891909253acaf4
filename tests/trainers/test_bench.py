from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from budgetnas.trainers.bench import BenchRow, bench_table, time_budgetnas, time_dataloader
from budgetnas.trainers.data import load_train_val
from budgetnas.trainers.recipe import ConfigError


@pytest.fixture
def optimizer_steps():
    """The parameter count of every optimizer step taken while the fixture is alive."""
    steps: list[tuple[int, int]] = []

    def hook(opt, args, kwargs):
        params = sum(p.numel() for g in opt.param_groups for p in g["params"])
        steps.append(params)

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
