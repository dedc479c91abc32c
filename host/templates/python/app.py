"""{{name}}: an evconn connection handler in Python. It welcomes each
connection with its number, counted in the store that every instance of the
host shares (wasi:keyvalue), then echoes what it reads; end of stream or an
error closes the connection.

componentize-py generates the bindings (`wit_world`) from wit/ when it
builds; `componentize-py --wit-path wit --world handler bindings .` writes
them here for an editor. Also at hand: `wit_world.imports.timers`,
`wit_world.imports.outbound` and the rest of wasi:keyvalue.
"""
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import atomics, store

# The store's bucket this handler may open: the host allows the one named
# after the component unless told otherwise (--allow-bucket).
BUCKET = "{{name}}"


class Callbacks(exports.Callbacks):
    def on_accept(self, listener, conn, peer):
        # `peer` is a `SocketAddress_Ipv4`, `SocketAddress_Ipv6` or, on a Unix
        # domain socket listener, `SocketAddress_Unix` (its `value.credentials`
        # the peer's pid, uid and gid), from `wit_world.imports.types`;
        # `conn.tls()` is a `TlsInfo` on a TLS listener, else None.
        try:
            with store.open(BUCKET) as bucket:
                welcome = f"welcome, visitor {atomics.increment(bucket, 'visitors', 1)}\n"
        except Err:
            # The store is the operator's to give: greet without a number.
            welcome = "welcome\n"
        conn.write(welcome.encode())

    def on_data(self, conn, data):
        # Back from the host's copy of the bytes: componentize-py keeps
        # every `bytes` passed to an import (conn.write) for the instance's
        # life, so an echo that wrote them would run out of memory.
        conn.write_input(0, len(data))

    def on_event(self, conn, event):
        conn.close()

    def on_accept_error(self, listener, error):
        print(f"accept failed: {error.description} ({error.errno})", file=sys.stderr)

    def on_timer(self, timer):
        pass

    def on_drain(self, conn):
        pass
