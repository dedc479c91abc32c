//! `connection.write-input`: a guest writes on bytes of the running
//! `on-data` call from the host's copy of them (the probe's `input`
//! command writes a range of its own command line), is refused a range past
//! the input with `invalid-argument`, and has no input to write outside
//! `on-data` (`invalid-state`).
use crate::support;

use support::{Probe, TestHost};

/// The range asked for comes back before the answer, byte for byte.
#[test]
fn writes_a_range_of_the_running_input() {
    let host = TestHost::start(&support::guest("probe"));
    let mut probe = Probe::connect(host.addr);
    // "input 2 3\n": bytes 2..5 are "put".
    probe.send("input 2 3");
    assert_eq!(probe.read_line().unwrap(), "putinput ok");
    // The whole line, newline included.
    assert_eq!(probe.ask("input 0 11"), "input 0 11");
    assert_eq!(probe.read_line().unwrap(), "input ok");
}

/// A range that ends past the input, or whose end overflows, takes nothing.
#[test]
fn a_range_past_the_input_is_an_invalid_argument() {
    let host = TestHost::start(&support::guest("probe"));
    let mut probe = Probe::connect(host.addr);
    assert_eq!(probe.ask("input 0 12"), "input error invalid-argument");
    assert_eq!(probe.ask("input 4294967295 2"), "input error invalid-argument");
    assert_eq!(probe.ask("ping"), "pong", "the connection goes on");
}

/// Outside `on-data` (here in `on-timer`) there is no input to write.
#[test]
fn outside_on_data_there_is_no_input() {
    let host = TestHost::start(&support::guest("probe"));
    let mut probe = Probe::connect(host.addr);
    assert!(probe.ask("input-later 1").starts_with("timer "));
    assert_eq!(probe.read_line().unwrap(), "fired-input error invalid-state");
}
