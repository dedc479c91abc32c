//! What each command does, with Redis's replies and error messages, for the
//! commands this server knows: the data commands (PING, ECHO, SET, GET, DEL,
//! EXISTS, INCR, DBSIZE), expiry (SET's EX and PX, EXPIRE, PEXPIRE, TTL,
//! PTTL, PERSIST) and those `redis-cli`, `redis-benchmark` and client
//! libraries send on their own (COMMAND, CONFIG GET, HELLO, CLIENT, SELECT,
//! QUIT), answered so that they carry on.
//!
//! The keys live in a [`Store`] that other instances share, so a command
//! makes as few store calls as it can, and never counts on two calls
//! seeing the same store: GET, SET, TTL, PTTL and EXISTS make one; INCR one
//! (the store's atomic `increment`) on a key without a deadline, three on a
//! key with one; DEL, EXPIRE, PEXPIRE and PERSIST two; DBSIZE one per page
//! of keys (pipelined runs share calls: see `batch`). A failed store call
//! is answered `-ERR store: ...`.
use crate::entry::{self, Entry, NEVER};
use crate::keys;
use crate::reply::Reply;
use crate::store::{Store, StoreError};

/// What the connection does once the reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Read the next request.
    Continue,
    /// Close (after `QUIT`).
    Close,
}

/// What a command works on besides its arguments.
pub struct Context<'a> {
    /// The keys and values, shared with every other instance.
    pub store: &'a mut dyn Store,
    /// The connection's id, which `CLIENT ID` and `HELLO` report.
    pub client: u64,
    /// The time the command runs at, in milliseconds since the Unix epoch
    /// (the wall clock, which every host agrees on, unlike a monotonic one).
    pub now: u64,
}

type Run = fn(&mut Context, &[Vec<u8>]) -> Reply;

/// Every command: its name, its arity as Redis counts it (the name
/// included; negative for "at least"), and what it does.
const COMMANDS: &[(&str, i32, Run)] = &[
    ("ping", -1, ping),
    ("echo", 2, echo),
    ("set", -3, set),
    ("get", 2, get),
    ("del", -2, del),
    ("exists", -2, exists),
    ("incr", 2, incr),
    ("dbsize", 1, dbsize),
    ("expire", -3, expire),
    ("pexpire", -3, pexpire),
    ("ttl", 2, ttl),
    ("pttl", 2, pttl),
    ("persist", 2, persist),
    ("command", -1, command),
    ("config", -2, config),
    ("hello", -1, hello),
    ("client", -2, client),
    ("select", 2, select),
    ("quit", -1, quit),
];

/// What `CONFIG GET` reports. `redis-benchmark` asks for `save` and
/// `appendonly` before it starts; nothing is ever saved here.
const SETTINGS: &[(&str, &str)] = &[("save", ""), ("appendonly", "no")];

/// Milliseconds in a second, the unit of `EX` and `EXPIRE`.
const SECOND: u64 = 1000;

/// Milliseconds in a millisecond, the unit of `PX` and `PEXPIRE`.
const MILLISECOND: u64 = 1;

/// Runs one request; `args` holds at least the command's name.
pub fn execute(context: &mut Context, args: &[Vec<u8>]) -> (Reply, Then) {
    let Some(&(name, arity, run)) = COMMANDS.iter().find(|(known, ..)| known.as_bytes().eq_ignore_ascii_case(&args[0]))
    else {
        return (unknown_command(args), Then::Continue);
    };
    let fits = if arity >= 0 { args.len() == arity as usize } else { args.len() >= arity.unsigned_abs() as usize };
    if !fits {
        return (wrong_arity(name), Then::Continue);
    }
    let then = if name == "quit" { Then::Close } else { Then::Continue };
    (run(context, args), then)
}

fn ping(_: &mut Context, args: &[Vec<u8>]) -> Reply {
    match args {
        [_] => Reply::Status("PONG"),
        [_, message] => Reply::Bulk(message.clone()),
        _ => wrong_arity("ping"),
    }
}

fn echo(_: &mut Context, args: &[Vec<u8>]) -> Reply {
    Reply::Bulk(args[1].clone())
}

