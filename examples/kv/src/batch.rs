//! Pipelined requests in runs: consecutive GETs, plain SETs (no options) or
//! INCRs make one store call for the run, not one each, and get the
//! replies they would have had one at a time.
//!
//! A client that pipelines (`redis-benchmark -P 16`) sends many requests in
//! one read, and a store call costs more than parsing, running and
//! answering a request together. Running a run at once is as good as one
//! request after another: a client sees no reply before the run is done,
//! and each run is one atomic store call (GETs: one `get-many`; SETs: one
//! `set-many`, the last value of a key winning; INCRs: one `increment` per
//! key, by how many times the run names it, whose sum numbers the replies).
//! A run the store refuses (a write past its budget, a value `increment`
//! cannot count) is run again one request at a time, for each request's own
//! reply.
use crate::commands::{self, Context, Then};
use crate::entry::{self, Entry};
use crate::keys;
use crate::reply::Reply;
use crate::request::{self, Args, ProtocolError};

/// The most requests in one run.
pub const MAX_RUN: usize = 16;

/// What a request is, as far as runs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET key`.
    Get,
    /// `SET key value`, with no option.
    Set,
    /// `INCR key`.
    Incr,
    /// Anything else: a run of its own.
    Other,
}

impl Kind {
    /// The kind of a request.
    pub fn of(args: &[Vec<u8>]) -> Kind {
        match args {
            [name, _] if name.eq_ignore_ascii_case(b"get") => Kind::Get,
            [name, _, _] if name.eq_ignore_ascii_case(b"set") => Kind::Set,
            [name, _] if name.eq_ignore_ascii_case(b"incr") => Kind::Incr,
            _ => Kind::Other,
        }
    }
}

/// The requests at the start of some input that run together.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// Bytes of empty requests before the run (`*0`, blank lines), which
    /// get no reply.
    pub skipped: usize,
    /// What the requests are.
    pub kind: Option<Kind>,
    /// The requests; none if no whole request follows the empty ones.
    pub requests: Vec<Args>,
    /// Where each request ends in the input.
    pub ends: Vec<usize>,
}

/// The next run in `input`: whole requests of one kind, at most
/// [`MAX_RUN`], and at most `max_gets` GETs. A protocol error comes only
/// when no whole request is before it (the requests before it run first).
pub fn next_run(input: &[u8], max_gets: usize) -> Result<Run, ProtocolError> {
    let mut run = Run::default();
    let mut scan = 0;
    loop {
        let limit = match run.kind {
            None => usize::MAX,
            Some(Kind::Get) => max_gets.clamp(1, MAX_RUN),
            Some(Kind::Set | Kind::Incr) => MAX_RUN,
            Some(Kind::Other) => 1,
        };
        if run.requests.len() >= limit {
            return Ok(run);
        }
        match request::parse(&input[scan..]) {
            Ok(Some((args, used))) if args.is_empty() => {
                if !run.requests.is_empty() {
                    return Ok(run);
                }
                scan += used;
                run.skipped = scan;
            }
            Ok(Some((args, used))) => {
                let kind = Kind::of(&args);
                if run.kind.is_some_and(|run_kind| run_kind != kind) {
                    return Ok(run);
                }
                run.kind = Some(kind);
                scan += used;
                run.requests.push(args);
                run.ends.push(scan);
            }
            Ok(None) => return Ok(run),
            Err(error) if run.requests.is_empty() => return Err(error),
            Err(_) => return Ok(run),
        }
    }
}

/// Runs `requests`, all of `kind`, and returns each one's reply and what
/// follows it, in order.
pub fn execute(context: &mut Context, kind: Kind, requests: &[Args]) -> Vec<(Reply, Then)> {
    let together = match kind {
        _ if requests.len() < 2 => None,
        Kind::Get => gets(context, requests),
        Kind::Set => sets(context, requests),
        Kind::Incr => Some(incrs(context, requests)),
        Kind::Other => None,
    };
    match together {
        Some(replies) => replies.into_iter().map(|reply| (reply, Then::Continue)).collect(),
        None => requests.iter().map(|args| commands::execute(context, args)).collect(),
    }
}

