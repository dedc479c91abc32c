// The rate limiter (examples/rate-limit) in JavaScript: a line echo that
// lets each peer IP (over a Unix domain socket, each peer user; under
// mutual TLS, each client certificate) send at most RATE_LIMIT lines (default 10) per RATE_WINDOW seconds (default 60)
// and answers every line past that `-ERR rate limited`; the connection
// stays open.
//
// The counts live in the host's store (wasi:keyvalue), so the limit holds
// across every instance (under both isolation models), every worker and
// every host sharing a Redis. Windows are fixed and numbered by the wall
// clock (unix seconds / RATE_WINDOW, rounded down); each line adds one, with
// the store's atomic `increment`, to the key `IP/WINDOW` (`uid:UID/WINDOW`
// over a Unix domain socket, `cert:SHA256/WINDOW` under mutual TLS) of the
// bucket named after the component
// (RATE_BUCKET to change it). A peer's first line in a window deletes its
// key of the window before. A store call that fails (Redis gone, a bucket
// not allowed) answers that line `-ERR store unavailable`.
//
// The settings come from WASI's environment, which the world in wit/ adds
// (componentize-js 0.23.0 has no `process.env`); the wall clock is
// `Date.now()`, which needs componentize-js's `clocks` feature (see
// ./build). WIT's u64 is a BigInt here: connection ids, the increment's
// delta and count.
import { getEnvironment } from 'wasi:cli/environment@0.2.10';
import { increment } from 'wasi:keyvalue/atomics@0.2.0-draft';
import { open } from 'wasi:keyvalue/store@0.2.0-draft';

// The bucket when RATE_BUCKET is not set: the component's name, the one the
// host allows by default.
const DEFAULT_BUCKET = 'rate-limit-js';
const DEFAULT_LIMIT = 10n;
const DEFAULT_WINDOW = 60n;
// The longest line, its newline included; a longer one closes its
// connection.
const MAX_LINE = 16384;
const NEWLINE = 10;

const encoder = new TextEncoder();
const LIMITED = encoder.encode('-ERR rate limited\r\n');
const UNAVAILABLE = encoder.encode('-ERR store unavailable\r\n');

// A whole number from the environment, `fallback` when it is not set.
function readNumber(env, name, fallback) {
  const text = env[name];
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || BigInt(text) >= 2n ** 63n) throw `${name}=${text} is not a whole number`;
  return BigInt(text);
}

// The operator's settings, read at the first connection: the module's top
// level runs when the component is built, where there is no environment.
function readSettings() {
  const env = Object.fromEntries(getEnvironment());
  const limit = readNumber(env, 'RATE_LIMIT', DEFAULT_LIMIT);
  const window = readNumber(env, 'RATE_WINDOW', DEFAULT_WINDOW);
  if (window === 0n) throw 'RATE_WINDOW=0 is not a whole number of seconds, at least 1';
  return { limit, window, bucket: env.RATE_BUCKET || DEFAULT_BUCKET };
}

// An IPv6 address's eight groups as RFC 5952 writes them: lowercase hex,
// the longest run of two or more zero groups (the first of equals) as `::`.
function formatIpv6(groups) {
  let best = { at: -1, len: 1 };
  for (let at = 0; at < 8; ) {
    let len = 0;
    while (at + len < 8 && groups[at + len] === 0) len += 1;
    if (len > best.len) best = { at, len };
    at += len || 1;
  }
  const hex = (part) => part.map((group) => group.toString(16)).join(':');
  if (best.at < 0) return hex(groups);
  return `${hex(groups.slice(0, best.at))}::${hex(groups.slice(best.at + best.len))}`;
}

// Whose lines a count is for, as the keys spell it: under mutual TLS the
// client's certificate, wherever it connects from (`cert:` and its SHA-256
// fingerprint); else the peer's IP (an IPv4 peer reaching an IPv6
// listener, ::ffff:a.b.c.d, counts as its IPv4 address), or for a peer on
// a Unix domain socket, where clients have no address, its user:
// `uid:1000` (`uid:unknown` without credentials).
function peerKey(peer, tls) {
  if (tls?.peerCertificate !== undefined) return `cert:${tls.peerCertificate.fingerprintSha256}`;
  if (peer.tag === 'unix') {
    const credentials = peer.val.credentials;
    return credentials === undefined ? 'uid:unknown' : `uid:${credentials.uid}`;
  }
  if (peer.tag === 'ipv4') return peer.val.address.join('.');
  const groups = [...peer.val.address];
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    return [groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8, groups[7] & 0xff].join('.');
  }
  return formatIpv6(groups);
}

// The settings and the open bucket, from the first connection that needs
// them; whether the last store call failed (to log once when the store goes
// away and once when it is back); each open connection's peer key and
// unfinished line, by id.
let settings;
let bucket;
let storeFailing = false;
const clients = new Map();

// A store error's text: `{ tag: 'other', val: text }` or a bare tag.
function storeError(e) {
  const error = e.payload ?? e;
  return error.tag === 'other' ? error.val : (error.tag ?? String(error));
}

function storeFailed(call, e) {
  if (!storeFailing) {
    console.error(`rate-limit: ${call} failed: ${storeError(e)}`);
    storeFailing = true;
  }
}

// Counts one line of `who` in the current window: the answer to it, or
// undefined when the line passes.
function countLine(who) {
  let index;
  let count;
  try {
    bucket ??= open(settings.bucket);
    index = BigInt(Math.floor(Date.now() / 1000)) / settings.window;
    count = increment(bucket, `${who}/${index}`, 1n);
  } catch (e) {
    storeFailed('the store', e);
    return UNAVAILABLE;
  }
  if (storeFailing) {
    console.error('rate-limit: the store answers again');
    storeFailing = false;
  }
  if (count === 1n && index > 0n) {
    // The peer's first line in this window: its count of the last one is
    // done with. Failing to delete it leaves one stale key.
    try {
      bucket.delete(`${who}/${index - 1n}`);
    } catch (e) {
      storeFailed('delete', e);
    }
  }
  // The store's integers are signed 64-bit, returned as unsigned: a count
  // below 1 was set by someone else, and allows nothing.
  return count >= 1n && count <= settings.limit ? undefined : LIMITED;
}

// The parts as one array of bytes.
function joined(parts) {
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
    // A bad setting closes every connection, and the host logs why.
    settings ??= readSettings();
    clients.set(conn.id(), { who: peerKey(peer, conn.tls()), partial: new Uint8Array(0) });
  },

  onData(conn, data) {
    const id = conn.id();
    const client = clients.get(id);
    if (client === undefined) return;
    const bytes = joined([client.partial, data]);
    const lines = [];
    let from = 0;
    for (let at = bytes.indexOf(NEWLINE); at !== -1; at = bytes.indexOf(NEWLINE, from)) {
      lines.push(bytes.subarray(from, at + 1));
      from = at + 1;
    }
    client.partial = bytes.slice(from);
    if (client.partial.length >= MAX_LINE) {
      // The error ends the connection and no callback follows.
      clients.delete(id);
      throw `line longer than ${MAX_LINE} bytes`;
    }
    if (lines.length > 0) {
      const answer = lines.map((line) => countLine(client.who) ?? line);
      try {
        conn.write(joined(answer));
      } catch (e) {
        clients.delete(id);
        throw e.payload ?? String(e);
      }
    }
  },

  onEvent(conn, event) {
    clients.delete(conn.id());
    conn.close();
  },

  onAcceptError(listener, error) {},

  // The rate limiter starts no timer and sets no drain watermark.
  onTimer(timer) {},

  onDrain(conn) {},
};
