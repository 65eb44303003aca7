"""Free loopback ports (the product's, outside the ephemeral range) and a shared-port listener."""

import socket

from controlplane.ports import free_port

__all__ = ["SharedPortListener", "free_port"]


class SharedPortListener:
    """A socket listening on `host:port` with SO_REUSEPORT, as a process that allows its port to
    be shared does: a proxy binding the same port with SO_REUSEPORT would silently take part of
    its connections. Counts the connections it accepted."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # as servers do: a connection of the port's last listener in TIME-WAIT is no obstacle
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind((host, port))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self._accepted = 0

    def accepted(self) -> int:
        """How many connections reached this socket so far."""
        while True:
            try:
                connection, _ = self.sock.accept()
            except BlockingIOError:
                return self._accepted
            connection.close()
            self._accepted += 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "SharedPortListener":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_times(host: str, port: int, count: int) -> int:
    """Open and close `count` TCP connections to `host:port`; how many the kernel accepted."""
    opened = 0
    for _ in range(count):
        try:
            with socket.create_connection((host, port), timeout=2):
                opened += 1
        except OSError:
            pass
    return opened
