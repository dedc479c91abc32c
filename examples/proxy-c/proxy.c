// libevent's sample/le-proxy.c (examples/proxy) in C: every client
// connection is relayed to a backend, both ways.
//
// - The backends come from the operator: BACKENDS, a comma-separated list of
//   HOST:PORT (an address, [an IPv6 address] or a name), read with getenv.
//   Each is dialed with `connect-name`, which takes a name written as an
//   address as that address. Clients go to them in turn; a backend that
//   cannot be reached is skipped for the next, and a client none can serve
//   is closed.
// - Backpressure: once the side bytes go to holds HIGH bytes the host has
//   not sent yet, reading from the other side pauses until `on_drain` says
//   it is down to LOW. A write the host refuses (would-block) is kept, and
//   reading paused, until the drain.
// - Half-close passes through: a side's end-of-stream becomes the other
//   side's, after what it sent; once both have ended, both close. An error
//   or an idle timeout on either side closes both.
//
// Memory and handles follow the bindings' rules (see examples/echo-c/echo.c):
// borrowed handles are dropped before each callback returns, the owned
// handles of both ends are kept in the table of pairs and dropped when the
// pair is forgotten, and lists given to a callback are freed (or kept as
// the pending bytes, which are freed in their turn).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings/handler.h"

typedef exports_evconn_listener_callbacks_borrow_connection_t borrow_connection_t;
typedef exports_evconn_listener_callbacks_borrow_listener_t borrow_listener_t;
typedef evconn_listener_connection_own_connection_t own_connection_t;
typedef evconn_listener_types_error_code_t error_code_t;

// Output held for one side at which reading from the other pauses, and
// resumes.
#define HIGH (512 * 1024)
#define LOW (128 * 1024)
// Pairs served at once by one instance; more clients are refused.
#define MAX_PAIRS 1024
#define MAX_BACKENDS 64

enum side { CLIENT, BACKEND };
static const char *const SIDE_NAMES[] = {"client", "backend"};

// One end of a pair.
typedef struct {
    bool used;
    uint64_t id;
    own_connection_t conn;
    // Bytes for this end the host refused, sent before anything else.
    uint8_t *pending;
    size_t pending_len;
    // Its peer sent end-of-stream.
    bool ended;
    // The other end's end-of-stream waits for `pending` to go out.
    bool shutdown_owed;
} end_t;

// A client and its backend, once one is dialed.
typedef struct {
    bool used;
    end_t ends[2];
    // Whether the backend has connected.
    bool connected;
    // Backends tried for this client, counting the current one.
    size_t tried;
} pair_t;

typedef struct {
    char *host;
    uint16_t port;
} backend_t;

static pair_t pairs[MAX_PAIRS];
// The operator's backends, read once; the one the next client goes to.
static backend_t backends[MAX_BACKENDS];
static size_t backend_count;
static bool backends_read;
static size_t next_backend;

// The names of `error-code` in wit/types.wit, in their order.
static const char *const ERROR_NAMES[] = {
    "unknown", "access-denied", "not-supported", "invalid-argument", "out-of-memory",
    "too-many-open-files", "system-file-limit", "invalid-state", "address-in-use",
    "address-not-bindable", "connection-reset", "connection-aborted", "timeout", "closed",
    "would-block", "limit-reached", "connection-refused", "host-unreachable", "name-unresolvable",
};

static const char *error_name(error_code_t code) {
    return code < sizeof ERROR_NAMES / sizeof *ERROR_NAMES ? ERROR_NAMES[code] : "unknown";
}

static evconn_listener_connection_borrow_connection_t borrow(end_t *end) {
    return evconn_listener_connection_borrow_connection(end->conn);
}

// Parses HOST:PORT, splitting at the last colon; HOST may be [IPv6].
static bool parse_backend(char *text, backend_t *backend) {
    char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text) return false;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port == 0 || port > 65535) return false;
    *colon = '\0';
    if (text[0] == '[' && colon[-1] == ']') {
        colon[-1] = '\0';
        text++;
    }
    backend->host = text;
    backend->port = (uint16_t)port;
    return true;
}

// Reads BACKENDS on first use. Its text is copied and kept for the
// instance's life: `backends` points into it.
static void read_backends(void) {
    if (backends_read) return;
    backends_read = true;
    const char *list = getenv("BACKENDS");
    char *copy = strdup(list ? list : "");
    for (char *item = strtok(copy, ", "); item != NULL; item = strtok(NULL, ", ")) {
        if (backend_count == MAX_BACKENDS) {
            fprintf(stderr, "proxy: ignoring backends past the first %d\n", MAX_BACKENDS);
            break;
        }
        if (parse_backend(item, &backends[backend_count])) {
            backend_count++;
        } else {
            fprintf(stderr, "proxy: ignoring backend \"%s\": not HOST:PORT\n", item);
        }
    }
    if (backend_count == 0) {
        fprintf(stderr, "proxy: no backend: set BACKENDS=HOST:PORT[,HOST:PORT...] with host --env\n");
    }
}