/// One store call: the value and its deadline go in one store value.
fn set(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    let mut deadline = None;
    let mut options = args[3..].iter();
    while let Some(option) = options.next() {
        let option = lowercase(option);
        let unit = match option.as_str() {
            "ex" => SECOND,
            "px" => MILLISECOND,
            "nx" | "xx" | "get" | "exat" | "pxat" | "keepttl" => {
                return Reply::err(format!("SET option '{}' is not supported", option.to_uppercase()));
            }
            _ => return Reply::err("syntax error"),
        };
        // One of EX and PX, once, with its number.
        let (None, Some(amount)) = (deadline, options.next()) else { return Reply::err("syntax error") };
        let Some(amount) = integer(amount) else { return not_an_integer() };
        let Some(when) = expiry_at(amount, unit, context.now) else {
            return Reply::err("invalid expire time in 'set' command");
        };
        deadline = Some(when);
    }
    let stored = entry::encode(&args[2], deadline);
    match context.store.set(&keys::store_key(&args[1]), &stored) {
        Ok(()) => Reply::Status("OK"),
        Err(error) => store_error(error),
    }
}

/// `now` plus `amount` of `unit` milliseconds, if `amount` is positive and
/// the sum is a time the store can hold.
fn expiry_at(amount: i64, unit: u64, now: u64) -> Option<u64> {
    let amount = u64::try_from(amount).ok().filter(|&amount| amount > 0)?;
    amount.checked_mul(unit)?.checked_add(now).filter(|&when| when < NEVER)
}

/// The entry of the Redis key whose store key is `key`, unless it has none
/// or its deadline has passed: one store call.
fn live(context: &mut Context, key: &str) -> Result<Option<Entry>, StoreError> {
    let stored = context.store.get(key)?;
    Ok(stored.map(Entry::decode).filter(|entry| entry.is_live(context.now)))
}

/// A key past its deadline reads as gone; the sweep (`sweep.rs`) removes
/// it from the store.
fn get(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    match live(context, &keys::store_key(&args[1])) {
        Ok(Some(entry)) => Reply::Bulk(entry.value),
        Ok(None) => Reply::Null,
        Err(error) => store_error(error),
    }
}

/// Two store calls: one read, to count the keys that exist (a key named
/// twice counts once, as in Redis), and one write that removes them.
fn del(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    let mut keys: Vec<String> = args[1..].iter().map(|key| keys::store_key(key)).collect();
    keys.sort_unstable();
    keys.dedup();
    let values = match context.store.get_many(&keys) {
        Ok(values) => values,
        Err(error) => return store_error(error),
    };
    let mut removed = 0;
    let mut present = Vec::new();
    for (key, value) in keys.into_iter().zip(values) {
        let Some(stored) = value else { continue };
        // A key past its deadline goes too, but does not count.
        if entry::deadline(&stored).is_none_or(|deadline| context.now < deadline) {
            removed += 1;
        }
        present.push(key);
    }
    if !present.is_empty()
        && let Err(error) = context.store.delete_many(&present)
    {
        return store_error(error);
    }
    Reply::Integer(removed)
}

/// One store call.
fn exists(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    // As in Redis, a key named twice counts twice.
    let keys: Vec<String> = args[1..].iter().map(|key| keys::store_key(key)).collect();
    match context.store.get_many(&keys) {
        Ok(values) => Reply::Integer(
            values
                .iter()
                .flatten()
                .filter(|stored| entry::deadline(stored).is_none_or(|deadline| context.now < deadline))
                .count() as i64,
        ),
        Err(error) => store_error(error),
    }
}

/// One store call per page of keys; like Redis's, the count includes keys
/// past their deadline that the sweep has not removed yet.
fn dbsize(context: &mut Context, _: &[Vec<u8>]) -> Reply {
    let mut count = 0;
    let mut cursor = None;
    loop {
        let page = match context.store.list_keys(cursor) {
            Ok(page) => page,
            Err(error) => return store_error(error),
        };
        count += page.keys.iter().filter(|key| keys::is_user_key(key)).count() as i64;
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Reply::Integer(count),
        }
    }
}

fn expire(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    set_time_to_live(context, args, SECOND, "expire")
}

fn pexpire(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    set_time_to_live(context, args, MILLISECOND, "pexpire")
}

