"""The event bus: one interface, in-process now, Redis behind the same interface for many instances.

The bus only moves committed events between instances; ordering and gap-filling are the job of
`events.stream`, so a bus may deliver late, twice or not at all without a client noticing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from atende.events.model import Event

EventHandler = Callable[[Event], Awaitable[None]]


class Bus(Protocol):
    async def start(self, handler: EventHandler) -> None:
        """Begin delivering every published event (from any instance) to `handler`."""
        ...

    async def publish(self, event: Event) -> None: ...

    async def stop(self) -> None: ...


class InProcessBus:
    """The embedded shape: publishing hands the event straight to this process's handler."""

    def __init__(self) -> None:
        self._handler: EventHandler | None = None

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler

    async def publish(self, event: Event) -> None:
        if self._handler is not None:
            await self._handler(event)

    async def stop(self) -> None:
        self._handler = None
