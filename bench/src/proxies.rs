//! The third-party proxies: the configuration files HAProxy and nginx are
//! started with, written fresh for each start (the proxy suite's, and the
//! tls suite's HAProxy terminating TLS).
use std::net::SocketAddr;
use std::path::Path;

/// Connections HAProxy accepts at once. It reserves about two descriptors
/// per connection at start-up and refuses to start when the descriptor
/// limit (20000 on the benchmark machines, inherited from `bench`) cannot
/// hold them; 9900 fits and exceeds every test's connections.
pub const HAPROXY_MAXCONN: u32 = 9900;

/// Where Debian's libnginx-mod-stream puts the stream module.
pub const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// HAProxy relaying `listen` to `backend` in `mode tcp` on one thread, with
/// timeouts that outlast every test (an idle connection must stay open).
pub fn haproxy_config(listen: SocketAddr, backend: SocketAddr) -> String {
    haproxy(&listen.to_string(), backend)
}

/// The same, terminating TLS on `listen` with the certificate and key in
/// `pem` (HAProxy's `crt` takes both in one file) and relaying plain TCP:
/// TLS termination in front of a native echo. OpenSSL's defaults
/// otherwise; the clients pick the version and cipher.
pub fn haproxy_tls_config(listen: SocketAddr, backend: SocketAddr, pem: &Path) -> String {
    haproxy(&format!("{listen} ssl crt {}", pem.display()), backend)
}

/// HAProxy's configuration with `bind` taking `bind`.
fn haproxy(bind: &str, backend: SocketAddr) -> String {
    format!(
        "global\n    nbthread 1\n    maxconn {HAPROXY_MAXCONN}\n\
         defaults\n    mode tcp\n    timeout connect 10s\n    timeout client 1h\n    timeout server 1h\n\
         frontend f\n    bind {bind}\n    default_backend b\n\
         backend b\n    server echo {backend}\n"
    )
}

/// nginx relaying `listen` to `backend` with the stream module: in the
/// foreground, one process (no master, one worker's loop), its pid file and
/// temporary files under `prefix`. `proxy_half_close` passes a client's
/// end-of-stream on as the other proxies do; without it nginx closes the
/// session at the client's FIN.
pub fn nginx_config(listen: SocketAddr, backend: SocketAddr, prefix: &Path, module: &Path) -> String {
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nworker_rlimit_nofile 65536;\n\
         error_log stderr error;\npid {prefix}/nginx.pid;\nload_module {module};\n\
         events {{ worker_connections 30000; }}\n\
         stream {{\n    server {{\n        listen {listen};\n        proxy_pass {backend};\n        \
         proxy_timeout 1h;\n        proxy_half_close on;\n    }}\n}}\n",
        prefix = prefix.display(),
        module = module.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses() -> (SocketAddr, SocketAddr) {
        (SocketAddr::from(([127, 0, 0, 1], 4000)), SocketAddr::from(([127, 0, 0, 1], 5000)))
    }

    #[test]
    fn haproxy_listens_and_relays_in_tcp_mode_on_one_thread() {
        let (listen, backend) = addresses();
        let config = haproxy_config(listen, backend);
        let lines: Vec<&str> = config.lines().map(str::trim).collect();
        for expected in [
            "nbthread 1",
            "maxconn 9900",
            "mode tcp",
            "bind 127.0.0.1:4000",
            "default_backend b",
            "server echo 127.0.0.1:5000",
            "timeout client 1h",
            "timeout server 1h",
        ] {
            assert!(lines.contains(&expected), "{expected:?} missing from\n{config}");
        }
        // Sections start at the margin, settings are indented under them.
        let sections: Vec<&str> = config.lines().filter(|l| !l.starts_with(' ')).collect();
        assert_eq!(sections, ["global", "defaults", "frontend f", "backend b"]);
    }

    #[test]
    fn haproxy_terminates_tls_with_the_run_certificate_and_relays_plain_tcp() {
        let (listen, backend) = addresses();
        let config = haproxy_tls_config(listen, backend, Path::new("/tmp/run/cert-and-key.pem"));
        let lines: Vec<&str> = config.lines().map(str::trim).collect();
        for expected in [
            "nbthread 1",
            "mode tcp",
            "bind 127.0.0.1:4000 ssl crt /tmp/run/cert-and-key.pem",
            "server echo 127.0.0.1:5000",
        ] {
            assert!(lines.contains(&expected), "{expected:?} missing from\n{config}");
        }
        // The backend is plain TCP: no `ssl` on the server line.
        assert_eq!(config.matches("ssl").count(), 1, "{config}");
        // Otherwise the proxy suite's configuration.
        let plain = haproxy_config(listen, backend);
        assert_eq!(config.replace(" ssl crt /tmp/run/cert-and-key.pem", ""), plain);
    }

    #[test]
    fn nginx_runs_one_foreground_process_with_half_close() {
        let (listen, backend) = addresses();
        let config = nginx_config(listen, backend, Path::new("/tmp/n"), Path::new(NGINX_STREAM_MODULE));
        for expected in [
            "daemon off;",
            "master_process off;",
            "worker_processes 1;",
            "pid /tmp/n/nginx.pid;",
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;",
            "listen 127.0.0.1:4000;",
            "proxy_pass 127.0.0.1:5000;",
            "proxy_half_close on;",
        ] {
            assert!(config.contains(expected), "{expected:?} missing from\n{config}");
        }
        assert_eq!(config.matches('{').count(), config.matches('}').count(), "balanced braces");
    }
}