/// EXPIRE and PEXPIRE: 1 if the key exists (a time that is not positive
/// removes it, as in Redis), 0 if not. Two store calls: a read, then the
/// value written back with its new deadline.
fn set_time_to_live(context: &mut Context, args: &[Vec<u8>], unit: u64, name: &str) -> Reply {
    if let Some(option) = args.get(3) {
        return Reply::err(format!("Unsupported option {}", String::from_utf8_lossy(option)));
    }
    let Some(amount) = integer(&args[2]) else { return not_an_integer() };
    let when = expiry_at(amount, unit, context.now);
    if amount > 0 && when.is_none() {
        return Reply::err(format!("invalid expire time in '{name}' command"));
    }
    let key = keys::store_key(&args[1]);
    let entry = match live(context, &key) {
        Ok(Some(entry)) => entry,
        Ok(None) => return Reply::Integer(0),
        Err(error) => return store_error(error),
    };
    let written = match when {
        Some(when) => context.store.set(&key, &entry::encode(&entry.value, Some(when))),
        None => context.store.delete(&key),
    };
    match written {
        Ok(()) => Reply::Integer(1),
        Err(error) => store_error(error),
    }
}

fn ttl(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    // Rounded to the nearest second, as Redis does.
    time_left(context, &args[1], |left| (left as i64 + 500) / 1000)
}

fn pttl(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    time_left(context, &args[1], |left| left as i64)
}

/// TTL and PTTL: -2 for no such key, -1 for a key that never expires,
/// else the time left in the unit `count` gives, from milliseconds. One
/// store call.
fn time_left(context: &mut Context, key: &[u8], count: impl Fn(u64) -> i64) -> Reply {
    match live(context, &keys::store_key(key)) {
        Ok(None) => Reply::Integer(-2),
        Ok(Some(Entry { deadline: None, .. })) => Reply::Integer(-1),
        Ok(Some(Entry { deadline: Some(when), .. })) => Reply::Integer(count(when - context.now)),
        Err(error) => store_error(error),
    }
}

/// PERSIST: 1 if the key had a deadline and lost it, 0 otherwise. Two
/// store calls when it has one.
fn persist(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    let key = keys::store_key(&args[1]);
    let entry = match live(context, &key) {
        Ok(Some(entry)) if entry.deadline.is_some() => entry,
        Ok(_) => return Reply::Integer(0),
        Err(error) => return store_error(error),
    };
    match context.store.set(&key, &entry::encode(&entry.value, None)) {
        Ok(()) => Reply::Integer(1),
        Err(error) => store_error(error),
    }
}

/// INCR: one call to the store's atomic `increment`, which counts a bare
/// decimal integer, so that clients of every instance and host add up.
/// The store refuses what it cannot count (a value with a deadline, one
/// that is not an integer, a sum past `i64`, or a write past its budget);
/// then the value is read to answer as Redis would.
fn incr(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    let key = keys::store_key(&args[1]);
    match context.store.increment(&key, 1) {
        Ok(n) => Reply::Integer(n),
        Err(refused) => incr_refused(context, &key, refused),
    }
}

/// What INCR answers once the store's `increment` refused `key`: for a
/// value with a deadline, the sum written back with it (a read and a write,
/// which another instance's write to the same key may come between).
fn incr_refused(context: &mut Context, key: &str, refused: StoreError) -> Reply {
    let stored = match context.store.get(key) {
        Ok(Some(stored)) => stored,
        // Not the value's fault.
        Ok(None) => return store_error(refused),
        Err(error) => return store_error(error),
    };
    let entry = Entry::decode(stored);
    let (next, deadline) = if entry.is_live(context.now) {
        let Some(current) = integer(&entry.value) else { return not_an_integer() };
        let Some(next) = current.checked_add(1) else {
            return Reply::err("increment or decrement would overflow");
        };
        // The store counts a bare integer: it refused for reasons of its own.
        let Some(deadline) = entry.deadline else { return store_error(refused) };
        // INCR keeps the key's deadline, as in Redis.
        (next, Some(deadline))
    } else {
        // Gone at its deadline: counted from nothing, and it no longer
        // expires, as in Redis.
        (1, None)
    };
    match context.store.set(key, &entry::encode(next.to_string().as_bytes(), deadline)) {
        Ok(()) => Reply::Integer(next),
        Err(error) => store_error(error),
    }
}

/// `redis-cli` asks for `COMMAND DOCS` when it starts, for its hints; an
/// empty table makes it use the help built into it.
fn command(_: &mut Context, args: &[Vec<u8>]) -> Reply {
    match subcommand(args).as_deref() {
        None | Some("docs" | "info" | "list") => Reply::Array(Vec::new()),
        Some("count") => Reply::Integer(0),
        Some(other) => unsupported_subcommand("command", other),
    }
}

