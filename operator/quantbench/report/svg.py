"""Small, dependency-free SVG charts for the HTML report (pure: data in, SVG text out).

Two kinds cover every plot of the report: a line chart (one line per variant over numeric or categorical
x values, optional log2 x axis) and a bar chart with optional interval whiskers. Every chart carries a
<title> and axis labels so that it reads without the surrounding page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
WIDTH, HEIGHT = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 130, 34, 48


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]  # (x, y); for categorical charts x is the category index
    color: str


@dataclass(frozen=True)
class Mark:
    """A labelled point drawn as a diamond (filled, or hollow when it does not count)."""

    x: float
    y: float
    color: str
    label: str
    filled: bool = True


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    color: str
    low: float | None = None
    high: float | None = None
    note: str | None = None  # printed above the bar


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = [round(start, 10)]
    while ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    if abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _frame(title: str, x_label: str, y_label: str, body: list[str]) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        f'<text x="{LEFT}" y="20" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 10}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text transform="translate(14 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label)}</text>",
        *body,
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>',
        "</svg>",
    ]
    return "\n".join(parts)


def _y_axis(ticks: Sequence[float], y_of: Callable[[float], float]) -> list[str]:
    out = []
    plot_w = WIDTH - LEFT - RIGHT
    for t in ticks:
        y = y_of(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
    return out


def _legend(names: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    x = WIDTH - RIGHT + 12
    for i, (name, col) in enumerate(names):
        y = TOP + 8 + i * 18
        out.append(f'<rect x="{x}" y="{y - 8}" width="12" height="12" fill="{col}"/>')
        out.append(f'<text x="{x + 17}" y="{y + 2}">{escape(name)}</text>')
    return out


def line_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[Series],
    *,
    log2_x: bool = False,
    categories: Sequence[str] | None = None,
    hline: tuple[float, str] | None = None,
    marks: Sequence[Mark] = (),
) -> str:
    """Lines with markers. With ``categories``, x values are indices into it (evenly spaced). ``hline``: a
    dashed horizontal line with its label (an SLO); ``marks``: labelled points drawn as diamonds."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    pts = [p for s in series for p in s.points] + [(m.x, m.y) for m in marks]
    if hline is not None and pts:
        pts.append((pts[0][0], hline[0]))
    if not pts:
        return _frame(title, x_label, y_label, [f'<text x="{LEFT + 10}" y="{TOP + 20}">no data</text>'])

    def tx(x: float) -> float:
        return math.log2(x) if log2_x else x

    if categories is not None:
        x_lo, x_hi = -0.5, len(categories) - 0.5
    else:
        x_lo, x_hi = min(tx(x) for x, _ in pts), max(tx(x) for x, _ in pts)
        if x_hi == x_lo:
            x_lo, x_hi = x_lo - 1, x_hi + 1
        pad = (x_hi - x_lo) * 0.05
        x_lo, x_hi = x_lo - pad, x_hi + pad
    y_ticks = nice_ticks(0.0, max(y for _, y in pts) * 1.05)
    y_hi = y_ticks[-1]

    def x_of(x: float) -> float:
        return (
            LEFT + (tx(x) - x_lo) / (x_hi - x_lo) * plot_w
            if categories is None
            else (LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w)
        )

    def y_of(y: float) -> float:
        return TOP + plot_h - y / y_hi * plot_h

    body = _y_axis(y_ticks, y_of)
    if categories is not None:
        x_ticks: list[tuple[float, str]] = [(float(i), c) for i, c in enumerate(categories)]
    else:
        xs = sorted({x for x, _ in pts})
        if len(xs) > 6 and not log2_x:  # many uneven x values (a search's rates): round ticks instead
            xs = [t for t in nice_ticks(0.0, max(xs)) if x_lo <= t <= x_hi]
        x_ticks = [(x, fmt(x)) for x in xs]
    for x, label in x_ticks:
        px = x_of(x)
        body.append(
            f'<line x1="{px:.1f}" y1="{TOP + plot_h}" x2="{px:.1f}" y2="{TOP + plot_h + 4}" stroke="#444"/>'
        )
        body.append(f'<text x="{px:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{escape(label)}</text>')
    for s in series:
        ordered = sorted(s.points)
        coords = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in ordered)
        if len(ordered) > 1:
            body.append(f'<polyline points="{coords}" fill="none" stroke="{s.color}" stroke-width="2"/>')
        for x, y in ordered:
            body.append(
                f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="3.5" fill="{s.color}">'
                f"<title>{escape(s.name)}: {fmt(y)}</title></circle>"
            )
    if hline is not None:
        y = y_of(hline[0])
        body.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#c0392b" '
            'stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
        body.append(f'<text x="{LEFT + 6}" y="{y - 5:.1f}" fill="#c0392b">{escape(hline[1])}</text>')
    for k, m in enumerate(marks):
        cx, cy = x_of(m.x), y_of(m.y)
        fill = m.color if m.filled else "white"
        body.append(
            f'<polygon points="{cx:.1f},{cy - 8:.1f} {cx + 8:.1f},{cy:.1f} {cx:.1f},{cy + 8:.1f} '
            f'{cx - 8:.1f},{cy:.1f}" fill="{fill}" stroke="{m.color}" stroke-width="2">'
            f"<title>{escape(m.label)}</title></polygon>"
        )
        label_y = cy - 8 if k % 2 == 0 else cy + 18  # alternate above and below: marks often sit close
        body.append(f'<text x="{cx + 10:.1f}" y="{label_y:.1f}">{escape(m.label)}</text>')
    body += _legend([(s.name, s.color) for s in series])
    return _frame(title, x_label, y_label, body)


