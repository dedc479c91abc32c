//! `evconn:listener/timers`: starting and cancelling the instance's timers.
use std::time::Duration;

use super::super::bindings::ErrorCode;
use super::super::bindings::evconn::listener::timers::{Duration as Nanos, Host, TimerId};
use super::super::state::HostState;
use super::super::timers::TimerError;

impl Host for HostState {
    fn start(&mut self, after: Nanos, every: Option<Nanos>) -> wasmtime::Result<Result<TimerId, ErrorCode>> {
        let started = self.timers.start(Duration::from_nanos(after), every.map(Duration::from_nanos));
        Ok(started.map_err(|e| match e {
            TimerError::LimitReached => {
                tracing::debug!(component = %self.component, "guest reached --max-timers");
                ErrorCode::LimitReached
            }
            TimerError::PeriodTooShort => ErrorCode::InvalidArgument,
        }))
    }

    fn cancel(&mut self, timer: TimerId) -> wasmtime::Result<bool> {
        Ok(self.timers.cancel(timer))
    }
}