fn config(_: &mut Context, args: &[Vec<u8>]) -> Reply {
    match subcommand(args).as_deref() {
        Some("get") if args.len() >= 3 => Reply::Array(
            args[2..]
                .iter()
                .filter_map(|asked| SETTINGS.iter().find(|(name, _)| *name == lowercase(asked)))
                .flat_map(|(name, value)| [Reply::text(name), Reply::text(value)])
                .collect(),
        ),
        Some("get") => wrong_arity("config|get"),
        other => unsupported_subcommand("config", other.unwrap_or_default()),
    }
}

/// Clients that try RESP3 (`HELLO 3`) are told it is not spoken here, as
/// Redis tells them, and carry on in RESP2.
fn hello(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    match args.get(1).map(|version| integer(version)) {
        None | Some(Some(2)) => {}
        Some(Some(_)) => return Reply::Error("NOPROTO unsupported protocol version".into()),
        Some(None) => return Reply::err("Protocol version is not an integer or out of range"),
    }
    if let Some(option) = args.get(2) {
        return Reply::err(format!("Syntax error in HELLO option '{}'", String::from_utf8_lossy(option)));
    }
    Reply::Array(vec![
        Reply::text("server"),
        Reply::text("evconn-kv"),
        Reply::text("version"),
        Reply::text(env!("CARGO_PKG_VERSION")),
        Reply::text("proto"),
        Reply::Integer(2),
        Reply::text("id"),
        Reply::Integer(context.client as i64),
        Reply::text("mode"),
        Reply::text("standalone"),
        Reply::text("role"),
        Reply::text("master"),
        Reply::text("modules"),
        Reply::Array(Vec::new()),
    ])
}

/// Client libraries name their connections; the name is not kept.
fn client(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    match subcommand(args).as_deref() {
        Some("setname" | "setinfo") => Reply::Status("OK"),
        Some("id") => Reply::Integer(context.client as i64),
        other => unsupported_subcommand("client", other.unwrap_or_default()),
    }
}

/// There is one database, number 0.
fn select(_: &mut Context, args: &[Vec<u8>]) -> Reply {
    match integer(&args[1]) {
        Some(0) => Reply::Status("OK"),
        Some(_) => Reply::err("DB index is out of range"),
        None => not_an_integer(),
    }
}

fn quit(_: &mut Context, _: &[Vec<u8>]) -> Reply {
    Reply::Status("OK")
}

/// A signed 64-bit integer written as Redis writes one: no sign but `-`, no
/// leading zeros, no spaces, no `-0`.
fn integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let n: i64 = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

fn lowercase(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_ascii_lowercase()
}

fn subcommand(args: &[Vec<u8>]) -> Option<String> {
    args.get(1).map(|word| lowercase(word))
}

/// Redis's answer to a command it does not know, quoting the first
/// arguments (at most about 128 bytes of them).
fn unknown_command(args: &[Vec<u8>]) -> Reply {
    let mut quoted = String::new();
    for arg in &args[1..] {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        quoted.push_str(&format!("'{}' ", String::from_utf8_lossy(&arg[..arg.len().min(room)])));
    }
    let name = String::from_utf8_lossy(&args[0][..args[0].len().min(128)]);
    Reply::err(format!("unknown command '{name}', with args beginning with: {quoted}"))
}

fn wrong_arity(name: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{name}' command"))
}

fn unsupported_subcommand(command: &str, subcommand: &str) -> Reply {
    Reply::err(format!("unsupported subcommand '{subcommand}' for '{command}'"))
}

fn not_an_integer() -> Reply {
    Reply::err("value is not an integer or out of range")
}

