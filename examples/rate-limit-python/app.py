"""The rate limiter (examples/rate-limit) in Python: a line echo that lets
each peer IP (over a Unix domain socket, each peer user; under mutual TLS,
each client certificate) send at most
RATE_LIMIT lines (default 10) per RATE_WINDOW seconds (default 60) and
answers every line past that `-ERR rate limited`; the connection stays
open.

The counts live in the host's store (wasi:keyvalue), so the limit holds
across every instance (under both isolation models), every worker and every
host sharing a Redis. Windows are fixed and numbered by the wall clock
(unix seconds // RATE_WINDOW); each line adds one, with the store's atomic
`increment`, to the key `IP/WINDOW` (`uid:UID/WINDOW` over a Unix domain
socket, `cert:SHA256/WINDOW` under mutual TLS) of the bucket named after the component (RATE_BUCKET to change
it). A peer's first line in a window deletes its key of the window before.
A store call that fails (Redis gone, a bucket not allowed) answers that
line `-ERR store unavailable`.

componentize-py names the store's modules after their interfaces:
`wit_world.imports.store` and `wit_world.imports.atomics`.
"""
import ipaddress
import os
import sys
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import atomics, store
from wit_world.imports.types import SocketAddress_Ipv4, SocketAddress_Unix

# The bucket when RATE_BUCKET is not set: the component's name, the one the
# host allows by default.
DEFAULT_BUCKET = "rate-limit-python"
DEFAULT_LIMIT = 10
DEFAULT_WINDOW = 60
# The longest line, its newline included; a longer one closes its
# connection.
MAX_LINE = 16384

LIMITED = b"-ERR rate limited\r\n"
UNAVAILABLE = b"-ERR store unavailable\r\n"


def name(code):
    """`error-code` as wit/types.wit spells it: `would-block`."""
    return code.name.lower().replace("_", "-")


def read_number(variable, default):
    """A whole number from the environment, `default` when it is not set."""
    text = os.environ.get(variable)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or int(text) >= 2**63:
        raise Err(f"{variable}={text} is not a whole number")
    return int(text)


class Settings:
    """The operator's settings, read from the environment at the first
    connection: the module's top level runs when the component is built,
    where there is no environment."""

    def __init__(self):
        self.limit = read_number("RATE_LIMIT", DEFAULT_LIMIT)
        self.window = read_number("RATE_WINDOW", DEFAULT_WINDOW)
        if self.window == 0:
            raise Err("RATE_WINDOW=0 is not a whole number of seconds, at least 1")
        self.bucket = os.environ.get("RATE_BUCKET") or DEFAULT_BUCKET


def peer_key(peer, tls):
    """Whose lines a count is for, as the keys spell it: under mutual TLS
    the client's certificate, wherever it connects from (`cert:` and its
    SHA-256 fingerprint); else the peer's IP (an IPv4 peer reaching an IPv6
    listener, ::ffff:a.b.c.d, counts as its IPv4 address), or for a peer on
    a Unix domain socket, where clients have no address, its user:
    `uid:1000` (`uid:unknown` without credentials)."""
    if tls is not None and tls.peer_certificate is not None:
        return f"cert:{tls.peer_certificate.fingerprint_sha256}"
    if isinstance(peer, SocketAddress_Unix):
        credentials = peer.value.credentials
        return "uid:unknown" if credentials is None else f"uid:{credentials.uid}"
    if isinstance(peer, SocketAddress_Ipv4):
        return str(ipaddress.IPv4Address(bytes(peer.value.address)))
    groups = peer.value.address
    address = ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups))
    return str(address.ipv4_mapped or address)


# The settings and the open bucket, from the first connection that needs
# them; whether the last store call failed (to log once when the store goes
# away and once when it is back); each open connection's peer key and
# unfinished line, by id.
settings = None
bucket = None
store_failing = False
clients = {}


def store_failed(call, error):
    """Logs a failed store call when the store starts failing."""
    global store_failing
    if not store_failing:
        if isinstance(error, store.Error_Other):
            text = error.value
        elif isinstance(error, store.Error_AccessDenied):
            text = "access-denied"
        else:
            text = "no-such-store"
        print(f"rate-limit: {call} failed: {text}", file=sys.stderr, flush=True)
        store_failing = True


def count_line(who):
    """Counts one line of `who` in the current window: the answer to it,
    None when the line passes."""
    global bucket, store_failing
    try:
        if bucket is None:
            bucket = store.open(settings.bucket)
        index = int(time.time()) // settings.window
        count = atomics.increment(bucket, f"{who}/{index}", 1)
    except Err as e:
        store_failed("the store", e.value)
        return UNAVAILABLE
    if store_failing:
        print("rate-limit: the store answers again", file=sys.stderr, flush=True)
        store_failing = False
    if count == 1 and index > 0:
        # The peer's first line in this window: its count of the last one is
        # done with. Failing to delete it leaves one stale key.
        try:
            bucket.delete(f"{who}/{index - 1}")
        except Err as e:
            store_failed("delete", e.value)
    # The store's integers are signed 64-bit, returned as unsigned: a count
    # below 1 was set by someone else, and allows nothing.
    return None if 1 <= count <= settings.limit else LIMITED


class Client:
    """One connection: its peer's key (see `peer_key`) and its unfinished
    line."""

    def __init__(self, who):
        self.who = who
        self.partial = b""


class Callbacks(exports.Callbacks):
    def on_accept(self, listener, conn, peer):
        global settings
        # A bad setting closes every connection, and the host logs why.
        if settings is None:
            settings = Settings()
        clients[conn.id()] = Client(peer_key(peer, conn.tls()))

    def on_data(self, conn, data):
        client = clients.get(conn.id())
        if client is None:
            return
        lines = (client.partial + data).split(b"\n")
        client.partial = lines.pop()
        if len(client.partial) >= MAX_LINE:
            # The error ends the connection and no callback follows.
            del clients[conn.id()]
            raise Err(f"line longer than {MAX_LINE} bytes")
        answer = b"".join(count_line(client.who) or line + b"\n" for line in lines)
        if answer:
            try:
                conn.write(answer)
            except Err as e:
                del clients[conn.id()]
                raise Err(name(e.value))

    def on_event(self, conn, event):
        clients.pop(conn.id(), None)
        conn.close()

    def on_accept_error(self, listener, error):
        pass

    # The rate limiter starts no timer and sets no drain watermark.
    def on_timer(self, timer):
        pass

    def on_drain(self, conn):
        pass
