from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from budgetnas.space.build import build
from budgetnas.space.spec import ArchSpec, Conv, Head, Transition
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.augment import NO_AUGMENT
from budgetnas.trainers.data import load_train_val
from budgetnas.trainers.evaluate import resolve_device
from budgetnas.trainers.recipe import ConfigError, TrainConfig
from budgetnas.trainers.train import TrainingError, train

SPEC = ArchSpec(blocks=(Conv(8, pad=1), Transition(8), Conv(12)), head=Head())


@pytest.fixture(scope="module")
def data(synthetic_root):
    return load_train_val("mnist", data_dir=synthetic_root, val_size=200, train_subset=600)


def test_training_learns_the_synthetic_task(data):
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.1, augment=NO_AUGMENT)
    seen = []
    result = train(SPEC, data, cfg, on_epoch=lambda e, acc, loss: seen.append((e, acc)))
    assert [e for e, _ in seen] == [0, 1, 2]
    assert result.val_curve == [acc for _, acc in seen]
    assert result.val_acc > 0.5  # chance is 0.1
    assert result.device == "cpu" and result.train_time_s > 0


def test_same_seed_same_result_and_global_rng_untouched(data):
    cfg = TrainConfig(epochs=1, batch_size=64)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = train(SPEC, data, cfg)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = train(SPEC, data, cfg)
    assert a.val_curve == b.val_curve and a.loss_curve == b.loss_curve
    c = train(SPEC, data, TrainConfig(epochs=1, batch_size=64, seed=1))
    assert c.loss_curve != a.loss_curve


def test_dropout_draws_from_the_trial_seed(data):
    """Seed 001's network has dropout: trained twice in one process, with other training and
    random draws between, the same seed gives the same weights to the bit."""
    spec = ZOO["001"].spec
    assert any(getattr(b, "dropout", 0) for b in spec.blocks)
    cfg = TrainConfig(epochs=1, batch_size=64)
    first = train(spec, data, cfg).model.state_dict()
    train(ZOO["000"].spec, data, replace(cfg, seed=5))  # another trial in between
    torch.rand(1000)  # and the caller's own draws
    again = train(spec, data, cfg).model.state_dict()
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = train(spec, data, replace(cfg, seed=1)).model.state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_callback_exception_stops_training(data):
    class Stop(Exception):
        pass

    calls = []

    def on_epoch(epoch, acc, loss):
        calls.append(epoch)
        raise Stop

    with pytest.raises(Stop):
        train(SPEC, data, TrainConfig(epochs=5, batch_size=64), on_epoch=on_epoch)
    assert calls == [0]


def test_diverging_loss_is_a_training_error(data):
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e12, schedule="constant", momentum=0.0)
    with pytest.raises(TrainingError, match="training loss became"):
        train(SPEC, data, cfg)


def test_adamw_and_label_smoothing_learn_and_change_the_run(data):
    base = TrainConfig(epochs=3, batch_size=32, lr=0.1, augment=NO_AUGMENT)
    sgd = train(SPEC, data, base)
    adamw = train(SPEC, data, replace(base, optimizer="adamw", lr=1e-2))
    smoothed = train(SPEC, data, replace(base, label_smoothing=0.1))
    assert adamw.val_acc > 0.5 and smoothed.val_acc > 0.5  # chance is 0.1
    assert len({tuple(r.loss_curve) for r in (sgd, adamw, smoothed)}) == 3
    # label smoothing raises the loss floor: the smoothed run's loss is above the plain one's
    assert smoothed.loss_curve[-1] > sgd.loss_curve[-1]


@pytest.mark.parametrize("name, values", [("momentum", (0.5, 0.9)), ("weight_decay", (0, 0.05))])
def test_momentum_and_weight_decay_act(data, name, values):
    """Each changes the run (OneCycle used to overwrite momentum on every step: 0.5 and 0.9
    gave the same weights)."""
    runs = [
        train(SPEC, data, TrainConfig(epochs=1, batch_size=64, **{name: v})).model.state_dict()
        for v in values
    ]
    assert not all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"lr": 0.0}, "learning"),
        ({"precision": "fp16"}, "precision must be one of fp32, bf16"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_precision_and_memory_format_are_stored_only_when_set():
    """Results, cache keys and fingerprints of recipes stored before these settings existed
    stay what they were: a recipe at the defaults has the same dict as then."""
    plain = TrainConfig().to_dict()
    assert "precision" not in plain and "channels_last" not in plain
    fast = TrainConfig(precision="bf16", channels_last=True)
    assert fast.to_dict()["precision"] == "bf16" and fast.to_dict()["channels_last"] is True
    assert TrainConfig.from_dict(fast.to_dict()) == fast
    assert TrainConfig.from_dict(plain) == TrainConfig()


def test_bf16_runs_the_forward_pass_in_bf16_and_channels_last_keeps_the_result(data, monkeypatch):
    """bf16: the convolutions compute in bf16, the weights stay fp32, and it learns;
    channels_last: the same run in another memory order, the same losses within float
    tolerance."""
    import budgetnas.trainers.train as trainer

    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.1, augment=NO_AUGMENT)
    seen: list[torch.dtype] = []

    def build_and_watch(spec):
        net = build(spec)
        conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        return net

    monkeypatch.setattr(trainer, "build", build_and_watch)
    plain = train(SPEC, data, cfg)
    assert set(seen) == {torch.float32}
    seen.clear()
    half = train(SPEC, data, replace(cfg, precision="bf16"))
    assert torch.bfloat16 in seen
    assert all(p.dtype == torch.float32 for p in half.model.parameters())
    assert half.val_acc > 0.5  # chance is 0.1
    last = train(SPEC, data, replace(cfg, channels_last=True))
    assert last.model.state_dict().keys() == plain.model.state_dict().keys()
    assert last.loss_curve == pytest.approx(plain.loss_curve, rel=1e-3)
    assert last.val_curve == pytest.approx(plain.val_curve, abs=0.02)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
