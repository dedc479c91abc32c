//! The component test kit: `host test` runs conversation scripts against a
//! component and reports every step, and the Rust API (`evconn_host::kit`)
//! does the same from a test.
use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use evconn_host::kit::script::Script;
use evconn_host::kit::{Expect, FailureKind, Host};
use evconn_host::wasm::Isolation;
use support::host_test::{host_test, path_str, scripts_in};

/// A folder of its own for one test's scripts.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kit-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes each `(name, text)` script into `dir`; returns their paths.
fn write_scripts(dir: &Path, scripts: &[(&str, &str)]) -> Vec<PathBuf> {
    scripts
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

/// The echo guest's own scripts (`guest/echo/tests/*.evt`) pass under both
/// isolation models: exit 0, every step reported passed, none failed.
#[test]
fn echo_scripts_pass() {
    let scripts = scripts_in(&support::workspace().join("guest/echo/tests"));
    assert!(scripts.len() >= 3, "the echo guest's scripts: {scripts:?}");
    let steps: usize = scripts.iter().map(|s| Script::load(s).unwrap().steps.len()).sum();

    let echo = support::guest("echo");
    for isolation in ["shared", "connection"] {
        let mut args = vec!["--isolation", isolation, path_str(&echo)];
        args.extend(scripts.iter().map(|s| path_str(s)));
        let run = host_test(&args);
        assert!(run.success(), "the echo scripts pass under --isolation {isolation}");
        assert_eq!(run.steps("pass").len(), steps, "every step is reported passed");
        assert!(run.steps("FAIL").is_empty() && run.steps("skip").is_empty());
        for script in &scripts {
            assert!(run.stdout.contains(&script.display().to_string()), "each script is named");
        }
        assert!(run.stdout.contains(&format!("steps: {steps} passed, 0 failed")), "a summary line");
    }
}

/// The same scripts pass against the echo in C, Python and JavaScript, as
/// their READMEs say.
#[test]
fn echo_scripts_pass_in_every_language() {
    let scripts = scripts_in(&support::workspace().join("guest/echo/tests"));
    for lang in ["c", "python", "js"] {
        let echo = support::echo(lang);
        let mut args = vec![path_str(&echo)];
        args.extend(scripts.iter().map(|s| path_str(s)));
        let run = host_test(&args);
        assert!(run.success(), "the echo scripts pass against echo-{lang}:\n{}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains(&format!("{} scripts passed\n", scripts.len())), "{}", run.stdout);
    }
}

/// A wrong expectation fails its step with both sides shown escaped and
/// where they differ; the steps after it are skipped, the run exits non-zero.
#[test]
fn wrong_expectation_shows_the_differing_bytes() {
    let dir = scratch("wrong");
    let scripts = write_scripts(
        &dir,
        &[(
            "rot13.evt",
            "# echo is not rot13\nopen a\nsend a \"Hello\\n\"\nexpect a \"Uryyb\\n\"\nshutdown a\nexpect a closed\n",
        )],
    );
    let run = host_test(&[path_str(&support::guest("echo")), path_str(&scripts[0])]);
    assert!(!run.success(), "a failed step fails the run");
    assert_eq!(run.steps("pass").len(), 2, "open and send pass");
    let failed = run.steps("FAIL");
    assert_eq!(failed.len(), 1);
    assert!(failed[0].contains("4  expect a \"Uryyb\\n\""), "the failed step with its line: {failed:?}");
    assert!(run.stdout.contains("expected \"Uryyb\\n\""), "the expected bytes, escaped");
    assert!(run.stdout.contains("received \"Hello\\n\", which differs at byte 0"), "the received bytes, escaped");
    assert_eq!(run.steps("skip").len(), 2, "the steps after a failure are skipped");
    assert!(run.stdout.contains("steps: 2 passed, 1 failed, 2 skipped"));
    assert!(run.stderr.contains("1 of 5 steps failed"), "the error says how many failed");
}

/// Deadlines come from `within`, else the script's `timeout`, else
/// `--timeout`; an expectation nothing meets fails when its deadline passes,
/// showing what had arrived.
#[test]
fn deadlines_expire() {
    let dir = scratch("deadline");
    let scripts = write_scripts(
        &dir,
        &[
            ("within.evt", "open a\nsend a \"abc\"\nexpect a \"abcd\" within 250ms\n"),
            ("script.evt", "timeout 350ms\nopen a\nexpect a /never/\n"),
            ("flag.evt", "open a\nsend a \"12\"\nexpect a 3 bytes\n"),
        ],
    );
    let echo = support::guest("echo");
    let mut args = vec!["--timeout", "450ms", path_str(&echo)];
    args.extend(scripts.iter().map(|s| path_str(s)));
    let run = host_test(&args);
    assert!(!run.success());
    assert_eq!(run.steps("FAIL").len(), 3, "each script fails at its expectation");
    assert!(run.stdout.contains("expected \"abcd\" within 250ms\n"), "the step's own deadline");
    assert!(run.stdout.contains("received \"abc\", then nothing more in time"), "what arrived");
    assert!(run.stdout.contains("expected /never/ within 350ms\n"), "the script's deadline");
    assert!(run.stdout.contains("received nothing, then nothing more in time"));
    assert!(run.stdout.contains("expected 3 bytes within 450ms\n"), "the flag's deadline");
    assert!(run.stdout.contains("received \"12\""));
    assert!(run.stdout.contains("3 of 3 scripts failed"));
}

/// `nothing` passes when its deadline passes in silence, and fails at once
/// on a byte (shown) or on end of stream.
#[test]
fn nothing_means_silence() {
    let dir = scratch("nothing");
    let scripts = write_scripts(
        &dir,
        &[
            (
                "silent.evt",
                "open a\nsend a \"abc\"\nexpect a \"abc\"\nexpect a nothing within 200ms\nshutdown a\nexpect a closed\n",
            ),
            ("bytes.evt", "open a\nsend a \"abc\"\nexpect a nothing within 10s\n"),
            ("closed.evt", "open a\nshutdown a\nexpect a nothing within 10s\n"),
        ],
    );
    let echo = support::guest("echo");
    let run = host_test(&[path_str(&echo), path_str(&scripts[0])]);
    assert!(run.success(), "silence for 200ms passes");
    assert_eq!(run.steps("pass").len(), 6);

    let run = host_test(&[path_str(&echo), path_str(&scripts[1]), path_str(&scripts[2])]);
    assert!(!run.success(), "a byte or end of stream fails it before its deadline");
    assert_eq!(run.steps("FAIL").len(), 2);
    assert!(run.stdout.contains("expected nothing\n              received \"abc\"\n"), "the bytes that came");
    assert!(run.stdout.contains("expected nothing\n              received nothing, then end of stream"));
}

/// Against the probe guest: the peer closing on its own, a guest's
/// half-close, regexes over variable answers, and guest errors in the log.
#[test]
fn probe_closes_and_answers() {
    let dir = scratch("probe");
    let scripts = write_scripts(
        &dir,
        &[(
            "probe.evt",
            r#"# the probe answers one line per command
open a
send a "whoami\n"
expect a /conn \d+ peer 127\.0\.0\.1:\d+ local 127\.0\.0\.1:\d+ listener 1 fd \d+\n/
# the guest half-closes: its answer, then end of stream
open b
send b "shutdown-write\n"
expect b "ok\n"
expect b closed
# the guest closes at once
send a "close\n"
expect a closed
# a callback's error closes the connection, and the host logs it
open c
# nothing is due meanwhile
sleep 10ms
send c hex 66 61 69 6c 0a
expect c closed
"#,
        )],
    );
    let run = host_test(&[path_str(&support::guest("probe")), path_str(&scripts[0])]);
    assert!(run.success(), "the probe script passes");
    assert_eq!(run.steps("pass").len(), 13, "every step passed");
    assert!(run.stderr.contains("guest returned an error"), "the host's warnings are shown");
}

/// `--isolation` and the limit flags reach the host, and each script gets
/// a host of its own: the same script sees one accepted connection per
/// instance under `connection`, two under `shared`, in both runs of it.
#[test]
fn isolation_limits_and_a_host_per_script() {
    let dir = scratch("isolation");
    let count = |expected: &str| {
        format!(
            "open a\nsend a \"ping\\n\"\nexpect a \"pong\\n\"\nopen b\nsend b \"count\\n\"\nexpect b \"{expected}\\n\"\n"
        )
    };
    let scripts = write_scripts(
        &dir,
        &[
            ("shared.evt", &count("2")),
            ("connection.evt", &count("1")),
            ("idle.evt", "open a\nexpect a closed within 20s\n"),
        ],
    );
    let probe = support::guest("probe");
    let shared = host_test(&[path_str(&probe), path_str(&scripts[0]), path_str(&scripts[0])]);
    assert!(shared.success(), "two accepted by the shared instance, in each script's own host");
    let connection = host_test(&["--isolation", "connection", path_str(&probe), path_str(&scripts[1])]);
    assert!(connection.success(), "one accepted by each instance");
    let wrong = host_test(&["--isolation", "connection", path_str(&probe), path_str(&scripts[0])]);
    assert!(!wrong.success(), "an instance per connection counts one, not two");
    assert!(wrong.stdout.contains("received \"1\\n\""));
    let idle = host_test(&["--idle-timeout", "200ms", path_str(&probe), path_str(&scripts[2])]);
    assert!(idle.success(), "--idle-timeout closes the silent connection");
}

/// `--env` and `--allow-connect` reach the guest: a script can read the
/// operator's environment and connect where allowed (to the host's own
/// listener here), and only there.
#[test]
fn env_and_allow_connect_reach_the_guest() {
    let dir = scratch("outbound");
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = backend.local_addr().unwrap().port();
    let script = format!(
        "open a\nsend a \"getenv BACKEND\\n\"\nexpect a \"env BACKEND=127.0.0.1:{port}\\n\"\n\
         send a \"dial 127.0.0.1:{port}\\n\"\nexpect a /dialing \\d+\\n/\nexpect a /outbound \\d+ connected 127.0.0.1:{port}\\n/\n\
         send a \"dial 127.0.0.1:1\\n\"\nexpect a \"error access-denied\\n\"\n"
    );
    let scripts = write_scripts(&dir, &[("outbound.evt", &script)]);
    let env = format!("BACKEND=127.0.0.1:{port}");
    let allow = format!("127.0.0.1:{port}");
    let probe = support::guest("probe");
    let run = host_test(&["--env", &env, "--allow-connect", &allow, path_str(&probe), path_str(&scripts[0])]);
    assert!(run.success(), "{}{}", run.stdout, run.stderr);
    let denied = host_test(&["--env", &env, path_str(&probe), path_str(&scripts[0])]);
    assert!(!denied.success(), "without --allow-connect the dial is refused");
    assert!(denied.stdout.contains("error access-denied"), "{}", denied.stdout);
}

/// `open` returns once the handler has run `on-accept`, and `close` once
/// the host has finished with the connection: a script that counts the
/// connections the handler holds right after opening two and closing one
/// passes every time, with no sleep. (Before, it failed most runs.)
#[test]
fn open_and_close_wait_for_the_handler() {
    let dir = scratch("no-races");
    let script = "open a\nopen b\nsend a \"held\\n\"\nexpect a \"held 2\\n\"\nclose b\n\
                  send a \"held\\n\"\nexpect a \"held 1\\n\"\nopen c\nopen d\nsend d \"held\\n\"\n\
                  expect d \"held 3\\n\"\n";
    let names: Vec<String> = (0..50).map(|n| format!("race-{n:02}.evt")).collect();
    let scripts: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), script)).collect();
    let scripts = write_scripts(&dir, &scripts);
    let probe = support::guest("probe");
    let mut args = vec![path_str(&probe)];
    args.extend(scripts.iter().map(|s| path_str(s)));
    let run = host_test(&args);
    assert!(run.success(), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("50 scripts passed\n"), "{}", run.stdout);
}

