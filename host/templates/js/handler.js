// {{name}}: an evconn connection handler in JavaScript. It welcomes each
// connection with its number, counted in the store that every instance of
// the host shares (wasi:keyvalue), then echoes what it reads; end of stream
// or an error closes the connection.
//
// componentize-js generates the bindings from wit/ when it builds. WIT's
// u64 is a BigInt. Also at hand: 'evconn:listener/timers@0.2.0',
// 'evconn:listener/outbound@0.2.0' and the rest of wasi:keyvalue.
import { open } from 'wasi:keyvalue/store@0.2.0-draft';
import { increment } from 'wasi:keyvalue/atomics@0.2.0-draft';

// The store's bucket this handler may open: the host allows the one named
// after the component unless told otherwise (--allow-bucket).
const BUCKET = '{{name}}';

const encoder = new TextEncoder();

function nextVisitor() {
    try {
        const bucket = open(BUCKET);
        const count = increment(bucket, 'visitors', 1n);
        bucket[Symbol.dispose ?? Symbol.for('dispose')]?.();
        return count;
    } catch {
        // The store is the operator's to give: greet without a number.
        return null;
    }
}

export const callbacks = {
    onAccept(listener, conn, peer) {
        // `peer` is `{ tag: 'ipv4' | 'ipv6', val: { port, address, ... } }`
        // or, on a Unix domain socket listener, `{ tag: 'unix', val: { path,
        // credentials: { pid, uid, gid } } }`; `conn.tls()` is an object
        // (`version`, `cipherSuite`, ...) on a TLS listener, else undefined.
        const visitor = nextVisitor();
        conn.write(encoder.encode(visitor === null ? 'welcome\n' : `welcome, visitor ${visitor}\n`));
    },
    onData(conn, data) {
        // Back from the host's copy of the bytes: componentize-js never
        // frees what it passes to an import (conn.write), so an echo that
        // wrote them would run out of memory.
        try {
            conn.writeInput(0, data.length);
        } finally {
            // The engine would free `data` only when it collects, too late:
            // detaching its buffer frees it now.
            data.buffer.transfer(0);
        }
    },
    onEvent(conn, event) {
        conn.close();
    },
    onAcceptError(listener, error) {
        console.error(`accept failed: ${error.description} (${error.errno})`);
    },
    onTimer(timer) {},
    onDrain(conn) {},
};
