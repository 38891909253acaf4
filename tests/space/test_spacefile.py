"""The search space as a file: the shipped default is today's space, an edited file is
honoured, a file with an error is one line naming the key."""

from __future__ import annotations

import contextlib

import optuna
import pytest
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.space.choices import SpaceConfig
from budgetnas.space.sample import Rejected, sample_spec
from budgetnas.space.spacefile import dump, parse, read, shipped_text, space_config
from tests.helpers import cli_error, quick_config, search_args

runner = CliRunner()


def test_the_shipped_default_is_the_default_space():
    assert shipped_text("default") == dump(SpaceConfig())
    assert space_config(read("default"), {}, name="default") == SpaceConfig()
    shown = runner.invoke(app, ["space", "--show"])
    assert shown.exit_code == 0 and shown.stdout == shipped_text("default")


def test_the_rich_space_adds_blocks_kernels_se_and_strided_transitions():
    rich = space_config(read("rich"), {}, name="rich")
    assert rich.blocks == ("conv", "sepconv", "mbconv") and rich.kernels == (3, 5)
    assert rich.se == (False, True) and rich.transitions == ("pool", "strided")
    assert shipped_text("rich") == dump(rich)


@pytest.mark.slow
def test_a_search_with_the_shown_file_proposes_what_the_default_does(tmp_path, synthetic_root):
    path = tmp_path / "space.toml"
    path.write_text(runner.invoke(app, ["space", "--show"]).stdout)

    def specs(name, **extra):
        cfg = quick_config(synthetic_root, tmp_path / name, trials=12, seed=4, **extra)
        study = run_search(cfg, quiet=True)
        return cfg, [t.user_attrs.get("spec") for t in study.trials]

    plain_cfg, plain = specs("plain")
    filed_cfg, filed = specs("filed", space_file=str(path))
    assert filed == plain and len(plain) == 12
    assert filed_cfg.fingerprint() == plain_cfg.fingerprint()


def _draws(cfg: SpaceConfig, n: int = 60, budget: int = 10_000):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    specs = []
    for _ in range(n):
        trial = study.ask()
        with contextlib.suppress(Rejected):
            specs.append(sample_spec(trial, budget=budget, cfg=cfg))
        study.tell(trial, 0.0)
    return specs


def test_an_edited_file_is_honoured(tmp_path):
    """Depthwise-separable layers only, 5x5 kernels only, strided transitions only."""
    text = shipped_text("default")
    text = text.replace('blocks = ["conv"]', 'blocks = ["sepconv"]')
    text = text.replace("kernels = [3]", "kernels = [5]")
    text = text.replace('kinds = ["pool"]', 'kinds = ["strided"]')
    cfg = space_config(parse(text), {}, name="edited")
    specs = _draws(cfg)
    assert len(specs) >= 50
    layers = [b for s in specs for b in s.blocks if b.kind not in ("strided", "residual")]
    layers += [c for s in specs for b in s.blocks if b.kind == "residual" for c in b.body]
    assert layers and {b.kind for b in layers} == {"sepconv"}
    assert {b.k for b in layers} == {5}
    assert {b.kind for s in specs for b in s.blocks} <= {"sepconv", "residual", "strided"}
    assert any(b.kind == "strided" for s in specs for b in s.blocks)


