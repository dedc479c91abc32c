//! An instance's memory: capped at `--guest-memory`, counted in the
//! component's `evconn_guest_memory_bytes`, and remembered when the cap
//! refused to let it grow, which is what a trap that follows is most likely
//! about.
use prometheus_client::metrics::gauge::Gauge;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// The most elements a guest table may grow to: far above what compiled
/// languages need, far below what would hurt the host.
const TABLE_ELEMENTS: usize = 1 << 20;

/// The store's limiter: wasmtime's `StoreLimits`, which enforces the caps,
/// and what it let the instance's memories grow to.
pub struct GuestMemory {
    limits: StoreLimits,
    /// The bytes of every memory the instance holds (a component has one
    /// for the guest and may have another for an adapter).
    held: usize,
    /// The component's gauge, which this instance's `held` is part of
    /// until it is dropped.
    gauge: Gauge,
    /// A memory asked to grow past `cap` and was refused.
    refused: bool,
    cap: usize,
}

impl GuestMemory {
    /// Caps each memory at `cap` bytes and adds what they hold to `gauge`.
    pub fn new(cap: usize, gauge: Gauge) -> Self {
        let limits = StoreLimitsBuilder::new().memory_size(cap).table_elements(TABLE_ELEMENTS).build();
        GuestMemory { limits, held: 0, gauge, refused: false, cap }
    }

    /// The bytes the instance's memories hold.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether a memory was refused growth since [`GuestMemory::watch`]:
    /// the guest asked for more than the cap (its allocator then fails:
    /// Python raises `MemoryError`, JavaScript's `cabi_realloc` aborts, Rust
    /// aborts).
    pub fn reached_cap(&self) -> bool {
        self.refused
    }

    /// Forgets refusals so far: called before each callback, so that a trap
    /// is blamed on memory only if its own callback was refused some (a
    /// guest may handle a refusal and trap later for another reason).
    pub fn watch(&mut self) {
        self.refused = false;
    }

    /// The cap on each memory, in bytes (`--guest-memory`).
    pub fn cap(&self) -> usize {
        self.cap
    }
}

impl ResourceLimiter for GuestMemory {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            // Called for a memory's creation too (from 0), so this adds up
            // every memory the instance has.
            let grown = desired.saturating_sub(current);
            self.held += grown;
            self.gauge.inc_by(i64::try_from(grown).unwrap_or(i64::MAX));
        } else {
            self.refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl Drop for GuestMemory {
    /// The instance's store is gone, and its memories with it.
    fn drop(&mut self) {
        self.gauge.dec_by(i64::try_from(self.held).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Growth under the cap is counted in the gauge until the limiter is
    /// dropped; growth past it is refused and remembered.
    #[test]
    fn counts_growth_and_remembers_refusals() {
        let gauge = Gauge::default();
        let mut memory = GuestMemory::new(1 << 20, gauge.clone());
        assert!(memory.memory_growing(0, 64 << 10, None).unwrap());
        assert!(memory.memory_growing(64 << 10, 128 << 10, None).unwrap());
        assert_eq!((memory.held(), gauge.get()), (128 << 10, 128 << 10));
        assert!(!memory.reached_cap());
        assert!(!memory.memory_growing(128 << 10, 2 << 20, None).unwrap());
        assert!(memory.reached_cap());
        assert_eq!(memory.held(), 128 << 10, "a refused growth adds nothing");
        memory.watch();
        assert!(!memory.reached_cap(), "the next callback starts afresh");
        drop(memory);
        assert_eq!(gauge.get(), 0);
    }
}
