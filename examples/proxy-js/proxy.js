// libevent's sample/le-proxy.c (examples/proxy) in JavaScript: every client
// connection is relayed to a backend, both ways.
//
// - The backends come from the operator: BACKENDS, a comma-separated list of
//   HOST:PORT (an address, [an IPv6 address] or a name), read from WASI's
//   environment: componentize-js 0.23.0 has no `process.env`, so the world
//   this builds against (wit/proxy.wit) adds `wasi:cli/environment` to the
//   handler's. Each is dialed with `connectName`, which takes a name
//   written as an address as that address. Clients go to them in turn; a
//   backend that cannot be reached is skipped for the next, and a client
//   none can serve is closed.
// - Backpressure: once the side bytes go to holds HIGH bytes the host has
//   not sent yet, reading from the other side pauses until `onDrain` says it
//   is down to LOW. A write the host refuses (would-block) is kept, and
//   reading paused, until the drain.
// - Bytes are relayed with `writeInput`, from the host's copy of what
//   `onData` was given, and each read is freed as soon as it is relayed:
//   componentize-js never frees what a guest passes to an import, and its
//   garbage collector frees reads late (see the guest guide). Only bytes
//   held back for the drain go with `write`.
// - Half-close passes through: a side's end-of-stream becomes the other
//   side's, after what it sent; once both have ended, both close. An error
//   or an idle timeout on either side closes both.
//
// WIT's u64 is a BigInt here: connection ids, `queued()`, watermarks. The
// owned handles of both ends are kept, and disposed of with the pair.
import { connectName } from 'evconn:listener/outbound@0.2.0';
import { getEnvironment } from 'wasi:cli/environment@0.2.10';

const dispose = Symbol.dispose ?? Symbol.for('dispose');

// Output held for one side at which reading from the other pauses, and
// resumes.
const HIGH = 512n * 1024n;
const LOW = 128n * 1024n;

const CLIENT = 0;
const BACKEND = 1;
const SIDE_NAMES = ['client', 'backend'];

// HOST:PORT as { host, port }, or undefined; HOST may be [IPv6].
function parseBackend(text) {
  const colon = text.lastIndexOf(':');
  let host = text.slice(0, colon);
  const port = Number(text.slice(colon + 1));
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (colon < 0 || host === '' || !/^\d+$/.test(text.slice(colon + 1)) || port < 1 || port > 65535) {
    return undefined;
  }
  return { host, port };
}

// Called on first use, not at the top level, which runs when the component
// is built.
function readBackends() {
  const env = Object.fromEntries(getEnvironment());
  const backends = [];
  for (const item of (env.BACKENDS ?? '').split(',').map((b) => b.trim())) {
    if (item === '') continue;
    const backend = parseBackend(item);
    if (backend === undefined) {
      console.error(`proxy: ignoring backend "${item}": not HOST:PORT`);
    } else {
      backends.push(backend);
    }
  }
  if (backends.length === 0) {
    console.error('proxy: no backend: set BACKENDS=HOST:PORT[,HOST:PORT...] with host --env');
  }
  return backends;
}

// One end of a pair: its handle; bytes for it the host refused, sent before
// anything else; whether its peer sent end-of-stream; whether the other
// end's end-of-stream waits for `pending` to go out.
function end(conn) {
  return { conn, id: conn.id(), pending: [], ended: false, shutdownOwed: false };
}

// The operator's backends, read on first use; the one the next client goes
// to; each connection's pair and side, by connection id. A pair is
// { ends: [client, backend], connected, tried }.
let backends;
let nextBackend = 0;
const sides = new Map();

// Closes both ends, each after what it holds has been sent, and forgets the
// pair.
function forget(pair) {
  for (const e of pair.ends) {
    if (e === undefined) continue;
    e.conn.close();
    sides.delete(e.id);
    e.conn[dispose]();
  }
}

// Dials backends for the pair's client, from the next in turn, until one
// can be dialed; closes the client if none can.
function dialBackend(pair) {
  backends ??= readBackends();
  while (pair.tried < backends.length) {
    pair.tried += 1;
    const { host, port } = backends[nextBackend % backends.length];
    nextBackend += 1;
    let conn;
    try {
      conn = connectName(host, port);
    } catch (e) {
      console.error(`proxy: cannot dial ${host}:${port}: ${e.payload ?? e}`);
      continue;
    }
    pair.ends[BACKEND] = end(conn);
    pair.connected = false;
    sides.set(pair.ends[BACKEND].id, { pair, side: BACKEND });
    return;
  }
  console.error(`proxy: no backend could be reached for connection ${pair.ends[CLIENT].id}`);
  forget(pair);
}

