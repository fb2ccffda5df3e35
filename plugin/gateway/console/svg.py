"""Plots as inline SVG, drawn on the server: no chart library, no script, readable without CSS.

Colours come from classes the stylesheet sets; every plot has a title and a text
description for screen readers, and the pages put the numbers in a table beside it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape


@dataclass(frozen=True, slots=True)
class Bin:
    """One reliability bin: the mean confidence of its rows, how many were right, how many."""

    low: float
    high: float
    mean_score: float
    accuracy: float
    count: int


def reliability_bins(pairs: Sequence[tuple[float, bool]], n_bins: int = 10) -> list[Bin]:
    """Equal-width confidence bins over (score, correct) pairs; empty bins are left out."""
    sums: list[list[float]] = [[0.0, 0.0, 0.0] for _ in range(n_bins)]
    for score, correct in pairs:
        index = min(n_bins - 1, max(0, int(score * n_bins)))
        sums[index][0] += score
        sums[index][1] += float(correct)
        sums[index][2] += 1
    return [
        Bin(i / n_bins, (i + 1) / n_bins, s / n, hits / n, int(n)) for i, (s, hits, n) in enumerate(sums) if n
    ]


def expected_calibration_error(bins: Sequence[Bin]) -> float | None:
    total = sum(b.count for b in bins)
    if not total:
        return None
    return sum(abs(b.accuracy - b.mean_score) * b.count for b in bins) / total


def confidence_bar(value: float | None, threshold: float | None = None, abstained: bool = False) -> Markup:
    """A 100x10 bar; the tick marks the threshold below which the model abstains."""
    if value is None:
        return Markup('<span class="muted">no score</span>')
    clamped = max(0.0, min(1.0, float(value)))
    kind = "abstain" if abstained else ("high" if clamped >= 0.8 else "mid")
    label = f"confidence {clamped:.2f}" + (f", threshold {threshold:.2f}" if threshold is not None else "")
    tick = ""
    if threshold is not None:
        x = max(0.0, min(1.0, float(threshold))) * 100
        tick = f'<line class="tick" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="10"/>'
    return Markup(
        f'<svg class="bar" viewBox="0 0 100 10" width="100" height="10" role="img" '
        f'aria-label="{escape(label)}"><rect class="track" width="100" height="10"/>'
        f'<rect class="fill {kind}" width="{clamped * 100:.1f}" height="10"/>{tick}</svg>'
    )


_W, _H, _PAD = 320, 240, 36


def _frame(title: str, desc: str, body: str, x_label: str, y_label: str, *, x_ticks: bool = True) -> Markup:
    inner_w, inner_h = _W - 2 * _PAD, _H - 2 * _PAD
    key = hashlib.sha256(title.encode()).hexdigest()[:8]
    ticks = []
    for i in range(6):
        frac = i / 5
        y = _PAD + inner_h * (1 - frac)
        x = _PAD + inner_w * frac
        ticks.append(f'<line class="grid" x1="{_PAD}" y1="{y:.1f}" x2="{_W - _PAD}" y2="{y:.1f}"/>')
        ticks.append(f'<text class="axis" x="{_PAD - 4}" y="{y + 4:.1f}" text-anchor="end">{frac:.1f}</text>')
        if x_ticks:
            ticks.append(
                f'<text class="axis" x="{x:.1f}" y="{_H - _PAD + 14}" text-anchor="middle">{frac:.1f}</text>'
            )
    return Markup(
        f'<svg class="plot" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-labelledby="t-{key} d-{key}">'
        f'<title id="t-{key}">{escape(title)}</title>'
        f'<desc id="d-{key}">{escape(desc)}</desc>'
        + "".join(ticks)
        + f'<rect class="frame" x="{_PAD}" y="{_PAD}" width="{inner_w}" height="{inner_h}"/>'
        + body
        + f'<text class="axis-label" x="{_W / 2}" y="{_H - 4}" text-anchor="middle">{escape(x_label)}</text>'
        + f'<text class="axis-label" x="12" y="{_H / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {_H / 2})">{escape(y_label)}</text></svg>'
    )


def reliability_plot(bins: Sequence[Bin], title: str) -> Markup:
    """Accuracy against confidence per bin; on the diagonal a model is calibrated."""
    inner_w, inner_h = _W - 2 * _PAD, _H - 2 * _PAD
    body = [
        f'<line class="diagonal" x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_PAD}"/>',
    ]
    for b in bins:
        x0 = _PAD + inner_w * b.low + 2
        width = inner_w * (b.high - b.low) - 4
        height = inner_h * b.accuracy
        body.append(
            f'<rect class="bin" x="{x0:.1f}" y="{_PAD + inner_h - height:.1f}" width="{width:.1f}" '
            f'height="{height:.1f}"><title>{b.low:.1f}–{b.high:.1f}: accuracy {b.accuracy:.2f} '
            f"of {b.count}</title></rect>"
        )
        cx = _PAD + inner_w * b.mean_score
        cy = _PAD + inner_h * (1 - b.accuracy)
        body.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="3"/>')
    desc = "; ".join(
        f"confidence {b.low:.1f}-{b.high:.1f}: {b.accuracy:.0%} right of {b.count}" for b in bins
    )
    return _frame(title, desc or "no judged decisions yet", "".join(body), "confidence", "share right")


def line_chart(series: dict[str, Sequence[tuple[date, float | None]]], title: str, y_label: str) -> Markup:
    """One line per series over days, values in [0, 1]; gaps where a day has no value."""
    days = sorted({d for points in series.values() for d, _ in points})
    inner_w, inner_h = _W - 2 * _PAD, _H - 2 * _PAD
    if not days:
        return _frame(title, "no data yet", "", "day", y_label, x_ticks=False)
    span = max(1, (days[-1] - days[0]).days)
    body: list[str] = []
    desc: list[str] = []
    for index, (name, points) in enumerate(series.items()):
        coords = []
        for day, value in sorted(points):
            if value is None:
                continue
            x = _PAD + inner_w * ((day - days[0]).days / span if len(days) > 1 else 0.5)
            y = _PAD + inner_h * (1 - max(0.0, min(1.0, value)))
            coords.append((x, y))
        if not coords:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        body.append(f'<polyline class="series s{index}" points="{path}"/>')
        body.extend(f'<circle class="point s{index}" cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>' for x, y in coords)
        body.append(
            f'<text class="legend s{index}" x="{_PAD + 6}" y="{_PAD + 14 + 14 * index}">{escape(name)}</text>'
        )
        desc.append(f"{name}: " + ", ".join(f"{d.isoformat()} {v:.2f}" for d, v in points if v is not None))
    x_label = days[0].isoformat() if len(days) == 1 else f"{days[0].isoformat()} … {days[-1].isoformat()}"
    return _frame(title, "; ".join(desc), "".join(body), x_label, y_label, x_ticks=False)