/// The store key of each request's key, and where in a list of the keys
/// without repeats it stands.
fn distinct_keys(requests: &[Args]) -> (Vec<String>, Vec<usize>) {
    let mut keys: Vec<String> = Vec::with_capacity(requests.len());
    let mut slots = Vec::with_capacity(requests.len());
    for args in requests {
        let key = keys::store_key(&args[1]);
        let slot = match keys.iter().position(|known| *known == key) {
            Some(slot) => slot,
            None => {
                keys.push(key);
                keys.len() - 1
            }
        };
        slots.push(slot);
    }
    (keys, slots)
}

/// GETs: one `get-many`; `None` if it failed.
fn gets(context: &mut Context, requests: &[Args]) -> Option<Vec<Reply>> {
    let (keys, slots) = distinct_keys(requests);
    let values = context.store.get_many(&keys).ok()?;
    let now = context.now;
    let entries: Vec<Option<Entry>> =
        values.into_iter().map(|stored| stored.map(Entry::decode).filter(|entry| entry.is_live(now))).collect();
    Some(
        slots
            .into_iter()
            .map(|slot| entries[slot].as_ref().map_or(Reply::Null, |entry| Reply::Bulk(entry.value.clone())))
            .collect(),
    )
}

/// SETs: one `set-many` of each key's last value; `None` if it failed.
fn sets(context: &mut Context, requests: &[Args]) -> Option<Vec<Reply>> {
    let (keys, slots) = distinct_keys(requests);
    let mut pairs: Vec<(String, Vec<u8>)> = keys.into_iter().map(|key| (key, Vec::new())).collect();
    for (args, slot) in requests.iter().zip(slots) {
        pairs[slot].1 = entry::encode(&args[2], None).into_owned();
    }
    context.store.set_many(&pairs).ok()?;
    Some(vec![Reply::Status("OK"); requests.len()])
}

