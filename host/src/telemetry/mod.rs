//! What the host counts and how it is read: counters and histograms per
//! component, the log line at stop, and the `/metrics` endpoint. Imports
//! only [`crate::base`]: every other layer counts into it.
pub(crate) mod endpoint;
mod labels;
mod latency;
mod metrics;
mod stats;

pub use labels::{Callback, CloseReason};
pub use latency::Latency;
pub use metrics::{CONTENT_TYPE, Counts, Metrics};
pub use stats::{Stats, Traffic};
