// The heartbeat line server (examples/heartbeat) in JavaScript: every 300 ms
// it sends PING; a client must answer PONG within 200 ms or it gets TIMEOUT
// and is closed. Every other line comes back as it was sent.
//
// Each connection has two timers: a repeating one for the pings, and a
// one-shot deadline started with each ping and cancelled by the answer.
// `onTimer` gets only a timer's id, so `jobs` says what each is for. WIT's
// u64 is a BigInt here: ids, durations. The owned connection handle from
// `onAccept` is kept, to write from timers, and disposed of when forgotten.
import { start, cancel } from 'evconn:listener/timers@0.2.0';

const dispose = Symbol.dispose ?? Symbol.for('dispose');

// Timers count nanoseconds.
const INTERVAL = 300_000_000n;
const DEADLINE = 200_000_000n;
const MAX_LINE = 1024;
const NEWLINE = 10;
const PING = new Uint8Array([80, 73, 78, 71, NEWLINE]);
const TIMEOUT = new Uint8Array([84, 73, 77, 69, 79, 85, 84, NEWLINE]);

// Each open connection, by id: { conn, partial, ping, deadline }; and what
// each pending timer is for: { kind: 'ping' | 'deadline', id }.
const clients = new Map();
const jobs = new Map();

function forget(id) {
  const client = clients.get(id);
  if (client === undefined) return;
  clients.delete(id);
  for (const timer of [client.ping, client.deadline]) {
    if (timer !== undefined) {
      cancel(timer);
      jobs.delete(timer);
    }
  }
  client.conn[dispose]();
}

function write(conn, bytes) {
  try {
    conn.write(bytes);
  } catch (e) {
    throw e.payload ?? String(e);
  }
}

function isPong(line) {
  let end = line.length;
  if (end > 0 && line[end - 1] === 13) end -= 1;
  return end === 4 && line[0] === 80 && line[1] === 79 && line[2] === 78 && line[3] === 71;
}

export const callbacks = {
  onAccept(listener, conn, peer) {
    const id = conn.id();
    const ping = start(INTERVAL, INTERVAL);
    jobs.set(ping, { kind: 'ping', id });
    clients.set(id, { conn, partial: new Uint8Array(0), ping, deadline: undefined });
  },

  onData(conn, data) {
    const id = conn.id();
    const client = clients.get(id);
    if (client === undefined) return;
    const bytes = new Uint8Array(client.partial.length + data.length);
    bytes.set(client.partial);
    bytes.set(data, client.partial.length);
    const echo = [];
    let from = 0;
    for (let at = bytes.indexOf(NEWLINE); at !== -1; at = bytes.indexOf(NEWLINE, from)) {
      const line = bytes.subarray(from, at);
      if (isPong(line)) {
        if (client.deadline !== undefined) {
          cancel(client.deadline);
          jobs.delete(client.deadline);
          client.deadline = undefined;
        }
      } else {
        echo.push(bytes.subarray(from, at + 1));
      }
      from = at + 1;
    }
    client.partial = bytes.slice(from);
    if (client.partial.length > MAX_LINE) {
      // The error ends the connection and no callback follows.
      forget(id);
      throw `line longer than ${MAX_LINE} bytes`;
    }
    if (echo.length > 0) {
      const out = new Uint8Array(echo.reduce((n, line) => n + line.length, 0));
      let at = 0;
      for (const line of echo) {
        out.set(line, at);
        at += line.length;
      }
      write(conn, out);
    }
  },

  onEvent(conn, event) {
    forget(conn.id());
    conn.close();
  },

  onAcceptError(listener, error) {},

  onTimer(timer) {
    const job = jobs.get(timer);
    if (job === undefined) return;
    const client = clients.get(job.id);
    if (job.kind === 'ping') {
      // Still waiting for the last answer: its deadline will do.
      if (client !== undefined && client.deadline === undefined) {
        write(client.conn, PING);
        const deadline = start(DEADLINE, undefined);
        jobs.set(deadline, { kind: 'deadline', id: job.id });
        client.deadline = deadline;
      }
    } else {
      jobs.delete(timer);
      if (client !== undefined) {
        try {
          client.conn.write(TIMEOUT);
        } catch (e) {}
        client.conn.close();
      }
      forget(job.id);
    }
  },

  // Lines are echoed as they come: reading pauses before the output could
  // reach the cap.
  onDrain(conn) {},
};
