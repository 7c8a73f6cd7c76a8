/*
 * mqtt.core.c: `fotahost.mqtt.core`, one MQTT 3.1.1 client on libmosquitto
 * that never waits. The Lua module `fotahost.mqtt` builds the calls scripts
 * use (connect, subscribe, publish, receive) on it.
 *
 *   local c = core.new{ client_id = "dev-1", host = "127.0.0.1", port = 1883 }
 *   assert(c:connect())                 -- starts the connection, returns at once
 *   repeat
 *     c:step()                          -- reads, writes and pings what it can now
 *     local fd = c:fd()                 -- the socket; wait on it ("w" if c:want_write())
 *   until c:connack() or c:closed()
 *
 * No threads (never mosquitto_loop_start) and nothing that blocks, except
 * the name lookup inside mosquitto_connect_async (getaddrinfo: a numeric
 * host never waits). step() runs mosquitto_loop_read, loop_write and
 * loop_misc on a non-blocking socket: each does what the socket allows now.
 *
 * libmosquitto's callbacks (on_connect, on_disconnect, on_message,
 * on_subscribe, on_publish, log) only record events in the Client struct;
 * they never touch Lua, so no Lua error can unwind through libmosquitto's
 * frames. Lua reads the record afterwards: connack(), closed(), pop(),
 * ack(mid), counters().
 *
 * Received messages wait in a ring of max_queue entries until pop(); when
 * it is full the oldest is dropped (counted), and a message longer than
 * max_payload is never queued (counted). The acknowledgements Lua waits
 * for (a PUBACK, a SUBACK) are kept only for the message ids it registered
 * with expect(mid), so an unread ack never piles up.
 *
 * TLS verification (chain and host name) is always on unless `insecure`
 * is given (the Lua layer logs that choice); with no cafile or capath the
 * system's CA store is used.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <mosquitto.h>

#include "fotahost.h"

#define CLIENT_MT "fotahost.mqtt.core.client"
#define READ_CALLS 64       /* loop_read calls one step() makes, at most: a flood
                               waits for the next step, so other tasks run */

typedef struct {
    char *topic;
    char *payload;
    size_t len;
} Message;

typedef struct {
    int mid;
    int done;
    int granted;             /* SUBACK: the granted QoS, 0x80 refused; PUBACK: 0 */
} Ack;

typedef struct {
    struct mosquitto *mosq;
    char *host;
    int port;
    int keepalive;

    int connack;             /* -1 none yet, else the CONNACK return code */
    int session_present;
    int closed;              /* the connection is gone (or never was) */
    int close_rc;            /* why: a MOSQ_ERR_* from a loop call or on_disconnect */
    int close_errno;         /* errno then, for MOSQ_ERR_ERRNO */
    char why[256];           /* the last error libmosquitto logged (a TLS failure's reason) */

    Message *queue;          /* ring of max_queue */
    int q_head, q_len, q_max;
    size_t max_payload;
    lua_Integer received, dropped, too_long;

    Ack *acks;               /* awaited acknowledgements */
    int n_acks, cap_acks;
} Client;

/* ------------------------------------------------------------ callbacks */

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    Client *c = obj;
    (void)mosq; (void)props;
    c->connack = rc;
    c->session_present = (flags & 1) != 0;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    Client *c = obj;
    (void)mosq;
    if (!c->closed) {
        c->closed = 1;
        c->close_rc = rc;
        c->close_errno = errno;
    }
}

static void free_message(Message *m)
{
    free(m->topic);
    free(m->payload);
    m->topic = m->payload = NULL;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
    Client *c = obj;
    (void)mosq;
    c->received++;
    if (msg->payloadlen < 0 || (size_t)msg->payloadlen > c->max_payload) {
        c->too_long++;
        return;
    }
    if (c->q_len == c->q_max) {   /* full: the oldest goes */
        free_message(&c->queue[c->q_head]);
        c->q_head = (c->q_head + 1) % c->q_max;
        c->q_len--;
        c->dropped++;
    }
    Message m;
    m.len = (size_t)msg->payloadlen;
    m.topic = strdup(msg->topic);
    m.payload = malloc(m.len ? m.len : 1);
    if (!m.topic || !m.payload) {
        free_message(&m);
        c->dropped++;
        return;
    }
    if (m.len)   /* an empty message (a retained one cleared) has no payload pointer */
        memcpy(m.payload, msg->payload, m.len);
    c->queue[(c->q_head + c->q_len) % c->q_max] = m;
    c->q_len++;
}

