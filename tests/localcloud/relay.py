"""A TCP relay on 127.0.0.1: a listener of its own in front of a local server, counting the
connections it forwards. Several relays in front of one server give it several addresses, e.g. one per
catalog interface, so that a test sees which of them a client used (TLS passes through unchanged).

    with TcpRelay(target_port=5000) as relay:
        ...  # clients connect to relay.port
        assert relay.connections == 1

`stall()` makes it a server that accepts and never answers, as after a load balancer's failover: new
connections are accepted and left unanswered, and the bytes of connections already open are taken and
dropped, in both directions; `resume()` forwards new connections again (those that stalled stay dead).
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress

HOST = "127.0.0.1"
CHUNK = 1 << 16


class TcpRelay:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.connections = 0  # accepted so far
        self.stalled_connections = 0  # accepted while stalled, never answered
        self._stalled = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TcpRelay:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def stall(self) -> None:
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def close(self) -> None:
        """Stop listening and cut every relayed connection; return once every thread has ended."""
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join()
        for thread in self._threads:
            thread.join()
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            if self._stalled.is_set():
                with self._lock:
                    self.stalled_connections += 1
                    self._sockets.append(client)
                continue
            try:
                server = socket.create_connection((HOST, self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._sockets += [client, server]
                pumps = [
                    threading.Thread(target=_pump, args=(client, server, self._stalled), daemon=True),
                    threading.Thread(target=_pump, args=(server, client, self._stalled), daemon=True),
                ]
                self._threads += pumps
            for pump in pumps:
                pump.start()


def _pump(source: socket.socket, destination: socket.socket, stalled: threading.Event) -> None:
    """Copy bytes until the source ends, then end the destination's writing side. Once `stalled`, the
    bytes are taken and dropped for good and the destination is never ended: its peer hears nothing."""
    try:
        while data := source.recv(CHUNK):
            if stalled.is_set():
                _drain(source)
                return
            destination.sendall(data)
    except OSError:
        pass
    with suppress(OSError):
        destination.shutdown(socket.SHUT_WR)


def _drain(source: socket.socket) -> None:
    with suppress(OSError):
        while source.recv(CHUNK):
            pass
