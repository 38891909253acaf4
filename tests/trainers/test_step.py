"""The capturable training step (trainers/step.py) and its graphs (trainers/graphs.py) on a CPU.

On a CPU the step is the trainer: it must train exactly as the loop before it (kept in
``tests/trainers/reference.py``), bit for bit: the same losses, validation curve and weights.
Its parts that a CUDA graph holds (the tensor learning rate, the update, the EMA) are compared
with torch's optimizers and scheduler and with ``WeightAverage``, bit for bit; the graph
wiring (warm-up, capture, replay, fallback) runs with stand-in captures.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch

from budgetnas.space.spec import ArchSpec, Conv, Head
from budgetnas.space.zoo import ZOO
from budgetnas.trainers import graphs as graph_module
from budgetnas.trainers.data import load_train_val
from budgetnas.trainers.distill import SoftTargets, soft_targets
from budgetnas.trainers.ema import WeightAverage
from budgetnas.trainers.recipe import NO_AUGMENT, TrainConfig
from budgetnas.trainers.step import EmaUpdate, TrainStep, Update, learning_rates, step_table
from budgetnas.trainers.train import Training, seeded, train
from tests.trainers.reference import BASE, SPEC, reference_train

# element dropout (drawn in bulk on a CPU), channel dropout, a residual, an fc head with dropout


@pytest.fixture(scope="module")
def data(synthetic_root):
    return load_train_val("mnist", data_dir=synthetic_root, val_size=100, train_subset=288)


def same_training(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    weights = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    return a.loss_curve == b.loss_curve and a.val_curve == b.val_curve and weights


RECIPES = {
    "sgd onecycle": BASE,
    "sgd constant, no momentum, no decay": replace(
        BASE, schedule="constant", momentum=0.0, weight_decay=0.0
    ),
    "label smoothing": replace(BASE, label_smoothing=0.1),
    "adamw, beta1": replace(BASE, optimizer="adamw", lr=0.01, beta1=0.7, weight_decay=0.01),
    "adamw, no decay": replace(BASE, optimizer="adamw", lr=0.01, weight_decay=0.0),
    "ema": replace(BASE, ema=0.9),
    "bf16 channels_last": replace(BASE, precision="bf16", channels_last=True),
    "no augmentation": replace(BASE, augment=NO_AUGMENT),
}


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_step_trains_bit_for_bit_as_the_loop_before_it(data, recipe):
    cfg = RECIPES[recipe]
    assert same_training(train(SPEC, data, cfg), reference_train(SPEC, data, cfg))


def test_distillation_in_the_step_is_the_loop_before_it(data):
    teacher = train(SPEC, data, replace(BASE, seed=7)).model
    soft = SoftTargets.of(soft_targets(teacher, data.train))
    taught = replace(data, soft=soft)
    cfg = replace(BASE, distill=0.5, teacher=soft.id, ema=0.5)
    assert same_training(train(SPEC, taught, cfg), reference_train(SPEC, taught, cfg))


@pytest.mark.slow
@pytest.mark.parametrize("key", ["000", "001", "002", "003", "004"])
def test_seed_networks_train_bit_for_bit_as_before(data, key):
    for cfg in (BASE, replace(BASE, precision="bf16", channels_last=True)):
        spec = ZOO[key].spec
        assert same_training(train(spec, data, cfg), reference_train(spec, data, cfg))


@pytest.mark.parametrize("total, lr", [(1, 0.05), (7, 0.1), (100, 0.05), (431, 0.01)])
def test_learning_rates_are_torch_onecycle_to_the_bit(total, lr):
    cfg = TrainConfig(lr=lr)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=total, cycle_momentum=False
    )
    want = []
    for _ in range(total):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        if len(want) < total:
            sched.step()
    assert learning_rates(cfg, total) == want
    assert learning_rates(replace(cfg, schedule="constant"), total) == [lr] * total
    table = step_table(cfg, total)
    assert table.values[:, table.lr].tolist() == torch.tensor(want).tolist()  # float32


def _params() -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    shapes = [(8, 3, 3, 3), (8,), (10, 8)]
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    params[0].data = params[0].data.contiguous(memory_format=torch.channels_last)
    return params


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"momentum": 0.0},
        {"weight_decay": 0.0},
        {"momentum": 0.0, "weight_decay": 0.0, "schedule": "constant"},
        {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.01},
        {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.0, "beta1": 0.5},
    ],
)
def test_update_is_torchs_optimizer_to_the_bit(settings):
    """Ten steps of random gradients: the update with its scalars as tensors gives the weights
    torch.optim.SGD / AdamW give with OneCycleLR (as trainers/train.py used them)."""
    cfg = replace(BASE, **settings)
    ours, theirs = _params(), _params()
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(
            theirs, lr=cfg.lr, betas=(cfg.beta1, 0.999), weight_decay=cfg.weight_decay
        )
    else:
        opt = torch.optim.SGD(
            theirs,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=10, cycle_momentum=False
        )
        if cfg.schedule == "onecycle"
        else None
    )
    update = Update(ours, cfg)
    table = step_table(cfg, 10)
    names = {"lr": table.lr, "decay": table.decay, "neg_step": table.neg_step}
    names["bias2_sqrt"] = table.bias2_sqrt
    gen = torch.Generator().manual_seed(1)
    for t in range(10):
        for a, b in zip(ours, theirs, strict=True):
            a.grad = torch.randn(a.shape, generator=gen)
            b.grad = a.grad.clone()
        row = table.values[t : t + 1]
        update({k: row[0, j : j + 1] for k, j in names.items() if j >= 0})
        opt.step()
        if sched is not None:
            sched.step()
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True)), t


def test_ema_update_is_weight_average_to_the_bit():
    live = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    ours, theirs = WeightAverage(live, 0.99), WeightAverage(live, 0.99)
    update = EmaUpdate(ours, live)
    table = step_table(TrainConfig(ema=0.99), 20)
    for t in range(20):
        with torch.no_grad():
            for p in live.parameters():
                p.add_(torch.randn_like(p))
        live(torch.randn(2, 1, 5, 5))  # BatchNorm's statistics and count move
        update(table.values[t : t + 1, table.ema])
        theirs.update(live)
    a, b = ours.model.state_dict(), theirs.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert int(a["1.num_batches_tracked"]) == 20


class HostRead(AssertionError):
    pass


def test_a_step_reads_nothing_on_the_host(data, monkeypatch):
    """What a CUDA graph cannot hold: reading a tensor's value in Python (item, tolist, bool,
    float, int) between the step's kernels. (Element dropout on a CPU draws its seed on the
    host by design; on CUDA it is torch's dropout: the spec here drops channels.)"""
    spec = ArchSpec(blocks=(Conv(6, dropout=0.1, dropout_kind="channel"),), head=Head())
    cfg = replace(BASE, optimizer="adamw", lr=0.01, ema=0.9)
    with seeded(0, torch.device("cpu")):
        from budgetnas.space.build import build

        run = Training(
            build(spec), data, cfg, generators=[torch.Generator().manual_seed(0)], classes=10
        )
    run.step.start_epoch()

    def refuse(*args, **kwargs):
        raise HostRead("a tensor read on the host inside the step")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    run.step()
    run.step()
    monkeypatch.undo()
    assert int(run.step.t) == 2 and int(run.step.batches.pos) == 2


