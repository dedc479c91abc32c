//! A connection's state, changed by the guest's calls and by its task under
//! the connection's lock: where it is in its life, the output it queued,
//! what stops reading, and whether the guest is owed an `on-drain`.
use std::io;

use super::output::Output;
use super::tls::TlsSession;
use crate::telemetry::CloseReason;

/// What the guest's calls and the connection's task share.
#[derive(Debug)]
pub(super) struct State {
    /// Bytes the guest wrote that the socket has not taken yet.
    pub(super) output: Output,
    /// Where the connection is in its life.
    pub(super) phase: Phase,
    /// Set by the first close, with its reason: no callback follows, and the
    /// connection ends once `output` is sent (or the socket fails).
    pub(super) closing: Option<CloseReason>,
    pub(super) write_side: WriteSide,
    /// The guest paused reading (`pause-reading`).
    pub(super) reading_paused: bool,
    /// `output` reached the high watermark: the peer is not reading what it
    /// is sent, so reading stops until half of it is sent. Apart from
    /// `reading_paused`: the guest's pause outlasts the backpressure.
    pub(super) backpressure: bool,
    /// A write failed before the guest heard of any end: it hears of it as
    /// an error event when the connection ends (a failed read is reported
    /// at once by the reader).
    pub(super) unreported_failure: Option<io::Error>,
    /// The queued output at which the guest wants `on-drain`
    /// (`set-drain-watermark`); `None` if it asked for nothing. 32 bits,
    /// for the size of every connection: no cap comes near them.
    pub(super) drain_watermark: Option<u32>,
    pub(super) drain: Drain,
    /// The TLS session of a connection accepted on a TLS listener: the
    /// guest's plaintext goes through it, under this same lock.
    pub(super) tls: Option<Box<TlsSession>>,
}

/// Whether the guest is owed an `on-drain`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drain {
    /// Nothing is owed. Next: `Owed`, when queued output rises above the
    /// watermark or a write is refused.
    #[default]
    Idle,
    /// The guest hears once queued output is at most the watermark (0 if
    /// none is set) and the host has output memory to spare. Next: `Idle`.
    Owed,
}

/// Where a connection is in its life, as the guest hears of it. It only
/// moves forward, in the order below; a later phase outranks an earlier one
/// in saying why a close by the guest ended the connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    /// Both ways open. Next: any of the others.
    #[default]
    Open,
    /// The peer sent end-of-stream: nothing more is read. Next: `TimedOut`
    /// (it passed no bytes since) or `Failed` (a write failed).
    PeerEnded,
    /// No bytes moved for `--idle-timeout`: the guest hears so, and the host
    /// closes the connection after. Next: `Failed`.
    TimedOut,
    /// Reading or writing failed: the socket is unusable. Final.
    Failed,
}

impl Phase {
    /// Why a close by the guest ends the connection, after the news it last
    /// had: a failure, a timeout, the peer's end-of-stream, or none (its
    /// own decision).
    pub(super) fn close_reason(self) -> CloseReason {
        match self {
            Phase::Open => CloseReason::GuestClosed,
            Phase::PeerEnded => CloseReason::PeerClosed,
            Phase::TimedOut => CloseReason::IdleTimeout,
            Phase::Failed => CloseReason::Error,
        }
    }
}

/// The sending half.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub(super) enum WriteSide {
    /// The guest may write.
    #[default]
    Open,
    /// `shutdown-write` was called; the FIN goes out once `output` is sent.
    ShutdownRequested,
    /// The FIN was sent.
    Shut,
}

impl State {
    /// A new connection's state.
    pub(super) fn new() -> Self {
        State {
            output: Output::default(),
            phase: Phase::default(),
            closing: None,
            write_side: WriteSide::default(),
            reading_paused: false,
            backpressure: false,
            unreported_failure: None,
            drain_watermark: None,
            drain: Drain::default(),
            tls: None,
        }
    }

    /// Whether output waits: the guest's, or TLS records made of it.
    pub(super) fn output_pending(&self) -> bool {
        !self.output.is_empty() || self.tls.as_ref().is_some_and(|tls| tls.has_records())
    }

    /// The queued output at or under which a drain owed is told.
    pub(super) fn drain_low(&self) -> usize {
        self.drain_watermark.map_or(0, |low| low as usize)
    }

    /// Moves to `next` unless the connection is there or past it already.
    pub(super) fn advance(&mut self, next: Phase) {
        self.phase = self.phase.max(next);
    }

    /// A write failed with `error`: the socket is unusable, and a guest
    /// that has heard of no end yet will hear of this one.
    pub(super) fn write_failed(&mut self, error: io::Error) {
        if self.phase == Phase::Open {
            self.unreported_failure = Some(error);
        }
        self.fail();
    }

    /// The socket failed: nothing queued can be sent any more, so it is
    /// dropped at once, giving its memory back.
    pub(super) fn fail(&mut self) {
        self.advance(Phase::Failed);
        self.output.clear();
    }

    /// Whether the connection wants input now: it is open, not closing,
    /// and neither the guest nor backpressure paused reading.
    pub(super) fn wants_input(&self) -> bool {
        self.phase == Phase::Open && self.closing.is_none() && !self.reading_paused && !self.backpressure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new()
    }

    /// The phase never moves back, and a close by the guest is put down to
    /// the latest news it had.
    #[test]
    fn the_phase_only_moves_forward() {
        let mut state = state();
        assert_eq!(state.phase.close_reason(), CloseReason::GuestClosed);
        state.advance(Phase::TimedOut);
        state.advance(Phase::PeerEnded);
        assert_eq!(state.phase, Phase::TimedOut, "end-of-stream after a timeout changes nothing");
        assert_eq!(state.phase.close_reason(), CloseReason::IdleTimeout);
        state.write_failed(io::ErrorKind::BrokenPipe.into());
        assert_eq!(state.phase.close_reason(), CloseReason::Error);
        assert!(state.unreported_failure.is_none(), "the guest heard of the timeout: that is its one end");
    }

    /// A write that fails on an open connection is kept for the guest.
    #[test]
    fn a_write_failure_on_an_open_connection_is_kept_for_the_guest() {
        let mut state = state();
        let budget = std::sync::Arc::new(crate::net::budget::OutputBudget::new(1 << 20));
        state.output.push(b"never sent", &budget);
        state.write_failed(io::ErrorKind::ConnectionReset.into());
        assert!(state.output.is_empty(), "output that cannot be sent is dropped");
        assert_eq!(state.phase, Phase::Failed);
        assert!(state.unreported_failure.is_some());
        assert!(!state.wants_input());
    }
}