static Ack *find_ack(Client *c, int mid)
{
    for (int i = 0; i < c->n_acks; i++)
        if (c->acks[i].mid == mid)
            return &c->acks[i];
    return NULL;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
    (void)mosq;
    Ack *a = find_ack(obj, mid);
    if (a)
        a->done = 1;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *granted)
{
    (void)mosq;
    Ack *a = find_ack(obj, mid);
    if (a) {
        a->done = 1;
        a->granted = n > 0 ? granted[0] : 0x80;
    }
}

/* Keeps the last error libmosquitto reports: a TLS failure's reason
 * ("OpenSSL Error[0]: ... certificate verify failed") only comes this way. */
static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
    Client *c = obj;
    (void)mosq;
    if (level == MOSQ_LOG_ERR && !c->why[0])
        snprintf(c->why, sizeof c->why, "%s", str);
}

/* ------------------------------------------------------------ helpers */

static Client *check_client(lua_State *L)
{
    return luaL_checkudata(L, 1, CLIENT_MT);
}

static Client *check_open(lua_State *L)
{
    Client *c = check_client(L);
    if (!c->mosq)
        luaL_error(L, "mqtt client is closed");
    return c;
}

static void mark_closed(Client *c, int rc)
{
    if (!c->closed) {
        c->closed = 1;
        c->close_rc = rc;
        c->close_errno = errno;
    }
}

static const char *opt_string(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    if (!lua_isnoneornil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "mqtt: %s must be a string", key);
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1);
    return s;   /* still referenced by the options table */
}

static lua_Integer opt_integer(lua_State *L, int t, const char *key, lua_Integer def,
                               lua_Integer min, lua_Integer max)
{
    lua_getfield(L, t, key);
    lua_Integer v = luaL_optinteger(L, -1, def);
    lua_pop(L, 1);
    if (v < min || v > max)
        luaL_error(L, "mqtt: %s must be in %d..%d", key, (int)min, (int)max);
    return v;
}

static int opt_bool(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    int b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
}

/* Raises for misuse: a libmosquitto option it refused. */
static void must(lua_State *L, int rc, const char *what)
{
    if (rc != MOSQ_ERR_SUCCESS)
        luaL_error(L, "mqtt: %s: %s", what, mosquitto_strerror(rc));
}

static void set_will(lua_State *L, Client *c, int t)
{
    lua_getfield(L, t, "will");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    luaL_checktype(L, -1, LUA_TTABLE);
    int w = lua_gettop(L);
    const char *topic = opt_string(L, w, "topic");
    if (!topic)
        luaL_error(L, "mqtt: will.topic must be a string");
    lua_getfield(L, w, "payload");
    size_t len = 0;
    const char *payload = luaL_optlstring(L, -1, "", &len);
    int qos = (int)opt_integer(L, w, "qos", 0, 0, 2);
    must(L, mosquitto_will_set(c->mosq, topic, (int)len, payload, qos, opt_bool(L, w, "retain")),
         "will");
    lua_pop(L, 2);
}

static void set_tls(lua_State *L, Client *c, int t)
{
    const char *cafile = opt_string(L, t, "cafile");
    const char *capath = opt_string(L, t, "capath");
    if (!cafile && !capath)
        must(L, mosquitto_int_option(c->mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1), "the system CA store");
    else
        must(L, mosquitto_tls_set(c->mosq, cafile, capath, NULL, NULL, NULL), "cafile/capath");
    if (opt_bool(L, t, "insecure")) {
        must(L, mosquitto_tls_opts_set(c->mosq, 0 /* SSL_VERIFY_NONE */, NULL, NULL), "insecure");
        must(L, mosquitto_tls_insecure_set(c->mosq, true), "insecure");
    } else {
        must(L, mosquitto_tls_opts_set(c->mosq, 1 /* SSL_VERIFY_PEER */, NULL, NULL), "tls");
    }
}

/* ------------------------------------------------------------ functions */

/*
 * core.new{ client_id, host, port, tls, clean_session, username, password,
 *           cafile, capath, insecure, keepalive, will, max_payload, max_queue }
 *   -> client
 * Sets the client up; connect() starts the connection. Misuse raises.
 */
