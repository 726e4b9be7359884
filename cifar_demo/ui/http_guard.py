"""What the public app refuses before Gradio sees a request: oversized bodies and deep links.

Gradio 6.31 parses a whole request before any handler runs: /gradio_api/queue/join reads its
JSON body into memory with no limit (a 60 MB data URL took 200 MB of the app's memory), and
launch(max_file_size=...) bounds each file of a multipart upload, not the request (many files
under the cap each were all written to disk). RequestGuard, an ASGI middleware (launch's
app_kwargs), counts the bytes of every request body as they arrive and answers 413 once they pass
the cap (at once when Content-Length says so), whether or not the client says how long it is.

It also answers 404 to /gradio_api/deep_link: that route writes a session's component values
(the visitor token included) to a file under Gradio's upload folder, which /config?deep_link=
then serves to anyone who has the link. The app has no "share this state" button, so nothing is lost.
"""

from __future__ import annotations

from fastapi import HTTPException

# A data URL of the largest picture (data.pictures.MAX_BYTES, 10 MB: 13.4 MB in base64) in a
# queue/join body, with room for the event's other values.
BODY_CAP = 16 * 2**20
UPLOAD_OVERHEAD = 2**20        # multipart framing around one file of launch's max_file_size
BLOCKED = ("/gradio_api/deep_link",)


class TooLarge(HTTPException):
    """Raised from receive(): FastAPI passes an HTTPException through its body parsing as is."""

    def __init__(self, cap: int):
        super().__init__(413, f"the request is over this app's limit of {cap / 2**20:.0f} MB")


class RequestGuard:
    """ASGI middleware: 404 for BLOCKED paths; 413 for a body over `body_cap` bytes, or over
    `upload_cap` on Gradio's upload route."""

    def __init__(self, app, body_cap: int = BODY_CAP, upload_cap: int = BODY_CAP):
        self.app, self.body_cap, self.upload_cap = app, body_cap, upload_cap

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "").rstrip("/")
        if path.endswith(BLOCKED):
            return await _answer(send, 404, b"Not Found")
        cap = self.upload_cap if path.endswith("/gradio_api/upload") else self.body_cap
        length = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if length is not None and (not length.strip().isdigit() or int(length) > cap):
            return await _answer(send, 413, TooLarge(cap).detail.encode())
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise TooLarge(cap)
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except TooLarge as e:      # raised where no handler turned it into a response
            if not started:
                await _answer(send, 413, e.detail.encode())


async def _answer(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
