//! libevent's listener options (`LEV_OPT_*`), and evconn's two of its own,
//! with the names the command line, the config file and the WIT
//! `listen-options` flags give them.

bitflags::bitflags! {
    /// How a listening socket is made and run (see `wit/types.wit`,
    /// `listen-options`, for what each does).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct ListenOptions: u16 {
        /// `LEV_OPT_LEAVE_SOCKETS_BLOCKING`: accepted and harmless; accepted
        /// sockets stay non-blocking on the reactor.
        const LEAVE_SOCKETS_BLOCKING = 1 << 0;
        /// `LEV_OPT_CLOSE_ON_FREE`: freeing the listener closes its socket.
        const CLOSE_ON_FREE = 1 << 1;
        /// `LEV_OPT_CLOSE_ON_EXEC`: `FD_CLOEXEC` on the listening socket.
        const CLOSE_ON_EXEC = 1 << 2;
        /// `LEV_OPT_REUSEABLE`: `SO_REUSEADDR`.
        const REUSEABLE = 1 << 3;
        /// `LEV_OPT_THREADSAFE`: accepted and harmless; calls on a listener
        /// are serialised anyway.
        const THREADSAFE = 1 << 4;
        /// `LEV_OPT_DISABLED`: the listener starts disabled.
        const DISABLED = 1 << 5;
        /// `LEV_OPT_DEFERRED_ACCEPT`: `TCP_DEFER_ACCEPT`.
        const DEFERRED_ACCEPT = 1 << 6;
        /// `LEV_OPT_REUSEABLE_PORT`: `SO_REUSEPORT`.
        const REUSEABLE_PORT = 1 << 7;
        /// `LEV_OPT_BIND_IPV6ONLY`: `IPV6_V6ONLY` on an IPv6 listener.
        const BIND_IPV6_ONLY = 1 << 8;
    }
}

impl ListenOptions {
    /// The options of a listener the operator names none for: those of
    /// libevent's echo example.
    pub const DEFAULT: ListenOptions = ListenOptions::REUSEABLE.union(ListenOptions::CLOSE_ON_FREE);

    /// Every option with its name, such as `reuseable-port`.
    pub const NAMES: [(&str, ListenOptions); 9] = [
        ("leave-sockets-blocking", ListenOptions::LEAVE_SOCKETS_BLOCKING),
        ("close-on-free", ListenOptions::CLOSE_ON_FREE),
        ("close-on-exec", ListenOptions::CLOSE_ON_EXEC),
        ("reuseable", ListenOptions::REUSEABLE),
        ("threadsafe", ListenOptions::THREADSAFE),
        ("disabled", ListenOptions::DISABLED),
        ("deferred-accept", ListenOptions::DEFERRED_ACCEPT),
        ("reuseable-port", ListenOptions::REUSEABLE_PORT),
        ("bind-ipv6-only", ListenOptions::BIND_IPV6_ONLY),
    ];

    /// The option called `name`, or an error listing the known names.
    pub fn by_name(name: &str) -> Result<ListenOptions, String> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, o)| *o).ok_or_else(|| {
            let names: Vec<_> = Self::NAMES.iter().map(|(n, _)| *n).collect();
            format!("unknown listener option {name:?}; known: {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option has one name, and names find their option.
    #[test]
    fn every_option_has_a_name() {
        let named = ListenOptions::NAMES.iter().fold(ListenOptions::empty(), |all, (_, o)| all | *o);
        assert_eq!(named, ListenOptions::all());
        assert_eq!(ListenOptions::by_name("reuseable-port"), Ok(ListenOptions::REUSEABLE_PORT));
        let error = ListenOptions::by_name("fast").unwrap_err();
        assert!(error.contains("unknown listener option") && error.contains("bind-ipv6-only"), "{error}");
    }
}
