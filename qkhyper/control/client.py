"""The command line's end of the control socket: send one request, read the answer, within a deadline.

Plain blocking sockets: a CLI command makes one call and exits, and every
read and connect has the caller's timeout, so nothing waits forever on a
supervisor that stopped answering.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ControlFailed, NotRunning
from .protocol import MAX_LINE, Request, decode_answer, encode_request


@dataclass(frozen=True, slots=True)
class Connection:
    """An answered request whose socket is still open (`stop` closes it once the supervisor is gone)."""

    sock: socket.socket
    answer: dict[str, Any]

    def wait_closed(self, deadline: float) -> bool:
        """Wait until the supervisor closes its end; False when `deadline` (time.monotonic) passed first."""
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self.sock.recv(4096):
                    return True
            return False
        except TimeoutError:
            return False
        except OSError:
            return True  # reset: the process is gone
        finally:
            self.sock.close()


def call(path: Path, request: Request, timeout: float) -> Connection:
    """Send `request` to the supervisor at `path` and read its answer line.

    Raises:
        NotRunning: no socket there, or nobody accepts on it.
        ControlFailed: no complete answer within `timeout` seconds, or the supervisor said no.
    """
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotRunning(f"nothing is running: no supervisor answers on {path}") from None
        except PermissionError:
            raise ControlFailed(f"{path}: permission denied (it belongs to the user who started qkhyper)") from None
        sock.sendall(_checked(encode_request(request)))
        answer = decode_answer(_read_line(sock, deadline, path))
    except TimeoutError:
        sock.close()
        raise ControlFailed(f"no answer from {path} within {timeout:g} s") from None
    except OSError as exc:
        sock.close()
        raise ControlFailed(f"{path}: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    if not answer["ok"]:
        sock.close()
        raise ControlFailed(str(answer.get("error", "the supervisor refused")))
    return Connection(sock, answer)


def ask(path: Path, request: Request, timeout: float) -> dict[str, Any]:
    """`call`, for requests whose answer is all there is."""
    connection = call(path, request, timeout)
    connection.sock.close()
    return connection.answer


def _checked(line: bytes) -> bytes:
    if len(line) > MAX_LINE:
        raise ControlFailed("request too long")
    return line


def _read_line(sock: socket.socket, deadline: float, path: Path) -> bytes:
    buffer = b""
    while b"\n" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise ControlFailed(f"{path}: the supervisor closed the connection without an answer")
        buffer += chunk
        if len(buffer) > 16 * MAX_LINE:
            raise ControlFailed(f"{path}: answer too long")
    return buffer.split(b"\n", 1)[0]
