"""Starts an echo server on a loopback port and makes counted 64-byte round
trips to it, for scripts/round-trip-instructions and scripts/round-trip-syscalls.

The server is evconn's host serving the echo guest under --isolation shared,
or the wasmtime CLI running the echo guest that owns its socket
(bench/socket-echo), told apart by what `BINARY --version` prints; a prefix
(valgrind, say) goes before its command line. The round trips go over
CONNECTIONS connections in turn, one message in flight at a time: every
round trip is one wake-up of the server, and the other connections wait
open, as idle clients of a busy server do. With CONNECTIONS written as
`50x` (say), every connection has a message in flight at once instead, as
in the benchmark's ping-pong.

    python3 scripts/round_trips.py BINARY ROUND_TRIPS CONNECTIONS BEFORE AFTER [PREFIX...]

runs the shell command BEFORE (with $SERVER_PID set) after 500 round trips
of warm-up, then ROUND_TRIPS more, then AFTER, and stops the server.
"""
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

WARM_UP = 500
MESSAGE = b"x" * 64
# The longest one echo may take: under valgrind, a server holding hundreds
# of connections can take seconds to answer.
PATIENCE = 60


def server_command(binary, port):
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    address = f"127.0.0.1:{port}"
    if version.startswith("wasmtime "):
        # As scripts/bench runs it.
        return [binary, "run", "-S", "inherit-network=y", "target/wasm32-wasip2/guest/socket-echo.wasm", address]
    return [binary, "--component", "target/wasm32-wasip2/guest/echo.wasm", "--no-cache", "--listen", address, "-q"]


def connect(port, deadline):
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port))
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(PATIENCE)
            return conn
        except OSError:
            if time.time() > deadline:
                sys.exit("the server did not start listening within 120 s")
            time.sleep(0.2)


def exchange(conns, n):
    for i in range(n):
        conn = conns[i % len(conns)]
        conn.sendall(MESSAGE)
        receive(conn)


def receive(conn):
    got = 0
    while got < len(MESSAGE):
        chunk = conn.recv(len(MESSAGE) - got)
        if not chunk:
            sys.exit("the server closed the connection")
        got += len(chunk)


def exchange_at_once(conns, n):
    """n round trips with a message in flight on every connection."""
    selector = selectors.DefaultSelector()
    for conn in conns:
        selector.register(conn, selectors.EVENT_READ)
    sent = 0
    for conn in conns[:n]:
        conn.sendall(MESSAGE)
        sent += 1
    done = 0
    while done < n:
        for key, _ in selector.select(timeout=PATIENCE) or sys.exit(f"no echo within {PATIENCE} s"):
            receive(key.fileobj)
            done += 1
            if sent < n:
                key.fileobj.sendall(MESSAGE)
                sent += 1
    selector.close()


def main():
    binary, round_trips, connections, before, after = sys.argv[1:6]
    prefix = sys.argv[6:]
    at_once = connections.endswith("x")
    round_trips, connections = int(round_trips), int(connections.rstrip("x"))
    run = exchange_at_once if at_once else exchange
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    log = open(os.environ.get("SERVER_LOG", os.devnull), "w")
    server = subprocess.Popen(prefix + server_command(binary, port), stdout=log, stderr=log)
    try:
        deadline = time.time() + 120
        conns = [connect(port, deadline) for _ in range(connections)]
        run(conns, WARM_UP)
        env = dict(os.environ, SERVER_PID=str(server.pid))
        subprocess.run(before, shell=True, check=True, env=env)
        run(conns, round_trips)
        subprocess.run(after, shell=True, check=True, env=env)
        for conn in conns:
            conn.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
