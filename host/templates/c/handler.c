// {{name}}: an evconn connection handler in C. It welcomes each connection
// with its number, counted in the store that every instance of the host
// shares (wasi:keyvalue), then echoes what it reads; end of stream or an
// error closes the connection.
//
// The bindings in bindings/ are what `wit-bindgen c` makes of wit/. Handle
// rules: on_accept gets the connection owned; borrow it with
// evconn_listener_connection_borrow_connection (never drop that borrow) and
// drop the owned handle when done (that does not close the connection).
// Borrows the host lends to a callback are dropped before it returns. An
// import only reads the lists and strings it is given.
#include <stdio.h>
#include <string.h>

#include "bindings/handler.h"

typedef exports_evconn_listener_callbacks_borrow_connection_t borrow_connection_t;
typedef exports_evconn_listener_callbacks_borrow_listener_t borrow_listener_t;

// The store's bucket this handler may open: the host allows the one named
// after the component unless told otherwise (--allow-bucket).
static const char BUCKET[] = "{{name}}";

// Writes `len` bytes; on a refusal, fills `err` and returns false.
static bool write_bytes(evconn_listener_connection_borrow_connection_t conn, const uint8_t *bytes, size_t len,
                        handler_string_t *err) {
    handler_list_u8_t data = {(uint8_t *)bytes, len};
    evconn_listener_connection_error_code_t code;
    if (evconn_listener_connection_method_connection_write(conn, &data, &code)) return true;
    handler_string_dup(err, "write refused");
    return false;
}

// The visitor number from the store, or 0 if the store is not there.
static long long next_visitor(void) {
    handler_string_t name;
    handler_string_set(&name, BUCKET);
    wasi_keyvalue_store_own_bucket_t bucket;
    wasi_keyvalue_store_error_t error;
    if (!wasi_keyvalue_store_open(&name, &bucket, &error)) {
        wasi_keyvalue_store_error_free(&error);
        return 0;
    }
    handler_string_t key;
    handler_string_set(&key, "visitors");
    uint64_t count = 0;
    bool counted = wasi_keyvalue_atomics_increment(wasi_keyvalue_store_borrow_bucket(bucket), &key, 1, &count, &error);
    if (!counted) wasi_keyvalue_store_error_free(&error);
    wasi_keyvalue_store_bucket_drop_own(bucket);
    return counted ? (long long)count : 0;
}

bool exports_evconn_listener_callbacks_on_accept(borrow_listener_t listener,
                                                 exports_evconn_listener_callbacks_own_connection_t conn,
                                                 exports_evconn_listener_callbacks_socket_address_t *peer,
                                                 handler_string_t *err) {
    // The peer's address is the callback's to free: a Unix socket's path is
    // a string the bindings allocated.
    exports_evconn_listener_callbacks_socket_address_free(peer);
    char welcome[64];
    long long visitor = next_visitor();
    if (visitor > 0) {
        snprintf(welcome, sizeof welcome, "welcome, visitor %lld\n", visitor);
    } else {
        snprintf(welcome, sizeof welcome, "welcome\n");
    }
    bool written = write_bytes(evconn_listener_connection_borrow_connection(conn), (const uint8_t *)welcome,
                               strlen(welcome), err);
    evconn_listener_connection_connection_drop_own(conn);
    evconn_listener_listener_listener_drop_borrow(listener);
    return written;
}

bool exports_evconn_listener_callbacks_on_data(borrow_connection_t conn, handler_list_u8_t *data,
                                               handler_string_t *err) {
    bool written = write_bytes(conn, data->ptr, data->len, err);
    handler_list_u8_free(data);
    evconn_listener_connection_connection_drop_borrow(conn);
    return written;
}

bool exports_evconn_listener_callbacks_on_event(borrow_connection_t conn,
                                                exports_evconn_listener_callbacks_connection_event_t *event,
                                                handler_string_t *err) {
    (void)event;
    (void)err;
    evconn_listener_connection_method_connection_close(conn);
    evconn_listener_connection_connection_drop_borrow(conn);
    return true;
}

void exports_evconn_listener_callbacks_on_accept_error(borrow_listener_t listener,
                                                       exports_evconn_listener_callbacks_accept_error_t *error) {
    fprintf(stderr, "accept failed: %.*s (%d)\n", (int)error->description.len, (const char *)error->description.ptr,
            (int)error->errno);
    exports_evconn_listener_callbacks_accept_error_free(error);
    evconn_listener_listener_listener_drop_borrow(listener);
}

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