def _training(spec, data, cfg, capture):
    with seeded(cfg.seed, torch.device("cpu")):
        from budgetnas.space.build import build

        gen = torch.Generator().manual_seed(cfg.seed)
        run = Training(build(spec), data, cfg, generators=[gen], classes=10, capture=capture)
        while run.advance():
            pass
        return run


def replaying(fn, generators, stream):
    """A stand-in capture: its 'replay' calls the step again."""
    calls["captured"] += 1
    return fn


calls = {"captured": 0}


def test_a_captured_step_and_validation_replay_into_the_same_training(data):
    calls["captured"] = 0
    cfg = replace(BASE, epochs=3)
    run = _training(SPEC, data, cfg, replaying)
    assert isinstance(run.runner, graph_module.GraphedStep) and run.runner.captured
    assert run.runner.replays == 3 * 9 - graph_module.WARMUP_STEPS  # 288 / 32 = 9 a epoch
    assert calls["captured"] == 2  # the step, then the validation on its second pass
    assert run.validate.replay is not None
    (result,) = run.results()
    assert same_training(result, train(SPEC, data, cfg))


@pytest.mark.parametrize("stage", ["capture", "first replay"])
def test_a_failed_capture_or_first_replay_trains_on_eagerly_with_a_warning(data, stage):
    def failing(fn, generators, stream):
        if stage == "capture":
            raise RuntimeError("operation not permitted when stream is capturing")

        def replay():
            raise RuntimeError("replay failed")

        return replay

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run = _training(SPEC, data, BASE, failing)
    notes = [str(w.message) for w in seen if w.category is graph_module.GraphFallbackWarning]
    assert len(notes) == 2 and "\n" not in "".join(notes)  # the step's, then the validation's
    assert notes[0].startswith(f"CUDA graph {stage}: RuntimeError")
    assert notes[1].startswith("CUDA graph of the validation: RuntimeError")
    assert not run.runner.captured and run.runner.failed.startswith(stage)
    (result,) = run.results()
    assert same_training(result, train(SPEC, data, BASE))  # no step lost or repeated


def test_graphs_are_for_cuda_only():
    assert not graph_module.use_graphs(torch.device("cpu"), True)
    assert graph_module.use_graphs(torch.device("cuda"), None)
    assert not graph_module.use_graphs(torch.device("cuda"), False)


def test_the_step_keeps_static_buffers(data):
    """The addresses a graph would hold stay put across steps and epochs."""
    with seeded(0, torch.device("cpu")):
        from budgetnas.space.build import build

        step = TrainStep(
            build(SPEC),
            data.train,
            BASE,
            generators=[torch.Generator().manual_seed(0)],
            total_steps=2 * 9,
        )
    buffers = (step.batches.idx, step.batches.images, step.row, step.t, step.loss_sum)
    before = [b.data_ptr() for b in buffers]
    for _ in range(2):
        step.start_epoch()
        for _ in range(step.steps):
            step()
    assert [b.data_ptr() for b in buffers] == before
    assert int(step.t) == 18
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(step.epoch_losses()) == 1


def test_the_results_cache_guards_every_trainers_module_a_training_runs():
    """search/cache/keys.py keys a training by a digest of the code that decides its bits: every
    trainers module ``train`` imports (but the data's, whose images the key digests itself)
    must be among ``TRAINING_SOURCES``, or a change to it would serve stale results."""
    import subprocess
    import sys

    from budgetnas.search.cache.keys import TRAINING_SOURCES

    code = (
        "import sys, budgetnas.trainers.train; "
        "print(' '.join(m for m in sys.modules if m.startswith('budgetnas.trainers.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = set(out.stdout.split())
    data = {"budgetnas.trainers.data", "budgetnas.trainers.datasets"}
    data |= {m for m in imported if m.startswith("budgetnas.trainers.sources")}
    assert "budgetnas.trainers.step" in imported
    assert imported - data <= set(TRAINING_SOURCES), imported - data - set(TRAINING_SOURCES)
