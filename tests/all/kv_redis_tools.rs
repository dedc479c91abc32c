//! The kv example against the real `redis-cli` and `redis-benchmark` from
//! Debian's `redis-tools` (scripts/setup installs them): the tools work
//! unchanged, including what they send on their own (`COMMAND DOCS`,
//! `CONFIG GET`). Missing tools fail these tests; they are never skipped.
use crate::support;

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::TestHost;

/// What a finished tool printed.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `program` with `args`, feeding it `stdin`; kills it and fails the
/// test if it runs longer than `timeout`.
fn run(program: &str, args: &[String], stdin: &str, timeout: Duration) -> Ran {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} does not run ({e}): scripts/setup installs it (Debian's redis-tools)"));
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).expect("writes the tool's input");
    let collect = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            stream.read_to_string(&mut text).map(|_| text).unwrap_or_else(|e| format!("<unreadable: {e}>"))
        })
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} ran over {timeout:?}:\n{}", stdout.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// `redis-cli` against `host`, one command given as arguments; returns
/// what it printed.
fn redis_cli(host: &TestHost, command: &[&str]) -> String {
    let mut args = vec!["-h".to_string(), "127.0.0.1".into(), "-p".into(), host.addr.port().to_string()];
    args.extend(command.iter().map(|word| word.to_string()));
    let ran = run("redis-cli", &args, "", Duration::from_secs(30));
    assert!(ran.status.success(), "redis-cli {command:?} failed: {}{}", ran.stdout, ran.stderr);
    ran.stdout
}

fn kv_host() -> TestHost {
    TestHost::start(&support::guest("kv"))
}

/// Commands given to redis-cli as arguments print what they print against
/// Redis, plain and with `--no-raw` (which shows each reply's type).
#[test]
fn redis_cli_runs_commands() {
    let host = kv_host();
    let exchanges: &[(&[&str], &str)] = &[
        (&["ping"], "PONG\n"),
        (&["ping", "hi"], "hi\n"),
        (&["echo", "two words"], "two words\n"),
        (&["set", "greeting", "hello world"], "OK\n"),
        (&["get", "greeting"], "hello world\n"),
        (&["incr", "visits"], "1\n"),
        (&["incr", "visits"], "2\n"),
        (&["exists", "greeting", "visits", "nothing"], "2\n"),
        (&["--no-raw", "get", "greeting"], "\"hello world\"\n"),
        (&["--no-raw", "incr", "visits"], "(integer) 3\n"),
        (&["--no-raw", "get", "nothing"], "(nil)\n"),
        (&["del", "greeting", "visits", "nothing"], "2\n"),
        (&["--no-raw", "exists", "greeting"], "(integer) 0\n"),
        (&["set", "word", "ten"], "OK\n"),
        (&["incr", "word"], "ERR value is not an integer or out of range\n\n"),
        (&["--no-raw", "incr", "word"], "(error) ERR value is not an integer or out of range\n"),
        (&["flushall"], "ERR unknown command 'flushall', with args beginning with: \n\n"),
        (&["set", "k", "v", "ex", "10"], "ERR SET option 'EX' is not supported\n\n"),
    ];
    for (command, expected) in exchanges {
        assert_eq!(redis_cli(&host, command), *expected, "redis-cli {command:?}");
    }
}

/// redis-cli reading commands from its input, as in a shell pipeline, asks
/// for `COMMAND DOCS` first, then runs each line.
#[test]
fn redis_cli_reads_commands_from_its_input() {
    let host = kv_host();
    let args: Vec<String> = ["-h", "127.0.0.1", "-p", &host.addr.port().to_string()].map(String::from).to_vec();
    let ran = run("redis-cli", &args, "set a 5\nincr a\nget a\nping\n", Duration::from_secs(30));
    assert!(ran.status.success(), "redis-cli failed: {}{}", ran.stdout, ran.stderr);
    assert_eq!(ran.stdout, "OK\n6\n6\nPONG\n", "stderr: {}", ran.stderr);
}

/// redis-benchmark runs its ping, set, get and incr tests to the end with
/// no error and no warning, reports requests per second for each, and its
/// 2,000 INCRs all count.
#[test]
fn redis_benchmark_runs_every_test() {
    let host = kv_host();
    let port = host.addr.port().to_string();
    let args: Vec<String> = ["-h", "127.0.0.1", "-p", &port, "-n", "2000", "-c", "10", "-t", "ping,set,get,incr", "-q"]
        .map(String::from)
        .to_vec();
    let ran = run("redis-benchmark", &args, "", Duration::from_secs(120));
    let output = format!("{}{}", ran.stdout, ran.stderr);
    eprintln!("{}", output.replace('\r', "\n"));
    assert!(ran.status.success(), "redis-benchmark failed: {output}");
    for trouble in ["ERR", "Error", "error", "WARNING"] {
        assert!(!output.contains(trouble), "redis-benchmark reported {trouble:?}: {output}");
    }
    for test in ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"] {
        // Progress lines end in \r; the result is the last line for a test.
        let result = output
            .split(['\r', '\n'])
            .map(str::trim)
            .filter_map(|line| line.strip_prefix(&format!("{test}: ")))
            .filter_map(|rest| rest.split_once(" requests per second"))
            .next_back()
            .unwrap_or_else(|| panic!("no requests per second for {test}: {output}"));
        let rate: f64 = result.0.parse().unwrap_or_else(|e| panic!("{test}: {:?} is not a rate: {e}", result.0));
        assert!(rate > 0.0, "{test}: {rate} requests per second");
    }
    assert_eq!(redis_cli(&host, &["get", "counter:__rand_int__"]), "2000\n", "every INCR counted");
    assert_eq!(redis_cli(&host, &["exists", "key:__rand_int__"]), "1\n", "SET stored its key");
}
