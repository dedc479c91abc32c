//! What each command does, with Redis's replies and error messages, for the
//! commands this server knows: the data commands (PING, ECHO, SET, GET, DEL,
//! EXISTS, INCR, DBSIZE), expiry (SET's EX and PX, EXPIRE, PEXPIRE, TTL,
//! PTTL, PERSIST) and those `redis-cli`, `redis-benchmark` and client
//! libraries send on their own (COMMAND, CONFIG GET, HELLO, CLIENT, SELECT,
//! QUIT), answered so that they carry on.
use std::time::{Duration, Instant};

use crate::reply::Reply;
use crate::store::{OverBudget, Store, after};

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
    /// The keys and values, shared by every connection of the instance.
    pub store: &'a mut Store,
    /// The connection's id, which `CLIENT ID` and `HELLO` report.
    pub client: u64,
    /// The time the command runs at, by the instance's monotonic clock.
    pub now: Instant,
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

/// Runs one request; `args` holds at least the command's name.
pub fn execute(context: &mut Context, args: &[Vec<u8>]) -> (Reply, Then) {
    let name = lowercase(&args[0]);
    let Some(&(name, arity, run)) = COMMANDS.iter().find(|(known, ..)| *known == name) else {
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

fn set(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    let mut ttl = None;
    let mut options = args[3..].iter();
    while let Some(option) = options.next() {
        let option = lowercase(option);
        let unit: fn(u64) -> Duration = match option.as_str() {
            "ex" => Duration::from_secs,
            "px" => Duration::from_millis,
            "nx" | "xx" | "get" | "exat" | "pxat" | "keepttl" => {
                return Reply::err(format!("SET option '{}' is not supported", option.to_uppercase()));
            }
            _ => return Reply::err("syntax error"),
        };
        // One of EX and PX, once, with its number.
        let (None, Some(amount)) = (ttl, options.next()) else { return Reply::err("syntax error") };
        ttl = Some(match time_to_live(amount, unit, context.now) {
            Ok(Some(when)) => when,
            Ok(None) => return Reply::err("invalid expire time in 'set' command"),
            Err(reply) => return reply,
        });
    }
    match context.store.set(&args[1], args[2].clone(), ttl) {
        Ok(()) => Reply::Status("OK"),
        Err(OverBudget) => out_of_memory(),
    }
}

/// When a key given `amount` of `unit` to live at `now` expires: `Ok(None)`
/// for a time that is not positive or does not fit the clock, `Err` with
/// Redis's reply for what is not an integer.
fn time_to_live(amount: &[u8], unit: fn(u64) -> Duration, now: Instant) -> Result<Option<Instant>, Reply> {
    let amount = integer(amount).ok_or_else(not_an_integer)?;
    Ok(expiry_at(amount, unit, now))
}

/// `now` plus `amount` of `unit`, if `amount` is positive and the sum fits
/// the clock.
fn expiry_at(amount: i64, unit: fn(u64) -> Duration, now: Instant) -> Option<Instant> {
    let amount = u64::try_from(amount).ok().filter(|&amount| amount > 0)?;
    after(now, unit(amount))
}

fn get(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    context.store.get(&args[1], context.now).map_or(Reply::Null, |value| Reply::Bulk(value.to_vec()))
}

fn del(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    Reply::Integer(args[1..].iter().filter(|key| context.store.remove(key)).count() as i64)
}

fn exists(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    // As in Redis, a key named twice counts twice.
    Reply::Integer(args[1..].iter().filter(|key| context.store.contains(key, context.now)).count() as i64)
}

fn dbsize(context: &mut Context, _: &[Vec<u8>]) -> Reply {
    Reply::Integer(context.store.len() as i64)
}

fn expire(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    set_time_to_live(context, args, Duration::from_secs, "expire")
}

fn pexpire(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    set_time_to_live(context, args, Duration::from_millis, "pexpire")
}

/// EXPIRE and PEXPIRE: 1 if the key exists (a time that is not positive
/// removes it, as in Redis), 0 if not.
fn set_time_to_live(context: &mut Context, args: &[Vec<u8>], unit: fn(u64) -> Duration, name: &str) -> Reply {
    if let Some(option) = args.get(3) {
        return Reply::err(format!("Unsupported option {}", String::from_utf8_lossy(option)));
    }
    let key = &args[1];
    let Some(amount) = integer(&args[2]) else { return not_an_integer() };
    if amount <= 0 {
        return Reply::Integer(i64::from(context.store.remove(key)));
    }
    let Some(when) = expiry_at(amount, unit, context.now) else {
        return Reply::err(format!("invalid expire time in '{name}' command"));
    };
    Reply::Integer(i64::from(context.store.set_expiry(key, Some(when), context.now)))
}

fn ttl(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    // Rounded to the nearest second, as Redis does.
    time_left(context, &args[1], |left| (left.as_millis() as i64 + 500) / 1000)
}

fn pttl(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    time_left(context, &args[1], |left| left.as_millis() as i64)
}

/// TTL and PTTL: -2 for no such key, -1 for a key that never expires,
/// else the time left in the unit `count` gives.
fn time_left(context: &mut Context, key: &[u8], count: impl Fn(Duration) -> i64) -> Reply {
    if !context.store.contains(key, context.now) {
        return Reply::Integer(-2);
    }
    match context.store.expiry(key, context.now) {
        None => Reply::Integer(-1),
        Some(when) => Reply::Integer(count(when.saturating_duration_since(context.now))),
    }
}

/// PERSIST: 1 if the key had an expiry and lost it, 0 otherwise.
fn persist(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    let key = &args[1];
    if context.store.expiry(key, context.now).is_none() {
        return Reply::Integer(0);
    }
    Reply::Integer(i64::from(context.store.set_expiry(key, None, context.now)))
}

fn incr(context: &mut Context, args: &[Vec<u8>]) -> Reply {
    let key = &args[1];
    let current = match context.store.get(key, context.now) {
        None => 0,
        Some(value) => match integer(value) {
            Some(n) => n,
            None => return not_an_integer(),
        },
    };
    let Some(next) = current.checked_add(1) else {
        return Reply::err("increment or decrement would overflow");
    };
    // INCR keeps the key's expiry, as in Redis.
    match context.store.replace(key, next.to_string().into_bytes(), context.now) {
        Ok(()) => Reply::Integer(next),
        Err(OverBudget) => out_of_memory(),
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

fn out_of_memory() -> Reply {
    Reply::Error("OOM command not allowed when used memory > 'maxmemory'.".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store, a client id and a clock that moves only when told, and a
    /// way to run commands on them.
    struct Session {
        store: Store,
        now: Instant,
    }

    impl Session {
        fn new() -> Self {
            Session { store: Store::default(), now: Instant::now() }
        }

        fn run(&mut self, words: &[&str]) -> Reply {
            let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
            execute(&mut Context { store: &mut self.store, client: 7, now: self.now }, &args).0
        }

        fn wait(&mut self, ms: u64) {
            self.now += Duration::from_millis(ms);
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

    /// DBSIZE counts the keys held.
    #[test]
    fn dbsize_counts_keys() {
        let mut s = Session::new();
        assert_eq!(s.run(&["DBSIZE"]), Reply::Integer(0));
        s.run(&["SET", "a", "1"]);
        s.run(&["SET", "b", "1", "PX", "10"]);
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
        let mut store = Store::default();
        let mut context = Context { store: &mut store, client: 1, now: Instant::now() };
        assert_eq!(execute(&mut context, &[b"quit".to_vec()]), (Reply::Status("OK"), Then::Close));
        assert_eq!(execute(&mut context, &[b"nope".to_vec()]).1, Then::Continue);
        assert_eq!(execute(&mut context, &[b"ping".to_vec()]).1, Then::Continue);
    }

    /// Past the store's budget SET and INCR answer as Redis does past
    /// maxmemory, and change nothing.
    #[test]
    fn a_full_store_refuses_writes() {
        let mut s = Session { store: Store::with_budget(crate::store::ENTRY_OVERHEAD + 4), now: Instant::now() };
        assert_eq!(s.run(&["SET", "k", "123"]), Reply::Status("OK"));
        let oom = err("OOM command not allowed when used memory > 'maxmemory'.");
        assert_eq!(s.run(&["SET", "k", "12345"]), oom);
        assert_eq!(s.run(&["SET", "j", ""]), oom);
        assert_eq!(s.run(&["INCR", "n"]), oom);
        assert_eq!(s.run(&["GET", "k"]), bulk("123"));
        assert_eq!(s.run(&["INCR", "k"]), Reply::Integer(124), "a value that fits may still change");
    }
}
