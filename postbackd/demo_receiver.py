"""The demo's echo receiver: a tiny partner endpoint on loopback that prints what it gets.

`/echo/...` answers 200; `/flaky/...` answers 503 to the first two tries of each
idempotency key, so the demo shows a retry.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from aiohttp import web
from rich.console import Console


class EchoReceiver:
    def __init__(self, console: Console, host: str = "127.0.0.1", port: int = 0):
        self.console = console
        self.host = host
        self.port = port
        self._tries: Counter[str] = Counter()
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EchoReceiver:
        threading.Thread(target=self._run, name="demo-receiver", daemon=True).start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/echo/{name}", self._echo)
        app.router.add_route("*", "/flaky/{name}", self._flaky)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, self.host, self.port)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.console.print(
            f"[cyan]receiver[/] {request.method} {request.path_qs} "
            f"[dim]{request.content_type}[/] {body[:160]}"
        )
        return web.json_response({"success": True, "received": len(body)})

    async def _flaky(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        self._tries[key] += 1
        if self._tries[key] <= 2:
            self.console.print(
                f"[yellow]receiver[/] {request.path} try {self._tries[key]}: answering 503"
            )
            return web.json_response({"success": False}, status=503)
        return await self._echo(request)
