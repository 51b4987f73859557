"""The bare baselines, each run as its own process: `python -m bench.baselines KIND --port P`.

- `ws`: a raw `websockets` server (uvloop, no compression, like Atende as shipped). A text frame
  is echoed back, except a frame starting with `{"type":"new_message"`, which is sent to every
  other socket with `websockets.broadcast` (S1 echo, S2 idle memory, S3 fan-out).
- `starlette`: a bare Starlette app under uvicorn with Atende's uvicorn settings: `GET /hello`
  (S6), a WebSocket route at `/ws` that only registers sockets and `POST /broadcast` that only
  sends the body to each of them (S5).
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop
import websockets
from websockets.asyncio.server import ServerConnection, broadcast, serve

BROADCAST_PREFIX = '{"type":"new_message"'


async def ws_server(port: int) -> None:
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            async for frame in ws:
                if isinstance(frame, str) and frame.startswith(BROADCAST_PREFIX):
                    broadcast([c for c in clients if c is not ws], frame)
                else:
                    await ws.send(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            clients.discard(ws)

    async def health(
        connection: ServerConnection, request: websockets.http11.Request
    ) -> websockets.http11.Response | None:
        if request.path == "/health":
            return connection.respond(200, "ok\n")
        return None

    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=None,
        max_size=2**20,
        process_request=health,
        ping_interval=None,
    ):
        await asyncio.Future()


def starlette_app() -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    sockets: set[WebSocket] = set()

    async def hello(_: Request) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    async def health(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def broadcast_body(request: Request) -> JSONResponse:
        body = (await request.body()).decode()
        for ws in tuple(sockets):
            try:
                await ws.send_text(body)
            except Exception:
                sockets.discard(ws)
        return JSONResponse({"ok": True, "receivers": len(sockets)})

    async def socket(ws: WebSocket) -> None:
        await ws.accept()
        sockets.add(ws)
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            sockets.discard(ws)

    return Starlette(
        routes=[
            Route("/hello", hello),
            Route("/health", health),
            Route("/broadcast", broadcast_body, methods=["POST"]),
            WebSocketRoute("/ws", socket),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["ws", "starlette"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.kind == "ws":
        uvloop.run(ws_server(args.port))
        return
    import uvicorn

    uvicorn.run(
        starlette_app(),  # type: ignore[arg-type]
        host="127.0.0.1",
        port=args.port,
        log_level="info",  # as `atende serve` (access log on)
        ws_per_message_deflate=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
