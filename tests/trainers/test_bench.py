from __future__ import annotations

import pytest
import torch

from budgetnas.trainers.bench import BenchRow, time_budgetnas, time_dataloader
from budgetnas.trainers.data import load_train_val


def test_both_pipelines_time_the_same_steps(synthetic_root):
    cpu = torch.device("cpu")
    data = load_train_val("mnist", data_dir=synthetic_root, val_size=100)
    ours = time_budgetnas("001", data, batch=32, steps=3, device=cpu)
    theirs = time_dataloader("001", str(synthetic_root), batch=32, steps=3, device=cpu, workers=0)
    assert ours > 0 and theirs > 0
    row = BenchRow("001", 32, "budgetnas", 3, 2.0)
    assert row.epochs_per_s == pytest.approx(3 * 32 / 60_000 / 2.0)