static void end_init(end_t *end, own_connection_t conn) {
    uint64_t id = evconn_listener_connection_method_connection_id(evconn_listener_connection_borrow_connection(conn));
    *end = (end_t){.used = true, .id = id, .conn = conn};
}

// Forgets an end: drops its handle and what it held. Does not close it.
static void end_forget(end_t *end) {
    if (!end->used) return;
    evconn_listener_connection_connection_drop_own(end->conn);
    free(end->pending);
    *end = (end_t){0};
}

// Closes both ends, each after what it holds has been sent, and forgets
// the pair.
static void close_pair(pair_t *pair) {
    for (int side = CLIENT; side <= BACKEND; side++) {
        end_t *end = &pair->ends[side];
        if (end->used) evconn_listener_connection_method_connection_close(borrow(end));
        end_forget(end);
    }
    pair->used = false;
}

// The pair one of whose ends is connection `id`, and which side it is.
static pair_t *find(uint64_t id, enum side *side) {
    for (size_t i = 0; i < MAX_PAIRS; i++) {
        for (int s = CLIENT; pairs[i].used && s <= BACKEND; s++) {
            if (pairs[i].ends[s].used && pairs[i].ends[s].id == id) {
                *side = (enum side)s;
                return &pairs[i];
            }
        }
    }
    return NULL;
}

// Dials backends for the pair's client, from the next in turn, until one
// can be dialed; closes the client if none can.
static void dial_backend(pair_t *pair) {
    read_backends();
    while (pair->tried < backend_count) {
        pair->tried++;
        backend_t *backend = &backends[next_backend++ % backend_count];
        handler_string_t name;
        handler_string_set(&name, backend->host);
        own_connection_t conn;
        error_code_t code;
        if (evconn_listener_outbound_connect_name(&name, backend->port, &conn, &code)) {
            end_init(&pair->ends[BACKEND], conn);
            pair->connected = false;
            return;
        }
        fprintf(stderr, "proxy: cannot dial %s:%u: %s\n", backend->host, backend->port, error_name(code));
    }
    fprintf(stderr, "proxy: no backend could be reached for connection %llu\n",
            (unsigned long long)pair->ends[CLIENT].id);
    close_pair(pair);
}

// Sets `err` to "relaying to the SIDE: CODE".
static void relay_error(handler_string_t *err, enum side to, error_code_t code) {
    char text[64];
    snprintf(text, sizeof text, "relaying to the %s: %s", SIDE_NAMES[to], error_name(code));
    handler_string_dup(err, text);
}

// Sends `data`, read from side `from`, to the other end. Takes the list:
// it is kept as the pending bytes, or emptied, or left for the caller to
// free.
static bool relay(pair_t *pair, enum side from, handler_list_u8_t *data, handler_string_t *err) {
    enum side to = from == CLIENT ? BACKEND : CLIENT;
    end_t *target = &pair->ends[to];
    if (!target->used) return true;
    bool refused = true;
    error_code_t code;
    if (target->pending_len > 0) {
        uint8_t *grown = realloc(target->pending, target->pending_len + data->len);
        if (grown == NULL) {
            relay_error(err, to, EVCONN_LISTENER_TYPES_ERROR_CODE_OUT_OF_MEMORY);
            return false;
        }
        memcpy(grown + target->pending_len, data->ptr, data->len);
        target->pending = grown;
        target->pending_len += data->len;
    } else if (evconn_listener_connection_method_connection_write(borrow(target), data, &code)) {
        refused = false;
    } else if (code == EVCONN_LISTENER_TYPES_ERROR_CODE_WOULD_BLOCK) {
        // Keep the list itself; the caller's free then does nothing.
        target->pending = data->ptr;
        target->pending_len = data->len;
        *data = (handler_list_u8_t){0};
    } else {
        relay_error(err, to, code);
        return false;
    }
    if (refused || evconn_listener_connection_method_connection_queued(borrow(target)) >= HIGH) {
        // Hold the source back until the target drains.
        uint64_t low = LOW;
        evconn_listener_connection_method_connection_set_drain_watermark(borrow(target), &low);
        evconn_listener_connection_method_connection_pause_reading(borrow(&pair->ends[from]));
    }
    return true;
}

bool exports_evconn_listener_callbacks_on_accept(borrow_listener_t listener, own_connection_t conn,
                                                 exports_evconn_listener_callbacks_socket_address_t *peer,
                                                 handler_string_t *err) {
    // The peer's address is the callback's to free: a Unix socket's path is
    // a string the bindings allocated.
    exports_evconn_listener_callbacks_socket_address_free(peer);
    evconn_listener_listener_listener_drop_borrow(listener);
    pair_t *pair = NULL;
    for (size_t i = 0; i < MAX_PAIRS && pair == NULL; i++) {
        if (!pairs[i].used) pair = &pairs[i];
    }
    if (pair == NULL) {
        evconn_listener_connection_connection_drop_own(conn);
        handler_string_dup(err, "too many clients");
        return false;
    }
    // Nothing is read from the client until its backend is connected.
    evconn_listener_connection_method_connection_pause_reading(evconn_listener_connection_borrow_connection(conn));
    *pair = (pair_t){.used = true};
    end_init(&pair->ends[CLIENT], conn);
    dial_backend(pair);
    return true;
}

