// The echo server from libevent's listener chapter, as an evconn handler in
// JavaScript: every byte read is written back (with `writeInput`, as
// libevent's echo moves its input buffer to its output); end of stream or an
// error closes the connection; an accept error shuts the host down.
//
// componentize-js generates the bindings from wit/ when it builds the
// component. Borrowed handles are dropped for us when a callback returns;
// an owned one is dropped by calling its dispose symbol (or, late, by the
// garbage collector). A callback that throws a string returns it as `err`;
// an import that fails throws an error whose `payload` is the `error-code`.
import { loopExit } from 'evconn:listener/reactor@0.2.0';

const dispose = Symbol.dispose ?? Symbol.for('dispose');

export const callbacks = {
  onAccept(listener, conn, peer) {
    // The echo talks to a connection only in that connection's callbacks:
    // the owned handle is not kept. Dropping it does not close.
    conn[dispose]();
  },

  onData(conn, data) {
    // The bytes go back as they came, from the host's copy of them:
    // `conn.write(data)` would work too, but componentize-js never frees
    // what it passes to an import (see the guest guide), so an echo that
    // wrote them would grow until it ran out of memory.
    try {
      conn.writeInput(0, data.length);
    } catch (e) {
      throw e.payload ?? String(e);
    } finally {
      // `data` is a copy the engine frees only when it collects garbage,
      // which at the default --guest-memory comes too late: detaching its
      // buffer frees it now.
      data.buffer.transfer(0);
    }
  },

  onEvent(conn, event) {
    if (event.tag === 'error') {
      console.error(`Error from bufferevent: ${event.val}`);
    }
    conn.close();
  },

  // The echo starts no timer and sets no drain watermark.
  onTimer(timer) {},

  onDrain(conn) {},

  onAcceptError(listener, error) {
    console.error(`Got an error ${error.errno} (${error.description}) on the listener. Shutting down.`);
    loopExit();
  },
};
