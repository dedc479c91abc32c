// The echo server from libevent's listener chapter, as an evconn handler in
// C: every byte read is written back; end of stream or an error closes the
// connection; an accept error shuts the host down.
//
// Memory and handles follow the bindings' rules: a callback frees the lists
// and strings it is given, drops every borrowed handle before it returns (or
// the host fails the call: "borrow handles still remain at the end of the
// call"), and returns its error text in memory from malloc, which the
// bindings free after the host has copied it.
#include <stdio.h>

#include "bindings/handler.h"

typedef exports_evconn_listener_callbacks_borrow_connection_t borrow_connection_t;
typedef exports_evconn_listener_callbacks_borrow_listener_t borrow_listener_t;
typedef evconn_listener_types_error_code_t error_code_t;

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

bool exports_evconn_listener_callbacks_on_accept(borrow_listener_t listener,
                                                 exports_evconn_listener_callbacks_own_connection_t conn,
                                                 exports_evconn_listener_callbacks_socket_address_t *peer,
                                                 handler_string_t *err) {
    // The peer's address is the callback's to free: a Unix socket's path is
    // a string the bindings allocated.
    exports_evconn_listener_callbacks_socket_address_free(peer);
    (void)err;
    // The echo talks to a connection only in that connection's callbacks,
    // which lend it a handle: the owned one is not needed. Dropping it does
    // not close the connection.
    evconn_listener_connection_connection_drop_own(conn);
    evconn_listener_listener_listener_drop_borrow(listener);
    return true;
}

bool exports_evconn_listener_callbacks_on_data(borrow_connection_t conn, handler_list_u8_t *data,
                                               handler_string_t *err) {
    error_code_t code;
    bool written = evconn_listener_connection_method_connection_write(conn, data, &code);
    handler_list_u8_free(data);
    evconn_listener_connection_connection_drop_borrow(conn);
    if (!written) {
        handler_string_dup(err, error_name(code));
    }
    return written;
}

bool exports_evconn_listener_callbacks_on_event(borrow_connection_t conn,
                                                exports_evconn_listener_callbacks_connection_event_t *event,
                                                handler_string_t *err) {
    (void)err;
    if (event->tag == EVCONN_LISTENER_TYPES_CONNECTION_EVENT_ERROR) {
        fprintf(stderr, "Error from bufferevent: %s\n", error_name(event->val.error));
    }
    evconn_listener_connection_method_connection_close(conn);
    evconn_listener_connection_connection_drop_borrow(conn);
    return true;
}

void exports_evconn_listener_callbacks_on_accept_error(borrow_listener_t listener,
                                                       exports_evconn_listener_callbacks_accept_error_t *error) {
    fprintf(stderr, "Got an error %d (%.*s) on the listener. Shutting down.\n", (int)error->errno,
            (int)error->description.len, (const char *)error->description.ptr);
    evconn_listener_reactor_loop_exit();
    exports_evconn_listener_callbacks_accept_error_free(error);
    evconn_listener_listener_listener_drop_borrow(listener);
}

// The echo starts no timer and sets no drain watermark, so neither of these
// is called; a C guest must still export them.
bool exports_evconn_listener_callbacks_on_timer(exports_evconn_listener_callbacks_timer_id_t timer,
                                                handler_string_t *err) {
    (void)timer;
    (void)err;
    return true;
}

bool exports_evconn_listener_callbacks_on_drain(borrow_connection_t conn, handler_string_t *err) {
    (void)err;
    evconn_listener_connection_connection_drop_borrow(conn);
    return true;
}
