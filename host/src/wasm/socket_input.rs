//! `on-data`'s bytes read from the socket straight into the guest's memory,
//! so that the kernel's copy is the only one.
//!
//! The generated binding lowers `list<u8>` from a host slice: the guest's
//! `cabi_realloc` makes room, and the slice is copied there. Here the
//! parameter is a [`SocketInput`] instead, which lowers as the same
//! `list<u8>`: it asks `cabi_realloc` for exactly the bytes the socket holds
//! (`Connection::waiting`) and reads them into that room. A streaming peer's
//! large reads skip a copy each; a small message is not worth the
//! extra system call, and goes the usual way (`serve::worker` decides).
use std::mem::MaybeUninit;

use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext};
use wasmtime::component::{ComponentType, Lower, Resource, TypedFunc};
use wasmtime::{ValRaw, bail, format_err};

use super::imports::ConnectionHandle;
use crate::net::Connection;

/// `on-data`'s parameters and results, with the bytes as a [`SocketInput`].
pub type OnData<'a> = TypedFunc<(Resource<ConnectionHandle>, SocketInput<'a>), (Result<(), String>,)>;

/// A `list<u8>` of `len` bytes that `conn` holds for reading, lowered by
/// reading them into the guest's memory.
pub struct SocketInput<'a> {
    conn: &'a Connection,
    len: usize,
    /// `len` is every byte the socket holds: the read ends its readiness.
    all_waiting: bool,
}

impl<'a> SocketInput<'a> {
    /// Up to `limit` of the `waiting` bytes `conn` holds (`waiting` >= 1, as
    /// `Connection::waiting` reported it).
    pub fn new(conn: &'a Connection, waiting: usize, limit: usize) -> Self {
        let len = waiting.min(limit);
        SocketInput { conn, len, all_waiting: len == waiting }
    }

    /// Makes room in the guest and reads into it; returns the list's
    /// pointer and length.
    fn read_into_guest<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<(usize, usize)> {
        let ptr = cx.realloc(0, 0, 1, self.len)?;
        // `realloc` checked that the room lies within the guest's memory.
        let room = &mut cx.as_slice_mut()[ptr..ptr + self.len];
        let read = self
            .conn
            .read_waiting(room, self.all_waiting)
            .map_err(|e| format_err!("reading bytes the socket reported waiting: {e}"))?;
        if read == self.len {
            return Ok((ptr, read));
        }
        if read == 0 {
            // The socket said it held bytes, then gave none: TCP does not do
            // this. There is no list to hand over and the call is under
            // way, so the error ends it, as a trap would.
            bail!("the socket reported {} bytes waiting, then read none", self.len);
        }
        // Fewer than reported (urgent data stops a read short): shrink the
        // room to what was read, as the canonical ABI allows.
        let ptr = cx.realloc(ptr, self.len, 1, read)?;
        Ok((ptr, read))
    }
}

// SAFETY: lowers as `list<u8>` does, two flat values (pointer and length)
// or two little-endian u32s in memory, and accepts only `list<u8>`.
unsafe impl ComponentType for SocketInput<'_> {
    type Lower = [ValRaw; 2];

    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        match ty {
            InterfaceType::List(list) => match types.types[*list].element {
                InterfaceType::U8 => Ok(()),
                _ => bail!("expected `list<u8>`, found a list of something else"),
            },
            _ => bail!("expected `list<u8>`"),
        }
    }
}

// SAFETY: writes exactly the pointer and length `typecheck` promised, for
// room `realloc` made in the guest's memory and filled.
unsafe impl Lower for SocketInput<'_> {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 2]>,
    ) -> wasmtime::Result<()> {
        let (ptr, len) = self.read_into_guest(cx)?;
        // Pointers and lengths go as 64-bit values, as wasmtime's own
        // lowering of lists writes them.
        dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(len as i64)]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let (ptr, len) = self.read_into_guest(cx)?;
        *cx.get::<4>(offset) = u32::try_from(ptr)?.to_le_bytes();
        *cx.get::<4>(offset + 4) = u32::try_from(len)?.to_le_bytes();
        Ok(())
    }
}
