//! The probe's `kv-*` commands: `wasi:keyvalue` as a line protocol, for the
//! host's tests of the store (see the table in lib.rs).
use std::collections::HashMap;

use evconn_guest::bindings::wasi::keyvalue::store::{self, Bucket, Error};
use evconn_guest::bindings::wasi::keyvalue::{atomics, batch};

/// The buckets this instance opened, by name.
#[derive(Default)]
pub struct Buckets(HashMap<String, Bucket>);

/// How a store error reads in an answer.
fn error(e: Error) -> String {
    match e {
        Error::NoSuchStore => "error no-such-store".to_string(),
        Error::AccessDenied => "error access-denied".to_string(),
        Error::Other(text) => format!("error other {text}"),
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("bad number {text:?}"))
}

impl Buckets {
    /// The answer to `words`, if they are a `kv-*` command.
    pub fn command(&mut self, words: &[&str]) -> Option<Result<String, String>> {
        let answer = match words {
            ["kv-open", name] => match store::open(name) {
                Ok(bucket) => {
                    self.0.insert(name.to_string(), bucket);
                    Ok("opened".to_string())
                }
                Err(e) => Ok(error(e)),
            },
            ["kv-close", name] => Ok(format!("closed {}", self.0.remove(*name).is_some())),
            ["kv-set", name, key, value] => self.with(name, |b| b.set(key, value.as_bytes()).map(|()| "ok".into())),
            ["kv-get", name, key] => self.with(name, |b| {
                b.get(key).map(|value| match value {
                    Some(value) => format!("value {}", String::from_utf8_lossy(&value)),
                    None => "none".to_string(),
                })
            }),
            ["kv-del", name, key] => self.with(name, |b| b.delete(key).map(|()| "ok".into())),
            ["kv-exists", name, key] => self.with(name, |b| b.exists(key).map(|found| format!("exists {found}"))),
            ["kv-incr", name, key, delta] => match number::<i64>(delta) {
                Ok(delta) => {
                    self.with(name, |b| atomics::increment(b, key, delta as u64).map(|n| format!("value {}", n as i64)))
                }
                Err(e) => Err(e),
            },
            ["kv-keys", name] => self.with(name, |b| {
                let (mut count, mut pages, mut cursor) = (0, 0, None);
                loop {
                    let page = b.list_keys(cursor)?;
                    count += page.keys.len();
                    pages += 1;
                    cursor = page.cursor;
                    if cursor.is_none() {
                        break Ok(format!("keys {count} pages {pages}"));
                    }
                }
            }),
            // Sets keys f0, f1, ... of SIZE bytes each until the store
            // refuses one.
            ["kv-fill", name, size] => match number::<usize>(size) {
                Ok(size) => self.with(name, |b| {
                    let value = vec![b'x'; size];
                    let mut n = 0u64;
                    loop {
                        match b.set(&format!("f{n}"), &value) {
                            Ok(()) => n += 1,
                            Err(e) => break Ok(format!("filled {n} {}", error(e))),
                        }
                    }
                }),
                Err(e) => Err(e),
            },
            // get-many of KEY named COUNT times.
            ["kv-get-many", name, key, count] => match number::<usize>(count) {
                Ok(count) => self.with(name, |b| {
                    let keys = vec![key.to_string(); count];
                    batch::get_many(b, &keys).map(|values| format!("got {}", values.iter().flatten().count()))
                }),
                Err(e) => Err(e),
            },
            ["kv-set-many", name, pairs @ ..] => self.with(name, |b| {
                let pairs: Vec<(String, Vec<u8>)> = pairs
                    .chunks(2)
                    .map(|pair| (pair[0].to_string(), pair.get(1).unwrap_or(&"").as_bytes().to_vec()))
                    .collect();
                batch::set_many(b, &pairs).map(|()| "ok".into())
            }),
            _ => return None,
        };
        Some(answer)
    }

    /// Runs `f` on the bucket opened as `name`; a store error is an answer.
    fn with(&self, name: &str, f: impl FnOnce(&Bucket) -> Result<String, Error>) -> Result<String, String> {
        match self.0.get(name) {
            Some(bucket) => Ok(f(bucket).unwrap_or_else(error)),
            None => Ok(format!("error not-open {name}")),
        }
    }
}