/// A `close` the host does not finish (a handler that keeps the connection
/// after its peer left) fails at the deadline and says so.
#[test]
fn close_fails_when_the_host_keeps_the_connection() {
    let dir = scratch("kept");
    // The probe pauses reading: it never hears the end of stream, so it
    // never closes.
    let script = "open a\nsend a \"pause\\n\"\nexpect a \"ok\\n\"\nclose a\n";
    let scripts = write_scripts(&dir, &[("kept.evt", script)]);
    let run = host_test(&["--timeout", "500ms", path_str(&support::guest("probe")), path_str(&scripts[0])]);
    assert!(!run.success());
    assert!(run.stdout.contains("the host still held the connection after 500ms"), "{}", run.stdout);
}

/// A script that does not parse is an error naming its file and line, and
/// no script runs.
#[test]
fn malformed_script_names_file_and_line() {
    let dir = scratch("malformed");
    let scripts = write_scripts(
        &dir,
        &[("good.evt", "open a\nsend a \"x\"\n"), ("bad.evt", "open a\nsend a \"x\"\nexpect a \"unterminated\n")],
    );
    let run = host_test(&[path_str(&support::guest("echo")), path_str(&scripts[0]), path_str(&scripts[1])]);
    assert!(!run.success());
    let place = format!("{}:3:", scripts[1].display());
    assert!(run.stderr.contains(&place), "the error names {place}");
    assert!(run.stderr.contains("closing \""), "and says what is wrong");
    assert!(run.steps("pass").is_empty(), "no script runs");

    let unknown = write_scripts(&dir, &[("unknown.evt", "# a typo\n\nopen a\nsned a \"x\"\n")]);
    let run = host_test(&[path_str(&support::guest("echo")), path_str(&unknown[0])]);
    assert!(!run.success());
    assert!(run.stderr.contains(&format!("{}:4: unknown step \"sned\"", unknown[0].display())), "typo on line 4");
}

