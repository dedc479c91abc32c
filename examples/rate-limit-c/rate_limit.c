// The rate limiter (examples/rate-limit) in C: a line echo that lets each
// peer IP (over a Unix domain socket, each peer user; under mutual TLS,
// each client certificate) send at most
// RATE_LIMIT lines (default 10) per RATE_WINDOW seconds (default 60) and
// answers every line past that `-ERR rate limited`; the connection stays
// open.
//
// The counts live in the host's store (wasi:keyvalue), so the limit holds
// across every instance (under both isolation models), every worker and
// every host sharing a Redis. Windows are fixed and numbered by the wall
// clock (unix seconds / RATE_WINDOW); each line adds one, with the store's
// atomic `increment`, to the key `IP/WINDOW` (`uid:UID/WINDOW` over a Unix
// domain socket, `cert:SHA256/WINDOW` under mutual TLS) of the bucket named after the component (RATE_BUCKET to
// change it). A peer's first line in a window deletes its key of the window
// before. A store call that fails (Redis gone, a bucket not allowed)
// answers that line `-ERR store unavailable`.
//
// Memory and handles follow the bindings' rules (see examples/echo-c/echo.c)
// for what the host lends to callbacks. The store's are the other way round
// (see the comment on `bucket`): the bucket is the guest's own resource, so
// its borrow is never dropped, and an error's text is the guest's to free.
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bindings/handler.h"

typedef exports_evconn_listener_callbacks_borrow_connection_t borrow_connection_t;
typedef exports_evconn_listener_callbacks_borrow_listener_t borrow_listener_t;
typedef evconn_listener_types_error_code_t error_code_t;
typedef wasi_keyvalue_store_error_t store_error_t;

// The bucket when RATE_BUCKET is not set: the component's name, the one the
// host allows by default.
#define DEFAULT_BUCKET "rate-limit-c"
#define DEFAULT_LIMIT 10
#define DEFAULT_WINDOW 60
// The longest line, its newline included; a longer one closes its
// connection.
#define MAX_LINE 16384

static const char LIMITED[] = "-ERR rate limited\r\n";
static const char UNAVAILABLE[] = "-ERR store unavailable\r\n";

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

// The operator's settings, read from the environment once, at the first
// connection.
static bool configured;
static uint64_t limit;
static uint64_t window;
static const char *bucket_name;

// The bucket, once opened: an owned handle of a resource the host made for
// this guest. Calls take `wasi_keyvalue_store_borrow_bucket(bucket)`, which
// is the same handle: calling `wasi_keyvalue_store_bucket_drop_borrow` on it
// would drop the bucket itself.
static bool bucket_open;
static wasi_keyvalue_store_own_bucket_t bucket;
// Whether the last store call failed, to log once when the store goes away
// and once when it is back.
static bool store_failing;

// The longest peer as the keys spell it, with its NUL: "cert:" and a
// certificate's 64 hex digits, longer than any address.
#define WHO_LEN 70

// One connection: its id, its peer as the keys spell it (see
// `format_peer`), and its unfinished line.
typedef struct {
    uint64_t id;
    char who[WHO_LEN];
    uint8_t *partial;
    size_t partial_len;
    size_t partial_cap;
} client_t;

static client_t *clients;
static size_t client_count;
static size_t client_cap;

// A growing buffer of bytes.
typedef struct {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} buffer_t;

static void append(buffer_t *buffer, const void *bytes, size_t len) {
    if (buffer->len + len > buffer->cap) {
        size_t cap = buffer->cap ? buffer->cap : 256;
        while (cap < buffer->len + len) cap *= 2;
        buffer->ptr = realloc(buffer->ptr, cap);
        if (buffer->ptr == NULL) abort();
        buffer->cap = cap;
    }
    memcpy(buffer->ptr + buffer->len, bytes, len);
    buffer->len += len;
}

// A whole number from the environment variable `name`, `fallback` when it is
// not set; false when it is not one.
static bool read_number(const char *name, uint64_t fallback, uint64_t *value) {
    const char *text = getenv(name);
    if (text == NULL) {
        *value = fallback;
        return true;
    }
    char *end;
    errno = 0;
    unsigned long long number = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || number > INT64_MAX) {
        return false;
    }
    *value = number;
    return true;
}

// Reads the settings once; on a bad one, fills `err` naming it.
static bool configure(handler_string_t *err) {
    if (configured) return true;
    char message[128];
    if (!read_number("RATE_LIMIT", DEFAULT_LIMIT, &limit)) {
        snprintf(message, sizeof message, "RATE_LIMIT=%s is not a whole number", getenv("RATE_LIMIT"));
        handler_string_dup(err, message);
        return false;
    }
    if (!read_number("RATE_WINDOW", DEFAULT_WINDOW, &window) || window == 0) {
        snprintf(message, sizeof message, "RATE_WINDOW=%s is not a whole number of seconds, at least 1",
                 getenv("RATE_WINDOW"));
        handler_string_dup(err, message);
        return false;
    }
    const char *name = getenv("RATE_BUCKET");
    bucket_name = name != NULL && name[0] != '\0' ? name : DEFAULT_BUCKET;
    configured = true;
    return true;
}