/// INCRs: one `increment` per key, by how many times the run names it; the
/// INCRs of a key the store refuses run one at a time.
fn incrs(context: &mut Context, requests: &[Args]) -> Vec<Reply> {
    let (keys, slots) = distinct_keys(requests);
    let mut replies: Vec<Option<Reply>> = vec![None; requests.len()];
    for (slot, key) in keys.iter().enumerate() {
        let mine: Vec<usize> = (0..requests.len()).filter(|&at| slots[at] == slot).collect();
        match context.store.increment(key, mine.len() as i64) {
            Ok(total) => {
                let first = total - mine.len() as i64 + 1;
                for (n, &at) in (first..).zip(&mine) {
                    replies[at] = Some(Reply::Integer(n));
                }
            }
            Err(_) => {
                for &at in &mine {
                    replies[at] = Some(commands::execute(context, &requests[at]).0);
                }
            }
        }
    }
    replies.into_iter().map(|reply| reply.expect("every request is some key's")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Store};

    fn args(words: &[&str]) -> Args {
        words.iter().map(|word| word.as_bytes().to_vec()).collect()
    }

    fn wire(words: &[&str]) -> Vec<u8> {
        let mut bytes = format!("*{}\r\n", words.len()).into_bytes();
        for word in words {
            bytes.extend_from_slice(format!("${}\r\n{word}\r\n", word.len()).as_bytes());
        }
        bytes
    }

    /// Runs are requests of one kind, up to their limits; empty requests
    /// before a run are skipped; a protocol error waits for the run before
    /// it.
    #[test]
    fn runs_are_cut_by_kind_and_limit() {
        let mut input = b"\r\n*0\r\n".to_vec();
        let skipped = input.len();
        for n in 0..20 {
            input.extend(wire(&["GET", &format!("k{n}")]));
        }
        let run = next_run(&input, MAX_RUN).unwrap();
        assert_eq!((run.skipped, run.kind, run.requests.len()), (skipped, Some(Kind::Get), MAX_RUN));
        assert_eq!(run.requests[0], args(&["GET", "k0"]));
        assert_eq!(next_run(&input, 1).unwrap().requests.len(), 1, "GETs one at a time when told");

        let mut mixed = wire(&["set", "a", "1"]);
        mixed.extend(wire(&["SET", "b", "2"]));
        mixed.extend(wire(&["SET", "c", "3", "PX", "5"]));
        let run = next_run(&mixed, MAX_RUN).unwrap();
        assert_eq!((run.kind, run.requests.len()), (Some(Kind::Set), 2), "a SET with options runs alone");
        assert_eq!(run.ends[1], wire(&["set", "a", "1"]).len() + wire(&["SET", "b", "2"]).len());
        let rest = &mixed[run.ends[1]..];
        assert_eq!(next_run(rest, MAX_RUN).unwrap().kind, Some(Kind::Other));

        let mut broken = wire(&["INCR", "n"]);
        broken.extend(b"*1\r\n:1\r\n");
        assert_eq!(next_run(&broken, MAX_RUN).unwrap().requests.len(), 1);
        assert!(next_run(b"*1\r\n:1\r\n", MAX_RUN).is_err());
        let half = next_run(b"*2\r\n$3\r\nGET", MAX_RUN).unwrap();
        assert!(half.requests.is_empty() && half.kind.is_none());
    }

    /// A tiny random number generator, for the runs below.
    struct Random(u64);

    impl Random {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// A random request on a few keys: mostly GET, SET and INCR, with the
    /// others that change keys and deadlines between them.
    fn random_request(random: &mut Random) -> Args {
        let key = format!("k{}", random.below(4));
        let value = ["1", "41", "word", "", "9223372036854775807"][random.below(5) as usize];
        match random.below(12) {
            0..=3 => args(&["GET", &key]),
            4..=6 => args(&["SET", &key, value]),
            7..=8 => args(&["INCR", &key]),
            9 => args(&["SET", &key, value, "PX", "50"]),
            10 => args(&["DEL", &key]),
            _ => args(&["PEXPIRE", &key, "30"]),
        }
    }

    /// Thousands of random requests run in runs give the replies, and leave
    /// the store, exactly as one at a time does, with fewer store calls.
    #[test]
    fn runs_answer_as_one_at_a_time() {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let (mut alone, mut together) = (MemoryStore::default(), MemoryStore::default());
        let mut now = 1_750_000_000_000;
        for _ in 0..300 {
            let requests: Vec<Args> = (0..1 + random.below(40)).map(|_| random_request(&mut random)).collect();
            let input: Vec<u8> = requests
                .iter()
                .flat_map(|args| {
                    let words: Vec<&str> = args.iter().map(|word| std::str::from_utf8(word).unwrap()).collect();
                    wire(&words)
                })
                .collect();
            let expected: Vec<(Reply, Then)> = requests
                .iter()
                .map(|args| commands::execute(&mut Context { store: &mut alone, client: 1, now }, args))
                .collect();
            let mut got = Vec::new();
            let mut at = 0;
            while at < input.len() {
                let run = next_run(&input[at..], MAX_RUN).unwrap();
                let mut context = Context { store: &mut together, client: 1, now };
                got.extend(execute(&mut context, run.kind.unwrap(), &run.requests));
                at += run.ends.last().unwrap();
            }
            assert_eq!(got, expected, "{requests:?}");
            assert_eq!(together.entries, alone.entries);
            now += random.below(40);
        }
        assert!(together.calls < alone.calls, "{} calls in runs, {} one at a time", together.calls, alone.calls);
    }

    /// 16 pipelined GETs, SETs or INCRs make one store call.
    #[test]
    fn a_run_makes_one_store_call() {
        let mut store = MemoryStore::default();
        let mut context = Context { store: &mut store, client: 1, now: 0 };
        let incrs = vec![args(&["INCR", "n"]); 16];
        let replies = execute(&mut context, Kind::Incr, &incrs);
        assert_eq!(replies.last(), Some(&(Reply::Integer(16), Then::Continue)));
        let sets: Vec<Args> = (0..16).map(|n| args(&["SET", "k", &n.to_string()])).collect();
        execute(&mut context, Kind::Set, &sets);
        let gets = vec![args(&["GET", "k"]); 16];
        assert_eq!(execute(&mut context, Kind::Get, &gets)[15].0, Reply::text("15"), "the last SET won");
        assert_eq!(store.calls, 3);
    }

    /// A run the store refuses runs one at a time: each request gets its
    /// own reply (some INCRs count before the value overflows).
    #[test]
    fn a_refused_run_runs_one_at_a_time() {
        let mut store = MemoryStore::default();
        store.set("k:n", (i64::MAX - 1).to_string().as_bytes()).unwrap();
        let mut context = Context { store: &mut store, client: 1, now: 0 };
        let replies: Vec<Reply> = execute(&mut context, Kind::Incr, &vec![args(&["INCR", "n"]); 3])
            .into_iter()
            .map(|(reply, _)| reply)
            .collect();
        let overflow = Reply::err("increment or decrement would overflow");
        assert_eq!(replies, [Reply::Integer(i64::MAX), overflow.clone(), overflow]);
    }
}
