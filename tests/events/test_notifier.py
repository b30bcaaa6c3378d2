"""The LISTEN fan-out wakes the right subscribers and survives a lost connection."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from services.actions.events.notifier import EventNotifier
from services.common.names import NOTIFY_CHANNEL as CHANNEL


async def test_notify_wakes_only_that_workspaces_subscribers(database_dsn: str) -> None:
    notifier = EventNotifier(database_dsn, poll_interval_s=60)
    await notifier.start()
    try:
        ws_a, ws_b = str(uuid.uuid4()), str(uuid.uuid4())
        async with notifier.subscribe(ws_a) as sub_a, notifier.subscribe(ws_b) as sub_b:
            await sub_a.wait(0)  # clear the wake-up that every (re)connect sends
            await sub_b.wait(0)
            conn = await asyncpg.connect(database_dsn)
            try:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, ws_a)
            finally:
                await conn.close()
            assert await sub_a.wait(10)
            assert not await sub_b.wait(0.2)
            assert notifier.subscriber_count == 2
        assert notifier.subscriber_count == 0
    finally:
        await notifier.close()


async def test_lost_listen_connection_reconnects_and_wakes_everyone(database_dsn: str) -> None:
    notifier = EventNotifier(database_dsn, poll_interval_s=60, reconnect_delay_s=0.05)
    await notifier.start()
    try:
        ws = str(uuid.uuid4())
        async with notifier.subscribe(ws) as sub:
            await sub.wait(0)
            admin = await asyncpg.connect(database_dsn)
            try:
                # Only this notifier's connection: servers of other tests listen too.
                pid = notifier.listener_pid
                assert pid is not None
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                # The reconnect wakes the subscriber (events may have been missed) ...
                assert await sub.wait(10)
                # ... and notifications flow again on the new connection.
                for _ in range(50):
                    await admin.execute("SELECT pg_notify($1, $2)", CHANNEL, ws)
                    if await sub.wait(0.2):
                        break
                else:
                    raise AssertionError("no notification after reconnect")
                assert notifier.listener_pid not in (None, pid)
            finally:
                await admin.close()
    finally:
        await notifier.close()


async def test_close_wakes_waiting_streams(database_dsn: str) -> None:
    notifier = EventNotifier(database_dsn, poll_interval_s=60)
    await notifier.start()
    ws = str(uuid.uuid4())
    async with notifier.subscribe(ws) as sub:
        await sub.wait(0)
        waiter = asyncio.create_task(sub.wait(10))
        await asyncio.sleep(0)
        await notifier.close()
        assert await waiter
