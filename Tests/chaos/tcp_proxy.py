"""A TCP proxy on loopback that can cut the line without closing it (a network
partition as a client sees it: its packets go nowhere, no error comes back).
This kernel has no netem, so the cut is made here, between a spool process
and Redis."""
import socket
import threading
import time

from harness import free_port


class TCPProxy:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cut = threading.Event()
        self.closed = threading.Event()
        self.sockets = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def partition(self):
        """From now on nothing passes either way; connections stay open."""
        self.cut.set()

    def heal(self):
        self.cut.clear()

    def close(self):
        self.closed.set()
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self):
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client):
        while self.cut.is_set() and not self.closed.is_set():
            time.sleep(0.02)  # a connect during the partition hangs, as a SYN into the void would
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        with self.lock:
            self.sockets += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        src.settimeout(0.05)
        while not self.closed.is_set():
            if self.cut.is_set():
                time.sleep(0.02)
                continue
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
