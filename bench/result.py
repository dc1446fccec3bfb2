"""What a scenario hands the report: tables of numbers, targets met or missed, plots, notes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Check:
    """One target of design.md "Numbers to hold"; `met` is None when it could not be measured."""

    target: str
    measured: str
    met: bool | None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "NOT MEASURED"}[self.met]


@dataclass
class ScenarioResult:
    key: str
    title: str
    about: str
    tables: list[Table] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    ran_at: str = ""  # date and command of the run that measured it (a report can merge runs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioResult:
        fields = dict(data)
        fields["tables"] = [Table(**t) for t in data.get("tables", [])]
        fields["checks"] = [Check(**c) for c in data.get("checks", [])]
        return cls(**fields)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 500 samples is the 495th smallest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def secs(seconds: float) -> str:
    return f"{seconds:.2f}"


def mb(size: float) -> str:
    return f"{size / 1e6:.1f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "n/a"
