"""The results cache shared by searches: keys, entries, damage, concurrent writers, and a
second search that trains nothing its cache already holds."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

from budgetnas.search.cache import keys as cache_keys
from budgetnas.search.cache import store as cache_module
from budgetnas.search.cache.keys import cpu_kind, identity, result_key
from budgetnas.search.cache.reuse import cached_train
from budgetnas.search.cache.store import ResultCache, default_cache_dir, open_cache
from budgetnas.search.cli import app
from budgetnas.search.errors import SearchError
from budgetnas.search.sampling import objective
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification import retrain as verify_module
from budgetnas.search.verification.records import stored_results
from budgetnas.space.spec import ArchSpec, Conv, Head, Transition
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.augment import NO_AUGMENT
from budgetnas.trainers.data import DataConfig, Split, TrainVal
from budgetnas.trainers.datasets import dataset_info
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import train
from tests.helpers import SHARED_SEARCH, cli_error, search_args, synthetic_images

runner = CliRunner()
SPEC = ArchSpec(blocks=(Conv(4, pad=1), Transition(6), Conv(8)), head=Head())
RECIPE = TrainConfig(epochs=2, batch_size=20, lr=0.05, augment=NO_AUGMENT)


def _data(n_train: int = 60, n_val: int = 20, seed: int = 3) -> TrainVal:
    x, y = synthetic_images(n_train + n_val, seed)
    x = torch.from_numpy(x).unsqueeze(1)
    y = torch.from_numpy(y).long()
    train_split = Split(x[:n_train].contiguous(), y[:n_train].contiguous())
    val_split = Split(x[n_train:].contiguous(), y[n_train:].contiguous())
    return TrainVal(dataset_info("mnist"), train_split, val_split)


@pytest.fixture(scope="module")
def data() -> TrainVal:
    return _data()


def _counting_fit(calls: list):
    def fit(spec, data, cfg, **kwargs):
        calls.append(cfg.seed)
        return train(spec, data, cfg, **kwargs)

    return fit


# ---- the key --------------------------------------------------------------------------------


def test_the_key_changes_with_every_component_and_only_then(data, tmp_path, monkeypatch):
    cache = ResultCache(tmp_path)
    base = cache.key(SPEC, data, RECIPE, device="cpu")
    assert cache.key(SPEC, data, RECIPE, device="cpu") == base  # stable
    assert ResultCache(tmp_path / "other").key(SPEC, _data(), RECIPE, device="cpu") == base
    assert len(base) == 64 and base == base.lower()

    one_pixel = _data()
    one_pixel.train.x[0, 0, 0, 0] += 1
    other_split = TrainVal(data.info, data.val, data.train)  # the same images split otherwise
    fewer = TrainVal(data.info, Split(data.train.x[:40], data.train.y[:40]), data.val)
    smaller_val = TrainVal(data.info, data.train, Split(data.val.x[:10], data.val.y[:10]))
    keys = {
        "base": base,
        "spec": cache.key(
            replace(SPEC, blocks=(Conv(5, pad=1), *SPEC.blocks[1:])), data, RECIPE, device="cpu"
        ),
        "data": cache.key(SPEC, one_pixel, RECIPE, device="cpu"),
        "split": cache.key(SPEC, other_split, RECIPE, device="cpu"),
        "subset": cache.key(SPEC, fewer, RECIPE, device="cpu"),
        "validation": cache.key(SPEC, smaller_val, RECIPE, device="cpu"),
        "recipe": cache.key(SPEC, data, replace(RECIPE, lr=0.06), device="cpu"),
        "epochs": cache.key(SPEC, data, replace(RECIPE, epochs=3), device="cpu"),
        "seed": cache.key(SPEC, data, replace(RECIPE, seed=1), device="cpu"),
        "precision": cache.key(SPEC, data, replace(RECIPE, precision="bf16"), device="cpu"),
        "channels_last": cache.key(SPEC, data, replace(RECIPE, channels_last=True), device="cpu"),
    }
    threads = torch.get_num_threads()
    ident = identity(
        SPEC,
        RECIPE,
        data=data.data_digest(),
        train_images=60,
        val_images=20,
        device="cpu",
        threads=threads,
    )
    assert result_key(ident) == base
    keys["device"] = result_key({**ident, "device": "cuda (NVIDIA H200)"})
    monkeypatch.setattr(torch, "__version__", "0.0.1-other")
    keys["torch"] = cache.key(SPEC, data, RECIPE, device="cpu")
    assert len(set(keys.values())) == len(keys), keys
    assert ident["fidelity"] == {"epochs": 2, "images": 60} and ident["seed"] == 0
    # the CPU's bf16 path (hardware or emulated) is in every CPU key, fp32's too
    assert "native bf16" in ident["cpu"]


# ---- entries --------------------------------------------------------------------------------


def test_put_get_round_trip_with_weights(data, tmp_path):
    cache = ResultCache(tmp_path / "c")
    result = train(SPEC, data, RECIPE)
    state = result.model.state_dict()
    info = {"val_curve": result.val_curve, "loss_curve": result.loss_curve, "train_time_s": 1.5}
    assert cache.put("ab" * 32, info, state)
    entry = cache.get("ab" * 32)
    assert entry is not None and entry.result == info
    assert entry.state.keys() == state.keys()
    assert all(torch.equal(entry.state[k], state[k]) for k in state)
    assert cache.get("cd" * 32) is None  # no entry
    assert list((tmp_path / "c").rglob("*.tmp")) == []  # no temporary file left


def test_cached_train_reuses_a_finished_training_and_replays_its_curve(data, tmp_path):
    cache, calls = ResultCache(tmp_path), []
    seen, again = [], []
    first, reused = cached_train(
        cache,
        SPEC,
        data,
        RECIPE,
        device="cpu",
        fit=_counting_fit(calls),
        on_epoch=lambda e, a, loss: seen.append((e, a, loss)),
    )
    assert not reused and calls == [0]
    hits = []
    second, reused = cached_train(
        cache,
        SPEC,
        data,
        RECIPE,
        device="cpu",
        fit=_counting_fit(calls),
        on_epoch=lambda e, a, loss: again.append((e, a, loss)),
        on_reuse=lambda: hits.append(1),
    )
    assert reused and calls == [0] and hits == [1]  # not trained again
    assert again == seen and second.val_curve == first.val_curve
    assert second.train_time_s == pytest.approx(first.train_time_s)
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k].cpu()) for k in a)
    from budgetnas.trainers.evaluate import evaluate

    assert evaluate(second.model, data.val) == first.val_acc
    # another seed is another training
    _, reused = cached_train(
        cache, SPEC, data, replace(RECIPE, seed=4), device="cpu", fit=_counting_fit(calls)
    )
    assert not reused and calls == [0, 4]


def test_a_pruned_training_is_not_cached(data, tmp_path):
    cache = ResultCache(tmp_path)

    def prune(epoch, acc, loss):
        raise optuna.TrialPruned("pruned")

    with pytest.raises(optuna.TrialPruned):
        cached_train(cache, SPEC, data, RECIPE, device="cpu", on_epoch=prune)
    assert list(tmp_path.rglob("*.pt")) == []
    assert cache.get(cache.key(SPEC, data, RECIPE, device="cpu")) is None


def _damage_truncated(path, _other):
    path.write_bytes(path.read_bytes()[:-50])


def _damage_flipped(path, _other):
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF  # a byte of the weights: the checksum no longer matches
    path.write_bytes(bytes(blob))


def _damage_other_key(path, other):
    path.write_bytes(other.read_bytes())  # a whole entry, of another key


def _damage_garbage(path, _other):
    path.write_bytes(b"not an entry at all")


@pytest.mark.parametrize(
    "damage", [_damage_truncated, _damage_flipped, _damage_other_key, _damage_garbage]
)
def test_a_damaged_entry_is_ignored_and_trained_again(data, tmp_path, damage):
    cache, calls = ResultCache(tmp_path), []
    recipe = replace(RECIPE, epochs=1)
    key = cache.key(SPEC, data, recipe, device="cpu")
    cached_train(cache, SPEC, data, recipe, device="cpu", fit=_counting_fit(calls))
    assert calls == [0] and cache.get(key) is not None
    other = "ff" * 32  # a whole entry of another key
    assert cache.put(other, {"val_curve": [0.5], "loss_curve": [1.0]}, {"w": torch.ones(3)})
    damage(cache.path(key), cache.path(other))
    assert cache.get(key) is None  # never trusted
    result, reused = cached_train(cache, SPEC, data, recipe, device="cpu", fit=_counting_fit(calls))
    assert not reused and calls == [0, 0]  # trained again ...
    entry = cache.get(key)  # ... and the entry replaced by a whole one
    assert entry is not None and entry.result["val_curve"] == result.val_curve


def _writer(root: str, which: int, errors) -> None:
    """Write and read back one key, over and over, as another process does the same."""
    try:
        cache = ResultCache(root)
        state = {"w": torch.full((50, 50), float(which))}
        for i in range(30):
            assert cache.put("ee" * 32, {"val_curve": [which], "loss_curve": [0.0], "i": i}, state)
            entry = cache.get("ee" * 32)
            assert entry is not None, "a reader saw a partial entry"
            w = int(entry.result["val_curve"][0])
            assert w in (1, 2) and torch.equal(entry.state["w"], torch.full((50, 50), float(w)))
    except BaseException as err:
        errors.put(repr(err))


def test_two_processes_writing_the_same_key_leave_a_whole_entry(tmp_path):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork (a fresh interpreter per process takes too long here)")
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, errors)) for w in (1, 2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert errors.empty(), errors.get()
    entry = ResultCache(tmp_path).get("ee" * 32)
    assert entry is not None and entry.result["i"] == 29  # the last write of one of them
    which = entry.result["val_curve"][0]
    assert torch.equal(entry.state["w"], torch.full((50, 50), float(which)))
    assert list(tmp_path.rglob("*.tmp")) == []


def test_an_unwritable_cache_warns_once_and_costs_nothing(data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = ResultCache(blocker / "cache")  # below a file: nothing can be written
    result, reused = cached_train(cache, SPEC, data, replace(RECIPE, epochs=1), device="cpu")
    assert not reused and result.val_curve
    assert not cache.put("ab" * 32, {"val_curve": [0.5], "loss_curve": [1.0]}, {})
    err = capsys.readouterr().err
    assert err.count("warning: results cache") == 1


# ---- where it is ----------------------------------------------------------------------------


def test_where_the_cache_is(tmp_path, monkeypatch):
    assert default_cache_dir() is None  # the test suite turns it off (tests/conftest.py)
    monkeypatch.delenv("BUDGETNAS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "budgetnas" / "results"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "budgetnas" / "results"
    monkeypatch.setenv("BUDGETNAS_CACHE", str(tmp_path / "mine"))
    assert open_cache().root == tmp_path / "mine"
    assert open_cache(tmp_path / "given").root == tmp_path / "given"
    assert open_cache(enabled=False) is None
    for off in ("off", "none", "0"):
        monkeypatch.setenv("BUDGETNAS_CACHE", off)
        assert open_cache() is None
    with pytest.raises(SearchError, match="contradict"):
        open_cache(tmp_path, enabled=False)


def test_cache_options_that_make_no_sense_are_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = search_args(tmp_path, tmp_path / "run")
    line = cli_error(runner.invoke(app, [*args, "--cache", str(tmp_path), "--no-cache"]))
    assert "--cache DIR and --no-cache contradict each other" in line
    line = cli_error(runner.invoke(app, [*args, "--cache", str(blocker)]))
    assert "is a file, not a folder" in line
    assert not (tmp_path / "run").exists()


# ---- a second search with the same cache ----------------------------------------------------


@pytest.mark.slow
def test_a_second_search_trains_nothing_its_cache_holds(synthetic_root, tmp_path, monkeypatch):
    """Two identical searches with references and one cache: the second trains nothing (its
    references and candidates are the first one's trainings), says so per trial and in the
    report, and ends with the same results; then verifying the reference networks of each run
    trains once."""
    cache = tmp_path / "cache"
    trained = []
    real = objective.train

    def spy(spec, data, cfg, **kwargs):
        trained.append(spec.to_json())
        return real(spec, data, cfg, **kwargs)

    monkeypatch.setattr(objective, "train", spy)
    extra = ("--trials", "2", "--rungs", "1", "--cache", str(cache))
    runs = []
    for name in ("a", "b"):
        result = runner.invoke(
            app, search_args(synthetic_root, tmp_path / name, *extra, budget="10k")
        )
        assert result.exit_code == 0, result.stderr
        runs.append((tmp_path / name, result.stderr, len(trained)))
    (a, err_a, after_a), (b, err_b, after_b) = runs
    refs = {ZOO[k].spec.to_json() for k in ("001", "002")}
    _, study_a = open_run(a)
    _, study_b = open_run(b)
    done_a = [t for t in study_a.trials if t.state == optuna.trial.TrialState.COMPLETE]
    done_b = [t for t in study_b.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert after_a == len(done_a) == 4  # 2 candidates, 2 references, all trained
    assert after_b == after_a  # the second search trained nothing
    assert not any(t.user_attrs.get("cached") for t in done_a)
    assert all(t.user_attrs.get("cached") for t in done_b)
    assert {t.user_attrs["reference"] for t in done_b if t.user_attrs.get("reference")} == {
        "001",
        "002",
    }
    assert not refs & set(trained[after_a:])
    assert [t.values for t in done_b] == [t.values for t in done_a]
    assert [t.user_attrs["val_curve"] for t in done_b] == [
        t.user_attrs["val_curve"] for t in done_a
    ]
    assert "reused from cache" not in err_a
    assert err_b.count("reused from cache") == 4
    page = (b / "report.html").read_text()
    assert "<td>from cache</td>" in page  # the trials tables' "reused" column
    assert "<td>from cache</td>" not in (a / "report.html").read_text()
    # the counts say it too: the 2 candidates sampled were reused, not trained
    assert "candidates: 2 sampled (2 complete, 0 pruned; 2 reused)" in err_b
    assert "candidates: 2 sampled (2 complete, 0 pruned; 0 reused)" in err_a
    # the weights a reused trial ships are the cached ones, and load into its network
    t = done_b[0]
    state = torch.load(b / t.user_attrs["weights"], weights_only=True)
    first = torch.load(a / done_a[0].user_attrs["weights"], weights_only=True)
    assert all(torch.equal(state[k], first[k]) for k in first)
    # the cache is no setting of a search: neither in its fingerprint nor in config.json
    assert study_a.user_attrs["fingerprint"] == study_b.user_attrs["fingerprint"]
    assert "cache" not in json.dumps(study_b.user_attrs["fingerprint"])
    assert "cache" not in (b / "config.json").read_text()
    # reference verification: trained for the first run, reused for the second
    verified = []
    real_verify = verify_module.train
    monkeypatch.setattr(
        verify_module, "train", lambda *a, **k: verified.append(a[2].seed) or real_verify(*a, **k)
    )
    for run in (a, b):
        args = ["verify", str(run), "--zoo", "001", "--seeds", "1", "--device", "cpu"]
        result = runner.invoke(app, [*args, "--train-subset", "300", "--cache", str(cache)])
        assert result.exit_code == 0, result.stderr
    assert verified == [1]
    assert "reused from cache" in result.stderr
    (record,) = [v for v in _verified(b) if v.key == "zoo-001"]
    assert record.runs[0].cached
    (first_record,) = [v for v in _verified(a) if v.key == "zoo-001"]
    assert not first_record.runs[0].cached
    assert record.runs[0].test_acc == first_record.runs[0].test_acc
    assert "cached seeds" in (b / "report.html").read_text()


def _verified(run):
    _, study = open_run(run)
    return list(stored_results(study).values())


# ---- the hooks: progress line, report table, helper processes -------------------------------


def test_a_reused_trial_says_so_on_its_line_and_in_the_report(tmp_path):
    import io

    from optuna.trial import TrialState, create_trial

    from budgetnas.reports.front.frame import trials_frame
    from budgetnas.reports.page.tables import table
    from budgetnas.search.study.progress import Progress

    study = optuna.create_study(directions=["maximize"])
    attrs = {"params": 1234, "val_curve": [0.5], "summary": "s", "macs": 1, "activation": 1}
    for cached in (False, True):
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                values=[0.5],
                user_attrs={**attrs, "rung": 0, **({"cached": True} if cached else {})},
            )
        )
    stream = io.StringIO()
    progress = Progress(total=2, stream=stream)
    for t in study.trials:
        progress(study, t)
    lines = stream.getvalue().splitlines()
    assert "reused from cache" not in lines[0] and lines[1].endswith("  reused from cache")
    df = trials_frame(study.trials)
    assert df["cached"].tolist() == [False, True]
    assert "<th>reused</th>" in table(df) and "<td>from cache</td>" in table(df)
    assert "<th>reused</th>" not in table(df[~df["cached"]])


def test_helper_processes_share_the_cache(tmp_path, synthetic_root, monkeypatch):
    import torch

    from budgetnas.search.study import processes
    from tests.helpers import quick_config

    seen = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # this process's own
    monkeypatch.setattr(
        processes.subprocess, "Popen", lambda cmd, env, **kw: seen.append(env["BUDGETNAS_CACHE"])
    )
    cfg = quick_config(synthetic_root, tmp_path / "run", workers=2)
    processes.spawn_workers(cfg, ResultCache(tmp_path / "c"))
    processes.spawn_workers(cfg, None)
    assert seen == [str((tmp_path / "c").resolve()), "off"]


# ---- what changes a training's bits on a CPU ------------------------------------------------


@contextlib.contextmanager
def _threads(n: int):
    """torch's intra-op threads set to ``n`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_the_key_holds_the_thread_count_and_the_cpu_for_every_precision(data, tmp_path):
    """One training at 1 and at 2 threads sums in another order (on seed 002, 1 epoch of 384
    images: loss 2.446016788 against 2.446017266, other weights): two keys. The CPU's
    instruction set is in every CPU key, fp32's too; neither is in a GPU's."""
    cache = ResultCache(tmp_path)
    one = cache.key(SPEC, data, RECIPE, device="cpu", threads=1)
    two = cache.key(SPEC, data, RECIPE, device="cpu", threads=2)
    assert one != two
    with _threads(1):  # by default, the threads this process trains with now
        assert cache.key(SPEC, data, RECIPE, device="cpu") == one
    with _threads(2):
        assert cache.key(SPEC, data, RECIPE, device="cpu") == two
    common = dict(data=data.data_digest(), train_images=60, val_images=20)
    ident = identity(SPEC, RECIPE, device="cpu", threads=1, **common)
    assert ident["threads"] == 1 and ident["cpu"] == cpu_kind()
    assert torch.backends.cpu.get_cpu_capability() in ident["cpu"]
    gpu = identity(SPEC, RECIPE, device="cuda (NVIDIA H200)", threads=1, **common)
    assert "threads" not in gpu and "cpu" not in gpu


def test_a_training_at_other_threads_is_not_served_from_the_cache(data, tmp_path):
    cache, calls = ResultCache(tmp_path), []
    recipe = replace(RECIPE, epochs=1)
    with _threads(1):
        cached_train(cache, SPEC, data, recipe, device="cpu", fit=_counting_fit(calls))
        _, reused = cached_train(cache, SPEC, data, recipe, device="cpu", fit=_counting_fit(calls))
        assert reused and calls == [0]
    with _threads(2):
        _, reused = cached_train(cache, SPEC, data, recipe, device="cpu", fit=_counting_fit(calls))
    assert not reused and calls == [0, 0]  # trained again, at 2 threads
    assert len(list(tmp_path.rglob("*.pt"))) == 2


def test_the_cache_and_the_study_digest_the_data_with_one_function(synthetic_root, tmp_path):
    """The digest a study stores (refusing other data on --resume) is the one the cache keys
    by, and it is what it was: runs made before keep theirs."""
    from budgetnas.trainers import data as data_module

    loaded = DataConfig(data_dir=str(synthetic_root), train_subset=300, val_size=100).load()
    assert loaded.digest  # computed as loaded
    assert ResultCache(tmp_path).digest(loaded) == loaded.digest
    h = hashlib.sha256()  # the digest as studies have stored it
    for split in (loaded.train, loaded.val):
        for t in (split.x, split.y):
            h.update(str((tuple(t.shape), t.dtype)).encode())
            h.update(t.contiguous().numpy().tobytes())
    assert loaded.digest == h.hexdigest()
    subset = loaded.first(100)
    assert ResultCache(tmp_path).digest(subset) == data_module.splits_digest(
        subset.train, subset.val
    )
    assert not hasattr(cache_module, "data_digest")  # one function, in trainers.data


@pytest.mark.slow
def test_a_verify_at_other_threads_is_not_served_a_searchs_training(
    synthetic_root, tmp_path, monkeypatch
):
    """A search (its trials and verification at 1 thread) fills the cache; a `verify` of its
    reference network in another run at 2 threads trains it again, one at 1 thread reuses it."""
    cache = tmp_path / "cache"
    extra = ("--trials", "1", "--rungs", "1", "--references", "002", "--cache", str(cache))
    trained = []
    real = verify_module.train
    monkeypatch.setattr(
        verify_module, "train", lambda *a, **k: trained.append(a[2].seed) or real(*a, **k)
    )
    with _threads(1):
        for name, seeds in (("a", "1"), ("b", "0"), ("c", "0")):
            args = search_args(
                synthetic_root, tmp_path / name, *extra, "--verify-seeds", seeds, budget="10k"
            )
            result = runner.invoke(app, args)
            assert result.exit_code == 0, result.stderr
    assert trained == [1, 1]  # the front's and seed 002's verify seed, in run a
    verify = ["--zoo", "002", "--seeds", "1", "--device", "cpu", "--train-subset", "300"]
    verify += ["--cache", str(cache)]
    with _threads(2):
        result = runner.invoke(app, ["verify", str(tmp_path / "b"), *verify])
    assert result.exit_code == 0, result.stderr
    assert trained == [1, 1, 1] and "reused from cache" not in result.stderr
    with _threads(1):
        result = runner.invoke(app, ["verify", str(tmp_path / "c"), *verify])
    assert result.exit_code == 0, result.stderr
    assert trained == [1, 1, 1] and "reused from cache" in result.stderr


# ---- the training code an entry was trained by ---------------------------------------------


def test_the_training_code_is_the_one_the_cache_constant_was_recorded_for():
    """An entry's key holds ``cache.TRAINING``; a change to the code that trains (what
    ``TRAINING_SOURCES`` names) must raise it, or entries of the old code are served as this
    code's. Its digest is recorded next to it, so a change that forgets it fails here."""
    digest = cache_keys.training_code_digest()
    assert digest == cache_keys.TRAINING_CODE, (
        "training code changed: bump keys.TRAINING and record the new digest "
        f'(TRAINING_CODE = "{digest}") in search/cache/keys.py; where the change cannot change a '
        "training's result (a message, a renamed local), record the digest alone"
    )


def test_the_training_code_digest_ignores_formatting_and_docs_but_not_code():
    from budgetnas.space.blocks import basic, mobile, residual

    plain = 'def f(x):\n    """Twice x."""\n    return x * 2\n'
    formatted = 'def f( x ):\n    """Two times x."""\n\n    # doubled\n    return (x * 2)\n'
    changed = 'def f(x):\n    """Twice x."""\n    return x * 3\n'
    assert cache_keys.source_digest([plain]) == cache_keys.source_digest([formatted])
    assert cache_keys.source_digest([plain]) != cache_keys.source_digest([changed])
    # every module the digest covers is found and read, a package with each module in it
    sources = cache_keys.training_sources()
    assert len(sources) > len(cache_keys.TRAINING_SOURCES)
    for module in (basic, residual, mobile):
        assert Path(module.__file__).read_text(encoding="utf-8") in sources, module.__name__


# ---- the cache with several processes, an interrupt and --resume ----------------------------


def _results(run) -> dict:
    """Per training of a run: its
    values and curves, to compare runs whose trial numbers differ: a trial by its candidate
    key and rung, a verify seed by its network's spec, fidelity and seed."""
    _, study = open_run(run)
    out = {}
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("duplicate_of") is None:
            out[(t.user_attrs["key"], t.user_attrs["rung"])] = (
                t.values,
                t.user_attrs["val_curve"],
                t.user_attrs["loss_curve"],
            )
    for v in stored_results(study).values():
        for r in v.runs:
            out[(v.spec, v.fidelity.id, r.seed)] = (r.val_acc, r.test_acc)
    return out


def _entries(folder) -> set[str]:
    return {p.stem for p in folder.rglob("*.pt")}


@pytest.mark.slow
def test_two_trial_processes_fill_the_cache_and_a_second_search_reuses_it(synthetic_root, tmp_path):
    """--workers 2 (both processes at one thread): every training of the first search is an
    entry, whichever process trained it; the second search reuses its reference network and its
    verification, and every candidate the two have in common, with the same results. (The
    helper process samples with its own seed: the two searches' candidates differ.)"""
    cache = tmp_path / "cache"
    extra = ("--workers", "2", "--trials", "6", "--references", "002", "--verify-seeds", "1")
    for name in ("a", "b"):
        args = search_args(
            synthetic_root,
            tmp_path / name,
            *extra,
            *SHARED_SEARCH,
            "--cache",
            str(cache),
            budget="10k",
        )
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.stderr
        if name == "a":
            after_a = _entries(cache)
    _, study_a = open_run(tmp_path / "a")
    _, study_b = open_run(tmp_path / "b")
    done_a = [
        t
        for t in study_a.trials
        if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("duplicate_of") is None
    ]
    assert len({t.user_attrs["worker"] for t in done_a}) == 2  # both processes trained
    seeds_a = sum(len(v.runs) for v in stored_results(study_a).values())
    assert len(after_a) == len(done_a) + seeds_a  # every training, no more
    assert not list(cache.rglob("*.tmp"))
    ref_b = [t for t in study_b.trials if t.user_attrs.get("reference")]
    assert ref_b and all(t.user_attrs.get("cached") for t in ref_b)
    (verified_ref,) = [v for v in stored_results(study_b).values() if v.key == "zoo-002"]
    assert all(r.cached for r in verified_ref.runs)
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b")
    common = set(a) & set(b)
    assert len(common) >= 2  # the reference network and its verify seed at least
    assert all(a[k] == b[k] for k in common)
    by_key = {t.user_attrs.get("key"): t for t in study_b.trials}
    for key, _ in (k for k in common if len(k) == 2):  # candidates and the reference
        assert by_key[key].user_attrs.get("cached"), key  # reused, not trained again


def _interrupt_the_fourth_training(monkeypatch) -> None:
    """The search's 4th training (a reference network, then candidates 1, 2, 3) is stopped
    by Ctrl-C at the end of its last epoch, before its result is written anywhere."""
    from budgetnas.search.sampling import objective

    real, calls = objective.train, []

    def interrupted(spec, data, recipe, *, on_epoch, **kwargs):
        calls.append(1)

        def stop(epoch, acc, loss):
            raise KeyboardInterrupt

        return real(spec, data, recipe, on_epoch=stop if len(calls) == 4 else on_epoch, **kwargs)

    monkeypatch.setattr(objective, "train", interrupted)


def _small(root, out):
    from tests.helpers import quick_config

    return quick_config(
        root, out, trials=3, rungs=1, references="002", verify_seeds=1, caps=(10_000,)
    )


@pytest.mark.slow
def test_an_interrupted_search_resumed_with_its_cache_ends_as_an_uninterrupted_one(
    synthetic_root, tmp_path, monkeypatch
):
    from budgetnas.search.pipeline import run_search
    from budgetnas.search.sampling import objective
    from budgetnas.search.study.runs import read_config

    whole, broken = tmp_path / "whole-cache", tmp_path / "broken-cache"
    run_search(_small(synthetic_root, tmp_path / "a"), quiet=True, cache=ResultCache(whole))
    real = objective.train
    _interrupt_the_fourth_training(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_search(_small(synthetic_root, tmp_path / "b"), quiet=True, cache=ResultCache(broken))
    # the interrupted training left nothing: the reference and two candidates, no .tmp
    assert len(_entries(broken)) == 3 and not list(broken.rglob("*.tmp"))
    assert _entries(broken) < _entries(whole)
    monkeypatch.setattr(objective, "train", real)
    cfg = read_config(tmp_path / "b")
    run_search(cfg, resume=True, quiet=True, cache=ResultCache(broken))
    assert _results(tmp_path / "b") == _results(tmp_path / "a")
    assert _entries(broken) == _entries(whole)  # the same trainings, each once


@pytest.mark.slow
def test_a_resumed_search_takes_what_the_cache_holds(synthetic_root, tmp_path, monkeypatch):
    """Interrupted without a cache, resumed with one that holds the same search's trainings:
    the resume trains nothing (the interrupted candidate, the verification: all reused) and
    ends with the uninterrupted search's results."""
    from budgetnas.search.pipeline import run_search
    from budgetnas.search.sampling import objective
    from budgetnas.search.study.runs import read_config

    cache = tmp_path / "cache"
    run_search(_small(synthetic_root, tmp_path / "a"), quiet=True, cache=ResultCache(cache))
    real = objective.train
    _interrupt_the_fourth_training(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_search(_small(synthetic_root, tmp_path / "b"), quiet=True, cache=None)
    trained = []
    monkeypatch.setattr(objective, "train", lambda *a, **k: trained.append(1) or real(*a, **k))
    real_verify = verify_module.train
    monkeypatch.setattr(
        verify_module, "train", lambda *a, **k: trained.append(2) or real_verify(*a, **k)
    )
    run_search(read_config(tmp_path / "b"), resume=True, quiet=True, cache=ResultCache(cache))
    assert trained == []
    assert _results(tmp_path / "b") == _results(tmp_path / "a")
    _, study = open_run(tmp_path / "b")
    (again,) = [t for t in study.trials if t.system_attrs.get("failed_trial") is not None]
    assert again.user_attrs.get("cached")


def _quick_fit(spec, data, recipe, *, device, on_epoch=None):
    """A "training" that only initialises the network: what the cache stores of it is real."""
    from budgetnas.trainers.train import TrainResult, init_model

    model = init_model(spec, seed=recipe.seed, device=torch.device(device))
    curve = [0.1 * (e + 1) for e in range(recipe.epochs)]
    return TrainResult(model, curve, [1.0] * recipe.epochs, 0.1, "cpu")


def test_a_search_looks_its_references_up_at_the_threads_its_processes_train_with(
    synthetic_root, tmp_path, monkeypatch
):
    """With 2 trial processes on 4 cores each trains at 2 threads (and so does the search's
    verification): the time budget's lookup of what the cache holds keys by 2 threads, so a
    second search finds its first's reference trainings, and none trained at 1 thread."""
    from budgetnas.search.cache import keys as cache_mod
    from budgetnas.search.schedule.yardsticks import held_by_cache
    from tests.helpers import quick_config

    monkeypatch.setattr(cache_mod, "usable_cores", lambda: 4)
    assert cache_mod.trial_threads(2) == 2 and cache_mod.trial_threads(4) == 1
    with _threads(3):
        assert cache_mod.trial_threads(1) == 3  # one process: its own threads
    cfg = quick_config(
        synthetic_root, tmp_path / "r", workers=2, references="002", rungs=1, caps=(10_000,)
    )
    cfg = replace(cfg, verify_seeds=2)
    data = cfg.data.load()
    spec, target = cfg.reference_specs()["002"][0], cfg.schedule.target
    cache = ResultCache(tmp_path / "c")

    def fill(recipe):
        recipe = replace(recipe, epochs=target.epochs)
        cached_train(cache, spec, data.first(target.images), recipe, device="cpu", fit=_quick_fit)

    with _threads(2):
        fill(cfg.recipe)  # rung 0, as a trial process trains it
        fill(replace(cfg.recipe, seed=1))  # verify seed 1, as the verification trains it
    with _threads(1):
        fill(replace(cfg.recipe, seed=2))  # verify seed 2 at other threads: not the search's
    assert held_by_cache(cfg, data, "cpu", cache) == {"002": {("rung", 0), ("seed", 1)}}
