//! The examples' own conversation scripts (`examples/NAME/tests/*.evt`) run
//! through `host test`, as a handler's author would run them: each example
//! passes every step, and a copy of one of its scripts with one expectation
//! made wrong fails and shows the bytes that differ, so these runs can fail.
use crate::support;

use evconn_host::kit::script::Script;
use support::host_test::{host_test, path_str, scripts_in};

/// A wrong copy of one of an example's scripts: `right`, a line of
/// `script`, becomes `wrong`; the report must show each of `shows`.
struct Mistake {
    script: &'static str,
    right: &'static str,
    wrong: &'static str,
    shows: &'static [&'static str],
}

/// Runs every script of the example `name` against its component: exit 0,
/// every step reported passed, none failed or skipped.
fn scripts_pass(name: &str) {
    scripts_pass_against(name, &support::guest(name));
}

/// Runs every script of the example `name` against `component` (the same
/// handler in another language).
fn scripts_pass_against(name: &str, component: &std::path::Path) {
    let scripts = scripts_in(&support::workspace().join("examples").join(name).join("tests"));
    assert!(scripts.len() >= 2, "{name}'s scripts: {scripts:?}");
    let steps: usize = scripts.iter().map(|s| Script::load(s).unwrap().steps.len()).sum();

    let mut args = vec![path_str(component)];
    args.extend(scripts.iter().map(|s| path_str(s)));
    let run = host_test(&args);
    assert!(run.success(), "{name}'s scripts pass");
    assert_eq!(run.steps("pass").len(), steps, "every step is reported passed");
    assert!(run.steps("FAIL").is_empty() && run.steps("skip").is_empty(), "none failed or skipped");
    for script in &scripts {
        assert!(run.stdout.contains(&format!("{}\n", script.display())), "{} is reported", script.display());
    }
    assert!(run.stdout.contains(&format!("{} scripts passed\n", scripts.len())));
    assert!(run.stdout.contains(&format!("steps: {steps} passed, 0 failed\n")), "the summary counts every step");
}

/// Runs the wrong copy `mistake` of one of `name`'s scripts: it fails at the
/// changed line, showing what was expected and what came.
fn mistake_fails(name: &str, mistake: &Mistake) {
    let original = support::workspace().join("examples").join(name).join("tests").join(mistake.script);
    let text = std::fs::read_to_string(&original).unwrap();
    assert_eq!(text.matches(mistake.right).count(), 1, "{} has the line {:?} once", original.display(), mistake.right);
    let tmp = support::workspace().join("target").join("test-tmp");
    let dir = tmp.join(format!("example-scripts-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wrong = dir.join(mistake.script);
    std::fs::write(&wrong, text.replace(mistake.right, mistake.wrong)).unwrap();

    // A regex that never matches fails only at its deadline: keep it short.
    let run = host_test(&["--timeout", "2s", path_str(&support::guest(name)), path_str(&wrong)]);
    assert!(!run.success(), "the wrong copy of {} fails", mistake.script);
    let failed = run.steps("FAIL");
    assert_eq!(failed.len(), 1, "one step fails");
    assert!(failed[0].ends_with(mistake.wrong), "at the changed line: {failed:?}");
    for shown in mistake.shows {
        assert!(run.stdout.contains(shown), "the report shows {shown:?}");
    }
    assert!(run.stdout.contains(&format!("1 of 1 scripts failed: {}\n", wrong.display())));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// rot13: lines, CRLF, lines split across sends and many in one, the line
/// past 16 KiB that closes its connection.
#[test]
fn rot13_scripts() {
    scripts_pass("rot13");
    mistake_fails(
        "rot13",
        &Mistake {
            script: "lines.evt",
            right: r#"expect a "Uryyb, Jbeyq!\n""#,
            wrong: r#"expect a "Uryyb, Jbeyd!\n""#,
            shows: &["expected \"Uryyb, Jbeyd!\\n\"\n", "received \"Uryyb, Jbeyq!\\n\", which differs at byte 11\n"],
        },
    );
}

/// chat: three clients interleaved, joins and departures, leaving.
#[test]
fn chat_scripts() {
    scripts_pass("chat");
    mistake_fails(
        "chat",
        &Mistake {
            script: "room.evt",
            right: r#"expect bob /\[127\.0\.0\.1:\d+\] hi, this is alice\n/"#,
            wrong: r#"expect bob /\[127\.0\.0\.1:\d+\] hi, this is bob\n/"#,
            shows: &[
                "expected /\\[127\\.0\\.0\\.1:\\d+\\] hi, this is bob\\n/ within 2s\n",
                "] hi, this is alice\\n\", then nothing more in time\n",
            ],
        },
    );
}

/// kv: every command and its errors as raw RESP, pipelines, commands split
/// across sends, inline commands, protocol errors.
#[test]
fn kv_scripts() {
    scripts_pass("kv");
    mistake_fails(
        "kv",
        &Mistake {
            script: "commands.evt",
            right: r#"expect a ":3\r\n""#,
            wrong: r#"expect a ":2\r\n""#,
            shows: &["expected \":2\\r\\n\"\n", "received \":3\\r\\n\", which differs at byte 1\n"],
        },
    );
}

/// heartbeat, in Rust: pings on time, answers that keep a client, a missed
/// deadline that closes one, each connection's timers its own. The
/// scripts' `nothing within` steps prove a ping or a timeout never comes
/// early.
#[test]
fn heartbeat_scripts() {
    scripts_pass("heartbeat");
    mistake_fails(
        "heartbeat",
        &Mistake {
            script: "dead.evt",
            right: r#"expect a nothing within 150ms"#,
            wrong: r#"expect a nothing within 400ms"#,
            shows: &["received \"TIMEOUT\\n\""],
        },
    );
}

/// The same heartbeat written in C: the same scripts pass.
#[test]
fn heartbeat_scripts_in_c() {
    scripts_pass_against("heartbeat", &support::example("heartbeat-c"));
}

/// The same heartbeat written in Python: the same scripts pass.
#[test]
fn heartbeat_scripts_in_python() {
    scripts_pass_against("heartbeat", &support::example("heartbeat-python"));
}

/// The same heartbeat written in JavaScript: the same scripts pass.
#[test]
fn heartbeat_scripts_in_javascript() {
    scripts_pass_against("heartbeat", &support::example("heartbeat-js"));
}

/// source: N bytes of the pattern, then the end; a stream larger than the
/// output cap arrives whole.
#[test]
fn source_scripts() {
    scripts_pass("source");
}
