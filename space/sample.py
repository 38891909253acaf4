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

from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

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
    """Serves suggestions from values drawn earlier (the second pass of ``flat``)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self.values[name]

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return self.values[name]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.values[name]


class _Widest:
    """The first pass of ``flat``: every suggestion goes to the trial (and is recorded), but
    the walk continues as if each choice opened as much of the space as it can (an integer
    at its high end, a categorical at its last choice), so every parameter is suggested."""

    def __init__(self, trial: Suggester) -> None:
        self.trial = trial
        self.values: dict[str, Any] = {}

    def suggest_int(self, name: str, low: int, high: int) -> int:
        self.values[name] = self.trial.suggest_int(name, low, high)
        return high

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        self.values[name] = self.trial.suggest_float(name, low, high, log=log)
        return self.values[name]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.values[name] = self.trial.suggest_categorical(name, choices)
        return choices[-1]


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


@dataclass(frozen=True)
class SpaceConfig:
    """What the space may produce; the defaults suit 28x28 inputs and 2K-100K budgets."""

    in_channels: int = 1
    input_size: int = 28
    num_classes: int = 10
    norm: tuple[float, float] = (0.1307, 0.3081)
    min_size_fraction: float = 0.3  # smallest target, as a fraction of the budget
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.min_size_fraction <= 1:
            raise SpecError(
                f"space: min_size_fraction must be in (0, 1], got {self.min_size_fraction}"
            )
        if not 0 <= self.dropout < 1:
            raise SpecError(f"space: dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["norm"] = list(self.norm)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpaceConfig:
        return cls(**{**data, "norm": tuple(data.get("norm", cls.norm))})


@dataclass(frozen=True)
class _Skeleton:
    """A sampled structure with relative widths; ``at(scale)`` gives a spec."""

    stages: tuple[tuple[tuple[float, int], ...], ...]  # per stage: (weight, pad) per conv
    residual: tuple[bool, ...]
    transitions: tuple[tuple[float, bool], ...]  # (weight, pool_first) between stages
    head_k: int
    cfg: SpaceConfig

    def at(self, scale: float) -> ArchSpec:
        def width(weight: float) -> int:
            return max(MIN_WIDTH, min(MAX_WIDTH, round(scale * weight)))

        blocks: list[Any] = []
        for s, convs in enumerate(self.stages):
            layer = tuple(Conv(width(w), pad=pad, dropout=self.cfg.dropout) for w, pad in convs)
            blocks += [Residual(layer, proj=True)] if self.residual[s] else list(layer)
            if s < len(self.transitions):
                w, pool_first = self.transitions[s]
                blocks.append(Transition(width(w), pool_first=pool_first))
        head = Head(kind="conv_gap", k=3, bias=False) if self.head_k == 3 else Head(kind="fc")
        return ArchSpec(
            blocks=tuple(blocks),
            head=head,
            in_channels=self.cfg.in_channels,
            input_size=self.cfg.input_size,
            num_classes=self.cfg.num_classes,
            norm=self.cfg.norm,
        )


def _sample_skeleton(trial: Suggester, cfg: SpaceConfig) -> _Skeleton:
    n_stages = trial.suggest_int("stages", 2, 3)
    size = cfg.input_size
    stages, residual, transitions = [], [], []
    for s in range(n_stages):
        n_convs = trial.suggest_int(f"s{s}_convs", 1, 3)
        pad = trial.suggest_categorical(f"s{s}_pad", [0, 1])
        res = trial.suggest_categorical(f"s{s}_res", [False, True]) if pad == 1 else False
        convs = []
        for j in range(n_convs):
            weight = trial.suggest_float(f"s{s}_w{j}", 8.0, 32.0, log=True)
            # A valid conv that would leave less than a 3x3 map is padded instead.
            p = 1 if pad == 1 or size - 2 < 3 else 0
            size -= 2 * (1 - p)
            convs.append((weight, p))
        stages.append(tuple(convs))
        residual.append(bool(res))
        if s < n_stages - 1:
            tw = trial.suggest_float(f"t{s}_w", 4.0, 24.0, log=True)
            pool_first = trial.suggest_categorical(f"t{s}_pool_first", [True, False])
            transitions.append((tw, bool(pool_first)))
            size //= 2
    head = trial.suggest_categorical("head", ["gap", "conv3_gap"])
    head_k = 3 if head == "conv3_gap" and size >= 3 else 1
    return _Skeleton(tuple(stages), tuple(residual), tuple(transitions), head_k, cfg)


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
    the same values is the same. A choice that opens more of the space is listed last.
    """
    cfg = cfg or SpaceConfig()
    limits = Limits(budget, macs, activation)
    if flat:
        widest = _Widest(trial)
        _sample_skeleton(widest, cfg)
        skeleton = _sample_skeleton(_Recorded(widest.values), cfg)
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


def _smallest(cfg: SpaceConfig) -> ArchSpec:
    return _Skeleton(
        stages=(((1.0, 0),), ((1.0, 0),)),
        residual=(False, False),
        transitions=((1.0, True),),
        head_k=1,
        cfg=cfg,
    ).at(0.0)


def smallest_network(cfg: SpaceConfig | None = None) -> int:
    """Parameters of the smallest network the space can build (every width at its minimum)."""
    return count_params(_smallest(cfg or SpaceConfig()))


def smallest_costs(cfg: SpaceConfig | None = None) -> tuple[int, int, int]:
    """(parameters, MACs, peak activation elements) of the smallest network of the space."""
    spec = _smallest(cfg or SpaceConfig())
    return count_params(spec), analyze(spec).macs, activation_memory(spec).peak