@pytest.mark.slow  # trains for more than ten seconds on 2 cores
def test_a_search_uses_the_space_file_and_fingerprints_its_content(tmp_path, synthetic_root):
    path = tmp_path / "se.toml"
    path.write_text(shipped_text("default").replace("se = [false]", "se = [true]"))
    run = tmp_path / "run"
    result = runner.invoke(app, search_args(synthetic_root, run, "--space", str(path)))
    assert result.exit_code == 0, result.stderr
    from budgetnas.search.study.runs import open_run

    cfg, study = open_run(run)
    assert cfg.space_config.se == (True,) and study.user_attrs["fingerprint"]["space"]["se"] == [
        True
    ]
    specs = [t.user_attrs["spec"] for t in study.trials if "spec" in t.user_attrs]
    assert specs and all('"kind": "se"' in s for s in specs)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[stages]\nkernels = [4]\n", "[stages] kernels: 4 is not one of 1, 3, 5, 7"),
        ("[stages]\nlyers = [1, 2]\n", "unknown key [stages] lyers; known: count, layers"),
        ("[stage]\nlayers = [1, 2]\n", "unknown section [stage]; known: head, stages"),
        ("[stages]\ncount = [3, 2]\n", "[stages] count: must be [low, high] with 2 <= low"),
        ('[stages]\nblocks = ["resnet"]\n', "[stages] blocks: 'resnet' is not one of conv"),
        ("[stages]\nwidth = 8\n", "[stages] width: must be a range [low, high], got 8"),
        ("stages = [\n", "is not valid TOML"),
        ("[stages]\nkernels = [3.0]\n", "[stages] kernels: 3.0 is not one of 1, 3, 5, 7"),
        ("[stages]\nexpand = [4.0]\n", "[stages] expand: 4.0 is not one of 1, 2, 3, 4"),
        ("[stages]\npadding = [1.0]\n", "[stages] padding: 1.0 is not one of 0, 1"),
        ("[stages]\ncount = [2.0, 3.0]\n", "[stages] count: must be a range [low, high] of integ"),
        ("[stages]\nlayers = [1, 2.5]\n", "[stages] layers: must be a range [low, high] of integ"),
        ("[stages]\nwidth = [8.0, inf]\n", "[stages] width: must be a range [low, high] of finite"),
        ("[transitions]\nwidth = [nan, 4.0]\n", "[transitions] width: must be a range [low, high]"),
    ],
    ids=[
        "kernel",
        "key",
        "section",
        "range order",
        "block",
        "not a range",
        "toml",
        "float kernel",
        "float expand",
        "float padding",
        "float count",
        "float layers",
        "infinite width",
        "nan width",
    ],
)
def test_a_space_file_with_an_error_is_one_line_naming_the_key(
    tmp_path, synthetic_root, text, message
):
    path = tmp_path / "space.toml"
    path.write_text(text)
    run = tmp_path / "run"
    line = cli_error(runner.invoke(app, search_args(synthetic_root, run, "--space", str(path))))
    assert line.startswith(f"error: space file {path}") and message in line, line
    assert not run.exists()
    assert cli_error(runner.invoke(app, ["space", str(path)])) == line


@pytest.mark.parametrize("budget", [5_000, 10_000, 25_000])
@pytest.mark.parametrize("name", ["default", "rich"])
def test_few_candidates_are_rejected_before_training(budget, name):
    """Sampling stays inside the cap without waste: under 5% of 300 random draws rejected."""
    cfg = space_config(read(name), {}, name=name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=budget))
    rejected = 0
    for _ in range(300):
        trial = study.ask()
        try:
            sample_spec(trial, budget=budget, cfg=cfg)
        except Rejected:
            rejected += 1
        study.tell(trial, 0.0)
    print(f"{name} space, cap {budget:,}: {rejected} of 300 rejected ({rejected / 300:.1%})")
    assert rejected / 300 < 0.05


def test_the_smallest_network_is_the_least_of_each_cost_over_every_structure():
    """A fixed squeeze-excitation raises the floor; padding [1, 0] does not hide the cheaper
    valid-padded network's MACs; a space that builds nothing for its images is one line."""
    from budgetnas.space.sample import smallest_costs

    plain = smallest_costs(SpaceConfig())
    with_se = smallest_costs(SpaceConfig(se=(True,)))
    assert with_se[0] > plain[0]
    both = smallest_costs(SpaceConfig(padding=(1, 0)))
    valid_only = smallest_costs(SpaceConfig(padding=(0,)))
    assert both[1] == min(valid_only[1], smallest_costs(SpaceConfig(padding=(1,)))[1])
    assert both[1] <= valid_only[1]
    from budgetnas.space.checks import SpecError

    with pytest.raises(SpecError, match="builds no network for 5x5 images"):
        smallest_costs(SpaceConfig(input_size=5, padding=(0,), stages=(3, 3)))


@pytest.mark.parametrize(
    "text, message",
    [
        ('min_size_fraction = "0.3"\n', "min_size_fraction: must be a number, got '0.3'"),
        ("dropout = true\n", "dropout: must be a number, got True"),
    ],
)
def test_a_setting_of_the_wrong_kind_names_its_key(tmp_path, text, message):
    path = tmp_path / "space.toml"
    path.write_text(text)
    line = cli_error(runner.invoke(app, ["space", str(path)]))
    assert line == f"error: space file {path}: {message}"


def test_a_directory_given_as_space_file_is_named_a_directory(tmp_path, synthetic_root):
    run = tmp_path / "run"
    message = f"error: space file {tmp_path} is a directory; give the space file inside it"
    assert cli_error(runner.invoke(app, ["space", str(tmp_path)])) == message
    line = cli_error(runner.invoke(app, search_args(synthetic_root, run, "--space", str(tmp_path))))
    assert line == message
    assert not run.exists()
