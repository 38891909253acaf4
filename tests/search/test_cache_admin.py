"""Seeing and trimming the results cache: `budgetnas cache` lists it by age, `--prune` removes
entries by age or size (the oldest first), and a write a killed process left half done is
never an entry and is removed once it is stale."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest
import torch
from typer.testing import CliRunner

from budgetnas.search.cache import store as cache_module
from budgetnas.search.cache.store import ResultCache
from budgetnas.search.cli import app
from tests.helpers import cli_error

runner = CliRunner()
DAY = 86_400.0


def _entry(cache: ResultCache, key: str, *, age_days: float, floats: int = 1000) -> int:
    """Write an entry of ``key`` (about ``4 * floats`` bytes of weights), ``age_days`` old;
    returns its size in bytes."""
    assert cache.put(key, {"val_curve": [0.5], "loss_curve": [1.0]}, {"w": torch.ones(floats)})
    path = cache.path(key)
    then = time.time() - age_days * DAY
    os.utime(path, (then, then))
    return path.stat().st_size


def _tmp(cache: ResultCache, key: str, *, age_s: float) -> int:
    """A temporary file as a writer leaves it when it is killed before its move."""
    folder = cache.root / key[:2]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{key[:16]}-abc123.tmp"
    path.write_bytes(b"x" * 5000)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return 5000


def _key(i: int) -> str:
    return f"{i:02x}" * 32


@pytest.fixture
def filled(tmp_path):
    """Entries 0.5, 3, 10 and 40 days old (the last one twice the size), a stale and a fresh
    temporary file, and a file that is no entry."""
    cache = ResultCache(tmp_path / "c")
    sizes = {
        _key(1): _entry(cache, _key(1), age_days=0.5),
        _key(2): _entry(cache, _key(2), age_days=3),
        _key(3): _entry(cache, _key(3), age_days=10),
        _key(4): _entry(cache, _key(4), age_days=40, floats=2000),
    }
    _tmp(cache, _key(5), age_s=3600)  # stale: its writer is long gone
    _tmp(cache, _key(6), age_s=5)  # fresh: a writer may be at work
    (cache.root / "README").write_text("not an entry")
    return cache, sizes


def _entries(cache: ResultCache) -> set[str]:
    return {p.stem for p in cache.root.rglob("*.pt")}


def _invoke(*args: str):
    result = runner.invoke(app, ["cache", *args])
    return result


def test_the_listing_counts_entries_by_age_and_ignores_unfinished_writes(filled):
    cache, sizes = filled
    result = _invoke("--cache", str(cache.root))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    total = sum(sizes.values())
    assert lines[0] == (f"results cache {cache.root}: 4 entries, {cache_module_size(total)}")
    by_age = {line.split("  ")[1].strip(): line for line in lines[1:5]}
    assert set(by_age) == {"under 1 day", "1 to 7 days", "7 to 30 days", "30 days or more"}
    assert " 1 entry " in by_age["under 1 day"] + " "
    assert " 1 entry " in by_age["30 days or more"] + " "
    assert cache_module_size(sizes[_key(4)]) in by_age["30 days or more"]
    # the stale temporary file is said, not counted; the fresh one is not said at all
    assert any("1 unfinished write" in line and "--prune removes" in line for line in lines)


def cache_module_size(n: int) -> str:
    from budgetnas.search.cache.admin import format_size

    return format_size(n)


def test_prune_by_age_removes_old_entries_and_stale_temporary_files(filled):
    cache, sizes = filled
    result = _invoke("--cache", str(cache.root), "--prune", "--older-than", "30d")
    assert result.exit_code == 0, result.stderr
    assert _entries(cache) == {_key(1), _key(2), _key(3)}
    tmps = sorted(p.name for p in cache.root.rglob("*.tmp"))
    assert tmps == [f".{_key(6)[:16]}-abc123.tmp"]  # the fresh one stays
    assert (cache.root / "README").exists()  # not ours: left alone
    assert "removed 1 entry" in result.stdout and "1 unfinished write" in result.stdout
    assert "3 entries" in result.stdout  # what is left
    result = _invoke("--cache", str(cache.root), "--prune", "--older-than", "2d")
    assert _entries(cache) == {_key(1)}
    assert cache.get(_key(1)) is not None


def test_prune_by_size_removes_the_oldest_first(filled):
    cache, sizes = filled
    keep = sizes[_key(1)] + sizes[_key(2)]
    result = _invoke("--cache", str(cache.root), "--prune", "--max-size", str(keep))
    assert result.exit_code == 0, result.stderr
    assert _entries(cache) == {_key(1), _key(2)}
    result = _invoke("--cache", str(cache.root), "--prune", "--max-size", "0")
    assert _entries(cache) == set()
    assert "0 entries" in result.stdout
    # the emptied folders go too; the cache folder stays
    assert cache.root.is_dir() and not (cache.root / _key(1)[:2]).exists()


def test_a_reused_entry_is_young_again(filled):
    cache, _ = filled
    assert cache.get(_key(4)) is not None  # reused today
    result = _invoke("--cache", str(cache.root), "--prune", "--older-than", "30d")
    assert result.exit_code == 0, result.stderr
    assert _key(4) in _entries(cache) and "removed 0 entries" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prune", "--older-than", "30x"], "bad --older-than '30x'"),
        (["--prune", "--older-than", "-3d"], "bad --older-than '-3d'"),
        (["--prune", "--older-than", "30"], "bad --older-than '30'"),
        (["--prune", "--max-size", "lots"], "bad --max-size 'lots'"),
        (["--prune", "--max-size", "-1G"], "bad --max-size '-1G'"),
        (["--prune"], "--prune needs --older-than AGE or --max-size SIZE"),
        (["--older-than", "30d"], "--older-than and --max-size go with --prune"),
        (["--max-size", "1G"], "--older-than and --max-size go with --prune"),
    ],
)
def test_bad_values_are_one_line(filled, args, message):
    cache, _ = filled
    line = cli_error(_invoke("--cache", str(cache.root), *args))
    assert message in line
    assert len(_entries(cache)) == 4  # nothing removed


def test_sizes_and_ages_as_users_write_them():
    from budgetnas.search.cache.admin import format_size, parse_age, parse_size

    assert parse_size("500M") == 500 * 2**20 and parse_size("1.5g") == int(1.5 * 2**30)
    assert parse_size("200k") == 200 * 1024 and parse_size("2GB") == 2 * 2**30
    assert parse_size("2GiB") == 2 * 2**30 and parse_size("1234") == 1234
    assert parse_size("0") == 0
    assert parse_age("30d") == 30 * DAY and parse_age("12h") == 12 * 3600
    assert parse_age("90m") == 5400 and parse_age("2w") == 14 * DAY and parse_age("0d") == 0
    assert format_size(0) == "0 B" and format_size(1536) == "1.5 KB"
    assert format_size(3 * 2**20) == "3.0 MB"


def test_a_cache_that_is_off_or_not_there_yet(tmp_path):
    result = _invoke()  # the test suite turns the cache off (tests/conftest.py)
    assert result.exit_code == 0
    assert "the results cache is off" in result.stdout
    line = cli_error(_invoke("--prune", "--older-than", "1d"))
    assert "the results cache is off" in line
    result = _invoke("--cache", str(tmp_path / "none"))
    assert result.exit_code == 0
    assert "0 entries" in result.stdout and "does not exist yet" in result.stdout
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "is a file, not a folder" in cli_error(_invoke("--cache", str(blocker)))


def _killed_writer(root: str) -> None:
    """Write an entry and die (as SIGKILL would) between the write and the move."""
    cache_module.os.replace = lambda *a: os._exit(9)
    result = {"val_curve": [0.5], "loss_curve": [1.0]}
    ResultCache(root).put("ab" * 32, result, {"w": torch.ones(9)})


def test_a_killed_write_leaves_no_entry_and_prune_removes_it_once_stale(tmp_path):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    proc = multiprocessing.get_context("fork").Process(target=_killed_writer, args=(str(tmp_path),))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 9
    (tmp,) = list(tmp_path.rglob("*.tmp"))  # what it left
    cache = ResultCache(tmp_path)
    assert cache.get("ab" * 32) is None
    result = _invoke("--cache", str(tmp_path))
    assert "0 entries" in result.stdout and "unfinished" not in result.stdout  # fresh: a writer
    _invoke("--cache", str(tmp_path), "--prune", "--older-than", "1d")
    assert tmp.exists()  # it may still be written
    then = time.time() - 3600
    os.utime(tmp, (then, then))
    result = _invoke("--cache", str(tmp_path))
    assert "0 entries" in result.stdout and "1 unfinished write" in result.stdout
    _invoke("--cache", str(tmp_path), "--prune", "--older-than", "1d")
    assert not tmp.exists()
