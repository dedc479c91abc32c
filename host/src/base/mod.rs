//! Small tools every layer uses: locks, maps keyed by the host's ids, the
//! back-off after repeated failures, lingering on a closing socket, and
//! durations and sizes as an operator writes them. Imports nothing of the
//! host.
pub(crate) mod backoff;
pub(crate) mod ids;
pub(crate) mod linger;
pub(crate) mod sync;
pub mod units;