static int mqtt_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *id = opt_string(L, 1, "client_id");
    const char *host = opt_string(L, 1, "host");
    if (!id || !*id)
        return luaL_error(L, "mqtt: client_id required");
    if (!host)
        return luaL_error(L, "mqtt: host required");
    int port = (int)opt_integer(L, 1, "port", 1883, 1, 65535);
    int keepalive = (int)opt_integer(L, 1, "keepalive", 60, 5, 65535);
    int q_max = (int)opt_integer(L, 1, "max_queue", 64, 1, 1000000);
    lua_Integer max_payload = opt_integer(L, 1, "max_payload", 8192, 0, 256 * 1024 * 1024);

    Client *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->connack = -1;
    c->closed = 1;   /* until connect() */
    luaL_setmetatable(L, CLIENT_MT);
    c->port = port;
    c->keepalive = keepalive;
    c->q_max = q_max;
    c->max_payload = (size_t)max_payload;
    c->host = strdup(host);
    c->queue = calloc((size_t)q_max, sizeof *c->queue);
    c->mosq = mosquitto_new(id, opt_bool(L, 1, "clean_session"), c);
    if (!c->host || !c->queue || !c->mosq)
        return luaL_error(L, "mqtt: out of memory");
    must(L, mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311),
         "protocol");
    mosquitto_connect_v5_callback_set(c->mosq, on_connect);
    mosquitto_disconnect_callback_set(c->mosq, on_disconnect);
    mosquitto_message_callback_set(c->mosq, on_message);
    mosquitto_publish_callback_set(c->mosq, on_publish);
    mosquitto_subscribe_callback_set(c->mosq, on_subscribe);
    mosquitto_log_callback_set(c->mosq, on_log);
    const char *user = opt_string(L, 1, "username");
    const char *password = opt_string(L, 1, "password");
    if (user || password)
        must(L, mosquitto_username_pw_set(c->mosq, user ? user : "", password), "username");
    set_will(L, c, 1);
    if (opt_bool(L, 1, "tls"))
        set_tls(L, c, 1);
    return 1;
}

/* What libmosquitto logged as the cause; OpenSSL's errors ("OpenSSL
 * Error[0]: error:0A000086:SSL routines::certificate verify failed")
 * become "TLS failure: error:...". */
static void push_logged(lua_State *L, const char *why)
{
    const char *rest = strstr(why, ": ");
    if (strncmp(why, "OpenSSL Error", 13) == 0 && rest)
        lua_pushfstring(L, "TLS failure: %s", rest + 2);
    else
        lua_pushstring(L, why);
}

/* client:connect() -> true | fail, why
 * Starts connecting (a name is looked up first: that may block briefly). */
static int client_connect(lua_State *L)
{
    Client *c = check_open(L);
    c->closed = 0;
    c->connack = -1;
    c->why[0] = '\0';
    int rc = mosquitto_connect_async(c->mosq, c->host, c->port, c->keepalive);
    if (rc == MOSQ_ERR_SUCCESS || rc == MOSQ_ERR_CONN_PENDING)
        return (lua_pushboolean(L, 1), 1);
    int err = errno;
    mark_closed(c, rc);
    c->close_errno = err;
    if (rc == MOSQ_ERR_ERRNO)
        return fh_result_msg(L, "%s", strerror(err));
    if (rc == MOSQ_ERR_EAI)
        return fh_result_msg(L, "cannot resolve %s", c->host);
    lua_pushnil(L);
    if (c->why[0])
        push_logged(L, c->why);
    else
        lua_pushstring(L, mosquitto_strerror(rc));
    return 2;
}

/* A loop call's result: anything but success ends the connection. */
static void loop_result(Client *c, int rc)
{
    if (rc != MOSQ_ERR_SUCCESS)
        mark_closed(c, rc == MOSQ_ERR_NO_CONN ? MOSQ_ERR_CONN_LOST : rc);
}

/* client:step(): reads, writes and pings what the socket allows now. */
static int client_step(lua_State *L)
{
    Client *c = check_open(L);
    if (c->closed)
        return 0;
    /* loop_read takes one packet a call (TLS: and what OpenSSL holds), so
     * read on while the socket has bytes. */
    int avail = 0;
    for (int i = 0; i < READ_CALLS && !c->closed; i++) {
        loop_result(c, mosquitto_loop_read(c->mosq, 1));
        int fd = mosquitto_socket(c->mosq);
        if (fd < 0 || ioctl(fd, FIONREAD, &avail) != 0 || avail == 0)
            break;
    }
    if (!c->closed && mosquitto_want_write(c->mosq))
        loop_result(c, mosquitto_loop_write(c->mosq, 1));
    if (!c->closed)
        loop_result(c, mosquitto_loop_misc(c->mosq));
    return 0;
}

