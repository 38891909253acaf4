"""The README's bad-input table, one test per row: one line on stderr, exit code 1, and the
run folder the command pointed at is left exactly as it was."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.search.study.runs import open_run
from tests.helpers import cli_error, quick_config, write_synthetic_mnist

runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory, synthetic_root):
    """A finished run (2 trials + one pruned trial) and data folders broken in two ways."""
    base = tmp_path_factory.mktemp("bad-input")
    run = base / "run"
    study = run_search(quick_config(synthetic_root, run, trials=2), quiet=True)
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"x": 0.5},
            distributions={"x": FloatDistribution(0, 1)},
            user_attrs={"params": 10},
        )
    )
    truncated = write_synthetic_mnist(base / "truncated", n_train=100, n_test=20)
    images = truncated / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    magic = write_synthetic_mnist(base / "magic", n_train=100, n_test=20)
    labels = magic / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x07" + labels.read_bytes()[4:])
    bad_spec = base / "bad-spec.json"
    spec = json.loads(study.trials[0].user_attrs["spec"])
    spec["blocks"][0]["k"] = 4
    bad_spec.write_text(json.dumps(spec))
    (base / "not-a-run").mkdir()
    return {
        "run": run,
        "data": synthetic_root,
        "base": base,
        "truncated": truncated,
        "magic": magic,
        "bad_spec": bad_spec,
    }


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# (name, argv with {placeholders}, the message the README shows)
CASES = [
    (
        "budget 0",
        "search --budget 0 --out {base}/new".split(),
        "bad budget '0': it must be at least 1 parameter",
    ),
    (
        "negative budget",
        "search --budget -5k --out {base}/new".split(),
        "bad budget '-5k': it must be a positive number of parameters",
    ),
    (
        "non-numeric budget",
        "search --budget ten --out {base}/new".split(),
        "bad budget 'ten': write a parameter count such as 10000, 10k, 12.5k or 1.2M",
    ),
    (
        "budget below the smallest network",
        "search --budget 100 --out {base}/new".split(),
        "budget 100 is below the smallest network the space can build (262 parameters)",
    ),
    (
        "unknown dataset",
        "search --budget 10k --dataset imagenet --out {base}/new".split(),
        "unknown dataset 'imagenet'; choose one of mnist, fashion-mnist, kmnist, cifar10, svhn, "
        "emnist, or --data PATH for your own images (a class-per-folder tree or an .npz)",
    ),
    (
        "unknown device",
        "search --budget 10k --device tpu --data-dir {data} --out {base}/new".split(),
        "unknown device 'tpu'; use auto, cpu, cuda or cuda:N",
    ),
    (
        "missing data",
        "search --budget 10k --data-dir {base}/nothing --out {base}/new".split(),
        "mnist: data not found in {base}/nothing/MNIST/raw: missing train-images-idx3-ubyte",
    ),
    (
        "truncated IDX file",
        "search --budget 10k --data-dir {truncated} --out {base}/new".split(),
        "mnist: could not read the IDX files in {truncated}/MNIST/raw (truncated or not IDX?)",
    ),
    (
        "wrong IDX magic",
        "search --budget 10k --data-dir {magic} --out {base}/new".split(),
        "mnist: could not read the IDX files in {magic}/MNIST/raw (truncated or not IDX?)",
    ),
    (
        "unreachable storage",
        "search --budget 10k --data-dir {data} --out {base}/new --storage postgresql://nobody@127.0.0.1:1/none".split(),
        "cannot open storage 'postgresql://nobody@127.0.0.1:1/none'",
    ),
    (
        "malformed storage URL",
        shlex.split("search --budget 10k --data-dir {data} --storage 'not a url' --out {base}/new"),
        "cannot open storage 'not a url': Could not parse SQLAlchemy URL",
    ),
    (
        "existing run without --resume",
        "search --budget 5k --data-dir {data} --out {run}".split(),
        "{run} already holds a search; continue it with --resume {run} or choose another --out",
    ),
    (
        "--resume of a folder with no study",
        "search --resume {base}/not-a-run".split(),
        "{base}/not-a-run holds no budgetnas run (no config.json)",
    ),
    (
        "--resume of a folder that does not exist",
        "search --resume {base}/nowhere".split(),
        "run folder {base}/nowhere does not exist",
    ),
    (
        "--resume with a bad device",
        "search --resume {run} --device tpu".split(),
        "unknown device 'tpu'; use auto, cpu, cuda or cuda:N",
    ),
    (
        "--resume with a setting that changes results",
        "search --resume {run} --epochs 3 --lr 0.2".split(),
        "--resume continues a run with its stored settings; --epochs, --lr cannot be changed "
        "(allowed with --resume: --trials, --timeout, --budget-time, --budget-epochs, --device, "
        "--workers, --concurrent, --data-dir, --data, --verify-seeds, --race-seeds, --fuse-seeds)",
    ),
    (
        "--resume with another space",
        "search --resume {run} --space rich".split(),
        "--resume continues a run with its stored settings; --space cannot be changed ",
    ),
    (
        "report of a folder that does not exist",
        "report {base}/nowhere".split(),
        "run folder {base}/nowhere does not exist",
    ),
    (
        "export of a trial that does not exist",
        "export {run} --trial 99 --out {base}/m.py".split(),
        "trial 99 does not exist (the study has trials 0..2)",
    ),
    (
        "export of a pruned trial",
        "export {run} --trial 2 --out {base}/m.py".split(),
        "trial 2 was pruned; only completed trials have weights",
    ),
    (
        "export over an existing file",
        "export {run} --out {run}/config.py".split(),
        None,
    ),  # filled below: needs the file to exist
    (
        "hand-edited invalid spec JSON",
        "count {bad_spec}".split(),
        "conv: kernel size must be odd, got 4",
    ),
]


@pytest.mark.parametrize("name, argv, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_damages_nothing(env, name, argv, message):
    if name == "export over an existing file":
        (env["run"] / "config.py").write_text("# mine\n")
        message = f"{env['run']}/config.py already exist(s); pass --force to overwrite"
    args = [a.format(**env) for a in argv]
    before = _snapshot(env["run"])
    result = runner.invoke(app, args)
    line = cli_error(result)
    assert line.startswith("error: " + message.format(**env)), line
    assert _snapshot(env["run"]) == before
    assert not (env["base"] / "new").exists()
    open_run(env["run"])  # the run still opens
