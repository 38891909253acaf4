"""The search space: an Optuna trial's suggestions -> an ``ArchSpec`` under a parameter budget.

Structure (stages, convs per stage, padding, residual shortcuts, head) and relative widths are
sampled from fixed distributions, so Optuna's samplers see the same space on every trial.
Absolute widths then follow from the budget: a sampled ``size`` fraction sets the target
``size * budget``, and one width scale is found by bisection so that the network has as many
parameters as fit under that target. A candidate can exceed the budget only when even the
narrowest network of its structure does (``Rejected``).

Only ``trial.suggest_*`` is used, so any object with those methods works (tests use a fake).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Protocol

from budgetnas.space.blocks import MBConv, SepConv, SqueezeExcite, StridedConv
from budgetnas.space.choices import SpaceConfig
from budgetnas.space.count import analyze, count_params
from budgetnas.space.memory import activation_memory
from budgetnas.space.spec import ArchSpec, Conv, Head, Residual, SpecError, Transition

MIN_WIDTH = 4
MAX_WIDTH = 256


class Suggester(Protocol):
    def suggest_int(self, name: str, low: int, high: int) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


class _Recorded:
    """Serves suggestions from values drawn earlier (``flat``: every one drawn up front)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self.values[name]

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return self.values[name]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.values[name]


class Rejected(Exception):
    """The sampled structure cannot be made to fit a cap; nothing is trained.
    ``cap``: which one (``parameters``, ``MACs`` or ``activation``)."""

    def __init__(self, reason: str, params: int, cap: str = "parameters") -> None:
        super().__init__(reason)
        self.reason = reason
        self.params = params
        self.cap = cap


@dataclass(frozen=True)
class Limits:
    """The caps a network must fit, all exact and known before it is built: parameters,
    multiply-accumulates per image, and peak activation memory in elements (bytes at int8,
    one byte per element; see ``space.memory``). ``None``: no cap."""

    params: int
    macs: int | None = None
    activation: int | None = None

    def over(self, spec: ArchSpec) -> tuple[str, str] | None:
        """(which cap, why) for the first cap ``spec`` exceeds, else None."""
        params = count_params(spec)
        if params > self.params:
            return "parameters", f"{params:,} parameters over the cap {self.params:,}"
        if self.macs is not None:
            macs = analyze(spec).macs
            if macs > self.macs:
                return "MACs", f"{macs:,} MACs over the cap {self.macs:,}"
        if self.activation is not None:
            peak = activation_memory(spec).peak
            if peak > self.activation:
                return "activation", (
                    f"peak activation {peak:,} bytes (int8) over the cap {self.activation:,}"
                )
        return None


def _choose(trial: Suggester, name: str, choices: tuple) -> Any:
    """A categorical suggestion when there is a choice; the setting itself when there is one."""
    return trial.suggest_categorical(name, list(choices)) if len(choices) > 1 else choices[0]


@dataclass(frozen=True)
class _Stage:
    kind: str  # conv, sepconv, mbconv
    k: int
    convs: tuple[tuple[float, int], ...]  # (relative width, pad) per layer
    residual: bool
    se: bool
    expand: int


