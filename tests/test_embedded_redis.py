"""The redis-server `b24notify up` starts when none answers: its folder, and one server per folder."""

from __future__ import annotations

import pytest

from b24notify.devtools.embedded_redis import EmbeddedRedisError, redis_answers, start_embedded_redis
from tests.support.servers import free_port


def _nobody() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_a_second_redis_on_the_same_data_folder_is_refused(tmp_path):
    first = start_embedded_redis(_nobody(), tmp_path)
    try:
        with pytest.raises(EmbeddedRedisError, match="B24NOTIFY_DATA_DIR"):
            start_embedded_redis(_nobody(), tmp_path)  # two servers on one append-only file corrupt it
        assert redis_answers(first.url)
    finally:
        first.stop()
    start_embedded_redis(_nobody(), tmp_path).stop()  # free again once the first has stopped


def test_the_demos_redis_folder_is_removed_when_it_stops():
    embedded = start_embedded_redis(_nobody(), None)
    assert not embedded.persistent and embedded.data_dir.is_dir()
    embedded.stop()
    assert not embedded.data_dir.exists()
