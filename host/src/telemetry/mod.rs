//! What the host counts and how it is read: counters and histograms per
//! component, the log line at stop, and the `/metrics` endpoint. Imports
//! only [`crate::base`]: every other layer counts into it.
mod counts;
pub(crate) mod endpoint;
mod labels;
mod latency;
mod metrics;
mod stats;

pub use counts::Counts;
pub use labels::{Callback, CloseReason, HandshakeOutcome, KeyvalueOp, KeyvalueOutcome};
pub use latency::Latency;
pub use metrics::{CONTENT_TYPE, Metrics};
pub use stats::{Stats, Traffic};