@dataclass(frozen=True)
class _Skeleton:
    """A sampled structure with relative widths; ``at(scale)`` gives a spec."""

    stages: tuple[_Stage, ...]
    transitions: tuple[tuple[str, float, bool], ...]  # (kind, relative width, pool_first)
    head_k: int
    cfg: SpaceConfig

    def relaxed(self, **changes: Any) -> _Skeleton:
        return replace(self, **changes)

    def at(self, scale: float) -> ArchSpec:
        def width(weight: float) -> int:
            return max(MIN_WIDTH, min(MAX_WIDTH, round(scale * weight)))

        blocks: list[Any] = []
        for s, st in enumerate(self.stages):
            if st.kind == "mbconv":
                w = width(st.convs[0][0])  # a stage of inverted residuals has one width
                blocks += [
                    MBConv(w, k=st.k, expand=st.expand, skip=st.residual and j > 0)
                    for j in range(len(st.convs))
                ]
            else:
                layer = tuple(
                    Conv(width(w), k=st.k, pad=pad * (st.k // 2), dropout=self.cfg.dropout)
                    if st.kind == "conv"
                    else SepConv(width(w), k=st.k, pad=pad * (st.k // 2))
                    for w, pad in st.convs
                )
                blocks += [Residual(layer, proj=True)] if st.residual else list(layer)
            if st.se:
                blocks.append(SqueezeExcite())
            if s < len(self.transitions):
                kind, w, pool_first = self.transitions[s]
                blocks.append(
                    Transition(width(w), pool_first=pool_first)
                    if kind == "pool"
                    else StridedConv(width(w))
                )
        head = Head(kind="conv_gap", k=3, bias=False) if self.head_k == 3 else Head(kind="fc")
        return ArchSpec(
            blocks=tuple(blocks),
            head=head,
            in_channels=self.cfg.in_channels,
            input_size=self.cfg.input_size,
            num_classes=self.cfg.num_classes,
            norm=self.cfg.norm,
        )


def _suggest_everything(trial: Suggester, cfg: SpaceConfig) -> dict[str, Any]:
    """Every parameter ``_sample_skeleton`` can ask for, asked for once each, in a fixed order
    (the deepest structure's), under the same names and distributions."""
    values: dict[str, Any] = {"stages": trial.suggest_int("stages", *cfg.stages)}

    def choose(name: str, choices: tuple) -> None:
        if len(choices) > 1:
            values[name] = trial.suggest_categorical(name, list(choices))

    for s in range(cfg.stages[1]):
        values[f"s{s}_convs"] = trial.suggest_int(f"s{s}_convs", *cfg.convs)
        for name, choices in (
            (f"s{s}_block", cfg.blocks),
            (f"s{s}_pad", cfg.padding),
            (f"s{s}_res", cfg.residual),
            (f"s{s}_k", cfg.kernels),
        ):
            choose(name, choices)
        for j in range(cfg.convs[1]):
            values[f"s{s}_w{j}"] = trial.suggest_float(f"s{s}_w{j}", *cfg.width, log=True)
        choose(f"s{s}_se", cfg.se)
        choose(f"s{s}_e", cfg.expand)
        if s < cfg.stages[1] - 1:
            values[f"t{s}_w"] = trial.suggest_float(f"t{s}_w", *cfg.transition_width, log=True)
            choose(f"t{s}_kind", cfg.transitions)
            choose(f"t{s}_pool_first", cfg.pool_first)
    choose("head", cfg.heads)
    return values


def _sample_skeleton(trial: Suggester, cfg: SpaceConfig) -> _Skeleton:
    """The suggestions a space asks for, in a fixed order and under fixed names: the space
    of the defaults asks for exactly what the search asked for before the space was a file
    (a setting with one choice is not asked for), so the same seed gives the same candidates."""
    n_stages = trial.suggest_int("stages", *cfg.stages)
    size = cfg.input_size
    stages, transitions = [], []
    for s in range(n_stages):
        n_convs = trial.suggest_int(f"s{s}_convs", *cfg.convs)
        kind = _choose(trial, f"s{s}_block", cfg.blocks)
        # an mbconv stage keeps its size: no padding to choose, a skip whenever asked for
        pad = _choose(trial, f"s{s}_pad", cfg.padding) if kind != "mbconv" else 1
        res = _choose(trial, f"s{s}_res", cfg.residual) if pad == 1 else False
        k = _choose(trial, f"s{s}_k", cfg.kernels)
        convs = []
        for j in range(n_convs):
            if kind == "mbconv":  # one width for the stage's layers
                weight = trial.suggest_float(f"s{s}_w0", *cfg.width, log=True) if j == 0 else 0
                convs.append((weight, 1))
                continue
            weight = trial.suggest_float(f"s{s}_w{j}", *cfg.width, log=True)
            # A valid conv that would leave less than a 3x3 map is padded instead.
            p = 1 if pad == 1 or size - (k - 1) < 3 else 0
            size -= (k - 1) * (1 - p)
            convs.append((weight, p))
        se = _choose(trial, f"s{s}_se", cfg.se)
        expand = _choose(trial, f"s{s}_e", cfg.expand) if kind == "mbconv" else cfg.expand[0]
        stages.append(_Stage(kind, k, tuple(convs), bool(res), bool(se), int(expand)))
        if s < n_stages - 1:
            tw = trial.suggest_float(f"t{s}_w", *cfg.transition_width, log=True)
            tkind = _choose(trial, f"t{s}_kind", cfg.transitions)
            pool_first = (
                _choose(trial, f"t{s}_pool_first", cfg.pool_first) if tkind == "pool" else True
            )
            transitions.append((tkind, tw, bool(pool_first)))
            size = size // 2 if tkind == "pool" else (size - 1) // 2 + 1
    head = _choose(trial, "head", cfg.heads)
    head_k = 3 if head == "conv3_gap" and size >= 3 else 1
    return _Skeleton(tuple(stages), tuple(transitions), head_k, cfg)


def sample_spec(
    trial: Suggester,
    *,
    budget: int,
    cfg: SpaceConfig | None = None,
    macs: int | None = None,
    activation: int | None = None,
    flat: bool = False,
) -> ArchSpec:
    """A spec within ``budget`` parameters (and ``macs`` MACs, ``activation`` peak activation
    elements, when given), or ``Rejected`` when even the narrowest network of the sampled
    structure exceeds one of them.

    Parameters, MACs and activation memory all grow with the widths, so one bisection on the
    width scale finds the widest network that fills the sampled fraction of the parameter
    budget while staying under the other caps.

    ``flat``: suggest every parameter of the space on every trial, also those this candidate
    does not use (a third stage's when it has two, ...), so that a sampler that models only
    the parameters all trials share (NSGA-II) models all of them. The candidate drawn from
    the same values is the same.
    """
    cfg = cfg or SpaceConfig()
    limits = Limits(budget, macs, activation)
    if flat:
        skeleton = _sample_skeleton(_Recorded(_suggest_everything(trial, cfg)), cfg)
    else:
        skeleton = _sample_skeleton(trial, cfg)
    fraction = trial.suggest_float("size", cfg.min_size_fraction, 1.0)
    target = replace(limits, params=max(1, int(fraction * budget)))

    def fits(scale: float) -> bool:
        return target.over(skeleton.at(scale)) is None

    smallest = skeleton.at(0.0)
    over = limits.over(smallest)
    if over is not None:  # the sampled structure stays as drawn: the space is not narrowed
        cap, why = over
        raise Rejected(f"narrowest network of this structure: {why}", count_params(smallest), cap)
    if not fits(0.0):  # the target is below the narrowest network: take the narrowest
        return smallest
    lo, hi = 0.0, 1.0
    while fits(hi) and hi < MAX_WIDTH:
        lo, hi = hi, hi * 2
    for _ in range(24):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return skeleton.at(lo)


@lru_cache(maxsize=64)
def _smallest_specs(cfg: SpaceConfig) -> tuple[ArchSpec, ...]:
    """The narrowest, shallowest network of each structure the space allows: the fewest
    stages and layers, every width at its minimum, each combination of the stage-wide choices
    (built by the sampler itself, so its rules apply)."""
    import itertools

    specs = []
    choices = itertools.product(
        cfg.blocks,
        cfg.kernels,
        cfg.padding,
        cfg.residual,
        cfg.se,
        cfg.expand,
        cfg.transitions,
        cfg.pool_first,
        cfg.heads,
    )
    for kind, k, pad, res, se, expand, tkind, pool_first, head in choices:
        values: dict[str, Any] = {"stages": cfg.stages[0], "head": head}
        for s in range(cfg.stages[0]):
            values.update(
                {
                    f"s{s}_convs": cfg.convs[0],
                    f"s{s}_block": kind,
                    f"s{s}_pad": pad,
                    f"s{s}_res": res,
                    f"s{s}_k": k,
                    f"s{s}_se": se,
                    f"s{s}_e": expand,
                    f"t{s}_w": cfg.transition_width[0],
                    f"t{s}_kind": tkind,
                    f"t{s}_pool_first": pool_first,
                }
            )
            values.update({f"s{s}_w{j}": cfg.width[0] for j in range(cfg.convs[0])})
        try:
            specs.append(_sample_skeleton(_Recorded(values), cfg).at(0.0))
        except SpecError:  # a map that vanishes: not a network of the space
            continue
    if not specs:
        raise SpecError(
            f"the space builds no network for {cfg.input_size}x{cfg.input_size} images: every "
            "structure's feature map vanishes; allow fewer stages, padding or smaller kernels"
        )
    return tuple(specs)


def smallest_network(cfg: SpaceConfig | None = None) -> int:
    """Parameters of the smallest network the space can build (every width at its minimum)."""
    return smallest_costs(cfg)[0]


def smallest_costs(cfg: SpaceConfig | None = None) -> tuple[int, int, int]:
    """The least parameters, MACs and peak activation elements a network of the space can
    have (each the minimum over its structures, not one network's)."""
    specs = _smallest_specs(cfg or SpaceConfig())
    return (
        min(count_params(s) for s in specs),
        min(analyze(s).macs for s in specs),
        min(activation_memory(s).peak for s in specs),
    )