bool exports_evconn_listener_callbacks_on_data(borrow_connection_t conn, handler_list_u8_t *data,
                                               handler_string_t *err) {
    enum side from;
    pair_t *pair = find(evconn_listener_connection_method_connection_id(conn), &from);
    bool ok = true;
    if (pair != NULL && !relay(pair, from, data, err)) {
        // The error ends this connection; the other one ends with it.
        close_pair(pair);
        ok = false;
    }
    handler_list_u8_free(data);
    evconn_listener_connection_connection_drop_borrow(conn);
    return ok;
}

bool exports_evconn_listener_callbacks_on_event(borrow_connection_t conn,
                                                exports_evconn_listener_callbacks_connection_event_t *event,
                                                handler_string_t *err) {
    (void)err;
    enum side side;
    pair_t *pair = find(evconn_listener_connection_method_connection_id(conn), &side);
    if (pair == NULL) {
        evconn_listener_connection_method_connection_close(conn);
    } else if (event->tag == EVCONN_LISTENER_TYPES_CONNECTION_EVENT_CONNECTED) {
        pair->connected = true;
        evconn_listener_connection_method_connection_resume_reading(borrow(&pair->ends[CLIENT]));
    } else if (event->tag == EVCONN_LISTENER_TYPES_CONNECTION_EVENT_ERROR && side == BACKEND && !pair->connected) {
        // This backend cannot be reached: try the next.
        fprintf(stderr, "proxy: backend unreachable for connection %llu: %s\n",
                (unsigned long long)pair->ends[CLIENT].id, error_name(event->val.error));
        evconn_listener_connection_method_connection_close(conn);
        end_forget(&pair->ends[BACKEND]);
        dial_backend(pair);
    } else if (event->tag == EVCONN_LISTENER_TYPES_CONNECTION_EVENT_END_OF_STREAM) {
        // The other end ends too, after what this one sent.
        end_t *other = &pair->ends[side == CLIENT ? BACKEND : CLIENT];
        pair->ends[side].ended = true;
        if (other->used && other->pending_len == 0) {
            error_code_t ignored;
            evconn_listener_connection_method_connection_shutdown_write(borrow(other), &ignored);
        } else if (other->used) {
            other->shutdown_owed = true;
        }
        if (!other->used || other->ended) close_pair(pair);
    } else {
        // An error or a timeout on either side.
        close_pair(pair);
    }
    exports_evconn_listener_callbacks_connection_event_free(event);
    evconn_listener_connection_connection_drop_borrow(conn);
    return true;
}

void exports_evconn_listener_callbacks_on_accept_error(borrow_listener_t listener,
                                                       exports_evconn_listener_callbacks_accept_error_t *error) {
    exports_evconn_listener_callbacks_accept_error_free(error);
    evconn_listener_listener_listener_drop_borrow(listener);
}

// The proxy starts no timer.
bool exports_evconn_listener_callbacks_on_timer(exports_evconn_listener_callbacks_timer_id_t timer,
                                                handler_string_t *err) {
    (void)timer;
    (void)err;
    return true;
}

bool exports_evconn_listener_callbacks_on_drain(borrow_connection_t conn, handler_string_t *err) {
    enum side side;
    pair_t *pair = find(evconn_listener_connection_method_connection_id(conn), &side);
    bool ok = true;
    end_t *target = pair != NULL ? &pair->ends[side] : NULL;
    error_code_t code;
    if (target != NULL && target->pending_len > 0) {
        handler_list_u8_t pending = {target->pending, target->pending_len};
        if (evconn_listener_connection_method_connection_write(conn, &pending, &code)) {
            free(target->pending);
            target->pending = NULL;
            target->pending_len = 0;
        } else if (code == EVCONN_LISTENER_TYPES_ERROR_CODE_WOULD_BLOCK) {
            // Still no room: the next drain comes when there is.
            target = NULL;
        } else {
            relay_error(err, side, code);
            close_pair(pair);
            target = NULL;
            ok = false;
        }
    }
    if (target != NULL && target->shutdown_owed) {
        target->shutdown_owed = false;
        evconn_listener_connection_method_connection_shutdown_write(conn, &code);
    }
    if (target != NULL && evconn_listener_connection_method_connection_queued(conn) <= LOW) {
        evconn_listener_connection_method_connection_set_drain_watermark(conn, NULL);
        end_t *source = &pair->ends[side == CLIENT ? BACKEND : CLIENT];
        if (source->used) evconn_listener_connection_method_connection_resume_reading(borrow(source));
    }
    evconn_listener_connection_connection_drop_borrow(conn);
    return ok;
}
