"""The events and notifications streams are bounded by settings (issue 18 item 11): without
limits, anything that makes events grew them forever."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from compute.client import ComputeClient
from compute.config import Settings
from compute.messaging.server import NatsServer
from compute.messaging.streams import ensure_streams
from compute.messaging.subjects import COMMANDS_STREAM, EVENTS_STREAM, NOTIFICATIONS_STREAM


@pytest.fixture
async def admin(nats_server: NatsServer) -> AsyncIterator[ComputeClient]:
    client = await ComputeClient.connect(nats_server.url_for("admin"), user="admin")
    yield client
    await ensure_streams(client.js, update=True)          # the defaults, for the next tests
    await client.close()


def test_the_limits_are_compute_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTE_EVENTS_MAX_AGE", "3600")
    monkeypatch.setenv("COMPUTE_NOTIFICATIONS_MAX_MSGS", "5000")
    s = Settings.from_env()
    assert (s.events_max_age, s.notifications_max_msgs) == (3600.0, 5000)
    defaults = Settings()
    assert defaults.events_max_age == defaults.notifications_max_age == 7 * 86400
    assert defaults.events_max_bytes == defaults.notifications_max_bytes == 1 << 30


async def test_setup_applies_the_limits_to_the_streams(admin: ComputeClient) -> None:
    settings = Settings(events_max_age=3600, events_max_bytes=64 << 20, events_max_msgs=100000,
                        notifications_max_age=600, notifications_max_bytes=32 << 20,
                        notifications_max_msgs=50000)
    await ensure_streams(admin.js, update=True, settings=settings)
    events = (await admin.js.stream_info(EVENTS_STREAM)).config
    assert (events.max_age, events.max_bytes, events.max_msgs) == (3600, 64 << 20, 100000)
    notes = (await admin.js.stream_info(NOTIFICATIONS_STREAM)).config
    assert (notes.max_age, notes.max_bytes, notes.max_msgs) == (600, 32 << 20, 50000)
    assert events.discard == notes.discard == "old"        # the oldest go first
    commands = (await admin.js.stream_info(COMMANDS_STREAM)).config
    assert commands.retention == "workqueue"
