"""The supervisor's end of the control socket: bind it safely, answer one request per connection.

Binding (`control_listener`) happens with the other sockets, before any
worker starts:

- The file is mode 0600, set between bind() and listen(), so no connection is
  ever accepted with looser permissions: only the user running qkhyper (and
  root) may steer it.
- A socket left by a run that died is replaced (`unixsock.clear_stale`). A
  live one belongs to another running supervisor of the same config (two
  `serve` commands for different apps, as in two terminals): that is not an
  error, this run just has no control socket, and says so in one warning.
  The same goes for a path too long for a unix socket, or a folder that
  cannot be written: control is an operator's convenience, never a reason
  for the apps not to start.
- The file is removed at exit while it is still the one this run bound.

Serving (`serve_control`) is owned by the supervisor's nursery. Each
connection must send its request line within `REQUEST_TIMEOUT`, at most
`MAX_CONNECTIONS` are handled at once (more wait in the backlog), and a
request that is not understood gets a failed answer, never a traceback.
What a request does is the `Controller`'s business (the supervisor).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import trio

from ..errors import ConfigError
from ..supervisor.unixsock import BoundFile, clear_stale
from .protocol import MAX_LINE, BadRequest, Request, Stop, decode_request, encode, failed

log = logging.getLogger("qkhyper.supervisor")

REQUEST_TIMEOUT = 5.0  # seconds a client has to send its request line
MAX_CONNECTIONS = 16  # handled at once; `status` takes milliseconds, a `restart` waits for its roll
ACCEPT_RETRY = 0.1  # seconds before accepting again after the process ran out of descriptors
MAX_PATH = 107  # bytes in sockaddr_un.sun_path, less the terminating NUL (Linux)


class Controller(Protocol):
    """What answers control requests: the supervisor (run.py)."""

    async def control(self, request: Request) -> dict[str, Any]:
        """The answer to `request` (protocol.ok / protocol.failed); `stop` answers once the stop began."""


@contextmanager
def control_listener(path: str) -> Iterator[socket.socket | None]:
    """A listening unix socket at `path` (mode 0600) for the life of the block; None when there is none.

    None, with one warning line naming the reason, when `path` is "" (off),
    another running supervisor listens there, or the socket cannot be made.
    """
    if not path:
        yield None
        return
    bound = _bind(path)
    if bound is None:
        yield None
        return
    sock, file = bound
    try:
        yield sock
    finally:
        sock.close()
        file.remove()


def _bind(path: str) -> tuple[socket.socket, BoundFile] | None:
    if len(os.fsencode(path)) > MAX_PATH:
        log.warning(
            "warning: no control socket: %s is longer than the %d bytes a unix socket path may have; "
            "set control_socket to a shorter path",
            path,
            MAX_PATH,
        )
        return None
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        clear_stale(path, f"control socket {path}")
    except ConfigError as exc:
        log.warning("warning: no control socket: %s", exc)
        return None
    except OSError as exc:
        log.warning("warning: no control socket: cannot create the folder of %s: %s", path, exc.strerror)
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        reason = "another supervisor just took it" if exc.errno == errno.EADDRINUSE else exc.strerror
        log.warning("warning: no control socket: cannot listen on %s: %s", path, reason)
        return None
    file = BoundFile(path, os.lstat(path).st_ino)
    try:
        os.chmod(path, 0o600)
        sock.listen(MAX_CONNECTIONS)
    except OSError as exc:
        sock.close()
        file.remove()
        log.warning("warning: no control socket: cannot listen on %s: %s", path, exc.strerror)
        return None
    return sock, file


async def serve_control(sock: socket.socket, controller: Controller) -> None:
    """Answer control connections on `sock` until cancelled."""
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    limit = trio.Semaphore(MAX_CONNECTIONS)
    async with trio.open_nursery() as nursery:
        while True:
            await limit.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and the like: the supervisor keeps running, and tries again
                limit.release()
                log.warning("control socket: cannot accept a connection: %s", exc.strerror or exc)
                await trio.sleep(ACCEPT_RETRY)
                continue
            except BaseException:
                limit.release()
                raise
            nursery.start_soon(_answer_and_release, stream, controller, limit)


async def _answer_and_release(stream: trio.SocketStream, controller: Controller, limit: trio.Semaphore) -> None:
    """One connection; whatever goes wrong with it ends it alone, never the supervisor."""
    try:
        async with stream:
            await answer(stream, controller)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away; nothing to tell it
    except Exception as exc:  # a bug in a command: logged in one line, the apps keep running
        log.error("control socket: request failed: %s: %s", type(exc).__name__, exc)
    finally:
        limit.release()


async def answer(stream: trio.abc.Stream, controller: Controller) -> None:
    """Read one request from `stream`, write the controller's answer; `stop` then holds the stream until cancelled."""
    request: Request | None = None
    with trio.move_on_after(REQUEST_TIMEOUT):
        try:
            request = decode_request(await read_line(stream))
        except BadRequest as exc:
            await stream.send_all(encode(failed(str(exc))))
            return
    if request is None:
        await stream.send_all(encode(failed(f"no request line within {REQUEST_TIMEOUT:g} s")))
        return
    await stream.send_all(encode(await controller.control(request)))
    if isinstance(request, Stop):
        await trio.sleep_forever()  # closed when the supervisor's nursery is cancelled: the client's "stopped"


async def read_line(stream: trio.abc.ReceiveStream) -> bytes:
    """Bytes up to the first newline (the client may also end its side instead).

    Raises:
        BadRequest: more than MAX_LINE bytes without a newline.
    """
    buffer = b""
    while b"\n" not in buffer:
        if len(buffer) > MAX_LINE:
            raise BadRequest(f"request longer than {MAX_LINE} bytes")
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        buffer += chunk
    return buffer.split(b"\n", 1)[0]
