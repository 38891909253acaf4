"""The recipe's later settings: EMA of the weights, AdamW's beta1, distillation from a teacher.

Off (their defaults), each leaves training bit-identical to the plain loop, written out here
as the trainer ran it before they existed; on, each does what it says.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import budgetnas.trainers.train as trainer
from budgetnas.search.cache.store import ResultCache
from budgetnas.space.build import build
from budgetnas.space.spec import ArchSpec, Conv, Head, Transition
from budgetnas.trainers.augment import random_affine
from budgetnas.trainers.data import load_train_val
from budgetnas.trainers.distill import SoftTargets, distill_loss, soft_targets, targets_id
from budgetnas.trainers.ema import ema_decay
from budgetnas.trainers.evaluate import evaluate
from budgetnas.trainers.recipe import LATER_DEFAULTS, ConfigError, TrainConfig
from budgetnas.trainers.step import ADAMW_BETA2, Update
from budgetnas.trainers.train import seeded, train

SPEC = ArchSpec(blocks=(Conv(8, pad=1, dropout=0.1), Transition(8), Conv(12)), head=Head())
TEACHER = "ab" * 32  # a well-formed identity, for configs that need one


@pytest.fixture(scope="module")
def data(synthetic_root):
    return load_train_val("mnist", data_dir=synthetic_root, val_size=200, train_subset=600)


def plain_loop(spec, data, cfg):
    """The training loop as it was before EMA, beta1 and distillation (SGD, OneCycle,
    cross-entropy): (weights, loss curve, validation curve)."""
    with seeded(cfg.seed, torch.device("cpu")):
        model = build(spec)
        opt = torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
        n = len(data.train)
        batch = min(cfg.batch_size, n)
        steps = n // batch
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps, cycle_momentum=False
        )
        gen = torch.Generator().manual_seed(cfg.seed)
        losses, accs = [], []
        for _ in range(cfg.epochs):
            model.train()
            perm = torch.randperm(n, generator=gen)
            total = torch.zeros(())
            for i in range(steps):
                idx = perm[i * batch : (i + 1) * batch]
                x = random_affine(data.train.x[idx].float().div_(255), cfg.augment, gen)
                loss = F.cross_entropy(
                    model(x), data.train.y[idx], label_smoothing=cfg.label_smoothing
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.detach()
            losses.append(total.item() / steps)
            accs.append(evaluate(model, data.val))
        return model.state_dict(), losses, accs


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_settings_off_train_bit_identical_to_the_plain_loop(data):
    """EMA 0, beta1 0.9 and distill 0 (the defaults, also given explicitly) change nothing:
    the same losses, validation curve and weights to the bit as the loop without them."""
    cfg = TrainConfig(epochs=2, batch_size=64, label_smoothing=0.1)
    weights, losses, accs = plain_loop(SPEC, data, cfg)
    for off in (cfg, replace(cfg, ema=0.0, distill=0.0, beta1=0.9)):
        result = train(SPEC, data, off)
        assert result.loss_curve == losses and result.val_curve == accs
        assert same_weights(result.model.state_dict(), weights)


def test_later_settings_are_stored_only_when_set():
    """At their defaults the new settings are not in a recipe's dict: the cache keys and
    study fingerprints of recipes stored before them stay the same."""
    plain = TrainConfig().to_dict()
    assert not set(LATER_DEFAULTS) & set(plain)
    on = TrainConfig(optimizer="adamw", beta1=0.6, ema=0.99, distill=0.5, teacher=TEACHER)
    stored = on.to_dict()
    assert stored["ema"] == 0.99 and stored["beta1"] == 0.6 and stored["teacher"] == TEACHER
    assert "temperature" not in stored  # at its default
    assert TrainConfig.from_dict(stored) == on


def test_ema_returns_the_average_of_the_weights_after_each_step(data, monkeypatch):
    """The network returned (and validated) is the moving average, with the decay's warm-up,
    of the live network's state after every optimizer step (BatchNorm's statistics too); the
    training itself is the run without EMA, step for step."""
    cfg = TrainConfig(epochs=2, batch_size=100, lr=0.1)
    live: list[torch.nn.Module] = []
    states: list[dict[str, torch.Tensor]] = []

    def build_and_keep(spec):
        net = build(spec)
        live.append(net)
        states.append({k: v.clone() for k, v in net.state_dict().items()})
        return net

    real_update = Update.__call__

    def recording(self, scalars):  # the live network's state after each optimizer step
        real_update(self, scalars)
        states.append({k: v.clone() for k, v in live[-1].state_dict().items()})

    monkeypatch.setattr(trainer, "build", build_and_keep)
    monkeypatch.setattr(Update, "__call__", recording)
    plain = train(SPEC, data, cfg)
    live.clear(), states.clear()
    decay = 0.9
    averaged = train(SPEC, data, replace(cfg, ema=decay))
    assert averaged.loss_curve == plain.loss_curve  # the same training
    steps = len(states) - 1
    assert steps == 2 * (len(data.train) // 100)
    manual = {k: v.clone() for k, v in states[0].items()}
    for t, state in enumerate(states[1:]):
        d = min(decay, (1 + t) / (10 + t))
        assert d == ema_decay(decay, t)
        for k, v in state.items():
            manual[k] = manual[k] * d + v * (1 - d) if v.is_floating_point() else v.clone()
    got = averaged.model.state_dict()
    assert got.keys() == manual.keys()
    for k in manual:
        assert torch.allclose(got[k], manual[k], atol=1e-6, rtol=1e-5), k
    first = next(k for k in manual if k.endswith("weight"))
    assert not torch.allclose(got[first], states[-1][first])  # not the last live weights
    assert averaged.val_curve[-1] == evaluate(averaged.model, data.val)


def test_beta1_reaches_adamw(data, monkeypatch):
    betas = []

    real_init = Update.__init__

    def watched(self, params, cfg):
        real_init(self, params, cfg)
        betas.append((self.beta1, ADAMW_BETA2))

    monkeypatch.setattr(Update, "__init__", watched)
    cfg = TrainConfig(epochs=1, batch_size=64, optimizer="adamw", lr=0.01, weight_decay=0.01)
    default = train(SPEC, data, cfg)
    low = train(SPEC, data, replace(cfg, beta1=0.5))
    assert betas == [(0.9, 0.999), (0.5, 0.999)]
    assert default.loss_curve != low.loss_curve


def teacher_targets(data) -> SoftTargets:
    teacher = train(SPEC, data, TrainConfig(epochs=2, batch_size=32, lr=0.1, seed=7)).model
    return SoftTargets.of(soft_targets(teacher, data.train))


def test_distillation_changes_the_loss_and_the_cache_key(data, tmp_path):
    soft = teacher_targets(data)
    assert soft.logits.shape == (len(data.train), 10) and soft.id == targets_id(soft.logits)
    taught = replace(data, soft=soft)
    cfg = TrainConfig(epochs=1, batch_size=64)
    plain = train(SPEC, taught, cfg)  # soft targets unused without distill
    assert plain.loss_curve == train(SPEC, data, cfg).loss_curve
    on = replace(cfg, distill=0.5, teacher=soft.id)
    distilled = train(SPEC, taught, on)
    assert distilled.loss_curve != plain.loss_curve
    cache = ResultCache(tmp_path)
    keys = {cache.key(SPEC, data, c, device="cpu") for c in (cfg, on)}
    other = replace(on, teacher=targets_id(soft.logits + 1))
    keys.add(cache.key(SPEC, data, other, device="cpu"))
    assert len(keys) == 3
    # the rungs' subsets carry their rows of the soft targets, under the same identity
    first = taught.first(300)
    assert first.soft.id == soft.id and len(first.soft) == 300
    assert train(SPEC, first, on).val_acc > 0


def test_distill_loss_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(0)
    out, teacher = torch.randn(8, 10), torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    cfg = TrainConfig(distill=0.3, temperature=2.0, teacher=TEACHER)
    p = F.softmax(teacher / 2, dim=1)
    kl = (p * (p.log() - F.log_softmax(out / 2, dim=1))).sum(1).mean()
    want = 0.7 * F.cross_entropy(out, labels) + 0.3 * 4 * kl
    assert distill_loss(out, labels, teacher, cfg).item() == pytest.approx(want.item(), rel=1e-5)


def test_distillation_refuses_missing_or_foreign_soft_targets(data):
    cfg = TrainConfig(epochs=1, batch_size=64, distill=0.5, teacher=TEACHER)
    with pytest.raises(ConfigError, match="carries no soft targets"):
        train(SPEC, data, cfg)
    soft = SoftTargets.of(torch.zeros(len(data.train), 10))
    with pytest.raises(ConfigError, match="soft targets of teacher"):
        train(SPEC, replace(data, soft=soft), cfg)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ema": 1.0}, r"ema must be a number in \[0, 1\)"),
        ({"ema": -0.1}, "ema must be"),
        ({"beta1": 1.5, "optimizer": "adamw"}, "beta1 must be"),
        ({"beta1": 0.5}, "beta1 is AdamW's"),
        ({"distill": 1.5, "teacher": TEACHER}, "distill must be"),
        ({"distill": 0.5}, "needs a teacher"),
        ({"teacher": TEACHER}, "only with distill > 0"),
        ({"distill": 0.5, "teacher": "abc"}, "sha256"),
        ({"distill": 0.5, "teacher": TEACHER, "temperature": 0}, "temperature must be positive"),
        ({"temperature": 2.0}, "temperature is used only with distill"),
    ],
)
def test_bad_later_settings_are_one_actionable_error(kwargs, message):
    with pytest.raises(ConfigError, match=message) as err:
        TrainConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_the_default_recipe_trains_with_adamw_and_a_named_optimizer_takes_its_own_defaults():
    """AdamW (lr 0.03, weight decay 0.01, beta1 0.7) at both recipes; ``--optimizer sgd``
    without other settings is the SGD recipe as it was (lr 0.05, 0.1 at one epoch; its L2
    penalty; no beta1 stored); what a user gives wins over both."""
    from budgetnas.trainers.recipe import ONE_EPOCH_DEFAULTS, ConfigError, default_recipe

    for epochs in (3, 1):
        r = default_recipe(epochs)
        assert (r.optimizer, r.lr, r.weight_decay, r.beta1) == ("adamw", 0.03, 0.01, 0.7)
        sgd = default_recipe(epochs, optimizer="sgd")
        assert (sgd.lr, sgd.weight_decay) == (
            ONE_EPOCH_DEFAULTS["lr"] if epochs == 1 else TrainConfig.lr,
            TrainConfig.weight_decay,
        )
        assert "beta1" not in sgd.to_dict()  # an SGD recipe's results and keys are as before
    one = default_recipe(1)
    assert (one.batch_size, one.augment) == (64, ONE_EPOCH_DEFAULTS["augment"])
    assert default_recipe(3, lr=0.01).lr == 0.01 and default_recipe(3, lr=0.01).beta1 == 0.7
    with pytest.raises(ConfigError, match="optimizer must be one of sgd, adamw"):
        default_recipe(3, optimizer="lamb")
    # a momentum would change nothing under AdamW but the recipe's name: refused, in search
    # and in verify of an AdamW run; SGD takes it
    with pytest.raises(ConfigError, match="--momentum is SGD's"):
        default_recipe(3, momentum=0.8)
    assert default_recipe(3, optimizer="sgd", momentum=0.8).momentum == 0.8
    assert default_recipe(3, optimizer=None).optimizer == "adamw"  # None: not given
    from budgetnas.search.verification.choose import verify_recipe

    with pytest.raises(ConfigError, match="--momentum is SGD's"):
        verify_recipe(default_recipe(3), momentum=0.8)
    assert verify_recipe(default_recipe(3, optimizer="sgd"), momentum=0.8).momentum == 0.8
