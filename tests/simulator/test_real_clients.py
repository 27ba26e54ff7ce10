"""The simulator as a portal to real Bitrix24 client libraries: the official SDK (b24pysdk) and
fast-bitrix24, unchanged, over loopback HTTP.

b24pysdk only builds ``https://`` URLs, so it talks to a simulator serving TLS with a self-signed
certificate that ``REQUESTS_CA_BUNDLE`` makes trusted; fast-bitrix24 takes the plain webhook URL.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from b24pysdk import BitrixWebhook, Client
from b24pysdk.errors import BitrixAPIQueryLimitExceeded
from fast_bitrix24 import Bitrix

from b24notify.devtools.simulator import RunningSimulator

from .conftest import SimulatorFactory, TlsFiles

TASKS = 120


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client libraries must never try to reach past this machine: refuse any other address."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(host).is_loopback:
            raise OSError(f"test guard: a connection to {host} is not loopback")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


def _seed_tasks(sim: RunningSimulator, cafile: str | None = None) -> list[int]:
    verify = ssl.create_default_context(cafile=cafile) if cafile else True
    ids: list[int] = []
    with httpx.Client(base_url=sim.webhook_url, verify=verify, timeout=10) as http:
        while len(ids) < TASKS:
            chunk = min(50, TASKS - len(ids))
            cmd = {f"t{i}": f"tasks.task.add?fields[TITLE]=task%20{len(ids) + i}" for i in range(chunk)}
            result = http.post("batch", json={"cmd": cmd}).json()["result"]["result"]
            ids += [int(result[f"t{i}"]["task"]["id"]) for i in range(chunk)]
    return ids


@pytest.fixture
def tls_sim(
    start_simulator: SimulatorFactory, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> RunningSimulator:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.certfile)  # requests then trusts the simulator's cert
    return start_simulator(tls_certfile=tls_files.certfile, tls_keyfile=tls_files.keyfile)


@pytest.fixture
def webhook(tls_sim: RunningSimulator) -> BitrixWebhook:
    return BitrixWebhook(domain=tls_sim.domain,
                         webhook_token=f"{tls_sim.config.webhook_user_id}/{tls_sim.config.webhook_code}")


@pytest.fixture
def plain_sim(start_simulator: SimulatorFactory) -> RunningSimulator:
    return start_simulator()


@pytest.fixture
def fast_bitrix(plain_sim: RunningSimulator) -> Iterator[Bitrix]:
    yield Bitrix(plain_sim.webhook_url, verbose=False)


def _ids(items: Any) -> list[int]:
    return [int(item["id"]) for item in items]


# -- lists over more than two pages ------------------------------------------------------------------


def test_sdk_fast_list_gets_every_one_of_120_tasks(tls_sim: RunningSimulator, tls_files: TlsFiles,
                                                   webhook: BitrixWebhook) -> None:
    ids = _seed_tasks(tls_sim, tls_files.certfile)
    client = Client(webhook)
    fast = client.tasks.task.list(select=["ID", "TITLE"]).as_list_fast()
    assert _ids(fast.result) == ids
    # The fast helper chained its pages inside one batch by $result references, without errors.
    [batch] = [c for c in tls_sim.control.calls()["calls"] if c["method"] == "batch"
               and any(s["method"] == "tasks.task.list" for s in c.get("sub_calls", []))]
    assert all(s["error"] is None for s in batch["sub_calls"])


def test_sdk_paged_list_gets_every_one_of_120_tasks(tls_sim: RunningSimulator, tls_files: TlsFiles,
                                                    webhook: BitrixWebhook) -> None:
    ids = _seed_tasks(tls_sim, tls_files.certfile)
    listed = Client(webhook).tasks.task.list(select=["ID"]).as_list()
    assert _ids(listed.result) == ids


def test_fast_bitrix24_get_all_gets_every_one_of_120_tasks(plain_sim: RunningSimulator, fast_bitrix: Bitrix) -> None:
    ids = _seed_tasks(plain_sim)
    got = fast_bitrix.get_all("tasks.task.list", {"select": ["ID", "TITLE"]})
    assert sorted(_ids(got)) == ids


# -- batches with references --------------------------------------------------------------------------


def test_sdk_batch_with_result_references_answers_like_a_portal(webhook: BitrixWebhook) -> None:
    response = webhook.call_batch(methods={
        "add": ("tasks.task.add", {"fields": {"TITLE": "Chained"}}),
        "get": ("tasks.task.get", {"taskId": "$result[add][task][id]", "select": ["ID", "TITLE"]}),
        "comment": ("task.commentitem.add", {"TASKID": "$result[add][task][id]",
                                             "FIELDS": {"POST_MESSAGE": "About task $result[add][task][id]"}}),
    })
    batch = response["result"]
    assert batch["result_error"] == []
    task_id = batch["result"]["add"]["task"]["id"]
    assert batch["result"]["get"] == {"task": {"id": task_id, "title": "Chained"}}
    assert set(batch["result_time"]) == {"add", "get", "comment"}


def test_fast_bitrix24_batch_with_result_references_answers_like_a_portal(fast_bitrix: Bitrix) -> None:
    result = fast_bitrix.call_batch({"halt": 0, "cmd": {
        "add": "tasks.task.add?fields[TITLE]=Chained",
        "get": "tasks.task.get?taskId=$result[add][task][id]",
    }})
    assert result["get"]["task"]["id"] == result["add"]["task"]["id"]
    assert result["get"]["task"]["title"] == "Chained"


def test_fast_bitrix24_get_by_id_batches_with_halt_0(plain_sim: RunningSimulator, fast_bitrix: Bitrix) -> None:
    ids = _seed_tasks(plain_sim)[:3]
    got = fast_bitrix.get_by_ID("tasks.task.get", ids, ID_field_name="taskId")
    assert {int(key): value["task"]["id"] for key, value in got.items()} == {i: str(i) for i in ids}


# -- the rate limit: 503 QUERY_LIMIT_EXCEEDED ----------------------------------------------------------


def test_sdk_retries_a_503_and_then_succeeds(tls_sim: RunningSimulator, webhook: BitrixWebhook) -> None:
    # One request fills the bucket; the next, sent at once, is refused until 0.5 s have drained it.
    tls_sim.control.configure(bucket_capacity=1, bucket_drain_per_second=2.0)
    client = Client(webhook, max_retries=3, initial_retry_delay=0.6, retry_delay_increment=0)
    client.server.time().result  # noqa: B018  (the request runs when the result is read)
    assert client.profile().result["ID"] == "1"
    statuses = [c["http_status"] for c in tls_sim.control.calls()["calls"]]
    assert statuses == [200, 503, 200]


def test_sdk_raises_its_query_limit_error_once_retries_run_out(tls_sim: RunningSimulator,
                                                                 webhook: BitrixWebhook) -> None:
    tls_sim.control.configure(bucket_capacity=1, bucket_drain_per_second=0.001)
    client = Client(webhook, max_retries=2, initial_retry_delay=0.05, retry_delay_increment=0)
    client.server.time().result  # noqa: B018
    with pytest.raises(BitrixAPIQueryLimitExceeded):
        client.profile().result  # noqa: B018
    calls = tls_sim.control.calls()
    assert [c["http_status"] for c in calls["calls"]] == [200, 503, 503]
    assert calls["counts"]["by_error"] == {"QUERY_LIMIT_EXCEEDED": 2}


def test_fast_bitrix24_rides_out_503s_and_still_gets_every_task(plain_sim: RunningSimulator,
                                                                fast_bitrix: Bitrix) -> None:
    ids = _seed_tasks(plain_sim)
    # Seeding left 3 in a bucket of 1: the first requests are refused until it drains (1.5 s).
    plain_sim.control.configure(bucket_capacity=1, bucket_drain_per_second=2.0)
    got = fast_bitrix.get_all("tasks.task.list", {"select": ["ID"]})
    assert sorted(_ids(got)) == ids
    assert plain_sim.control.calls()["counts"]["by_error"].get("QUERY_LIMIT_EXCEEDED", 0) >= 1
