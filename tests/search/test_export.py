"""Export of a network asked for by trial number: the best weights the network has anywhere
in the run (a promotion's, a verify seed's), said; a refit on exactly the images they were
trained on."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.search.schedule.trials import promoted_from, rung_of
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification.records import stored_results
from tests.helpers import quick_config

runner = CliRunner()


@pytest.fixture(scope="module")
def promoted(tmp_path_factory, synthetic_root):
    """One candidate (1 ep x 100 img at rung 0) promoted to rung 1 (2 ep x 100 img), no
    verification yet: (run folder, the rung-0 trial, its promotion)."""
    run = tmp_path_factory.mktemp("export") / "run"
    cfg = quick_config(
        synthetic_root,
        run,
        trials=1,
        epochs=2,
        rungs=2,
        train_subset=100,
        max_macs=200_000,  # a cheap network: the fixture trains in a few seconds
        seed=3,
        references="none",
    )
    assert [(r.epochs, r.images) for r in cfg.schedule.rungs] == [(1, 100), (2, 100)]
    study = run_search(cfg, quiet=True)
    (up,) = [t for t in study.trials if rung_of(t) == 1]
    return run, promoted_from(up), up.number


@pytest.fixture(scope="module")
def verified(promoted, tmp_path_factory):
    """A copy of ``promoted`` whose promotion was verified with one seed at 3 ep on 70 of the
    search's 100 training images (``--train-subset 70``): (run, rung-0 trial, promotion, the
    images verify trained that seed on, and the validation images)."""
    from budgetnas.search.verification import retrain as verify_module
    from budgetnas.search.verification.retrain import verify_run

    original, source, up = promoted
    run = tmp_path_factory.mktemp("export-verified") / "run"
    shutil.copytree(original, run)
    seen = []
    real = verify_module.train

    def spy(spec, data, cfg, **kwargs):
        seen.append(torch.cat([data.train.x, data.val.x]).cpu())
        return real(spec, data, cfg, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verify_module, "train", spy)
        verify_run(run, trials=[up], seeds=1, epochs=3, train_subset=70, device="cpu")
    (images,) = seen
    assert len(images) == 170  # 70 training + 100 validation images
    return run, source, up, images


def _export(run: Path, root: Path, out: Path, *extra: str) -> list[str]:
    args = ["export", str(run), "--out", str(out), "--data-dir", str(root), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


def _same_tensors(a: Path, b: Path) -> bool:
    x = torch.load(a, weights_only=True)
    y = torch.load(b, weights_only=True)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_trial_ships_its_promotion_weights(promoted, synthetic_root, tmp_path):
    """``--trial N`` of a rung-0 candidate ships the weights its promotion trained at the
    higher rung, and says whose they are."""
    run, source, up = promoted
    lines = _export(run, synthetic_root, tmp_path / "net.py", "--trial", str(source))
    assert lines[0].startswith(f"trial {source}: ")
    assert lines[1].startswith(f"weights: search seed 3 of trial {up} (2 ep x 100 img")
    assert lines[2] == (
        f"note: trial {up} is trial {source} promoted to rung 1, the same network; export "
        "takes the best weights the network has in the run (the highest fidelity it was "
        "trained at, then validation)"
    )
    _, study = open_run(run)
    assert _same_tensors(tmp_path / "net.pt", run / study.trials[up].user_attrs["weights"])
    doc = (tmp_path / "net.py").read_text()
    assert f"Trial {source} of a budgetnas search" in doc
    assert f"Weights: search seed 3 of trial {up}, 2 ep x 100 img" in doc
    # the promotion itself: its own weights, nothing to explain
    lines = _export(run, synthetic_root, tmp_path / "up.py", "--trial", str(up))
    assert lines[1].startswith("weights: search seed 3 (2 ep x 100 img")
    assert not any(line.startswith("note:") for line in lines)


def test_trial_ships_the_verified_weights_of_its_promotion(verified, synthetic_root, tmp_path):
    """A verify seed of the promotion (3 ep x 70 img: more image-epochs than 2 ep x 100) is
    what ``--trial`` of the rung-0 candidate ships, as the default export does."""
    run, source, up, _ = verified
    _, study = open_run(run)
    (record,) = stored_results(study).values()
    assert record.key == f"trial-{up}"
    (seed_run,) = record.runs
    for out, extra in (("asked.py", ("--trial", str(source))), ("default.py", ())):
        lines = _export(run, synthetic_root, tmp_path / out, *extra)
        assert f"test accuracy {seed_run.test_acc:.2%}" in lines[1]
        assert _same_tensors(tmp_path / out.replace(".py", ".pt"), run / seed_run.weights)
    asked = _export(run, synthetic_root, tmp_path / "again.py", "--trial", str(source))
    assert asked[1].startswith(f"weights: verify seed 0 of trial {up} (3 ep x 70 img")
    assert asked[2].startswith(f"note: trial {up} is trial {source} promoted to rung 1, the same ")
    assert lines[0].startswith(f"trial {up}: ")  # the default: the verified trial itself
    assert lines[1].startswith("weights: verify seed 0 (3 ep x 70 img")


def test_refit_trains_on_the_images_verify_trained_on(
    verified, synthetic_root, tmp_path, monkeypatch
):
    """Verified with ``--train-subset 70`` of a search on 100 images: the refit trains on
    exactly those 70 images and the validation split, not on 70 of the search's own."""
    from budgetnas.trainers import train as train_module

    run, source, up, verify_images = verified
    seen = []
    real = train_module.train

    def spy(spec, data, cfg, **kwargs):
        seen.append((data.train.x.cpu(), cfg.seed, cfg.epochs))
        return real(spec, data, cfg, **kwargs)

    monkeypatch.setattr(train_module, "train", spy)

    def same_images(x: torch.Tensor, y: torch.Tensor) -> bool:
        a, b = (Counter(image.numpy().tobytes() for image in z) for z in (x, y))
        assert a == b, f"{sum((a & b).values())} of {len(y)} images in common"
        return True

    # the default: the verified promotion, its verify seed's weights
    lines = _export(run, synthetic_root, tmp_path / "refit.py", "--refit")
    ((images, seed, epochs),) = seen
    assert (seed, epochs) == (0, 3)
    assert same_images(images, verify_images)
    assert lines[1].startswith(
        "weights: refit on 170 training + validation images as verify seed 0 was trained "
        "(3 ep x 70 img"
    )
    assert "): the same 70 training images and the 100 validation images; " in lines[1]
    assert not any(line.startswith("note:") for line in lines)
    doc = (tmp_path / "refit.py").read_text()
    assert "refit on 170 training + validation images as verify seed 0 was trained" in doc
    assert "the same 70 training images" in doc
    # asked for by the rung-0 trial: the same weights, so the same images; whose, said
    seen.clear()
    lines = _export(run, synthetic_root, tmp_path / "asked.py", "--trial", str(source), "--refit")
    ((images, _, _),) = seen
    assert same_images(images, verify_images)
    assert lines[1].startswith(
        f"weights: refit on 170 training + validation images as verify seed 0 of trial {up} "
        "was trained (3 ep x 70 img"
    )
    assert lines[2].startswith(f"note: trial {up} is trial {source} promoted to rung 1, the same ")
    doc = (tmp_path / "asked.py").read_text()
    assert f"as verify seed 0 of trial {up} was trained" in doc