// Logs a failed store call when the store starts failing, and frees the
// error's text (only `other` has one).
static void store_failed(const char *call, store_error_t *error) {
    if (!store_failing) {
        const char *what = error->tag == WASI_KEYVALUE_STORE_ERROR_ACCESS_DENIED ? "access-denied"
                           : error->tag == WASI_KEYVALUE_STORE_ERROR_NO_SUCH_STORE ? "no-such-store"
                                                                                  : "";
        fprintf(stderr, "rate-limit: %s failed: %s%.*s\n", call, what,
                error->tag == WASI_KEYVALUE_STORE_ERROR_OTHER ? (int)error->val.other.len : 0,
                error->tag == WASI_KEYVALUE_STORE_ERROR_OTHER ? (const char *)error->val.other.ptr : "");
        store_failing = true;
    }
    wasi_keyvalue_store_error_free(error);
}

static void store_works(void) {
    if (store_failing) {
        fprintf(stderr, "rate-limit: the store answers again\n");
        store_failing = false;
    }
}

// Opens the bucket unless it is open; false if the store refuses.
static bool open_bucket(void) {
    if (bucket_open) return true;
    handler_string_t name;
    handler_string_set(&name, bucket_name);
    store_error_t error;
    if (!wasi_keyvalue_store_open(&name, &bucket, &error)) {
        store_failed("opening the bucket", &error);
        return false;
    }
    bucket_open = true;
    return true;
}

typedef enum { ALLOWED, REFUSED, STORE_FAILED } verdict_t;

// Counts one line of `who` in the current window.
static verdict_t count_line(const char *who) {
    if (!open_bucket()) return STORE_FAILED;
    uint64_t index = (uint64_t)time(NULL) / window;
    // A peer as `format_peer` spells it, a slash and 20 digits.
    char key[WHO_LEN + 22];
    snprintf(key, sizeof key, "%s/%" PRIu64, who, index);
    // An import only reads the strings it is given: `key` may live on the
    // stack.
    handler_string_t key_string = {(uint8_t *)key, strlen(key)};
    uint64_t count;
    store_error_t error;
    if (!wasi_keyvalue_atomics_increment(wasi_keyvalue_store_borrow_bucket(bucket), &key_string, 1, &count, &error)) {
        store_failed("increment", &error);
        return STORE_FAILED;
    }
    store_works();
    if (count == 1 && index > 0) {
        // The peer's first line in this window: its count of the last one
        // is done with. Failing to delete it leaves one stale key.
        snprintf(key, sizeof key, "%s/%" PRIu64, who, index - 1);
        key_string.len = strlen(key);
        if (!wasi_keyvalue_store_method_bucket_delete(wasi_keyvalue_store_borrow_bucket(bucket), &key_string,
                                                      &error)) {
            store_failed("delete", &error);
        }
    }
    // The store's integers are signed: a count below 1 was set by someone
    // else, and allows nothing.
    int64_t signed_count = (int64_t)count;
    return signed_count >= 1 && (uint64_t)signed_count <= limit ? ALLOWED : REFUSED;
}

// Whose lines a count is for, as text: the peer's IP (an IPv4 peer reaching
// an IPv6 listener, ::ffff:a.b.c.d, counts as its IPv4 address), or for a
// peer on a Unix domain socket, where clients have no address, its user:
// `uid:1000` (`uid:unknown` without credentials).
static void format_peer(const exports_evconn_listener_callbacks_socket_address_t *peer, char out[WHO_LEN]) {
    if (peer->tag == EVCONN_LISTENER_TYPES_SOCKET_ADDRESS_UNIX) {
        const evconn_listener_types_option_peer_credentials_t *credentials = &peer->val.unix.credentials;
        if (credentials->is_some) {
            snprintf(out, WHO_LEN, "uid:%" PRIu32, credentials->val.uid);
        } else {
            snprintf(out, WHO_LEN, "uid:unknown");
        }
        return;
    }
    if (peer->tag == EVCONN_LISTENER_TYPES_SOCKET_ADDRESS_IPV4) {
        const evconn_listener_types_ipv4_address_t *a = &peer->val.ipv4.address;
        snprintf(out, WHO_LEN, "%u.%u.%u.%u", a->f0, a->f1, a->f2, a->f3);
        return;
    }
    const evconn_listener_types_ipv6_address_t *a = &peer->val.ipv6.address;
    uint16_t groups[8] = {a->f0, a->f1, a->f2, a->f3, a->f4, a->f5, a->f6, a->f7};
    if (!groups[0] && !groups[1] && !groups[2] && !groups[3] && !groups[4] && groups[5] == 0xffff) {
        snprintf(out, WHO_LEN, "%u.%u.%u.%u", groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8,
                 groups[7] & 0xff);
        return;
    }
    struct in6_addr address;
    for (size_t i = 0; i < 8; i++) {
        address.s6_addr[2 * i] = groups[i] >> 8;
        address.s6_addr[2 * i + 1] = groups[i] & 0xff;
    }
    inet_ntop(AF_INET6, &address, out, WHO_LEN);
}

