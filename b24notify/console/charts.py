"""A small inline SVG per portal: REST calls per bar against the budget of a bar, and alerts sent /
failed, over the last 24 h. Plain lists in, markup out; no script, nothing fetched.

``chart_svg(points, budget)`` takes the values oldest first, one per bar (``None`` where nothing is
known: no bar), and the budget of one bar (the REST rate limit's drain × the bar's seconds; None
to draw no budget line). The series that feed it (b24notify/series.py) plug in here.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH = 288
HEIGHT = 48
ALERT_HEIGHT = 16
GAP = 2


def _scale(values: Sequence[int | None], ceiling: float) -> float:
    """The value at the top of the chart: the largest bar or the budget line, with some headroom."""
    return max([v for v in values if v is not None] + [ceiling, 1]) * 1.15


def _bars(values: Sequence[int | None], top: float, height: int, y0: int, css: str) -> list[str]:
    if not values:
        return []
    width = WIDTH / len(values)
    bars = []
    for index, value in enumerate(values):
        if not value:
            continue
        h = max(1.0, value / top * height)
        bars.append(f'<rect class="{css}" x="{index * width:.1f}" y="{y0 + height - h:.1f}" '
                    f'width="{max(width - 0.4, 0.6):.1f}" height="{h:.1f}"/>')
    return bars


def chart_svg(points: Sequence[int | None], budget: float | None, *, sent: Sequence[int | None] = (),
              failed: Sequence[int | None] = (), title: str = "") -> str:
    """REST calls per bar (``points``) with the budget line, and below them alerts sent (and
    failed, drawn over them) per bar. ``title`` is the accessible name (escaped here)."""
    top = _scale(points, budget or 0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{WIDTH}" '
             f'height="{HEIGHT + GAP + ALERT_HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT + GAP + ALERT_HEIGHT}">']
    if title:
        parts.append(f"<title>{escape(title)}</title>")
    parts.append(f'<rect class="frame" x="0" y="0" width="{WIDTH}" height="{HEIGHT}"/>')
    parts += _bars(points, top, HEIGHT, 0, "rest")
    if budget:
        y = HEIGHT - budget / top * HEIGHT
        parts.append(f'<line class="budget" x1="0" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}"/>')
    alerts_top = _scale(list(sent) + list(failed), 0)
    parts += _bars(sent, alerts_top, ALERT_HEIGHT, HEIGHT + GAP, "sent")
    parts += _bars(failed, alerts_top, ALERT_HEIGHT, HEIGHT + GAP, "failed")
    parts.append("</svg>")
    return "".join(parts)
