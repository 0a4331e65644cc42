"""The gunicorn worker `callmark serve` runs: gthread that never lends a thread to a slow client.

gunicorn's gthread worker gives each new connection to a pool thread, which waits up to 5 s for
the first byte and then blocks in the HTTP parser until the request head is complete: 8 clients
that send half a request line and stop hold every thread of a 2 x 4 server, and /healthz goes
unanswered (issue 17: 3 of 12 probes answered within 5 s). This subclass changes three things:

- **Request heads are collected by the worker's event loop**, not a thread: a new (or kept-alive)
  connection sits in the poller; each readable event appends what arrived (non-blocking recv) until
  the blank line ending the head (or MAX_HEAD_BYTES, which the parser then refuses with 431/414).
  Only then does a thread get the connection, with the bytes pushed back into gunicorn's parser.
  Idle and half-sent connections cost a file descriptor, no thread.
- **A head must arrive within CALLMARK_HEADER_TIMEOUT_S** (default 10 s; nginx's
  client_header_timeout); later, the connection is closed (the kept-alive wait uses gunicorn's
  --keep-alive). Connections per worker are capped by gunicorn's worker_connections (1000).
- **Every socket operation in a thread has a timeout**, CALLMARK_IO_TIMEOUT_S (default 30 s): a
  client that stops sending its body gets 408, one that stops reading its answer is dropped.

gunicorn's own error answers (bad request line, header too large, bad chunk) are written in the
server's JSON error shape instead of HTML. With gunicorn's own TLS (`--certfile`) the stock gthread
path is used (no head collection): terminate TLS at the reverse proxy (docs/http-api.md).
"""
from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import time
from functools import partial

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

MAX_HEAD_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_IO_TIMEOUT_S = 30.0
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        value = default
    return value if value > 0 else default


class TimedSocket(socket.socket):
    """A socket whose 'blocking' mode has a timeout: gunicorn's threads call setblocking(True)
    before parsing and writing; here that means blocking for at most `io_timeout` seconds."""

    io_timeout: float = DEFAULT_IO_TIMEOUT_S

    @classmethod
    def adopt(cls, sock: socket.socket, io_timeout: float) -> "TimedSocket":
        s = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        s.io_timeout = io_timeout
        return s

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.io_timeout)
        else:
            super().setblocking(False)


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error with the body in the JSON error shape of server/errors.py."""
    body = json.dumps({"code": status_int, "status": reason, "message": mesg or reason}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


class CallmarkWorker(ThreadWorker):
    """gthread worker whose pool threads only ever see connections with a complete request head."""

    def init_process(self):
        self.header_timeout = _env_seconds("CALLMARK_HEADER_TIMEOUT_S", DEFAULT_HEADER_TIMEOUT_S)
        self.io_timeout = _env_seconds("CALLMARK_IO_TIMEOUT_S", DEFAULT_IO_TIMEOUT_S)
        util.write_error = write_json_error       # this worker process only
        super().init_process()

    # -- connections wait for their request head in the poller --------------------------------
    def accept(self, listener):
        if self.cfg.is_ssl:            # TLS bytes carry no readable head: gunicorn's own path
            return super().accept(listener)   # (terminate TLS at the reverse proxy instead)
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        sock = TimedSocket.adopt(client_sock, self.io_timeout)
        conn = TConn(self.cfg, sock, client_addr, listener.getsockname())
        self._await_head(conn)

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection starts its next request: collect the head in the poller too."""
        if self.cfg.is_ssl:
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_head(conn)
        self._on_head_bytes(conn, client)

    def _await_head(self, conn) -> None:
        conn.head = bytearray()
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + self.header_timeout   # murder_pending closes it after
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_bytes, conn))

    def _drop_pending(self, conn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            self.pending_conns.remove(conn)
        except ValueError:
            pass

    def _on_head_bytes(self, conn, client) -> None:
        try:
            data = conn.sock.recv(MAX_HEAD_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:                                  # the client went away
            self._drop_pending(conn)
            self.nr_conns -= 1
            conn.close()
            return
        conn.head += data
        if len(conn.head) > MAX_HEAD_BYTES or any(end in conn.head for end in _HEAD_ENDS):
            self._drop_pending(conn)
            conn.data_ready = True
            self.enqueue_req(conn)

    # -- a thread parses the head it was handed ------------------------------------------------
    def handle(self, conn):
        head = getattr(conn, "head", None)
        if head:
            conn.head = None
            try:
                conn.sock.setblocking(True)
                conn.init()
                conn.parser.unreader.unread(bytes(head))
            except Exception as e:  # noqa: BLE001 - as the base class: log, answer, close
                self.handle_error(None, conn.sock, conn.client, e)
                return False
        return super().handle(conn)
