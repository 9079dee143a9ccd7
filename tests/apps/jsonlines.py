"""An app that writes its own output: a JSON line and a plain line at startup, and two a request."""

import json


def _say(fields_or_text: object) -> None:
    text = fields_or_text if isinstance(fields_or_text, str) else json.dumps(fields_or_text)
    print(text, flush=True)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Its own level, and an `app` of its own, which qkhyper's label replaces (kept as app_own).
                _say({"msg": "app started", "level": "warning", "answer": 42, "app": "self-named"})
                _say("a plain line from the app")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        _say({"event": "request", "path": scope["path"]})
        _say("WARNING: a plain line that names its level")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
