"""A real python-socketio client for tests: records every event, waits for them by name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import socketio

WAIT_SECS = 10.0
Where = Callable[[dict[str, Any]], bool]


class SioClient:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.seen: list[tuple[str, Any]] = []
        self._changed = asyncio.Condition()
        self.disconnected = asyncio.Event()
        self.sio.on("*", self._record)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("connect_error", self._on_connect_error)
        self.refused: Any = None

    async def _record(self, event: str, data: Any = None) -> None:
        async with self._changed:
            self.seen.append((event, data))
            self._changed.notify_all()

    async def _on_connect_error(self, data: Any = None) -> None:
        self.refused = data

    async def _on_disconnect(self, *_: Any) -> None:
        self.disconnected.set()

    async def connect(self, base_url: str, auth: dict[str, Any], transport: str) -> None:
        await self.sio.connect(
            base_url,
            auth=auth,
            transports=[transport],
            socketio_path="socket.io",
            wait_timeout=WAIT_SECS,
        )

    async def emit(self, event: str, data: Any = None) -> None:
        await self.sio.emit(event, data)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [data for event, data in self.seen if event == name]

    async def expect(
        self, name: str, where: Where | None = None, wait_secs: float = WAIT_SECS, after: int = 0
    ) -> dict[str, Any]:
        """The first `name` event (from index `after` of what was seen) matching `where`."""

        def found() -> dict[str, Any] | None:
            for event, data in self.seen[after:]:
                if event == name and (where is None or where(data)):
                    return dict(data)
            return None

        async with asyncio.timeout(wait_secs), self._changed:
            while (hit := found()) is None:
                await self._changed.wait()
            return hit

    async def collect(
        self, name: str, count: int, wait_secs: float = WAIT_SECS
    ) -> list[dict[str, Any]]:
        async with asyncio.timeout(wait_secs), self._changed:
            while len(self.events(name)) < count:
                await self._changed.wait()
        return self.events(name)[:count]

    async def ping(self) -> None:
        """A round trip: everything queued for this socket before the pong has arrived."""
        mark = len(self.seen)
        await self.emit("ping")
        await self.expect("pong", after=mark)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


@asynccontextmanager
async def sio_client(
    base_url: str,
    token: str,
    *,
    transport: str = "websocket",
    last_event_id: int | None = None,
    greet: bool = True,
) -> AsyncIterator[SioClient]:
    client = SioClient()
    auth: dict[str, Any] = {"token": token}
    if last_event_id is not None:
        auth["last_event_id"] = last_event_id
    await client.connect(base_url, auth, transport)
    try:
        if greet:
            await client.expect("connected")
        yield client
    finally:
        await client.close()
