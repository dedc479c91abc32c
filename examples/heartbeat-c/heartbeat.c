// The heartbeat line server (examples/heartbeat) in C: every 300 ms it sends
// PING; a client must answer PONG within 200 ms or it gets TIMEOUT and is
// closed. Every other line comes back as it was sent.
//
// Each connection has two timers: a repeating one for the pings, and a
// one-shot deadline started with each ping and cancelled by the answer.
// `on_timer` gets only a timer's id, so the table of clients says which
// connection each timer is for. The owned connection handle from
// `on_accept` is kept, to write from timers, and dropped when the client
// is forgotten. Memory and handles follow the bindings' rules (see
// examples/echo-c/echo.c).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings/handler.h"

typedef exports_evconn_listener_callbacks_borrow_connection_t borrow_connection_t;
typedef exports_evconn_listener_callbacks_borrow_listener_t borrow_listener_t;
typedef evconn_listener_connection_own_connection_t own_connection_t;
typedef evconn_listener_timers_timer_id_t timer_id_t;
typedef evconn_listener_types_error_code_t error_code_t;

// Timers count nanoseconds.
#define INTERVAL 300000000ull
#define DEADLINE 200000000ull
#define MAX_LINE 1024
// Clients served at once by one instance; more are refused.
#define MAX_CLIENTS 1024

// One connection: its handle, its unfinished line and its timers (0 for
// none: timer ids start at 1).
typedef struct {
    bool used;
    uint64_t id;
    own_connection_t conn;
    uint8_t partial[MAX_LINE + 1];
    size_t partial_len;
    timer_id_t ping;
    timer_id_t deadline;
} client_t;

static client_t clients[MAX_CLIENTS];

// The names of `error-code` in wit/types.wit, in their order.
static const char *const ERROR_NAMES[] = {
    "unknown", "access-denied", "not-supported", "invalid-argument", "out-of-memory",
    "too-many-open-files", "system-file-limit", "invalid-state", "address-in-use",
    "address-not-bindable", "connection-reset", "connection-aborted", "timeout", "closed",
    "would-block", "limit-reached",
};

static const char *error_name(error_code_t code) {
    return code < sizeof ERROR_NAMES / sizeof *ERROR_NAMES ? ERROR_NAMES[code] : "unknown";
}

static client_t *find_by_id(uint64_t id) {
    for (size_t i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i].used && clients[i].id == id) {
            return &clients[i];
        }
    }
    return NULL;
}

static client_t *find_by_timer(timer_id_t timer) {
    for (size_t i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i].used && (clients[i].ping == timer || clients[i].deadline == timer)) {
            return &clients[i];
        }
    }
    return NULL;
}

// Forgets a client: cancels its timers and drops its handle.
static void forget(client_t *client) {
    if (client->ping) evconn_listener_timers_cancel(client->ping);
    if (client->deadline) evconn_listener_timers_cancel(client->deadline);
    evconn_listener_connection_connection_drop_own(client->conn);
    client->used = false;
}

// Writes `len` bytes of `bytes` to `conn`; on failure sets `err`.
static bool write_bytes(evconn_listener_connection_borrow_connection_t conn, const uint8_t *bytes, size_t len,
                        handler_string_t *err) {
    handler_list_u8_t data = {(uint8_t *)bytes, len};
    error_code_t code;
    if (evconn_listener_connection_method_connection_write(conn, &data, &code)) {
        return true;
    }
    handler_string_dup(err, error_name(code));
    return false;
}

bool exports_evconn_listener_callbacks_on_accept(borrow_listener_t listener, own_connection_t conn,
                                                 exports_evconn_listener_callbacks_socket_address_t *peer,
                                                 handler_string_t *err) {
    // The peer's address is the callback's to free: a Unix socket's path is
    // a string the bindings allocated.
    exports_evconn_listener_callbacks_socket_address_free(peer);
    evconn_listener_listener_listener_drop_borrow(listener);
    client_t *client = NULL;
    for (size_t i = 0; i < MAX_CLIENTS && client == NULL; i++) {
        if (!clients[i].used) client = &clients[i];
    }
    if (client == NULL) {
        evconn_listener_connection_connection_drop_own(conn);
        handler_string_dup(err, "too many clients");
        return false;
    }
    uint64_t every = INTERVAL;
    timer_id_t ping;
    error_code_t code;
    if (!evconn_listener_timers_start(INTERVAL, &every, &ping, &code)) {
        evconn_listener_connection_connection_drop_own(conn);
        handler_string_dup(err, error_name(code));
        return false;
    }
    uint64_t id = evconn_listener_connection_method_connection_id(evconn_listener_connection_borrow_connection(conn));
    *client = (client_t){.used = true, .id = id, .conn = conn, .partial_len = 0, .ping = ping, .deadline = 0};
    return true;
}

