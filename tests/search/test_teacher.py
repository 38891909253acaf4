"""--teacher: parsed into the config, resolved into the recipe when a search starts (auto: a
network trained through the results cache; PATH: an exported module), kept in the run folder
and found again by a resumed search, a worker and verify; user mistakes are one line."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from budgetnas.search.cache.store import ResultCache
from budgetnas.search.cli import app
from budgetnas.search.errors import SearchError
from budgetnas.search.study.teacher import (
    DEFAULT_DISTILL,
    TEACHER,
    TEACHER_EPOCHS,
    TEACHER_FILE,
    attach_teacher,
    refit_targets,
    start_teacher,
    teacher_recipe,
)
from budgetnas.space.build import build
from budgetnas.space.count import count_params
from budgetnas.space.render import render
from budgetnas.space.spec import ArchSpec, Conv, Head
from budgetnas.trainers.distill import soft_targets, targets_id
from budgetnas.trainers.evaluate import resolve_device
from budgetnas.trainers.recipe import TrainConfig
from tests.helpers import cli_error, quick_config, search_args

runner = CliRunner()


def test_teacher_is_a_larger_fixed_network():
    assert count_params(TEACHER) == 102_826
    recipe = teacher_recipe(TrainConfig(epochs=1, distill=0.5, teacher="ab" * 32, seed=3))
    assert recipe.epochs == TEACHER_EPOCHS and recipe.distill == 0 and recipe.teacher is None
    assert recipe.seed == 3  # the run's recipe otherwise
    assert teacher_recipe(TrainConfig(epochs=15)).epochs == 15


def test_teacher_options_parse(synthetic_root, tmp_path):
    none = quick_config(synthetic_root, tmp_path / "a", teacher="none")
    assert none.teacher is None and none.distill is None
    assert "teacher" not in none.to_dict() and "distill" not in none.to_dict()
    assert none.fingerprint() == quick_config(synthetic_root, tmp_path / "a").fingerprint()
    auto = quick_config(synthetic_root, tmp_path / "b", teacher="auto", distill=0.3)
    assert auto.teacher == "auto" and auto.distill == 0.3
    assert auto.recipe.distill == 0  # resolved when the search starts
    module = tmp_path / "net.py"
    module.write_text("")
    path = quick_config(synthetic_root, tmp_path / "c", teacher=str(module))
    assert path.teacher == str(module.resolve())


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--teacher", "best"), "--teacher best: not auto, none or a module"),
        (("--teacher", "missing.py"), "--teacher missing.py: not auto, none or a module"),
        (("--distill", "0.5"), "--distill is the weight of a teacher's soft targets"),
        (("--teacher", "auto", "--distill", "1.5"), r"--distill must be in \(0, 1\]"),
        (("--teacher", "auto", "--distill", "0"), r"--distill must be in \(0, 1\]"),
    ],
)
def test_teacher_mistakes_are_one_line(synthetic_root, tmp_path, extra, message):
    result = runner.invoke(app, search_args(synthetic_root, tmp_path / "run", *extra))
    assert re.search(message, cli_error(result))
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_broken_teacher_module_is_one_line(synthetic_root, tmp_path):
    module = tmp_path / "broken.py"
    module.write_text("raise ImportError('no torch here')\n")
    result = runner.invoke(
        app, search_args(synthetic_root, tmp_path / "run", "--teacher", str(module))
    )
    assert "could not load its network (ImportError: no torch here)" in cli_error(result)


def exported(tmp_path, spec: ArchSpec, seed: int = 0):
    """A module as budgetnas export writes it (its .py and .pt), with random weights."""
    module = tmp_path / "teacher.py"
    module.write_text(render(spec))
    torch.manual_seed(seed)
    torch.save(build(spec).state_dict(), module.with_suffix(".pt"))
    return module


def test_path_teacher_resolves_into_the_recipe_and_the_run_folder(synthetic_root, tmp_path):
    module = exported(tmp_path, ArchSpec(blocks=(Conv(4, pad=1),), head=Head()))
    cfg = quick_config(synthetic_root, tmp_path / "run", teacher=str(module), distill=0.7)
    data = cfg.data.load("cpu")
    resolved, taught = start_teacher(cfg, data, device=torch.device("cpu"), cache=None, quiet=True)
    recipe = resolved.recipe
    assert recipe.distill == 0.7 and recipe.teacher == taught.soft.id
    assert taught.soft.logits.shape == (len(data.train), 10)
    assert taught.soft.id == targets_id(taught.soft.logits)
    assert resolved.fingerprint()["recipe"]["teacher"] == recipe.teacher
    assert resolved.fingerprint() != cfg.fingerprint()
    # found again (a resumed search, a worker, verify), with its validation rows for a refit
    again = attach_teacher(cfg.data.load("cpu"), recipe, cfg.out)
    assert torch.equal(again.soft.logits, taught.soft.logits)
    both = refit_targets(again, recipe, cfg.out)
    assert both.logits.shape == (len(data.train) + len(data.val), 10)
    # another teacher is another identity
    other = exported(tmp_path, ArchSpec(blocks=(Conv(4, pad=1),), head=Head()), seed=1)
    cfg2 = replace(cfg, out=str(tmp_path / "run2"), teacher=str(other))
    resolved2, _ = start_teacher(cfg2, data, device=torch.device("cpu"), cache=None, quiet=True)
    assert resolved2.recipe.teacher != recipe.teacher


def test_other_training_images_get_the_kept_teachers_soft_targets(synthetic_root, tmp_path):
    """verify on other images (the full split of a search on a subset) distils from the same
    teacher, kept in the run folder; without that file, one line."""
    spec = ArchSpec(blocks=(Conv(4, pad=1),), head=Head())
    module = exported(tmp_path, spec)
    cfg = quick_config(synthetic_root, tmp_path / "run", teacher=str(module))
    resolved, _ = start_teacher(
        cfg, cfg.data.load("cpu"), device=torch.device("cpu"), cache=None, quiet=True
    )
    assert resolved.recipe.distill == DEFAULT_DISTILL
    other = replace(cfg.data, train_subset=None).load("cpu")
    taught = attach_teacher(other, resolved.recipe, cfg.out)
    assert taught.soft.id == resolved.recipe.teacher
    net = build(spec)
    net.load_state_dict(torch.load(module.with_suffix(".pt"), weights_only=True))
    want = soft_targets(net, other.train)
    assert torch.allclose(taught.soft.logits, want, atol=1e-5)
    (module.with_suffix(".pt")).unlink()  # the run keeps its own copy of the teacher
    assert attach_teacher(other, resolved.recipe, cfg.out).soft.logits.shape == want.shape
    (tmp_path / "run" / TEACHER_FILE).unlink()
    with pytest.raises(SearchError, match="cannot be read"):
        attach_teacher(cfg.data.load("cpu"), resolved.recipe, cfg.out)


def test_a_teacher_of_other_classes_is_one_line(synthetic_root, tmp_path):
    module = exported(tmp_path, ArchSpec(blocks=(Conv(4, pad=1),), head=Head(), num_classes=3))
    cfg = quick_config(synthetic_root, tmp_path / "run", teacher=str(module))
    with pytest.raises(SearchError, match="gives 3 outputs per image; the data has 10 classes"):
        start_teacher(cfg, cfg.data.load("cpu"), device=torch.device("cpu"), cache=None)


def test_auto_teacher_is_trained_once_through_the_cache(synthetic_root, tmp_path, monkeypatch):
    import budgetnas.search.study.teacher as teacher_module

    reused = []
    real = teacher_module.cached_train

    def watched(*args, **kwargs):
        result, again = real(*args, **kwargs)
        reused.append(again)
        return result, again

    monkeypatch.setattr(teacher_module, "cached_train", watched)
    monkeypatch.setattr(teacher_module, "TEACHER_EPOCHS", 1)  # quick: its epochs do not matter
    cache = ResultCache(tmp_path / "cache")
    ids = []
    for run in ("a", "b"):
        cfg = quick_config(synthetic_root, tmp_path / run, teacher="auto")
        resolved, _ = start_teacher(
            cfg, cfg.data.load("cpu"), device=resolve_device("cpu"), cache=cache, quiet=True
        )
        ids.append(resolved.recipe.teacher)
    assert reused == [False, True]  # the second search took the cached teacher
    assert ids[0] == ids[1]


@pytest.mark.slow
def test_search_with_auto_teacher_distils_every_training(synthetic_root, tmp_path):
    """A search with --teacher auto: the recipe of every trial names the teacher, the run
    folder keeps its soft targets, and a resumed search (and verify) find them."""
    import json

    from budgetnas.search.study.runs import open_run

    out = tmp_path / "run"
    result = runner.invoke(
        app, search_args(synthetic_root, out, "--teacher", "auto", "--trials", "2")
    )
    assert result.exit_code == 0, result.stderr
    assert "teacher: auto (102,826 parameters" in result.stderr
    cfg, study = open_run(out)
    assert cfg.recipe.distill == DEFAULT_DISTILL and cfg.recipe.teacher
    assert (out / TEACHER_FILE).is_file()
    recipes = [t.user_attrs["recipe"] for t in study.trials if "recipe" in t.user_attrs]
    assert recipes and all(r["teacher"] == cfg.recipe.teacher for r in recipes)
    stored = json.loads((out / "config.json").read_text())
    assert stored["teacher"] == "auto" and stored["recipe"]["teacher"] == cfg.recipe.teacher
    again = runner.invoke(app, ["search", "--resume", str(out), "--trials", "3", "--quiet"])
    assert again.exit_code == 0, again.stderr
    verified = runner.invoke(app, ["verify", str(out), "--top", "1", "--seeds", "1"])
    assert verified.exit_code == 0, verified.stderr
    # --refit trains on training and validation images: the teacher's soft targets of both
    refit = runner.invoke(app, ["export", str(out), "--out", str(tmp_path / "net.py"), "--refit"])
    assert refit.exit_code == 0, refit.stderr