def bar_chart(title: str, y_label: str, bars: Sequence[Bar], *, y_max: float | None = None) -> str:
    """Vertical bars, with whiskers where a bar has an interval."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    if not bars:
        return _frame(title, "", y_label, [f'<text x="{LEFT + 10}" y="{TOP + 20}">no data</text>'])
    top = y_max if y_max is not None else max(max(b.value, b.high or 0.0) for b in bars) * 1.1
    y_ticks = nice_ticks(0.0, top if top > 0 else 1.0)
    y_hi = y_max if y_max is not None else y_ticks[-1]
    y_ticks = [t for t in y_ticks if t <= y_hi + 1e-9]

    def y_of(y: float) -> float:
        return TOP + plot_h - min(y, y_hi) / y_hi * plot_h

    body = _y_axis(y_ticks, y_of)
    slot = plot_w / len(bars)
    width = min(60.0, slot * 0.6)
    for i, b in enumerate(bars):
        cx = LEFT + slot * (i + 0.5)
        y = y_of(b.value)
        body.append(
            f'<rect x="{cx - width / 2:.1f}" y="{y:.1f}" width="{width:.1f}" height="{TOP + plot_h - y:.1f}" '
            f'fill="{b.color}" opacity="0.85"><title>{escape(b.label)}: {fmt(b.value)}</title></rect>'
        )
        if b.low is not None and b.high is not None:
            y1, y2 = y_of(b.low), y_of(b.high)
            body.append(
                f'<line x1="{cx:.1f}" y1="{y1:.1f}" x2="{cx:.1f}" y2="{y2:.1f}" stroke="#111" stroke-width="1.5"/>'
            )
            for yy in (y1, y2):
                body.append(
                    f'<line x1="{cx - 8:.1f}" y1="{yy:.1f}" x2="{cx + 8:.1f}" y2="{yy:.1f}" stroke="#111" stroke-width="1.5"/>'
                )
        if b.note:
            note_y = min(y, y_of(b.high) if b.high is not None else y) - 6
            body.append(f'<text x="{cx:.1f}" y="{note_y:.1f}" text-anchor="middle">{escape(b.note)}</text>')
        body.append(
            f'<text x="{cx:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{escape(b.label)}</text>'
        )
    return _frame(title, "", y_label, body)
