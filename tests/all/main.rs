//! The integration tests, over real TCP on loopback: one test binary, so
//! that wasmtime and the host are linked once, with a module per area.
//! `support` builds the guests and starts hosts, in this process or as the
//! `host` binary.
//!
//! `hostile_guests` and `hostile_peers` measure time, CPU and memory, and
//! hold thousands of connections, and `echo_streams` pushes 1 GiB through
//! each of four echoes: `scripts/test` runs them after the rest, one test at
//! a time.
mod support;

mod accept_errors;
mod bad_input;
mod c_bindings;
mod code_cache;
mod config_file;
mod deploy_examples;
mod echo;
mod echo_streams;
mod example_scripts;
mod examples;
mod hostile_guests;
mod hostile_peers;
mod keyvalue;
mod kv_redis_tools;
mod layers;
mod limits_and_shutdown;
mod listener_control;
mod listener_options;
mod metrics;
mod new_project;
mod outbound;
mod output;
mod reload;
mod sandbox;
mod socket_activation;
mod socket_echo;
mod test_kit;
mod timers;
mod tls;
mod unix_sockets;
mod workers;
mod write_input;
