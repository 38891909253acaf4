"""Several seeds of one network trained as one model: the copies fused side by side.

A 10K-parameter network leaves a GPU idle; N copies of it (one per seed) fused into one model
make each kernel N times wider (HFTA, Wang et al., MLSys 2021): the copies' channels are
stacked, each convolution is grouped N times wider (``groups`` = N x the original), each
linear layer a batched matmul over the copies, and a BatchNorm over N x C channels is already
one BatchNorm per copy. Activations, pooling and the input's normalisation act per channel
and stay as they are. Nothing mixes the copies: each copy's gradient is its own loss's.

Each copy is initialised exactly as its own training would be (``init_model`` with its seed)
and sees exactly what it would see alone: its batches stacked on the channel axis, drawn in its
own seed's order, augmented by its own generator (``trainers.step``); on a CPU its dropout
masks come from its own stream, the one its separate training draws from. So ``train_fused``
gives each seed's separate result up to float rounding (grouped kernels add in another order;
tests/trainers/test_fused.py states the tolerance). On CUDA the copies' dropout masks come
from the device's generator, as torch's dropout draws them: same distribution, other draws.

A spec whose layers have no fused form is refused in one line (``FuseError``); the caller
trains its seeds one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from budgetnas.space.blocks import Layer
from budgetnas.space.build import Net, Residual, SqueezeExcite, build, plan
from budgetnas.space.dropout import scaled_mask
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers import graphs as graph_module
from budgetnas.trainers.data import TrainVal
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import Training, TrainingError, TrainResult, seeded

__all__ = [
    "FUSE_SEEDS_BY_DEFAULT",
    "CopiesDropout",
    "FuseError",
    "FusedNet",
    "GroupedLinear",
    "check_fusable",
    "fuse_models",
    "fuse_seeds_by_default",
    "fused_training",
    "split_model",
    "train_fused",
]

# Whether a network's seeds are trained fused unless asked otherwise, per device type: on CUDA
# (one small network leaves the card idle); not on a CPU, where N fused copies took longer than
# N separate trainings (docs/benchmarks.md, "The GPU path").
FUSE_SEEDS_BY_DEFAULT = {"cuda": True, "cpu": False}

# layers that act on each channel (or each copy's block of features) alone: the same module
PER_CHANNEL = ("ReLU", "GELU", "Sigmoid", "MaxPool2d", "AdaptiveAvgPool2d", "Flatten", "Identity")
FUSED_OPS = (*PER_CHANNEL, "Conv2d", "BatchNorm2d", "Linear", "Dropout", "Dropout2d")


class FuseError(ValueError):
    """A network that cannot be fused; the message says which layer."""


def fuse_seeds_by_default(device: torch.device | str) -> bool:
    """Whether seeds are fused by default on ``device`` (``FUSE_SEEDS_BY_DEFAULT``)."""
    return FUSE_SEEDS_BY_DEFAULT.get(torch.device(device).type, False)


def _layers(layers: Sequence[Layer]):
    for layer in layers:
        yield layer
        if layer.op == "Residual":
            body, shortcut = layer.args
            yield from _layers(body)
            yield from _layers(shortcut)
        elif layer.op == "SqueezeExcite":
            yield from _layers(layer.args[0])


def check_fusable(spec: ArchSpec) -> None:
    """Raise ``FuseError`` (one line) if a layer of ``spec`` has no fused form."""
    features, head = plan(spec)
    for layer in _layers([*features, *head]):
        if layer.op not in (*FUSED_OPS, "Residual", "SqueezeExcite"):
            raise FuseError(
                f"cannot fuse seeds of this network: its {layer.op} layer has no fused form; "
                "train the seeds one by one"
            )


class GroupedLinear(nn.Module):
    """``copies`` linear layers side by side, one batched matmul: (B, copies x in) ->
    (B, copies x out), copy i reading and writing its own block of features."""

    def __init__(self, copies: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.copies, self.in_features, self.out_features = copies, in_features, out_features
        self.weight = nn.Parameter(torch.empty(copies, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(copies, out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = x.reshape(b, self.copies, self.in_features).transpose(0, 1)  # (copies, B, in)
        w = self.weight.transpose(1, 2)  # (copies, in, out)
        bias = self.bias
        y = torch.bmm(x, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, w)
        return y.transpose(0, 1).reshape(b, self.copies * self.out_features)


class _Streams:
    """The copies' dropout generators (CPU), shared by every dropout layer of a fused model and
    by its copies (an EMA's deep copy refers to the same ones)."""

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    def __deepcopy__(self, memo) -> _Streams:
        return self


class CopiesDropout(nn.Module):
    """Dropout of ``copies`` stacked copies: on a CPU with ``streams``, each copy's mask drawn
    from its own generator exactly as its separate network's layer draws it (element dropout:
    ``space.dropout``'s bulk masks; ``channel``: ``nn.Dropout2d``'s per-channel noise);
    elsewhere torch's dropout over the whole tensor (the device's generator)."""

    def __init__(self, p: float, copies: int, *, channel: bool, streams: _Streams | None):
        super().__init__()
        self.p, self.copies, self.channel, self.streams = p, copies, channel, streams

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        if not self.training or p == 0:
            return x
        if self.streams is None or x.device.type != "cpu":
            return F.dropout2d(x, p, True) if self.channel else F.dropout(x, p, True)
        if p >= 1:
            return x * 0.0
        parts = x.chunk(self.copies, dim=1)  # copy i's channels (or features)
        gens = self.streams.generators
        if self.channel:  # as nn.Dropout2d: noise (B, C, 1, 1), bernoulli(1 - p) / (1 - p)
            masks = [
                torch.empty((*part.shape[:2], *([1] * (part.dim() - 2))), dtype=x.dtype)
                .bernoulli_(1 - p, generator=g)
                .div_(1 - p)
                for part, g in zip(parts, gens, strict=True)
            ]
        else:
            masks = [
                scaled_mask(part.shape, p, dtype=x.dtype, generator=g)
                for part, g in zip(parts, gens, strict=True)
            ]
        return x * torch.cat(masks, dim=1)


def _make(layer: Layer, copies: int, streams: _Streams | None) -> nn.Module:
    """The fused module of one layer of the plan (``space.build.make``'s, N copies wide)."""
    kwargs = dict(layer.kwargs)
    if layer.op == "Residual":
        body, shortcut = layer.args
        return Residual(
            nn.Sequential(*(_make(x, copies, streams) for x in body)),
            nn.Sequential(*(_make(x, copies, streams) for x in shortcut))
            if shortcut
            else nn.Identity(),
        )
    if layer.op == "SqueezeExcite":
        return SqueezeExcite(nn.Sequential(*(_make(x, copies, streams) for x in layer.args[0])))
    if layer.op == "Conv2d":
        c_in, c_out = layer.args
        kwargs["groups"] = copies * kwargs.get("groups", 1)
        return nn.Conv2d(copies * c_in, copies * c_out, **kwargs)
    if layer.op == "BatchNorm2d":
        (c,) = layer.args
        return nn.BatchNorm2d(copies * c, **kwargs)
    if layer.op == "Linear":
        return GroupedLinear(copies, *layer.args, **kwargs)
    if layer.op in ("Dropout", "Dropout2d"):
        (p,) = layer.args
        return CopiesDropout(p, copies, channel=layer.op == "Dropout2d", streams=streams)
    if layer.op in PER_CHANNEL:
        return getattr(nn, layer.op)(*layer.args, **kwargs)
    raise FuseError(f"cannot fuse seeds of this network: its {layer.op} layer has no fused form")


class FusedNet(nn.Module):
    """``copies`` copies of ``spec``'s network as one: input (B, copies x C, H, W), copy i's
    images in channels [i x C, (i + 1) x C); output (B, copies x classes), copy i's logits in
    its block. Its parameter names are ``space.build.Net``'s."""

    def __init__(self, spec: ArchSpec, copies: int, streams: _Streams | None = None) -> None:
        super().__init__()
        check_fusable(spec)
        features, head = plan(spec)
        self.copies = copies
        self.mean, self.std = spec.norm
        self.features = nn.Sequential(*(_make(x, copies, streams) for x in features))
        self.head = nn.Sequential(*(_make(x, copies, streams) for x in head))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std  # (B, copies x C, H, W)
        x = self.features(x)  # (B, copies x C', H', W')
        return self.head(x)  # (B, copies x classes)


def _owners(fused: FusedNet) -> dict[str, nn.Module]:
    """The module that holds each entry of the fused model's state dict."""
    owners = {}
    for prefix, module in fused.named_modules():
        names = [n for n, _ in module.named_parameters(recurse=False)]
        names += [n for n, _ in module.named_buffers(recurse=False)]
        for name in names:
            owners[f"{prefix}.{name}" if prefix else name] = module
    return owners


@torch.no_grad()
def fuse_models(
    spec: ArchSpec,
    models: Sequence[nn.Module],
    *,
    generators: Sequence[torch.Generator] | None = None,
) -> FusedNet:
    """One ``FusedNet`` holding ``models`` (networks of ``spec``), their weights and
    statistics stacked copy by copy; ``generators``: the copies' dropout streams on a CPU."""
    streams = None if generators is None else _Streams(generators)
    fused = FusedNet(spec, len(models), streams)
    states = [m.state_dict() for m in models]
    owners = _owners(fused)
    stacked = {}
    for key, mine in fused.state_dict().items():
        parts = [s[key] for s in states]
        if not mine.is_floating_point():
            stacked[key] = parts[0].clone()  # BatchNorm's count: the same in every copy
        elif isinstance(owners[key], GroupedLinear):
            stacked[key] = torch.stack(parts)
        else:
            stacked[key] = torch.cat(parts)
    fused.load_state_dict(stacked)
    return fused.to(next(models[0].parameters()).device)


@torch.no_grad()
def split_model(
    fused: FusedNet, spec: ArchSpec, *, memory_format: torch.memory_format = torch.contiguous_format
) -> list[Net]:
    """The copies of ``fused`` as separate networks of ``spec``, on its device."""
    owners = _owners(fused)
    copies = fused.copies
    states: list[dict[str, torch.Tensor]] = [{} for _ in range(copies)]
    for key, value in fused.state_dict().items():
        if not value.is_floating_point():
            parts = [value] * copies
        elif isinstance(owners[key], GroupedLinear):
            parts = list(value.unbind(0))
        else:
            parts = list(value.chunk(copies, dim=0))
        for state, part in zip(states, parts, strict=True):
            state[key] = part.clone()
    device = next(fused.parameters()).device
    nets = []
    with torch.random.fork_rng(devices=[]):  # building draws an initialisation; discarded
        for state in states:
            net = build(spec)
            net.load_state_dict(state)
            nets.append(net.to(device, memory_format=memory_format))
    return nets


def fused_training(
    spec: ArchSpec,
    data: TrainVal,
    cfg: TrainConfig,
    *,
    seeds: Sequence[int],
    device: torch.device,
    on_epoch: Callable[[int, list[float], list[float]], None] | None = None,
    graphs: bool | None = None,
) -> Training:
    """The fused training of ``train_fused``, ready to advance step by step (the caller
    keeps the random state: it seeds nothing beyond each copy's initialisation)."""
    check_fusable(spec)
    if not seeds:
        raise ValueError("fused training needs at least one seed")
    nets, streams = [], []
    for seed in seeds:
        with seeded(seed, torch.device("cpu")):
            nets.append(build(spec).to(device))
            state = torch.random.default_generator.get_state()
        streams.append(torch.Generator().set_state(state))  # its dropout stream, as alone
    fused = fuse_models(spec, nets, generators=streams if device.type == "cpu" else None)
    gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    capture = graph_module.cuda_capture if graph_module.use_graphs(device, graphs) else None
    return Training(
        fused,
        data,
        cfg,
        generators=gens,
        classes=spec.num_classes,
        capture=capture,
        on_epoch=on_epoch,
        split=lambda model: split_model(model, spec, memory_format=layout),
    )


def train_fused(
    spec: ArchSpec,
    data: TrainVal,
    cfg: TrainConfig,
    *,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, list[float], list[float]], None] | None = None,
    graphs: bool | None = None,
) -> list[TrainResult | TrainingError]:
    """``spec`` trained with recipe ``cfg`` once per seed of ``seeds`` (``cfg.seed`` is
    replaced by each), all at once as one fused model: per seed, what ``train(spec, data,
    replace(cfg, seed=s))`` gives, up to float rounding, or the ``TrainingError`` that ended
    that seed (the others train on). ``on_epoch(epoch, accs, losses)`` gets every copy's
    values (an exception it raises stops them all); ``graphs`` as in ``train``. The time of
    each result is the fused training's, shared equally. ``FuseError`` if ``spec`` cannot be
    fused."""
    check_fusable(spec)
    seeds = list(seeds)
    device = torch.device(device)
    with seeded(seeds[0] if seeds else 0, device):  # the caller's random state stays as it was
        run = fused_training(
            spec, data, cfg, seeds=seeds, device=device, on_epoch=on_epoch, graphs=graphs
        )
        while run.advance():
            pass
        return run.results()
