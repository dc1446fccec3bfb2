"""PNG plots for BENCHMARKS.md: grouped bars and lines, axes labelled with units."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def bars(
    path: Path,
    title: str,
    ylabel: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    log: bool = False,
    target: float | None = None,
    target_label: str = "target",
) -> str:
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + i * width - 0.4 + width / 2 for g in range(len(groups))]
        drawn = ax.bar(xs, values, width, label=name)
        ax.bar_label(drawn, fmt="%.3g", fontsize=7)
    ax.set_xticks(range(len(groups)), groups)
    _finish(ax, fig, path, title, ylabel, log=log, target=target, target_label=target_label)
    return path.name


def lines(
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    xs: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    logx: bool = False,
    logy: bool = False,
    target: float | None = None,
    target_label: str = "target",
) -> str:
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in series.items():
        ax.plot(xs, values, marker="o", label=name)
    ax.set_xlabel(xlabel)
    if logx:
        ax.set_xscale("log")
    _finish(ax, fig, path, title, ylabel, log=logy, target=target, target_label=target_label)
    return path.name


def _finish(
    ax: plt.Axes,
    fig: plt.Figure,
    path: Path,
    title: str,
    ylabel: str,
    *,
    log: bool,
    target: float | None,
    target_label: str,
) -> None:
    if target is not None:
        ax.axhline(target, color="red", linestyle="--", linewidth=1, label=target_label)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