/* client:fd() -> the socket, or nil when there is none */
static int client_fd(lua_State *L)
{
    Client *c = check_open(L);
    int fd = mosquitto_socket(c->mosq);
    if (fd < 0 || c->closed)
        lua_pushnil(L);
    else
        lua_pushinteger(L, fd);
    return 1;
}

static int client_want_write(lua_State *L)
{
    Client *c = check_open(L);
    lua_pushboolean(L, mosquitto_want_write(c->mosq));
    return 1;
}

/* client:connack() -> nil (none yet) | rc, session_present, "reason" */
static int client_connack(lua_State *L)
{
    Client *c = check_client(L);
    if (c->connack < 0)
        return (lua_pushnil(L), 1);
    lua_pushinteger(L, c->connack);
    lua_pushboolean(L, c->session_present);
    lua_pushstring(L, mosquitto_connack_string(c->connack));
    return 3;
}

/* client:closed() -> false | true, "why" */
static int client_closed(lua_State *L)
{
    Client *c = check_client(L);
    if (c->mosq && !c->closed)
        return (lua_pushboolean(L, 0), 1);
    lua_pushboolean(L, 1);
    if (!c->mosq)
        lua_pushliteral(L, "closed by the client");
    else if (c->why[0])
        push_logged(L, c->why);
    else if (c->close_rc == MOSQ_ERR_KEEPALIVE)
        lua_pushliteral(L, "keepalive lost (no answer from the broker)");
    else if (c->close_rc == MOSQ_ERR_CONN_LOST || c->close_rc == MOSQ_ERR_NO_CONN)
        lua_pushliteral(L, "the broker closed the connection");
    else if (c->close_rc == MOSQ_ERR_ERRNO)
        lua_pushstring(L, strerror(c->close_errno));
    else
        lua_pushstring(L, mosquitto_strerror(c->close_rc));
    return 2;
}

/* client:subscribe(topic, qos) -> mid | fail, why */
static int client_subscribe(lua_State *L)
{
    Client *c = check_open(L);
    const char *topic = luaL_checkstring(L, 2);
    int qos = (int)luaL_checkinteger(L, 3);
    luaL_argcheck(L, qos >= 0 && qos <= 2, 3, "qos must be 0, 1 or 2");
    int mid = 0;
    int rc = mosquitto_subscribe(c->mosq, &mid, topic, qos);
    if (rc != MOSQ_ERR_SUCCESS)
        return fh_result_msg(L, "%s", mosquitto_strerror(rc));
    lua_pushinteger(L, mid);
    return 1;
}

/* client:publish(topic, payload, qos, retain) -> mid | fail, why */
static int client_publish(lua_State *L)
{
    Client *c = check_open(L);
    const char *topic = luaL_checkstring(L, 2);
    size_t len;
    const char *payload = luaL_checklstring(L, 3, &len);
    int qos = (int)luaL_checkinteger(L, 4);
    luaL_argcheck(L, qos >= 0 && qos <= 2, 4, "qos must be 0, 1 or 2");
    luaL_argcheck(L, len <= 268435455u, 3, "payload too long for MQTT");
    int mid = 0;
    int rc = mosquitto_publish(c->mosq, &mid, topic, (int)len, payload, qos, lua_toboolean(L, 5));
    if (rc != MOSQ_ERR_SUCCESS) {
        if (rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO)
            mark_closed(c, rc);
        return fh_result_msg(L, "%s", mosquitto_strerror(rc));
    }
    lua_pushinteger(L, mid);
    return 1;
}

/* client:expect(mid): keep the acknowledgement of `mid` for ack(). */
static int client_expect(lua_State *L)
{
    Client *c = check_open(L);
    int mid = (int)luaL_checkinteger(L, 2);
    if (find_ack(c, mid))
        return 0;
    if (c->n_acks == c->cap_acks) {
        int cap = c->cap_acks ? c->cap_acks * 2 : 4;
        Ack *a = realloc(c->acks, (size_t)cap * sizeof *a);
        if (!a)
            return luaL_error(L, "mqtt: out of memory");
        c->acks = a;
        c->cap_acks = cap;
    }
    c->acks[c->n_acks++] = (Ack){ .mid = mid };
    return 0;
}

/* client:ack(mid) -> nil (not yet) | granted (0..2, or 0x80 refused; 0 for
 * a PUBACK). A returned ack is forgotten; so is one given up with
 * ack(mid, true). */