/// A failed store call, as the client reads it: `-ERR store: ...`.
fn store_error(error: StoreError) -> Reply {
    Reply::err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::MemoryStore;

    /// A store, a client id and a clock that moves only when told, and a
    /// way to run commands on them.
    struct Session {
        store: MemoryStore,
        now: u64,
    }

    impl Session {
        fn new() -> Self {
            Session { store: MemoryStore::default(), now: 1_750_000_000_000 }
        }

        fn run(&mut self, words: &[&str]) -> Reply {
            let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
            self.run_bytes(&args)
        }

        fn run_bytes(&mut self, args: &[Vec<u8>]) -> Reply {
            execute(&mut Context { store: &mut self.store, client: 7, now: self.now }, args).0
        }

        /// Runs `words` and says how many store calls it made.
        fn calls(&mut self, words: &[&str]) -> usize {
            let before = self.store.calls;
            self.run(words);
            self.store.calls - before
        }

        fn wait(&mut self, ms: u64) {
            self.now += ms;
        }
    }

    fn bulk(text: &str) -> Reply {
        Reply::text(text)
    }

    fn err(text: &str) -> Reply {
        Reply::Error(text.into())
    }

    /// PING and ECHO, any case.
    #[test]
    fn ping_and_echo() {
        let mut s = Session::new();
        assert_eq!(s.run(&["PING"]), Reply::Status("PONG"));
        assert_eq!(s.run(&["ping", "hi there"]), bulk("hi there"));
        assert_eq!(s.run(&["PING", "a", "b"]), err("ERR wrong number of arguments for 'ping' command"));
        assert_eq!(s.run(&["eChO", ""]), bulk(""));
        assert_eq!(s.run(&["ECHO"]), err("ERR wrong number of arguments for 'echo' command"));
    }

    /// SET, GET, DEL and EXISTS as Redis answers them.
    #[test]
    fn set_get_del_exists() {
        let mut s = Session::new();
        assert_eq!(s.run(&["GET", "k"]), Reply::Null);
        assert_eq!(s.run(&["SET", "k", "v1"]), Reply::Status("OK"));
        assert_eq!(s.run(&["SET", "k", "v2"]), Reply::Status("OK"));
        assert_eq!(s.run(&["GET", "k"]), bulk("v2"));
        assert_eq!(s.run(&["SET", "j", ""]), Reply::Status("OK"));
        assert_eq!(s.run(&["EXISTS", "k", "j", "nope", "k"]), Reply::Integer(3));
        assert_eq!(s.run(&["DEL", "k", "nope", "k"]), Reply::Integer(1));
        assert_eq!(s.run(&["EXISTS", "k"]), Reply::Integer(0));
        assert_eq!(s.run(&["GET", "j"]), bulk(""));
        assert_eq!(s.run(&["GET"]), err("ERR wrong number of arguments for 'get' command"));
        assert_eq!(s.run(&["GET", "a", "b"]), err("ERR wrong number of arguments for 'get' command"));
        assert_eq!(s.run(&["DEL"]), err("ERR wrong number of arguments for 'del' command"));
        assert_eq!(s.run(&["EXISTS"]), err("ERR wrong number of arguments for 'exists' command"));
        assert_eq!(s.run(&["SET", "k"]), err("ERR wrong number of arguments for 'set' command"));
    }

    /// SET options other than EX and PX are refused, as are bad times; a
    /// refused SET changes nothing.
    #[test]
    fn set_options_are_refused() {
        let mut s = Session::new();
        assert_eq!(s.run(&["SET", "k", "v", "nx"]), err("ERR SET option 'NX' is not supported"));
        assert_eq!(s.run(&["SET", "k", "v", "KEEPTTL"]), err("ERR SET option 'KEEPTTL' is not supported"));
        assert_eq!(s.run(&["SET", "k", "v", "whatever"]), err("ERR syntax error"));
        assert_eq!(s.run(&["SET", "k", "v", "EX"]), err("ERR syntax error"));
        assert_eq!(s.run(&["SET", "k", "v", "EX", "1", "PX", "5"]), err("ERR syntax error"));
        assert_eq!(s.run(&["SET", "k", "v", "EX", "0"]), err("ERR invalid expire time in 'set' command"));
        assert_eq!(s.run(&["SET", "k", "v", "PX", "-5"]), err("ERR invalid expire time in 'set' command"));
        assert_eq!(s.run(&["SET", "k", "v", "EX", "ten"]), err("ERR value is not an integer or out of range"));
        assert_eq!(s.run(&["GET", "k"]), Reply::Null);
    }

    /// Keys set with EX or PX, or given a time by EXPIRE or PEXPIRE, are
    /// gone at their time; TTL and PTTL answer as Redis does (-2 for no
    /// key, -1 for no expiry); PERSIST and SET take the expiry away, INCR
    /// keeps it.
    #[test]
    fn keys_expire_as_in_redis() {
        let mut s = Session::new();
        assert_eq!(s.run(&["SET", "k", "v", "PX", "200"]), Reply::Status("OK"));
        assert_eq!(s.run(&["PTTL", "k"]), Reply::Integer(200));
        assert_eq!(s.run(&["TTL", "k"]), Reply::Integer(0), "200 ms rounds to 0 s");
        s.wait(199);
        assert_eq!(s.run(&["GET", "k"]), bulk("v"));
        s.wait(1);
        assert_eq!(s.run(&["GET", "k"]), Reply::Null);
        assert_eq!(s.run(&["TTL", "k"]), Reply::Integer(-2));
        assert_eq!(s.run(&["PTTL", "k"]), Reply::Integer(-2));

        assert_eq!(s.run(&["SET", "n", "1", "ex", "100"]), Reply::Status("OK"));
        assert_eq!(s.run(&["TTL", "n"]), Reply::Integer(100));
        assert_eq!(s.run(&["INCR", "n"]), Reply::Integer(2));
        assert_eq!(s.run(&["TTL", "n"]), Reply::Integer(100), "INCR keeps the expiry");
        assert_eq!(s.run(&["PERSIST", "n"]), Reply::Integer(1));
        assert_eq!(s.run(&["PERSIST", "n"]), Reply::Integer(0), "no expiry left to take");
        assert_eq!(s.run(&["TTL", "n"]), Reply::Integer(-1));
        assert_eq!(s.run(&["EXPIRE", "n", "5"]), Reply::Integer(1));
        assert_eq!(s.run(&["PEXPIRE", "n", "1500"]), Reply::Integer(1));
        assert_eq!(s.run(&["TTL", "n"]), Reply::Integer(2), "1.5 s rounds to 2");
        assert_eq!(s.run(&["SET", "n", "9"]), Reply::Status("OK"));
        assert_eq!(s.run(&["TTL", "n"]), Reply::Integer(-1), "SET drops the expiry");
        assert_eq!(s.run(&["EXPIRE", "missing", "5"]), Reply::Integer(0));
        assert_eq!(s.run(&["EXPIRE", "n", "0"]), Reply::Integer(1), "a time that is not positive removes the key");
        assert_eq!(s.run(&["EXISTS", "n"]), Reply::Integer(0));
        assert_eq!(s.run(&["EXPIRE", "n", "x"]), err("ERR value is not an integer or out of range"));
        assert_eq!(s.run(&["EXPIRE", "n", "5", "NX"]), err("ERR Unsupported option NX"));
        assert_eq!(s.run(&["TTL"]), err("ERR wrong number of arguments for 'ttl' command"));
    }

    /// DBSIZE counts the keys held, those past their deadline that the
    /// sweep has not removed yet included (as Redis's does).
    #[test]
    fn dbsize_counts_keys() {
        let mut s = Session::new();
        assert_eq!(s.run(&["DBSIZE"]), Reply::Integer(0));
        s.run(&["SET", "a", "1"]);
        s.run(&["SET", "b", "1", "PX", "10"]);
        assert_eq!(s.run(&["DBSIZE"]), Reply::Integer(2));
        s.wait(10);
        assert_eq!(s.run(&["GET", "b"]), Reply::Null);
        assert_eq!(s.run(&["DBSIZE"]), Reply::Integer(2));
    }

    /// INCR counts from nothing, and refuses what Redis refuses.
    #[test]
    fn incr_follows_redis() {
        let mut s = Session::new();
        assert_eq!(s.run(&["INCR", "n"]), Reply::Integer(1));
        assert_eq!(s.run(&["INCR", "n"]), Reply::Integer(2));
        assert_eq!(s.run(&["GET", "n"]), bulk("2"));
        s.run(&["SET", "n", "-5"]);
        assert_eq!(s.run(&["INCR", "n"]), Reply::Integer(-4));
        for not_integer in ["abc", "", " 1", "1 ", "+1", "01", "-0", "1.5", "99999999999999999999"] {
            s.run(&["SET", "bad", not_integer]);
            assert_eq!(s.run(&["INCR", "bad"]), err("ERR value is not an integer or out of range"), "{not_integer:?}");
            assert_eq!(s.run(&["GET", "bad"]), bulk(not_integer), "unchanged");
        }
        s.run(&["SET", "max", &i64::MAX.to_string()]);
        assert_eq!(s.run(&["INCR", "max"]), err("ERR increment or decrement would overflow"));
        s.run(&["SET", "min", &i64::MIN.to_string()]);
        assert_eq!(s.run(&["INCR", "min"]), Reply::Integer(i64::MIN + 1));
        assert_eq!(s.run(&["INCR", "a", "b"]), err("ERR wrong number of arguments for 'incr' command"));
    }

    /// Unknown commands are named, with their first arguments, as Redis 7 does.
    #[test]
    fn unknown_commands_are_named() {
        let mut s = Session::new();
        assert_eq!(s.run(&["FLUSHALL"]), err("ERR unknown command 'FLUSHALL', with args beginning with: "));
        assert_eq!(s.run(&["foo", "a", "b c"]), err("ERR unknown command 'foo', with args beginning with: 'a' 'b c' "));
        let long = "x".repeat(300);
        let Reply::Error(message) = s.run(&["foo", &long, "more"]) else { panic!("an error") };
        assert!(message.len() < 200 && !message.contains("more"), "arguments are cut short: {message}");
    }

    /// What redis-cli and redis-benchmark send on their own gets answers
    /// they accept.
    #[test]
    fn tool_commands_get_harmless_answers() {
        let mut s = Session::new();
        assert_eq!(s.run(&["COMMAND", "DOCS"]), Reply::Array(vec![]));
        assert_eq!(s.run(&["COMMAND"]), Reply::Array(vec![]));
        assert_eq!(s.run(&["CONFIG", "GET", "save"]), Reply::Array(vec![bulk("save"), bulk("")]));
        assert_eq!(
            s.run(&["config", "get", "APPENDONLY", "nonsense", "save"]),
            Reply::Array(vec![bulk("appendonly"), bulk("no"), bulk("save"), bulk("")])
        );
        assert_eq!(s.run(&["CONFIG", "GET"]), err("ERR wrong number of arguments for 'config|get' command"));
        assert_eq!(s.run(&["CONFIG", "SET", "save", ""]), err("ERR unsupported subcommand 'set' for 'config'"));
        assert_eq!(s.run(&["CLIENT", "SETNAME", "me"]), Reply::Status("OK"));
        assert_eq!(s.run(&["CLIENT", "ID"]), Reply::Integer(7));
        assert_eq!(s.run(&["SELECT", "0"]), Reply::Status("OK"));
        assert_eq!(s.run(&["SELECT", "1"]), err("ERR DB index is out of range"));
        assert_eq!(s.run(&["SELECT", "x"]), err("ERR value is not an integer or out of range"));
    }

    /// HELLO speaks RESP2 only.
    #[test]
    fn hello_speaks_resp2_only() {
        let mut s = Session::new();
        for hello in [&["HELLO"][..], &["HELLO", "2"]] {
            let Reply::Array(fields) = s.run(hello) else { panic!("an array for {hello:?}") };
            assert_eq!(fields.len(), 14);
            assert_eq!(fields[4..6], [bulk("proto"), Reply::Integer(2)]);
            assert_eq!(fields[6..8], [bulk("id"), Reply::Integer(7)]);
        }
        assert_eq!(s.run(&["HELLO", "3"]), err("NOPROTO unsupported protocol version"));
        assert_eq!(s.run(&["HELLO", "two"]), err("ERR Protocol version is not an integer or out of range"));
        assert_eq!(s.run(&["HELLO", "2", "AUTH", "a", "b"]), err("ERR Syntax error in HELLO option 'AUTH'"));
    }

    /// QUIT answers OK and closes; nothing else closes.
    #[test]
    fn only_quit_closes() {
        let mut store = MemoryStore::default();
        let mut context = Context { store: &mut store, client: 1, now: 0 };
        assert_eq!(execute(&mut context, &[b"quit".to_vec()]), (Reply::Status("OK"), Then::Close));
        assert_eq!(execute(&mut context, &[b"nope".to_vec()]).1, Then::Continue);
        assert_eq!(execute(&mut context, &[b"ping".to_vec()]).1, Then::Continue);
    }

    /// A store that fails (a bucket not allowed, a budget spent, Redis
    /// gone) gets `-ERR store: ...` for every command that needs it, and
    /// the others still work.
    #[test]
    fn store_errors_become_err_replies() {
        let mut s = Session::new();
        s.run(&["SET", "k", "1", "EX", "100"]);
        s.store.broken = Some("store: over the operator's budget".into());
        let failed = err("ERR store: over the operator's budget");
        for command in [
            &["GET", "k"][..],
            &["SET", "k", "v"],
            &["SET", "k", "v", "PX", "5"],
            &["DEL", "k"],
            &["EXISTS", "k"],
            &["INCR", "k"],
            &["INCR", "n"],
            &["DBSIZE"],
            &["EXPIRE", "k", "5"],
            &["PEXPIRE", "k", "0"],
            &["TTL", "k"],
            &["PTTL", "k"],
            &["PERSIST", "k"],
        ] {
            assert_eq!(s.run(command), failed, "{command:?}");
        }
        assert_eq!(s.run(&["PING"]), Reply::Status("PONG"));
        assert_eq!(s.run(&["EXPIRE", "k", "x"]), err("ERR value is not an integer or out of range"));
        s.store.broken = None;
        assert_eq!(s.run(&["GET", "k"]), bulk("1"), "nothing changed");
    }

    /// GET, SET without a deadline and INCR of a key without one make one
    /// store call each (the benchmark's commands); SET with a deadline too.
    #[test]
    fn hot_paths_make_one_store_call() {
        let mut s = Session::new();
        assert_eq!(s.calls(&["SET", "k", "v"]), 1);
        assert_eq!(s.calls(&["GET", "k"]), 1);
        assert_eq!(s.calls(&["GET", "missing"]), 1);
        assert_eq!(s.calls(&["INCR", "n"]), 1);
        assert_eq!(s.calls(&["INCR", "n"]), 1);
        assert_eq!(s.calls(&["SET", "e", "v", "PX", "100"]), 1);
        assert_eq!(s.calls(&["GET", "e"]), 1);
        assert_eq!(s.calls(&["EXISTS", "k", "e", "n"]), 1);
        assert_eq!(s.calls(&["TTL", "e"]), 1);
        assert_eq!(s.calls(&["PING"]), 0);
    }

    /// INCR of a bare integer leaves the count to the store's `increment`
    /// (atomic across instances): another instance's INCRs, straight on the
    /// store, add up with this one's.
    #[test]
    fn incr_counts_in_the_store() {
        let mut s = Session::new();
        assert_eq!(s.run(&["INCR", "hits"]), Reply::Integer(1));
        assert_eq!(s.store.increment("k:hits", 5), Ok(6), "the store holds a bare integer");
        assert_eq!(s.run(&["INCR", "hits"]), Reply::Integer(7));
        s.run(&["SET", "hits", "41"]);
        assert_eq!(s.store.entries["k:hits"], b"41", "SET without a deadline stores the value as it is");
        assert_eq!(s.run(&["INCR", "hits"]), Reply::Integer(42));
    }

    /// INCR of a key with a deadline keeps it; of a key past its deadline,
    /// counts from nothing without one.
    #[test]
    fn incr_keeps_a_deadline_and_restarts_an_expired_key() {
        let mut s = Session::new();
        s.run(&["SET", "n", "10", "PX", "1000"]);
        assert_eq!(s.run(&["INCR", "n"]), Reply::Integer(11));
        assert_eq!(s.run(&["PTTL", "n"]), Reply::Integer(1000));
        s.wait(1000);
        assert_eq!(s.run(&["INCR", "n"]), Reply::Integer(1));
        assert_eq!(s.run(&["TTL", "n"]), Reply::Integer(-1));
        assert_eq!(s.calls(&["INCR", "n"]), 1, "bare again, so counted by the store");
        s.run(&["SET", "w", "word", "EX", "10"]);
        assert_eq!(s.run(&["INCR", "w"]), err("ERR value is not an integer or out of range"));
        s.run(&["SET", "m", &i64::MAX.to_string(), "EX", "10"]);
        assert_eq!(s.run(&["INCR", "m"]), err("ERR increment or decrement would overflow"));
    }

    /// Keys and values of any bytes: keys that are not UTF-8 or hold `%`,
    /// values that start with the byte that marks a deadline.
    #[test]
    fn any_bytes_make_keys_and_values() {
        let mut s = Session::new();
        let set = |key: &[u8], value: &[u8]| vec![b"SET".to_vec(), key.to_vec(), value.to_vec()];
        let get = |key: &[u8]| vec![b"GET".to_vec(), key.to_vec()];
        assert_eq!(s.run_bytes(&set(b"\xff", b"\xff\x00binary")), Reply::Status("OK"));
        assert_eq!(s.run_bytes(&set(b"%FF", b"text")), Reply::Status("OK"));
        assert_eq!(s.run_bytes(&get(b"\xff")), Reply::Bulk(b"\xff\x00binary".to_vec()));
        assert_eq!(s.run_bytes(&get(b"%FF")), bulk("text"));
        assert_eq!(s.run_bytes(&[b"TTL".to_vec(), b"\xff".to_vec()]), Reply::Integer(-1));
        assert_eq!(s.run(&["DBSIZE"]), Reply::Integer(2));
    }

    /// DBSIZE counts Redis keys across every page, and not the handler's
    /// own keys.
    #[test]
    fn dbsize_counts_every_page() {
        let mut s = Session::new();
        for n in 0..10 {
            s.run(&["SET", &format!("key:{n}"), "v"]);
        }
        s.store.set("sweep:cursor", b"4").unwrap();
        assert_eq!(s.calls(&["DBSIZE"]), 3, "pages of 4");
        assert_eq!(s.run(&["DBSIZE"]), Reply::Integer(10));
    }
}
