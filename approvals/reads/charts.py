"""Daily charts as plain SVG geometry, computed here and drawn by
templates/approvals/daily_chart.html: no charting library, no CDN, nothing
to run in the browser. Bars are stacked per day (volume, or approvals and
rejections); an optional line is the day's approval rate on a 0-100 % axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from approvals.autonomy.metrics import Day

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 44, 12, 24  # room for the axes' labels


@dataclass(frozen=True)
class Series:
    label: str
    css: str  # the class that colours it (app.css)
    values: Sequence[int]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    rate_lines: list[str]  # polyline points, one per unbroken run of days with decisions
    rate_points: list[tuple[float, float, str]]
    y_max: int
    labels: list[tuple[float, str]]  # x positions and dates under the axis
    legend: list[Series]
    summary: str  # the chart in words, for screen readers
    plot: tuple[int, int, int, int]  # left, top, right, bottom of the plotting area
    has_rate: bool


def daily_chart(days: Sequence[Day], stacks: Sequence[Series], *, with_rate: bool) -> Chart:
    if not days:
        raise ValueError("A daily chart needs at least one day.")
    if any(len(series.values) != len(days) for series in stacks):
        raise ValueError("Every series needs one value per day.")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(days)
    totals = [sum(series.values[i] for series in stacks) for i in range(len(days))]
    y_max = max(1, *totals)
    bars = []
    for i, day in enumerate(days):
        base: float = TOP + plot_h
        for series in stacks:
            value = series.values[i]
            if value:
                height = plot_h * value / y_max
                base -= height
                title = f"{day.day:%Y-%m-%d}: {value} {series.label.lower()}"
                bars.append(Bar(LEFT + i * slot + slot * 0.15, base, slot * 0.7, height, series.css, title))
    lines: list[str] = []
    points: list[tuple[float, float, str]] = []
    run: list[str] = []
    for i, day in enumerate(days):
        rate = day.approval.value if with_rate else None
        if rate is None:
            if run:
                lines.append(" ".join(run))
            run = []
            continue
        x, y = LEFT + (i + 0.5) * slot, TOP + plot_h * (1 - rate)
        run.append(f"{x:.1f},{y:.1f}")
        points.append((x, y, f"{day.day:%Y-%m-%d}: {rate * 100:.0f} % approved of {day.approval.trials}"))
    if run:
        lines.append(" ".join(run))
    every = max(1, len(days) // 6)
    labels = [(LEFT + (i + 0.5) * slot, f"{day.day:%m-%d}") for i, day in enumerate(days) if i % every == 0]
    summary = ", ".join(f"{sum(s.values)} {s.label.lower()}" for s in stacks)
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        bars=bars,
        rate_lines=lines,
        rate_points=points,
        y_max=y_max,
        labels=labels,
        legend=list(stacks),
        summary=f"Last {len(days)} days: {summary}.",
        plot=(LEFT, TOP, LEFT + plot_w, TOP + plot_h),
        has_rate=with_rate,
    )


def volume_and_rate(days: Sequence[Day]) -> Chart:
    """An agent's chart: proposals per day, and the day's approval rate."""
    return daily_chart(days, [Series("Proposals", "bar-volume", [d.proposals for d in days])], with_rate=True)


def decisions_per_day(days: Sequence[Day]) -> Chart:
    """A department's chart: approvals and decisions against, stacked, per day."""
    stacks = [
        Series("Approved", "bar-approved", [d.approved for d in days]),
        Series("Rejected, vetoed or rolled back", "bar-against", [d.against for d in days]),
    ]
    return daily_chart(days, stacks, with_rate=False)
