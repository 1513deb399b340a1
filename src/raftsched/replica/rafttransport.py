"""A bounded Raft transport over pysyncobj 0.3.17's TCP transport.

What pysyncobj's own transport does with the Raft port, and what changes here:

* it binds 0.0.0.0 (or ::) whatever host the node is configured with: here the
  configured host (resolved), so a node on 127.0.0.1 is not reachable from outside;
* it accumulates a frame with `bytes += chunk` (quadratic: a 100 MB frame took 86 s
  and stalled the tick thread into two elections): here a bytearray with a read
  offset, linear in the frame size;
* it accepts any 32-bit length prefix and buffers until it arrives: here a frame
  is at most `MAX_FRAME` bytes once the peer has proven the cluster secret
  (`MAX_FRAME_UNKNOWN` before), and a larger length prefix closes the connection
  at once, before the data is read;
* it keeps any number of connections that never say who they are, for the
  connection timeout (60 s here): here at most `MAX_UNKNOWN` such connections, each
  closed after `UNKNOWN_IDLE` seconds;
* when accept() fails (EMFILE: out of file descriptors) it closes the listening
  socket for good and the node never hears from its peers again: here accepting
  pauses for `ACCEPT_PAUSE` seconds and resumes; other errors are skipped.

`stats` counts what was refused (frames, connections, accept errors).
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
import struct
import zlib

from pysyncobj import pickle as _pickle
from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.monotonic import monotonic
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import TcpConnection, _getAddrType
from pysyncobj.transport import TCPTransport

logger = logging.getLogger(__name__)

MAX_FRAME = 64 << 20  # bytes of one frame from a peer that knows the secret (= gRPC's limit)
MAX_FRAME_UNKNOWN = 64 << 10  # before it has (the handshake messages are tiny)
MAX_UNKNOWN = 32  # connections that have not yet said which node they are
UNKNOWN_IDLE = 5.0  # seconds such a connection may stay
ACCEPT_PAUSE = 0.5  # seconds without accept() after EMFILE/ENFILE/ENOBUFS/ENOMEM
ACCEPTS_PER_EVENT = 64
RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

stats = dict.fromkeys(("oversized_frames", "bad_frames", "refused_connections", "idle_closed",
                       "accept_errors", "accept_pauses"), 0)

# Name-mangled pysyncobj internals this module overrides; fail loudly if they move.
for _name in ("_TcpConnection__processRead", "_TcpConnection__processParseMessage"):
    if not hasattr(TcpConnection, _name):
        raise ImportError(f"rafttransport: pysyncobj internals changed ({_name} missing)")


class BoundedConnection(TcpConnection):  # type: ignore[misc]
    """TcpConnection with linear receive buffering and a frame size limit."""

    def __init__(self, *args, max_frame: int = MAX_FRAME, **kw) -> None:
        self.rt_buf = bytearray()
        self.rt_pos = 0
        self.rt_max_frame = max_frame
        self.rt_created = monotonic()
        super().__init__(*args, **kw)

    def connect(self, host, port):
        self.rt_buf, self.rt_pos = bytearray(), 0
        return super().connect(host, port)

    def disconnect(self):
        self.rt_buf, self.rt_pos = bytearray(), 0
        super().disconnect()

    def _rt_frame_ok(self) -> bool:
        if len(self.rt_buf) - self.rt_pos < 4:
            return True
        size = struct.unpack_from("i", self.rt_buf, self.rt_pos)[0]
        if 0 <= size <= self.rt_max_frame:
            return True
        stats["oversized_frames"] += 1
        logger.warning("raft transport: frame of %d bytes refused (limit %d); connection closed",
                       size, self.rt_max_frame)
        self.disconnect()
        return False

    def _TcpConnection__processRead(self):
        sock = self._TcpConnection__socket
        try:
            incoming = sock.recv(self._TcpConnection__recvBufferSize)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.disconnect()
            return False
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or not incoming:
            self.disconnect()
            return False
        self.rt_buf += incoming
        if not self._rt_frame_ok():
            return False
        # a whole frame is buffered: parse it before reading on (bounds the buffer)
        return len(self.rt_buf) - self.rt_pos <= self.rt_max_frame + 4

    def _TcpConnection__processParseMessage(self):
        buf, pos = self.rt_buf, self.rt_pos
        if len(buf) - pos < 4 or not self._rt_frame_ok():
            return None
        size = struct.unpack_from("i", buf, pos)[0]
        if len(buf) - pos - 4 < size:
            return None
        data = bytes(buf[pos + 4:pos + 4 + size])
        try:
            if self.encryptor:
                ts = self.encryptor.extract_timestamp(data)
                if ts < self.recvLastTimestamp:
                    raise ValueError("replayed frame")
                self.recvLastTimestamp = ts
                data = self.encryptor.decrypt(data)
            message = _pickle.loads(zlib.decompress(data))
            if self.recvRandKey:
                rand_key, message = message
                if rand_key != self.recvRandKey:
                    raise ValueError("wrong session key")
        except Exception:
            stats["bad_frames"] += 1
            self.disconnect()
            return None
        pos += 4 + size
        if pos == len(buf) or pos > (1 << 20):
            del buf[:pos]
            pos = 0
        self.rt_pos = pos
        return message


def _connection(poller, conf, **kw) -> BoundedConnection:
    return BoundedConnection(poller=poller, timeout=conf.connectionTimeout,
                             sendBufferSize=conf.sendBufferSize, recvBufferSize=conf.recvBufferSize,
                             keepalive=conf.tcp_keepalive, **kw)


class BoundedServer:
    """The Raft listener: the configured host, a real backlog, accept errors survived."""

    def __init__(self, poller, host: str, port: int, on_new, conf) -> None:
        self.poller = poller
        self.host = host
        self.port = port
        self.on_new = on_new
        self.conf = conf
        self.sock: socket.socket | None = None
        self.paused_until = 0.0

    def bind(self) -> None:
        s = socket.socket(_getAddrType(self.host), socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.conf.sendBufferSize)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.conf.recvBufferSize)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setblocking(False)
            s.bind((self.host, self.port))
            s.listen(128)
        except OSError:
            s.close()
            raise
        self.sock = s
        self._subscribe()

    def _subscribe(self) -> None:
        assert self.sock is not None
        self.poller.subscribe(self.sock.fileno(), self._on_event,
                              POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR)

    def unbind(self) -> None:
        if self.sock is not None:
            if not self.paused_until:
                self.poller.unsubscribe(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def on_tick(self) -> None:
        if self.paused_until and monotonic() >= self.paused_until and self.sock is not None:
            self.paused_until = 0.0
            self._subscribe()

    def _pause(self) -> None:
        stats["accept_pauses"] += 1
        assert self.sock is not None
        self.poller.unsubscribe(self.sock.fileno())
        self.paused_until = monotonic() + ACCEPT_PAUSE

    def _on_event(self, descr, event) -> None:
        if self.sock is None:
            return
        if event & POLL_EVENT_TYPE.ERROR:
            logger.warning("raft transport: error event on the listener; pausing accept")
            self._pause()
            return
        for _ in range(ACCEPTS_PER_EVENT):
            try:
                conn_sock, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                stats["accept_errors"] += 1
                if e.errno in RESOURCE_ERRORS:
                    logger.warning("raft transport: accept failed (%s); pausing %.1fs", e, ACCEPT_PAUSE)
                    self._pause()
                    return
                continue  # ECONNABORTED, EPROTO, ...: that connection only
            try:
                conn_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn_sock.setblocking(False)
                conn = _connection(self.poller, self.conf, socket=conn_sock, max_frame=MAX_FRAME_UNKNOWN)
            except OSError:
                conn_sock.close()
                continue
            self.on_new(conn)


class BoundedTransport(TCPTransport):  # type: ignore[misc]
    def _createServer(self):
        host, port = self._selfNode.address.rsplit(":", 1)
        host = host.strip("[]")
        resolved = globalDnsResolver().resolve(host)
        self._server = BoundedServer(self._syncObj._poller, resolved or host, int(port),
                                     self._onNewIncomingConnection, self._syncObj.conf)

    def addNode(self, node):
        self._nodes.add(node)
        self._nodeAddrToNode[node.address] = node
        if self._shouldConnect(node):
            conn = _connection(self._syncObj._poller, self._syncObj.conf)
            conn.encryptor = self._syncObj.encryptor
            conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
            conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
            conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
            self._connections[node] = conn

    def _onNewIncomingConnection(self, conn):
        if len(self._unknownConnections) >= MAX_UNKNOWN:
            stats["refused_connections"] += 1
            conn.disconnect()
            return
        super()._onNewIncomingConnection(conn)

    def _onIncomingMessageReceived(self, conn, message):
        super()._onIncomingMessageReceived(conn, message)
        if conn not in self._unknownConnections and self._connToNode(conn) is not None:
            conn.rt_max_frame = MAX_FRAME  # it knows the secret and named a node

    def _onTick(self):
        if isinstance(self._server, BoundedServer):
            self._server.on_tick()
        now = monotonic()
        for conn in list(self._unknownConnections):
            if now - getattr(conn, "rt_created", now) > UNKNOWN_IDLE:
                stats["idle_closed"] += 1
                self._unknownConnections.discard(conn)
                conn.disconnect()
        super()._onTick()