static client_t *find(uint64_t id) {
    for (size_t i = 0; i < client_count; i++) {
        if (clients[i].id == id) return &clients[i];
    }
    return NULL;
}

static void forget(uint64_t id) {
    client_t *client = find(id);
    if (client == NULL) return;
    free(client->partial);
    *client = clients[--client_count];
}

bool exports_evconn_listener_callbacks_on_accept(borrow_listener_t listener,
                                                 exports_evconn_listener_callbacks_own_connection_t conn,
                                                 exports_evconn_listener_callbacks_socket_address_t *peer,
                                                 handler_string_t *err) {
    evconn_listener_listener_listener_drop_borrow(listener);
    // The address is the callback's to free (a Unix socket's path is a
    // string the bindings allocated): keep only what the keys need.
    char who[WHO_LEN];
    format_peer(peer, who);
    exports_evconn_listener_callbacks_socket_address_free(peer);
    // Under mutual TLS a client is its certificate, wherever it connects
    // from: `cert:` and its SHA-256 fingerprint.
    evconn_listener_connection_tls_info_t tls;
    if (evconn_listener_connection_method_connection_tls(evconn_listener_connection_borrow_connection(conn), &tls)) {
        if (tls.peer_certificate.is_some) {
            const handler_string_t *fingerprint = &tls.peer_certificate.val.fingerprint_sha256;
            snprintf(who, sizeof who, "cert:%.*s", (int)fingerprint->len, (const char *)fingerprint->ptr);
        }
        evconn_listener_connection_tls_info_free(&tls);
    }
    uint64_t id = evconn_listener_connection_method_connection_id(evconn_listener_connection_borrow_connection(conn));
    // Connections are reached only in their own callbacks, which lend a
    // handle: the owned one is not needed.
    evconn_listener_connection_connection_drop_own(conn);
    // A bad setting closes every connection, and the host logs why.
    if (!configure(err)) return false;
    if (client_count == client_cap) {
        client_cap = client_cap ? 2 * client_cap : 16;
        clients = realloc(clients, client_cap * sizeof *clients);
        if (clients == NULL) abort();
    }
    client_t *client = &clients[client_count++];
    *client = (client_t){.id = id};
    memcpy(client->who, who, sizeof who);
    return true;
}

bool exports_evconn_listener_callbacks_on_data(borrow_connection_t conn, handler_list_u8_t *data,
                                               handler_string_t *err) {
    uint64_t id = evconn_listener_connection_method_connection_id(conn);
    client_t *client = find(id);
    bool ok = true;
    // The answers to every line this read completes, written at once.
    buffer_t answer = {0};
    for (size_t i = 0; client != NULL && i < data->len; i++) {
        if (client->partial_len == client->partial_cap) {
            if (client->partial_cap == MAX_LINE) {
                handler_string_dup(err, "line longer than 16384 bytes");
                ok = false;
                break;
            }
            client->partial_cap = client->partial_cap ? 2 * client->partial_cap : 128;
            client->partial = realloc(client->partial, client->partial_cap);
            if (client->partial == NULL) abort();
        }
        uint8_t byte = data->ptr[i];
        client->partial[client->partial_len++] = byte;
        if (byte != '\n') continue;
        switch (count_line(client->who)) {
        case ALLOWED:
            append(&answer, client->partial, client->partial_len);
            break;
        case REFUSED:
            append(&answer, LIMITED, sizeof LIMITED - 1);
            break;
        case STORE_FAILED:
            append(&answer, UNAVAILABLE, sizeof UNAVAILABLE - 1);
            break;
        }
        client->partial_len = 0;
    }
    if (ok && answer.len > 0) {
        // Reading pauses before the output reaches the host's cap, unless a
        // client sends many empty lines and reads none of the answers: then
        // the write is refused, and the connection ends.
        handler_list_u8_t bytes = {answer.ptr, answer.len};
        error_code_t code;
        if (!evconn_listener_connection_method_connection_write(conn, &bytes, &code)) {
            handler_string_dup(err, error_name(code));
            ok = false;
        }
    }
    if (!ok) {
        // The error ends the connection and no callback follows.
        forget(id);
    }
    free(answer.ptr);
    handler_list_u8_free(data);
    evconn_listener_connection_connection_drop_borrow(conn);
    return ok;
}

bool exports_evconn_listener_callbacks_on_event(borrow_connection_t conn,
                                                exports_evconn_listener_callbacks_connection_event_t *event,
                                                handler_string_t *err) {
    (void)event;
    (void)err;
    forget(evconn_listener_connection_method_connection_id(conn));
    evconn_listener_connection_method_connection_close(conn);
    evconn_listener_connection_connection_drop_borrow(conn);
    return true;
}

void exports_evconn_listener_callbacks_on_accept_error(borrow_listener_t listener,
                                                       exports_evconn_listener_callbacks_accept_error_t *error) {
    exports_evconn_listener_callbacks_accept_error_free(error);
    evconn_listener_listener_listener_drop_borrow(listener);
}

// The rate limiter starts no timer and sets no drain watermark.
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
