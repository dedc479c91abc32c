//! The guest side: the engine and its epoch ticker, loading and caching
//! components, the bindings generated from `wit/` and the host's side of
//! their imports, an instance's store and the calls into it. Drives
//! [`crate::net`]'s connections and listeners on the guest's behalf and
//! turns their errors into WIT `error-code`s.
mod bindings;
mod call_clock;
pub mod code_cache;
pub mod component;
mod context;
pub mod contract;
pub mod engine;
mod guest_log;
mod imports;
mod instance;
mod memory;
mod socket_input;
mod state;
mod ticker;
mod timers;

pub use bindings::ErrorCode;
pub use code_cache::{CacheError, CodeCache};
pub use component::{Compiled, LoadError, Loader, name, precompile};
pub use context::{Dial, InstanceContext, Owner};
pub use engine::{Isolation, compiling_engine, engine, linker};
pub use instance::{Event, Instance, Outcome};
pub use ticker::EPOCH_TICK;
pub use timers::{TimerId, Timers};