bool exports_evconn_listener_callbacks_on_data(borrow_connection_t conn, handler_list_u8_t *data,
                                               handler_string_t *err) {
    uint64_t id = evconn_listener_connection_method_connection_id(conn);
    client_t *client = find_by_id(id);
    bool ok = true;
    // Lines are echoed whole; at most one read's worth plus a partial line.
    uint8_t *echo = malloc(data->len + MAX_LINE + 1);
    size_t echo_len = 0;
    for (size_t i = 0; client != NULL && ok && i < data->len; i++) {
        uint8_t byte = data->ptr[i];
        if (client->partial_len == MAX_LINE + 1) {
            handler_string_dup(err, "line longer than 1024 bytes");
            ok = false;
            break;
        }
        client->partial[client->partial_len++] = byte;
        if (byte != '\n') continue;
        size_t len = client->partial_len;
        size_t text = len - 1 - (len >= 2 && client->partial[len - 2] == '\r');
        if (text == 4 && memcmp(client->partial, "PONG", 4) == 0) {
            if (client->deadline) {
                evconn_listener_timers_cancel(client->deadline);
                client->deadline = 0;
            }
        } else {
            memcpy(echo + echo_len, client->partial, len);
            echo_len += len;
        }
        client->partial_len = 0;
    }
    if (ok && echo_len > 0) {
        ok = write_bytes(conn, echo, echo_len, err);
    }
    if (!ok && client != NULL) {
        // The error ends the connection and no callback follows.
        forget(client);
    }
    free(echo);
    handler_list_u8_free(data);
    evconn_listener_connection_connection_drop_borrow(conn);
    return ok;
}

bool exports_evconn_listener_callbacks_on_event(borrow_connection_t conn,
                                                exports_evconn_listener_callbacks_connection_event_t *event,
                                                handler_string_t *err) {
    (void)event;
    (void)err;
    client_t *client = find_by_id(evconn_listener_connection_method_connection_id(conn));
    if (client != NULL) forget(client);
    evconn_listener_connection_method_connection_close(conn);
    evconn_listener_connection_connection_drop_borrow(conn);
    return true;
}

void exports_evconn_listener_callbacks_on_accept_error(borrow_listener_t listener,
                                                       exports_evconn_listener_callbacks_accept_error_t *error) {
    exports_evconn_listener_callbacks_accept_error_free(error);
    evconn_listener_listener_listener_drop_borrow(listener);
}

bool exports_evconn_listener_callbacks_on_timer(timer_id_t timer, handler_string_t *err) {
    client_t *client = find_by_timer(timer);
    if (client == NULL) return true;
    evconn_listener_connection_borrow_connection_t conn = evconn_listener_connection_borrow_connection(client->conn);
    if (timer == client->ping) {
        // Still waiting for the last answer: its deadline will do.
        if (client->deadline) return true;
        static const uint8_t PING[] = "PING\n";
        if (!write_bytes(conn, PING, sizeof PING - 1, err)) return false;
        error_code_t code;
        if (!evconn_listener_timers_start(DEADLINE, NULL, &client->deadline, &code)) {
            handler_string_dup(err, error_name(code));
            return false;
        }
        return true;
    }
    // The deadline passed: it is gone, being one-shot.
    client->deadline = 0;
    static const uint8_t TIMEOUT[] = "TIMEOUT\n";
    handler_string_t ignored = {0};
    write_bytes(conn, TIMEOUT, sizeof TIMEOUT - 1, &ignored);
    handler_string_free(&ignored);
    evconn_listener_connection_method_connection_close(conn);
    forget(client);
    return true;
}

bool exports_evconn_listener_callbacks_on_drain(borrow_connection_t conn, handler_string_t *err) {
    // Lines are echoed as they come: reading pauses before the output could
    // reach the cap.
    (void)err;
    evconn_listener_connection_connection_drop_borrow(conn);
    return true;
}
