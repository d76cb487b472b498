"""CORS: Starlette's middleware, with a short path for requests that carry no `Origin`.

Servers and tools, not browsers, send no `Origin`; for such a request Starlette's
middleware still parses every request header and, on the response, adds
`Vary: Origin` through a header view. Here such a request's response gets the
same `Vary: Origin` (joined to a `Vary` the app set, as Starlette joins it) and
nothing else is done; a request with an `Origin` goes through Starlette's
middleware unchanged.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send


class Cors(CORSMiddleware):
    """`CORSMiddleware`, answering a request without `Origin` with only `Vary: Origin` added."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(name == b"origin" for name, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def vary_on_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                if any(name.lower() == b"vary" for name, _ in headers):
                    vary = MutableHeaders(scope=message)
                    vary["Vary"] = ", ".join([*vary.getlist("Vary"), "Origin"])
                else:
                    message["headers"] = [*headers, (b"vary", b"Origin")]
            await send(message)

        await self.app(scope, receive, vary_on_origin)
