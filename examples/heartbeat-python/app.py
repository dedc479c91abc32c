"""The heartbeat line server (examples/heartbeat) in Python: every 300 ms it
sends PING; a client must answer PONG within 200 ms or it gets TIMEOUT and
is closed. Every other line comes back as it was sent.

Each connection has two timers: a repeating one for the pings, and a
one-shot deadline started with each ping and cancelled by the answer.
`on_timer` gets only a timer's id, so `jobs` says what each is for. The
owned connection handle from `on_accept` is kept, to write from timers.
"""
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import timers

# Timers count nanoseconds.
INTERVAL = 300_000_000
DEADLINE = 200_000_000
MAX_LINE = 1024


def name(code):
    """`error-code` as wit/types.wit spells it: `would-block`."""
    return code.name.lower().replace("_", "-")


class Client:
    """One connection: its handle, its unfinished line and its timers."""

    def __init__(self, conn, ping):
        self.conn = conn
        self.partial = b""
        self.ping = ping
        self.deadline = None


# Each open connection, by id; and what each pending timer is for:
# ("ping" or "deadline", connection id).
clients = {}
jobs = {}


def forget(conn_id):
    """Forgets a connection and cancels its timers."""
    client = clients.pop(conn_id, None)
    if client is None:
        return
    for timer in (client.ping, client.deadline):
        if timer is not None:
            timers.cancel(timer)
            jobs.pop(timer, None)


def write(conn, data):
    try:
        conn.write(data)
    except Err as e:
        raise Err(name(e.value))


class Callbacks(exports.Callbacks):
    def on_accept(self, listener, conn, peer):
        ping = timers.start(INTERVAL, INTERVAL)
        jobs[ping] = ("ping", conn.id())
        clients[conn.id()] = Client(conn, ping)

    def on_data(self, conn, data):
        client = clients.get(conn.id())
        if client is None:
            return
        lines = (client.partial + data).split(b"\n")
        client.partial = lines.pop()
        if len(client.partial) > MAX_LINE:
            # The error ends the connection and no callback follows.
            forget(conn.id())
            raise Err(f"line longer than {MAX_LINE} bytes")
        echo = b""
        for line in lines:
            if line.rstrip(b"\r") == b"PONG":
                if client.deadline is not None:
                    timers.cancel(client.deadline)
                    jobs.pop(client.deadline, None)
                    client.deadline = None
            else:
                echo += line + b"\n"
        if echo:
            write(conn, echo)

    def on_event(self, conn, event):
        forget(conn.id())
        conn.close()

    def on_accept_error(self, listener, error):
        pass

    def on_timer(self, timer):
        job = jobs.get(timer)
        if job is None:
            return
        kind, conn_id = job
        client = clients.get(conn_id)
        if kind == "ping":
            # Still waiting for the last answer: its deadline will do.
            if client is not None and client.deadline is None:
                write(client.conn, b"PING\n")
                deadline = timers.start(DEADLINE, None)
                jobs[deadline] = ("deadline", conn_id)
                client.deadline = deadline
        else:
            jobs.pop(timer, None)
            if client is not None:
                try:
                    client.conn.write(b"TIMEOUT\n")
                except Err:
                    pass
                client.conn.close()
            forget(conn_id)

    def on_drain(self, conn):
        # Lines are echoed as they come: reading pauses before the output
        # could reach the cap.
        pass