/// A file that is not a component, or a component that is not a handler,
/// is one clear error naming the file; nothing runs.
#[test]
fn not_a_component_is_a_clear_error() {
    let dir = scratch("not-a-component");
    let scripts = write_scripts(&dir, &[("echo.evt", "open a\nsend a \"x\"\nexpect a \"x\"\n")]);
    let text = dir.join("notes.wasm");
    std::fs::write(&text, "not a component\n").unwrap();
    let run = host_test(&[path_str(&text), path_str(&scripts[0])]);
    assert!(!run.success());
    assert!(run.stderr.contains(&format!("{} is not a WebAssembly component", text.display())), "names the file");
    assert!(run.steps("pass").is_empty());

    let not_a_handler = support::guest("not-a-handler");
    let run = host_test(&[path_str(&not_a_handler), path_str(&scripts[0])]);
    assert!(!run.success());
    assert!(run.stderr.contains("is not an evconn handler"), "says what is wrong");
    assert!(run.stderr.contains(&not_a_handler.display().to_string()), "names the file");
}

/// The Rust API: a host on port 0, two connections, every kind of
/// expectation, and failures that say what went wrong.
#[test]
fn rust_api() {
    let host = Host::builder(support::guest("echo")).isolation(Isolation::Connection).start().expect("the host starts");
    assert!(host.addr().ip().is_loopback() && host.addr().port() != 0);
    let mut a = host.connect().unwrap();
    let mut b = host.connect().unwrap();
    a.set_timeout(Duration::from_secs(10));
    b.set_timeout(Duration::from_secs(10));

    // More than the host buffers before it stops reading, sent before
    // anything is expected: the kit reads as the echo comes back.
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    a.send(&big).unwrap();
    b.send(b"hi there\n").unwrap();
    assert_eq!(b.expect(&Expect::regex(r"hi \w+\n").unwrap()).unwrap(), b"hi there\n");
    assert_eq!(a.expect(&Expect::Count(1 << 20)).unwrap(), big[..1 << 20]);
    assert_eq!(a.expect(&Expect::exact(&big[1 << 20..])).unwrap(), big[1 << 20..]);

    b.send(b"Hello\n").unwrap();
    let wrong = b.expect(&Expect::exact("Uryyb\n")).unwrap_err();
    assert!(matches!(wrong.kind, FailureKind::Differs { at: 0 }), "{wrong}");
    assert_eq!(wrong.received, b"Hello\n");
    let late = a.expect_within(&Expect::exact("more"), Duration::from_millis(100)).unwrap_err();
    assert!(matches!(late.kind, FailureKind::TimedOut(_)), "{late}");

    a.shutdown_write().unwrap();
    a.expect(&Expect::Closed).unwrap();
    let after = a.expect(&Expect::exact("x")).unwrap_err();
    assert!(matches!(after.kind, FailureKind::EndOfStream), "{after}");
    b.close().unwrap();
    host.stop().expect("the host stops cleanly");
}
