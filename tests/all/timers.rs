//! Guests' timers (`evconn:listener/timers`) with the probe guest: they fire
//! on time, in order, repeat and cancel; a timer callback obeys the guest
//! timeout and the host's error handling like any callback; an instance's
//! timers are capped, end with it under the per-connection model and go on
//! across connections under the shared one; and they hold up no shutdown.
use crate::support;

use std::time::{Duration, Instant};

use evconn_host::wasm::Isolation;
use support::{HostProcess, Probe, TestHost};

/// A probe client that also hears `fired ID` lines.
struct Client(Probe);

impl Client {
    fn connect(host: &TestHost) -> Self {
        Client(Probe::connect(host.addr))
    }

    /// Sends `command` and returns its answer, keeping the `fired` lines
    /// that arrive before it (in order) in `fired`.
    fn ask(&mut self, command: &str, fired: &mut Vec<u64>) -> String {
        self.0.send(command);
        loop {
            let line = self.0.read_line().unwrap_or_else(|| panic!("the connection closed before answering {command}"));
            match line.strip_prefix("fired ") {
                Some(id) => fired.push(id.parse().unwrap()),
                None => return line,
            }
        }
    }

    /// The id of a timer started by `command`.
    fn start(&mut self, command: &str) -> u64 {
        let answer = self.ask(command, &mut Vec::new());
        answer.strip_prefix("timer ").unwrap_or_else(|| panic!("{command}: {answer}")).parse().unwrap()
    }

    /// The next `fired` timer id.
    fn next_fired(&mut self) -> u64 {
        let line = self.0.read_line().expect("a line");
        line.strip_prefix("fired ").unwrap_or_else(|| panic!("not a timer: {line}")).parse().unwrap()
    }
}

fn host(isolation: Isolation) -> TestHost {
    TestHost::builder(&support::guest("probe")).isolation(isolation).start()
}

/// A one-shot timer fires once, no earlier than asked; a repeating one
/// fires each period, between the one-shot's and after it; once
/// cancelled it fires no more.
fn fire_in_order_repeat_and_cancel(isolation: Isolation) {
    let host = host(isolation);
    let mut client = Client::connect(&host);
    let started = Instant::now();
    let once = client.start("timer 250");
    let every = client.start("timer 100 100");
    let mut fired = Vec::new();
    let mut when = Vec::new();
    while fired.len() < 4 {
        fired.push(client.next_fired());
        when.push(started.elapsed());
    }
    // Due at 100, 200, 250 and 300 ms: the one-shot third.
    assert_eq!(fired, [every, every, once, every], "fired at {when:?}");
    for (at, due) in when.iter().zip([100, 200, 250, 300]) {
        assert!(*at >= Duration::from_millis(due), "fired at {at:?}, due at {due} ms: early");
    }
    assert!(when[3] < Duration::from_secs(3), "fired at {when:?}: far too late");
    let mut more = Vec::new();
    assert_eq!(client.ask(&format!("cancel {every}"), &mut more), "cancelled true");
    assert_eq!(client.ask(&format!("cancel {once}"), &mut more), "cancelled false", "a fired one-shot is gone");
    std::thread::sleep(Duration::from_millis(350));
    let answer = client.ask("timers", &mut more);
    assert!(more.iter().all(|&id| id == every) && more.len() <= 1, "fired after cancel: {more:?}");
    assert_eq!(answer, format!("timers 0 fired {}", 4 + more.len()));
}

#[test]
fn timers_fire_in_order_repeat_and_cancel_under_the_shared_model() {
    fire_in_order_repeat_and_cancel(Isolation::Shared);
}

#[test]
fn timers_fire_in_order_repeat_and_cancel_with_an_instance_per_connection() {
    fire_in_order_repeat_and_cancel(Isolation::Connection);
}

/// A timer of a few milliseconds fires within a few milliseconds, and
/// never early: timers have millisecond resolution.
#[test]
fn a_short_timer_fires_in_milliseconds() {
    let host = host(Isolation::Shared);
    let mut client = Client::connect(&host);
    let mut late = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        client.start("timer 5");
        client.next_fired();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(5), "fired after {took:?}");
        late.push(took - Duration::from_millis(5));
    }
    late.sort();
    assert!(late[10] < Duration::from_millis(20), "the median timer was {:?} late: {late:?}", late[10]);
}

