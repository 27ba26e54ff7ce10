"""/readyz for one pod serving many portals: ``?only=redis`` stays ready while a portal is paused
(the Kubernetes readiness probe), plain /readyz still says 503 with the reason."""

from __future__ import annotations

from starlette.testclient import TestClient

from b24notify.service.app import create_app
from tests.support.servers import free_port

DOMAIN = "portal.example.com"


def settings_for(make_settings, **overrides):
    return make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token="t", **overrides)


def test_a_paused_portal_makes_readyz_503_but_only_redis_ready(make_settings, redis, keys):
    redis.set(keys.halted(DOMAIN), "tasks.task.list ACCESS_DENIED (HTTP 403)")
    with TestClient(create_app(settings_for(make_settings))) as client:
        full = client.get("/readyz")
        assert full.status_code == 503
        assert full.json()["portal"] == "calls paused: tasks.task.list ACCESS_DENIED (HTTP 403)"
        light = client.get("/readyz", params={"only": "redis"})
        assert light.status_code == 200
        assert light.json()["status"] == "degraded"  # it still says what is wrong
        assert light.json()["portal"] == full.json()["portal"]
        redis.delete(keys.halted(DOMAIN))
        assert client.get("/readyz").status_code == 200
        assert client.get("/readyz", params={"only": "redis"}).json()["status"] == "ok"


def test_only_redis_is_503_without_redis_and_rejects_other_values(make_settings):
    settings = settings_for(make_settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings)) as client:
        down = client.get("/readyz", params={"only": "redis"})
        assert down.status_code == 503
        assert down.json()["redis"].startswith("unreachable")
        bad = client.get("/readyz", params={"only": "portal"})
        assert bad.status_code == 400
        assert "only" in bad.json()["detail"]
