"""libevent's sample/le-proxy.c (examples/proxy) in Python: every client
connection is relayed to a backend, both ways.

- The backends come from the operator: BACKENDS, a comma-separated list of
  HOST:PORT (an address, [an IPv6 address] or a name), read from
  `os.environ`. Each is dialed with `connect_name`, which takes a name
  written as an address as that address. Clients go to them in turn; a
  backend that cannot be reached is skipped for the next, and a client none
  can serve is closed.
- Backpressure: once the side bytes go to holds HIGH bytes the host has not
  sent yet, reading from the other side pauses until `on_drain` says it is
  down to LOW. A write the host refuses (would-block) is kept, and reading
  paused, until the drain.
- Bytes are relayed with `write_input`, from the host's copy of what
  `on_data` was given: componentize-py keeps every `bytes` a guest passes to
  an import (see the guest guide). Only bytes held back for the drain go
  with `write`.
- Half-close passes through: a side's end-of-stream becomes the other
  side's, after what it sent; once both have ended, both close. An error or
  an idle timeout on either side closes both.
"""
import os
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import outbound
from wit_world.imports.types import (
    ConnectionEvent_Connected,
    ConnectionEvent_EndOfStream,
    ConnectionEvent_Error,
    ErrorCode,
)

# Output held for one side at which reading from the other pauses, and
# resumes.
HIGH = 512 * 1024
LOW = 128 * 1024

CLIENT, BACKEND = 0, 1
SIDE_NAMES = ("client", "backend")


def name(code):
    """`error-code` as wit/types.wit spells it: `connection-refused`."""
    return code.name.lower().replace("_", "-")


def log(text):
    print(f"proxy: {text}", file=sys.stderr, flush=True)


def parse_backend(text):
    """HOST:PORT as (host, port), or None; HOST may be [IPv6]."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def read_backends():
    backends = []
    for item in os.environ.get("BACKENDS", "").split(","):
        item = item.strip()
        if not item:
            continue
        backend = parse_backend(item)
        if backend is None:
            log(f"ignoring backend {item!r}: not HOST:PORT")
        else:
            backends.append(backend)
    if not backends:
        log("no backend: set BACKENDS=HOST:PORT[,HOST:PORT...] with host --env")
    return backends


class End:
    """One end of a pair."""

    def __init__(self, conn):
        self.conn = conn
        self.id = conn.id()
        # Bytes for this end the host refused, sent before anything else.
        self.pending = b""
        # Its peer sent end-of-stream.
        self.ended = False
        # The other end's end-of-stream waits for `pending` to go out.
        self.shutdown_owed = False


class Pair:
    """A client and its backend, once one is dialed."""

    def __init__(self, client):
        # [client, backend].
        self.ends = [End(client), None]
        # Whether the backend has connected.
        self.connected = False
        # Backends tried for this client, counting the current one.
        self.tried = 0


# The operator's backends, read on first use; the one the next client goes
# to; each connection's pair and side, by connection id.
backends = None
next_backend = 0
sides = {}


def forget(pair):
    """Closes both ends, each after what it holds has been sent, and forgets
    the pair."""
    for end in pair.ends:
        if end is not None:
            end.conn.close()
            sides.pop(end.id, None)


def dial_backend(pair):
    """Dials backends for the pair's client, from the next in turn, until one
    can be dialed; closes the client if none can."""
    global backends, next_backend
    if backends is None:
        backends = read_backends()
    while pair.tried < len(backends):
        pair.tried += 1
        host, port = backends[next_backend % len(backends)]
        next_backend += 1
        try:
            conn = outbound.connect_name(host, port)
        except Err as e:
            log(f"cannot dial {host}:{port}: {name(e.value)}")
            continue
        pair.ends[BACKEND] = End(conn)
        pair.connected = False
        sides[pair.ends[BACKEND].id] = (pair, BACKEND)
        return
    log(f"no backend could be reached for connection {pair.ends[CLIENT].id}")
    forget(pair)


def relay(pair, source, data):
    """Sends `data`, read from side `source` in the running `on_data`, to the
    other end: from the host's copy of it (`write_input`), since
    componentize-py keeps every `bytes` passed to an import, `write`'s
    included. Bytes the host refused go with `write` at the drain."""
    to = 1 - source
    target = pair.ends[to]
    if target is None:
        return
    refused = True
    if target.pending:
        target.pending += data
    else:
        try:
            target.conn.write_input(0, len(data))
            refused = False
        except Err as e:
            if e.value != ErrorCode.WOULD_BLOCK:
                forget(pair)
                raise Err(f"relaying to the {SIDE_NAMES[to]}: {name(e.value)}")
            target.pending = data
    if refused or target.conn.queued() >= HIGH:
        # Hold the source back until the target drains.
        target.conn.set_drain_watermark(LOW)
        pair.ends[source].conn.pause_reading()


class Callbacks(exports.Callbacks):
    def on_accept(self, listener, conn, peer):
        # Nothing is read from the client until its backend is connected.
        conn.pause_reading()
        pair = Pair(conn)
        sides[pair.ends[CLIENT].id] = (pair, CLIENT)
        dial_backend(pair)

    def on_data(self, conn, data):
        found = sides.get(conn.id())
        if found is not None:
            relay(*found, data)

    def on_event(self, conn, event):
        found = sides.get(conn.id())
        if found is None:
            conn.close()
            return
        pair, side = found
        if isinstance(event, ConnectionEvent_Connected):
            pair.connected = True
            pair.ends[CLIENT].conn.resume_reading()
        elif isinstance(event, ConnectionEvent_Error) and side == BACKEND and not pair.connected:
            # This backend cannot be reached: try the next.
            log(f"backend unreachable for connection {pair.ends[CLIENT].id}: {name(event.value)}")
            del sides[pair.ends[BACKEND].id]
            pair.ends[BACKEND] = None
            conn.close()
            dial_backend(pair)
        elif isinstance(event, ConnectionEvent_EndOfStream):
            # The other end ends too, after what this one sent.
            pair.ends[side].ended = True
            other = pair.ends[1 - side]
            if other is not None and other.pending:
                other.shutdown_owed = True
            elif other is not None:
                try:
                    other.conn.shutdown_write()
                except Err:
                    pass
            if other is None or other.ended:
                forget(pair)
        else:
            # An error or a timeout on either side.
            forget(pair)

    def on_drain(self, conn):
        found = sides.get(conn.id())
        if found is None:
            return
        pair, side = found
        target = pair.ends[side]
        if target.pending:
            try:
                conn.write(target.pending)
                target.pending = b""
            except Err as e:
                if e.value == ErrorCode.WOULD_BLOCK:
                    # Still no room: the next drain comes when there is.
                    return
                forget(pair)
                raise Err(f"relaying to the {SIDE_NAMES[side]}: {name(e.value)}")
        if target.shutdown_owed:
            target.shutdown_owed = False
            try:
                conn.shutdown_write()
            except Err:
                pass
        if conn.queued() <= LOW:
            conn.set_drain_watermark(None)
            source = pair.ends[1 - side]
            if source is not None:
                source.conn.resume_reading()

    def on_timer(self, timer):
        # The proxy starts no timer.
        pass

    def on_accept_error(self, listener, error):
        pass