static int client_ack(lua_State *L)
{
    Client *c = check_client(L);
    int mid = (int)luaL_checkinteger(L, 2);
    Ack *a = find_ack(c, mid);
    if (!a || (!a->done && !lua_toboolean(L, 3)))
        return (lua_pushnil(L), 1);
    int done = a->done, granted = a->granted;
    *a = c->acks[--c->n_acks];
    if (!done)
        return (lua_pushnil(L), 1);
    lua_pushinteger(L, granted);
    return 1;
}

/* client:pop() -> topic, payload | nil (nothing queued) */
static int client_pop(lua_State *L)
{
    Client *c = check_client(L);
    if (c->q_len == 0)
        return (lua_pushnil(L), 1);
    Message *m = &c->queue[c->q_head];
    lua_pushstring(L, m->topic);
    lua_pushlstring(L, m->payload, m->len);
    free_message(m);
    c->q_head = (c->q_head + 1) % c->q_max;
    c->q_len--;
    return 2;
}

/* client:counters() -> received, dropped, too_long, queued */
static int client_counters(lua_State *L)
{
    Client *c = check_client(L);
    lua_pushinteger(L, c->received);
    lua_pushinteger(L, c->dropped);
    lua_pushinteger(L, c->too_long);
    lua_pushinteger(L, c->q_len);
    return 4;
}

/* client:close(): DISCONNECT (so the broker drops the will) if connected,
 * then frees everything. Safe twice; also __gc and __close. */
static int client_close(lua_State *L)
{
    Client *c = check_client(L);
    if (c->mosq) {
        if (!c->closed)
            mosquitto_disconnect(c->mosq);   /* written at once: no thread */
        mosquitto_destroy(c->mosq);
        c->mosq = NULL;
    }
    if (c->queue) {
        while (c->q_len > 0) {
            free_message(&c->queue[c->q_head]);
            c->q_head = (c->q_head + 1) % c->q_max;
            c->q_len--;
        }
        free(c->queue);
        c->queue = NULL;
    }
    free(c->acks);
    c->acks = NULL;
    c->n_acks = c->cap_acks = 0;
    free(c->host);
    c->host = NULL;
    c->closed = 1;
    return 0;
}

static int client_tostring(lua_State *L)
{
    Client *c = check_client(L);
    if (c->mosq)
        lua_pushfstring(L, "mqtt client (%s:%d)", c->host, c->port);
    else
        lua_pushliteral(L, "mqtt client (closed)");
    return 1;
}

/* core.version() -> "libmosquitto 2.0.11" */
static int mqtt_version(lua_State *L)
{
    int major, minor, rev;
    mosquitto_lib_version(&major, &minor, &rev);
    lua_pushfstring(L, "libmosquitto %d.%d.%d", major, minor, rev);
    return 1;
}

int luaopen_fotahost_mqtt_core(lua_State *L);

/* The library's own set-up (OpenSSL's UI method, its TLS index), undone
 * when the Lua state closes: a finalizer made after the clients', so it
 * runs after theirs (Lua calls finalizers in the reverse order of their
 * objects' marking), and before the C library is unloaded. */
static int lib_cleanup(lua_State *L)
{
    (void)L;
    mosquitto_lib_cleanup();
    return 0;
}

static void cleanup_at_close(lua_State *L)
{
    lua_newuserdatauv(L, 0, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, lib_cleanup);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "fotahost.mqtt.core: library cleanup");
}

int luaopen_fotahost_mqtt_core(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__index", NULL}, {"__gc", client_close}, {"__close", client_close},
        {"__tostring", client_tostring}, {NULL, NULL}
    };
    static const luaL_Reg methods[] = {
        {"connect", client_connect}, {"step", client_step}, {"fd", client_fd},
        {"want_write", client_want_write}, {"connack", client_connack},
        {"closed", client_closed}, {"subscribe", client_subscribe},
        {"publish", client_publish}, {"expect", client_expect}, {"ack", client_ack},
        {"pop", client_pop}, {"counters", client_counters}, {"close", client_close},
        {NULL, NULL}
    };
    static const luaL_Reg funcs[] = {
        {"new", mqtt_new}, {"version", mqtt_version}, {NULL, NULL}
    };
    mosquitto_lib_init();   /* idempotent; OpenSSL's set-up */
    cleanup_at_close(L);
    fh_new_class(L, CLIENT_MT, meta, methods);
    luaL_newlib(L, funcs);
    return 1;
}
