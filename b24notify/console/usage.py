"""Each portal's REST requests and alerts over the last 24 h, for the overview's numbers and chart,
from the per-minute series (b24notify/series.py, one round trip per portal)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from b24notify.series import DAY_MINUTES, FAILED, REST, SENT, downsample

BAR_MINUTES = 10  # the chart's bars: 144 of them in 24 h


@dataclass(frozen=True)
class Usage:
    rest_minute: int = 0  # the last whole minute
    rest_hour: int = 0  # the last 60 minutes, the current one included
    sent_day: int = 0
    failed_day: int = 0  # attempts that failed (retried later, or dead-lettered)
    budget_minute: float = 0.0  # what b24notify allows itself per minute (rate limit minus reserve)
    # Per BAR_MINUTES over the last 24 h, oldest first.
    rest_bars: Sequence[int] = field(default_factory=list)
    sent_bars: Sequence[int] = field(default_factory=list)
    failed_bars: Sequence[int] = field(default_factory=list)

    @property
    def budget_hour(self) -> float:
        return self.budget_minute * 60

    @property
    def budget_bar(self) -> float:
        return self.budget_minute * BAR_MINUTES


def usage_from_series(chart: Mapping[str, Sequence[int]], budget_minute: float) -> Usage:
    """``chart``: per-minute counts over the last 24 h, oldest first, the current minute last
    (``Series.chart``)."""
    empty = [0] * DAY_MINUTES
    rest, sent, failed = (list(chart.get(name) or empty) for name in (REST, SENT, FAILED))
    return Usage(
        rest_minute=rest[-2] if len(rest) >= 2 else 0, rest_hour=sum(rest[-60:]),
        sent_day=sum(sent), failed_day=sum(failed), budget_minute=budget_minute,
        rest_bars=downsample(rest, BAR_MINUTES), sent_bars=downsample(sent, BAR_MINUTES),
        failed_bars=downsample(failed, BAR_MINUTES),
    )