@pytest.mark.slow  # 5,000 validation images, trained on in the refit
def test_refit_of_verify_weights_on_the_full_split_with_the_default_validation_size(
    tmp_path_factory, monkeypatch
):
    """A search on a subset without ``--val-size`` (5,000 validation images, MNIST's default),
    verified on the full training split: the refit trains on all of it and the validation
    split (it stopped with a TypeError before)."""
    from budgetnas.search.handback.export import export_trial
    from budgetnas.search.verification.retrain import verify_run
    from budgetnas.trainers import train as train_module
    from tests.helpers import write_synthetic_mnist

    root = write_synthetic_mnist(tmp_path_factory.mktemp("data-5k"), n_train=5_200, n_test=100)
    run = tmp_path_factory.mktemp("export-full") / "run"
    cfg = quick_config(
        root,
        run,
        trials=1,
        epochs=1,
        rungs=1,
        val_size=None,
        train_subset=100,
        max_macs=200_000,
        seed=3,
        references="none",
    )
    assert cfg.data.val_images == 5_000 and cfg.data.train_images == 100
    study = run_search(cfg, quiet=True)
    (done,) = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    verify_run(run, trials=[done], seeds=1, device="cpu")  # all 200 training images
    seen = []
    real = train_module.train

    def spy(spec, data, cfg, **kwargs):
        seen.append(len(data.train))
        return real(spec, data, cfg, **kwargs)

    monkeypatch.setattr(train_module, "train", spy)
    res = export_trial(run, out=tmp_path_factory.mktemp("out") / "net.py", refit=True)
    assert (res.shipped.source, res.shipped.train_images) == ("verify", 200)
    assert seen == [5_200] and res.refit_images == 5_200
