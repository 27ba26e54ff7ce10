"""The Grafana dashboard and the Prometheus rules in deploy/ name only series that GET /metrics
exports, with labels (and label values) it sets: a dashboard that names a series we do not export
fails here, not on an operator's screen. The series come from real traffic: an event through the
web, syncs and deliveries against the simulator, one of them dead-lettered."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.testclient import TestClient

from b24notify.keys import task_member
from b24notify.phpform import encode_php_query
from b24notify.service.app import create_app
from tests.support.pipeline import deliver_all, sync

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "b24notify.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"

NAME = re.compile(r"\bb24notify_[a-zA-Z0-9_]+")
SELECTOR = re.compile(r"\b(b24notify_[a-zA-Z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LABEL_VALUES = re.compile(r"label_values\(\s*(b24notify_[a-zA-Z0-9_]+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every query the two files hold."""
    found = [(f"panel {p['title']!r}", t["expr"]) for p in panels(dashboard()["panels"]) for t in p.get("targets", [])]
    found += [(f"variable {v['name']}", v["definition"]) for v in dashboard()["templating"]["list"]
              if v["type"] == "query"]
    found += [(f"rule {r['alert']}", r["expr"]) for r in rules()]
    return found


def test_the_dashboard_imports_anywhere_and_every_rule_is_complete():
    board = dashboard()
    assert board["schemaVersion"] >= 36 and board["uid"] == "b24notify"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["portal"]["multi"] and variables["portal"]["includeAll"]
    queried = [p for p in panels(board["panels"]) if p["type"] != "row"]
    assert queried and all(p["datasource"]["uid"] == "${datasource}" for p in queried)
    assert all(t["datasource"]["uid"] == "${datasource}" for p in queried for t in p["targets"])
    ids = [p["id"] for p in panels(board["panels"])]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in queried).lower()
    for wanted in ("events in", "rest requests vs budget", "alerts out", "failures", "queue depth", "oldest due",
                   "detection latency"):
        assert wanted in titles, wanted

    named = {r["alert"]: r for r in rules()}
    assert set(named) >= {"B24NotifyPortalPaused", "B24NotifyDeadLettersGrowing", "B24NotifyTasksWaiting",
                          "B24NotifyDeliveriesWaiting", "B24NotifyRestBudgetNearlySpent"}
    assert named["B24NotifyPortalPaused"]["for"] == "5m"
    assert named["B24NotifyRestBudgetNearlySpent"]["for"] == "15m" and "> 0.9" in named[
        "B24NotifyRestBudgetNearlySpent"]["expr"]
    assert "[1h]" in named["B24NotifyDeadLettersGrowing"]["expr"]
    for rule in named.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def form_event(simulator, task: int) -> bytes:
    return encode_php_query({
        "event": "ONTASKUPDATE", "data": {"FIELDS_BEFORE": {"ID": task}, "FIELDS_AFTER": {"ID": task}},
        "ts": str(int(time.time())),
        "auth": {"domain": simulator.domain, "application_token": simulator.config.application_token},
    }).encode()


@pytest.fixture
def exported(ctx, settings, simulator, user) -> dict[str, list[Sample]]:
    """Sample name -> its samples on /metrics, after an event, two results alerted on chat and
    e-mail (the chat message of the second one refused for good: a dead letter)."""
    task = user.add_task()
    with TestClient(create_app(settings)) as web:
        answer = web.post("/webhooks/bitrix24", content=form_event(simulator, task),
                          headers={"content-type": "application/x-www-form-urlencoded"})
        assert answer.json()["status"] == "accepted"
        sync(ctx, task)
        user.comment(task, "Signed", as_result=True)
        sync(ctx, task)
        assert sorted(deliver_all(ctx)) == ["sent", "sent"]
        simulator.control.add_faults({"method": "im.message.add", "error": "ACCESS_ERROR", "status": 400, "count": 1})
        user.comment(task, "Countersigned", as_result=True)
        sync(ctx, task)
        assert sorted(deliver_all(ctx)) == ["dead", "sent"]
        text = web.get("/metrics").text
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def test_every_series_the_dashboard_and_the_rules_name_is_exported(exported):
    missing = []
    for where, expr in expressions():
        for name in set(NAME.findall(expr)):
            if name not in exported:
                base = next((name[:-len(s)] for s in HISTOGRAM_PARTS if name.endswith(s)), name)
                missing.append(f"{where}: {name}" + (f" (no histogram {base})" if base != name else ""))
    assert not missing, "named but not exported by /metrics:\n" + "\n".join(missing)


def test_every_label_they_select_or_group_by_is_one_we_set(exported):
    def labels_of(name: str) -> set[str]:
        return {k for sample in exported.get(name, []) for k in sample.labels}

    wrong = []
    for where, expr in expressions():
        names = set(NAME.findall(expr))
        for name, matchers in SELECTOR.findall(expr):
            for label, op, value in MATCHER.findall(matchers):
                if label not in labels_of(name):
                    wrong.append(f"{where}: {name} has no label {label}")
                elif op == "=" and value not in {s.labels[label] for s in exported[name] if label in s.labels}:
                    wrong.append(f"{where}: {name}{{{label}={value!r}}} never occurs")
        for name, label in LABEL_VALUES.findall(expr):
            if label not in labels_of(name):
                wrong.append(f"{where}: {name} has no label {label}")
        everywhere = set().union(*(labels_of(n) for n in names)) if names else set()
        for grouping in GROUPING.findall(expr):
            for label in filter(None, (part.strip() for part in grouping.split(","))):
                if label not in everywhere:
                    wrong.append(f"{where}: grouped by {label}, which none of {sorted(names)} has")
    assert not wrong, "\n".join(wrong)


def test_the_gauges_the_dashboards_need(settings, simulator, ctx, redis, keys):
    now = time.time()
    ctx.tasks.schedule(task_member(ctx.portal, 4711), at=now - 120)  # due two minutes ago, unclaimed
    ctx.tasks.schedule(task_member(ctx.portal, 4712), at=now + 600)  # due later: not waiting
    redis.set(keys.halted(ctx.portal), "tasks.task.result.list NO_AUTH_FOUND (HTTP 401)")
    with TestClient(create_app(settings)) as web:
        gauges = {(s.name, tuple(sorted(s.labels.items()))): s.value
                  for f in text_string_to_metric_families(web.get("/metrics").text) if f.type == "gauge"
                  for s in f.samples}
    portal = (("portal", ctx.portal),)
    assert gauges[("b24notify_tasks_due", ())] == 2
    assert gauges[("b24notify_tasks_ready", ())] == 1
    assert 119 <= gauges[("b24notify_tasks_oldest_due_seconds", ())] < 180
    assert gauges[("b24notify_deliveries_oldest_due_seconds", ())] == 0
    assert gauges[("b24notify_portal_paused", portal)] == 1
    assert gauges[("b24notify_rest_budget_per_second", portal)] == pytest.approx(2 * 0.8)  # "2/50", 20 % reserve
    redis.delete(keys.halted(ctx.portal))
    with TestClient(create_app(settings)) as web:
        assert f'b24notify_portal_paused{{portal="{ctx.portal}"}} 0.0' in web.get("/metrics").text