// Writes `data` to side `to`; false if the host refused it (would-block).
// Any other failure closes the pair and throws.
function writeTo(pair, to, data) {
  try {
    pair.ends[to].conn.write(data);
    return true;
  } catch (e) {
    if (e.payload === 'would-block') return false;
    forget(pair);
    throw `relaying to the ${SIDE_NAMES[to]}: ${e.payload ?? e}`;
  }
}

// Writes on to side `to` all of what the running onData was given, from
// the host's copy of it (componentize-js never frees what it passes to an
// import, `write`'s bytes included); false if the host refused it
// (would-block). Any other failure closes the pair and throws.
function writeInputTo(pair, to, length) {
  try {
    pair.ends[to].conn.writeInput(0, length);
    return true;
  } catch (e) {
    if (e.payload === 'would-block') return false;
    forget(pair);
    throw `relaying to the ${SIDE_NAMES[to]}: ${e.payload ?? e}`;
  }
}

// Sends `data`, read from side `from` in the running onData, to the other
// end. Bytes the host refused are kept, to go with `write` at the drain;
// the others are freed at once (the garbage collector would free them only
// after tens of MiB).
function relay(pair, from, data) {
  const to = 1 - from;
  const target = pair.ends[to];
  if (target === undefined) {
    data.buffer.transfer(0);
    return;
  }
  let refused = true;
  if (target.pending.length > 0) {
    target.pending.push(data);
  } else if (writeInputTo(pair, to, data.length)) {
    refused = false;
    data.buffer.transfer(0);
  } else {
    target.pending.push(data);
  }
  if (refused || target.conn.queued() >= HIGH) {
    // Hold the source back until the target drains.
    target.conn.setDrainWatermark(LOW);
    pair.ends[from].conn.pauseReading();
  }
}

// The pending parts as one write.
function joined(parts) {
  if (parts.length === 1) return parts[0];
  const all = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
}

export const callbacks = {
  onAccept(listener, conn, peer) {
    // Nothing is read from the client until its backend is connected.
    conn.pauseReading();
    const pair = { ends: [end(conn), undefined], connected: false, tried: 0 };
    sides.set(pair.ends[CLIENT].id, { pair, side: CLIENT });
    dialBackend(pair);
  },

  onData(conn, data) {
    const found = sides.get(conn.id());
    if (found !== undefined) relay(found.pair, found.side, data);
  },

  onEvent(conn, event) {
    const found = sides.get(conn.id());
    if (found === undefined) {
      conn.close();
      return;
    }
    const { pair, side } = found;
    if (event.tag === 'connected') {
      pair.connected = true;
      pair.ends[CLIENT].conn.resumeReading();
    } else if (event.tag === 'error' && side === BACKEND && !pair.connected) {
      // This backend cannot be reached: try the next.
      console.error(`proxy: backend unreachable for connection ${pair.ends[CLIENT].id}: ${event.val}`);
      const backend = pair.ends[BACKEND];
      sides.delete(backend.id);
      pair.ends[BACKEND] = undefined;
      backend.conn.close();
      backend.conn[dispose]();
      dialBackend(pair);
    } else if (event.tag === 'end-of-stream') {
      // The other end ends too, after what this one sent.
      pair.ends[side].ended = true;
      const other = pair.ends[1 - side];
      if (other !== undefined && other.pending.length > 0) {
        other.shutdownOwed = true;
      } else if (other !== undefined) {
        try {
          other.conn.shutdownWrite();
        } catch (e) {}
      }
      if (other === undefined || other.ended) forget(pair);
    } else {
      // An error or a timeout on either side.
      forget(pair);
    }
  },

  onDrain(conn) {
    const found = sides.get(conn.id());
    if (found === undefined) return;
    const { pair, side } = found;
    const target = pair.ends[side];
    if (target.pending.length > 0) {
      const data = joined(target.pending);
      // Still no room: the next drain comes when there is.
      if (!writeTo(pair, side, data)) {
        target.pending = [data];
        return;
      }
      target.pending = [];
    }
    if (target.shutdownOwed) {
      target.shutdownOwed = false;
      try {
        conn.shutdownWrite();
      } catch (e) {}
    }
    if (conn.queued() <= LOW) {
      conn.setDrainWatermark(undefined);
      const source = pair.ends[1 - side];
      if (source !== undefined) source.conn.resumeReading();
    }
  },

  // The proxy starts no timer.
  onTimer(timer) {},

  onAcceptError(listener, error) {},
};