/// Past `--max-timers` a start is refused with `limit-reached`, and the
/// instance goes on serving.
#[test]
fn timers_past_the_limit_are_refused() {
    let host = TestHost::builder(&support::guest("probe")).limits(|l| l.max_timers = 5).start();
    let mut client = Client::connect(&host);
    assert_eq!(client.ask("fill-timers", &mut Vec::new()), "filled 5 limit-reached");
    let id = client.ask("timers", &mut Vec::new());
    assert_eq!(id, "timers 5 fired 0");
    assert_eq!(client.ask("timer 1 0", &mut Vec::new()), "error invalid-argument", "a period under 1 ms");
    assert_eq!(client.ask("ping", &mut Vec::new()), "pong");
}

/// A repeating timer whose callback returns an error stops, and the
/// connection that started it stays open.
#[test]
fn a_failing_timer_stops() {
    let host = host(Isolation::Shared);
    let mut client = Client::connect(&host);
    client.start("timer-fail 20 20");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(client.ask("timers", &mut Vec::new()), "timers 1 fired 1", "it fired once, then stopped");
}

/// A timer callback that never returns is interrupted at the guest
/// timeout like any callback: its instance (shared) is replaced, the
/// connections it served are closed, and the next connection is served by
/// a fresh instance with no timers.
#[test]
fn a_timer_callback_that_loops_is_trapped() {
    let host =
        TestHost::builder(&support::guest("probe")).limits(|l| l.guest_timeout = Duration::from_millis(300)).start();
    let mut client = Client::connect(&host);
    client.start("timer 1000 1000");
    client.start("timer-spin 50");
    let started = Instant::now();
    assert_eq!(client.0.read_line(), None, "the connection is closed with its instance");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    let mut next = Client::connect(&host);
    assert_eq!(next.ask("timers", &mut Vec::new()), "timers 0 fired 0", "a fresh instance");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(next.ask("ping", &mut Vec::new()), "pong", "the old instance's timer did not fire here");
}

/// Under the shared model a timer outlives the connection that started
/// it; under the per-connection model it ends with it. Seen in the
/// `evconn_timers_active` gauge and the `on-timer` count of `--metrics`.
#[test]
fn timers_belong_to_their_instance() {
    for (isolation, outlives) in [("shared", true), ("connection", false)] {
        let metrics = format!("127.0.0.1:{}", support::free_port());
        let (host, addr) =
            support::spawn_listening(&support::guest("probe"), &["--isolation", isolation, "--metrics", &metrics]);
        let mut probe = Probe::connect(addr);
        assert!(probe.ask("timer 20 20").starts_with("timer "));
        assert_eq!(gauge(&metrics, "evconn_timers_active"), 1.0, "{isolation}");
        drop(probe);
        std::thread::sleep(Duration::from_millis(300));
        let (active, calls) = (gauge(&metrics, "evconn_timers_active"), on_timer_calls(&metrics));
        std::thread::sleep(Duration::from_millis(200));
        let later = on_timer_calls(&metrics);
        if outlives {
            assert_eq!(active, 1.0, "{isolation}: the timer goes on");
            assert!(later >= calls + 5.0, "{isolation}: {calls} then {later} calls");
            assert!(host.wait_for_line("which is gone", Duration::from_secs(5)).is_some(), "{}", host.output());
        } else {
            assert_eq!(active, 0.0, "{isolation}: the timer ended with the instance");
            assert_eq!(later, calls, "{isolation}: no calls after the connection closed");
        }
    }
}

/// A value of the host's `/metrics` at `address`.
fn metric(address: &str, prefix: &str) -> f64 {
    let body = support::http_get(address, "/metrics");
    body.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{body}"))
}

fn gauge(address: &str, name: &str) -> f64 {
    metric(address, &format!("{name}{{component=\"probe\"}}"))
}

fn on_timer_calls(address: &str) -> f64 {
    metric(address, "evconn_callback_duration_seconds_count{component=\"probe\",callback=\"on-timer\"}")
}

/// A repeating timer of 10 ms does not hold up a stop: with its
/// connection still open, SIGTERM ends the host within the shutdown
/// timeout.
#[test]
fn timers_do_not_delay_shutdown() {
    let (mut host, addr) = support::spawn_listening(&support::guest("probe"), &["--shutdown-timeout", "1s"]);
    let mut probe = Probe::connect(addr);
    assert!(probe.ask("timer 10 10").starts_with("timer "));
    assert_eq!(probe.read_line().as_deref().map(|l| l.starts_with("fired ")), Some(true));
    let stopping = Instant::now();
    host.signal(rustix::process::Signal::TERM);
    let status = host.wait_exit(Duration::from_secs(10)).expect("the host exits");
    assert!(status.success(), "{status}");
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(4), "stopping took {took:?} with a timer firing");
    let _: HostProcess = host;
}
