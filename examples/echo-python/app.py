"""The echo server from libevent's listener chapter, as an evconn handler in
Python: every byte read is written back (with `write_input`, as libevent's
echo moves its input buffer to its output); end of stream or an error closes
the connection; an accept error shuts the host down.

The bindings (`wit_world`) are generated from wit/ by componentize-py when it
builds the component. Borrowed handles are dropped for us when a callback
returns, and an owned handle when its last reference goes.
"""
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import reactor
from wit_world.imports.types import ConnectionEvent_Error


def name(code):
    """`error-code` as wit/types.wit spells it: `connection-reset`."""
    return code.name.lower().replace("_", "-")


class Callbacks(exports.Callbacks):
    def on_accept(self, listener, conn, peer):
        # The echo talks to a connection only in that connection's callbacks:
        # the owned handle is not kept. Dropping it does not close.
        pass

    def on_data(self, conn, data):
        # The bytes go back as they came, from the host's copy of them:
        # `conn.write(data)` would work too, but componentize-py keeps every
        # `bytes` passed to an import for the instance's life (see the guest
        # guide), so an echo that wrote them would grow until it ran out of
        # memory.
        try:
            conn.write_input(0, len(data))
        except Err as e:
            raise Err(name(e.value))

    def on_event(self, conn, event):
        if isinstance(event, ConnectionEvent_Error):
            print(f"Error from bufferevent: {name(event.value)}", file=sys.stderr, flush=True)
        conn.close()

    def on_timer(self, timer):
        # The echo starts no timer.
        pass

    def on_drain(self, conn):
        # The echo sets no drain watermark, and reading pauses before its
        # output could reach the cap.
        pass

    def on_accept_error(self, listener, error):
        print(
            f"Got an error {error.errno} ({error.description}) on the listener. Shutting down.",
            file=sys.stderr,
            flush=True,
        )
        reactor.loop_exit()
