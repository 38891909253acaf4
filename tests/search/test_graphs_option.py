"""--graphs/--no-graphs: CUDA graphs on or off for a process and the processes it starts, and
the results cache keeping a captured training apart from an eager one on CUDA."""

from __future__ import annotations

import os

import torch

from budgetnas.search.cache import keys as cache_keys
from budgetnas.search.cache import store as cache_store
from budgetnas.search.cli.app import eager_steps
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.graphs import GRAPHS_ENV, use_graphs
from budgetnas.trainers.recipe import default_recipe

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_graphs_are_on_for_cuda_by_default_off_with_the_environment_and_never_on_a_cpu(
    monkeypatch,
):
    monkeypatch.delenv(GRAPHS_ENV, raising=False)
    assert use_graphs(CUDA, None) and not use_graphs(CUDA, False)
    assert not use_graphs(CPU, None) and not use_graphs(CPU, True)
    monkeypatch.setenv(GRAPHS_ENV, "0")
    assert not use_graphs(CUDA, None)
    assert use_graphs(CUDA, True)  # an explicit choice wins over the process's default


def test_no_graphs_reaches_the_processes_a_command_starts(monkeypatch):
    monkeypatch.setenv(GRAPHS_ENV, "1")  # recorded, so the environment is restored after
    eager_steps(True)
    assert os.environ[GRAPHS_ENV] == "1"
    eager_steps(False)
    assert os.environ[GRAPHS_ENV] == "0"  # helpers inherit the environment
    assert not use_graphs(CUDA, None)


def test_the_cache_keys_a_cuda_training_by_graphs_and_a_cpu_one_not(monkeypatch):
    spec, recipe = ZOO["001"].spec, default_recipe(1)

    def key(device: str, graphs: bool | None) -> str:
        ident = cache_keys.identity(
            spec,
            recipe,
            data="d",
            train_images=10,
            val_images=5,
            device=device,
            threads=1,
            graphs=graphs,
        )
        return cache_keys.result_key(ident)

    assert key("cuda", True) != key("cuda", False)
    monkeypatch.setenv(GRAPHS_ENV, "0")
    assert cache_store._graphs(CUDA) is False
    assert cache_store._graphs(CPU) is None  # a CPU's keys are the same either way
    monkeypatch.setenv(GRAPHS_ENV, "1")
    assert cache_store._graphs(CUDA) is True
