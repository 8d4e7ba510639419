/*
 * http.c — libmicrohttpd in external-event mode, driven by the libuv loop.
 *
 * Why external mode rather than MHD's own poll thread: the API state
 * (calls, streams, the engine event queue) lives on the loop thread, and
 * with MHD's thread every request would have to be handed across threads
 * and back. In external mode MHD's callbacks run inside MHD_run(), which we
 * call on the loop thread, so there is exactly one thread touching HTTP and
 * API state and no lock between them. MHD runs with MHD_USE_EPOLL, so all
 * of its sockets sit behind one epoll fd that a single uv_poll watches; a
 * uv_timer follows MHD_get_timeout() for its idle timeouts and for
 * connections MHD still has buffered work on.
 *
 * A request that waits for generation is suspended (MHD_suspend_connection)
 * and resumed by the API's wake callback when its answer or more stream
 * bytes are ready. SSE responses are callback responses: the reader copies
 * what the API buffered and, when nothing is there, suspends the
 * connection and returns 0. Only a suspended connection is ever resumed.
 *
 * Limits: body size (413, checked on Content-Length and while reading),
 * request line + header size (431), idle timeout (MHD), and an absolute
 * deadline for receiving a complete request (headers + body) enforced by a
 * 1 s sweep that shuts the socket down — a slow-loris client trickling a
 * byte at a time never resets it.
 *
 * Connection limits are ours, not MHD's, so that a client over a limit
 * gets an answer instead of a reset: MHD's own limit sits `slack` above
 * max_connections. When a connection beyond max_connections arrives, the
 * connection idle the longest (no request in progress) is shut down to
 * make room, so idle keep-alive connections can never lock others out; if
 * none is idle, the newcomer's first request gets 503 + Retry-After and
 * the connection is closed. The same 503 answers a request on a
 * connection beyond max_connections_per_ip from its address.
 *
 * Clients that disconnect while their connection is suspended (MHD does
 * not poll suspended sockets) are noticed at once through a second epoll
 * set watching the suspended sockets for EPOLLRDHUP/EPOLLHUP, and by the
 * 1 s sweep as a fallback; their requests are cancelled and they stop
 * counting against the limits before any new request is admitted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"
#include "quantd/common.h"

typedef struct conn conn_t;

typedef struct {
    qd_http_t *h;
    conn_t *conn;
    struct MHD_Connection *mc;
    char *url;
    char *method;
    char *body;
    size_t body_len, body_cap;
    int rejected;    /* an error answer was queued by http itself */
    int too_big;     /* the body outgrew max_body: 413 once it has ended */
    int suspended;
    int queued;      /* a response was queued */
    int peer_gone;
    qd_api_call_t *call;
} hreq_t;

struct conn {
    conn_t *prev, *next;
    struct MHD_Connection *mc;
    int fd;
    uint64_t deadline; /* ns; 0 while a received request is processed */
    uint64_t idle_since; /* ns: accepted, or its last request ended */
    hreq_t *req;
    int watched;       /* fd is in h->disc_fd (suspended request) */
    int over_limit;    /* beyond a connection limit: 503 and close */
    int evicted;       /* shut down to make room */
    char peer[64];
};

struct qd_http {
    uv_loop_t *loop;
    struct MHD_Daemon *d;
    qd_api_t *api;
    uv_poll_t poll;
    uv_timer_t run_timer;
    uv_timer_t sweep;
    int port;
    int64_t max_body;
    int64_t max_header;
    int64_t request_timeout_s;
    conn_t *conns;
    int n_conns;
    int in_run;
    int max_conns;     /* ours; MHD's limit is max_conns + slack */
    int max_per_ip;    /* 0: none */
    int64_t retry_after_s;
    int n_active;      /* connections not evicted */
    int rerun;         /* run MHD again at once (resumed in a callback) */
    int disc_fd;       /* epoll set of suspended sockets, -1: none */
    uv_poll_t disc_poll;
};

static void run_mhd(qd_http_t *h);

static void on_run_timer(uv_timer_t *t) { run_mhd(t->data); }

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

static void run_mhd(qd_http_t *h)
{
    h->in_run = 1;
    MHD_run(h->d);
    h->in_run = 0;
    MHD_UNSIGNED_LONG_LONG ms;
    if (h->rerun) {
        h->rerun = 0;
        uv_timer_start(&h->run_timer, on_run_timer, 0, 0);
    } else if (MHD_get_timeout(h->d, &ms) == MHD_YES)
        uv_timer_start(&h->run_timer, on_run_timer, ms > 1000 ? 1000 : ms, 0);
    else
        uv_timer_start(&h->run_timer, on_run_timer, 1000, 0);
}

/* ---- suspended connections -------------------------------------------------- */

/* Suspend r's connection and watch its socket for the peer going away. */
static void park(hreq_t *r)
{
    MHD_suspend_connection(r->mc);
    r->suspended = 1;
    conn_t *c = r->conn;
    if (!c || c->fd < 0 || c->watched || r->h->disc_fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(r->h->disc_fd, EPOLL_CTL_ADD, c->fd, &ev) == 0)
        c->watched = 1;
}

static void unwatch(qd_http_t *h, conn_t *c)
{
    if (c && c->watched) {
        epoll_ctl(h->disc_fd, EPOLL_CTL_DEL, c->fd, NULL);
        c->watched = 0;
    }
}

/* Resume a suspended request (its answer is ready, or its peer is gone). */
static void unpark(hreq_t *r)
{
    r->suspended = 0;
    unwatch(r->h, r->conn);
    MHD_resume_connection(r->mc);
}

/* The peer closed its side (EOF with nothing pending) or the socket
 * failed. A client that pipelined more bytes is not gone. */
static int peer_closed(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                      errno != EINTR);
}

static void peer_gone(hreq_t *r)
{
    r->peer_gone = 1;
    unpark(r);
}

/* Handle hang-ups reported for suspended sockets; 1 if any was resumed. */
static int check_hangups(qd_http_t *h)
{
    if (h->disc_fd < 0)
        return 0;
    struct epoll_event ev[64];
    int n, resumed = 0;
    while ((n = epoll_wait(h->disc_fd, ev, 64, 0)) > 0) {
        for (int i = 0; i < n; i++) {
            conn_t *c = ev[i].data.ptr;
            /* Watched once: bytes pending with the FIN are left to the
             * sweep, so a level-triggered event cannot spin. */
            unwatch(h, c);
            hreq_t *r = c->req;
            if (r && r->suspended && peer_closed(c->fd)) {
                peer_gone(r);
                resumed = 1;
            }
        }
        if (n < 64)
            break;
    }
    return resumed;
}

static void on_hangup(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    qd_http_t *h = p->data;
    if (check_hangups(h) && !h->in_run)
        uv_timer_start(&h->run_timer, on_run_timer, 0, 0);
}

/* ---- connection limits ------------------------------------------------------ */

/* Connections from c's address other than c, not evicted and not known
 * gone. Hang-ups already reported are taken into account first, so a
 * client that just closed its connections is not held to them. */
static int same_peer(qd_http_t *h, const conn_t *c, int limit)
{
    if (check_hangups(h))
        h->rerun = 1;
    int n = 0;
    for (const conn_t *o = h->conns; o; o = o->next)
        if (o != c && !o->evicted && !(o->req && o->req->peer_gone) &&
            !strcmp(o->peer, c->peer))
            n++;
    if (n < limit)
        return n;
    /* At the limit: connections whose client already hung up (reset
     * while MHD was not watching them for reading) must not count. Shut
     * them down so MHD closes them now, and count again. */
    for (conn_t *o = h->conns; o; o = o->next) {
        if (o != c && !o->evicted && o->fd >= 0 &&
            !(o->req && o->req->peer_gone) && !strcmp(o->peer, c->peer) &&
            peer_closed(o->fd)) {
            shutdown(o->fd, SHUT_RDWR);
            o->evicted = 1;
            h->n_active--;
            if (o->req && o->req->suspended)
                peer_gone(o->req);
            h->rerun = 1;
            n--;
        }
    }
    return n;
}

/* A new connection c made more than max_conns: shut down the one idle
 * the longest (over-limit ones first), or mark c over the limit. */
static void make_room(qd_http_t *h, conn_t *c)
{
    if (check_hangups(h))
        h->rerun = 1;
    conn_t *victim = NULL;
    for (conn_t *o = h->conns; o; o = o->next) {
        if (o == c || o->req || o->evicted || o->fd < 0)
            continue;
        if (!victim || o->over_limit > victim->over_limit ||
            (o->over_limit == victim->over_limit &&
             o->idle_since < victim->idle_since))
            victim = o;
    }
    if (!victim) {
        c->over_limit = 1;
        return;
    }
    QD_DEBUG("http", "%s: %d connections: closing an idle one of %s",
             c->peer, h->n_active, victim->peer);
    shutdown(victim->fd, SHUT_RDWR);
    victim->evicted = 1;
    h->n_active--;
}

/* Whether a request on c must be refused: c is beyond max_conns with no
 * idle connection to close, or beyond max_per_ip for its address. */
static int over_limit(qd_http_t *h, conn_t *c)
{
    if (c->over_limit && h->n_active <= h->max_conns)
        c->over_limit = 0;
    if (h->max_per_ip && same_peer(h, c, h->max_per_ip) >= h->max_per_ip)
        c->over_limit = 1;
    return c->over_limit;
}

/* ---- responses ---------------------------------------------------------- */

/* A JSON answer from the HTTP layer itself; with `busy`, the 503 of a
 * connection over a limit: Retry-After, and the connection closes. */
static enum MHD_Result queue_answer(hreq_t *r, unsigned status, const char *json,
                                    int busy, const char *why)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (busy) {
        char ra[24];
        snprintf(ra, sizeof ra, "%lld", (long long)r->h->retry_after_s);
        MHD_add_response_header(resp, "Retry-After", ra);
        MHD_add_response_header(resp, "Connection", "close");
    }
    enum MHD_Result ret = MHD_queue_response(r->mc, status, resp);
    MHD_destroy_response(resp);
    r->queued = 1;
    r->rejected = 1;
    QD_INFO("http", "- %s %s %s %u (%s)", r->conn->peer, r->method, r->url, status, why);
    return ret;
}

static enum MHD_Result queue_simple(hreq_t *r, unsigned status, const char *json)
{
    return queue_answer(r, status, json, 0, "rejected by http");
}

/* 503 for a connection over a limit; the connection closes after it. */
static enum MHD_Result queue_busy(hreq_t *r)
{
    return queue_answer(r, 503,
                        "{\"error\":{\"message\":\"Too many connections; retry shortly.\","
                        "\"type\":\"server_error\",\"param\":null,"
                        "\"code\":\"too_many_connections\"}}",
                        1, "over a connection limit");
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    hreq_t *r = cls;
    if (r->peer_gone)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    qd_api_resp_t *resp = qd_api_call_resp(r->call);
    size_t avail = resp->s_len - resp->s_off;
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, resp->sbuf + resp->s_off, n);
        qd_api_call_consumed(r->call, n);
        return (ssize_t)n;
    }
    if (resp->stream_ended)
        return resp->failed ? MHD_CONTENT_READER_END_WITH_ERROR
                            : MHD_CONTENT_READER_END_OF_STREAM;
    /* Nothing to send yet: park the connection until the API wakes it. */
    park(r);
    return 0;
}

static enum MHD_Result queue_call(hreq_t *r)
{
    qd_api_resp_t *a = qd_api_call_resp(r->call);
    struct MHD_Response *resp;
    if (a->streaming) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
                                                 sse_reader, r, NULL);
    } else {
        resp = MHD_create_response_from_buffer(a->body_len,
                                               a->body ? a->body : (char *)"",
                                               MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return MHD_NO;
    if (a->content_type)
        MHD_add_response_header(resp, "Content-Type", a->content_type);
    for (int i = 0; i < a->n_headers; i++)
        MHD_add_response_header(resp, a->headers[i].name, a->headers[i].value);
    enum MHD_Result ret =
        MHD_queue_response(r->mc, (unsigned)a->status, resp);
    MHD_destroy_response(resp);
    r->queued = 1;
    return ret;
}

/* API → http: the call has something new (loop thread). */
static void wake_req(void *ctx)
{
    hreq_t *r = ctx;
    if (r->suspended) {
        unpark(r);
        if (!r->h->in_run)
            uv_timer_start(&r->h->run_timer, on_run_timer, 0, 0);
    }
}

static const char *get_header(void *ctx, const char *name)
{
    hreq_t *r = ctx;
    return MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, name);
}

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind,
                                    const char *key, const char *value)
{
    (void)kind;
    size_t *n = cls;
    *n += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc,
                                  const char *url, const char *method,
                                  const char *version,
                                  const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    qd_http_t *h = cls;
    hreq_t *r = *con_cls;
    if (!r) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r = qd_calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->h = h;
        r->mc = mc;
        r->conn = ci ? ci->socket_context : NULL;
        r->url = qd_strdup(url);
        r->method = qd_strdup(method);
        *con_cls = r;
        if (!r->conn || !r->url || !r->method)
            return MHD_NO;
        r->conn->req = r;
        if (over_limit(h, r->conn))
            return queue_busy(r);
        size_t hb = strlen(url) + strlen(method) + 12;
        MHD_get_connection_values(mc, MHD_HEADER_KIND, count_header, &hb);
        if ((int64_t)hb > h->max_header)
            return queue_simple(
                r, 431,
                "{\"error\":{\"message\":\"Request header fields too "
                "large.\",\"type\":\"invalid_request_error\",\"param\":null,"
                "\"code\":\"request_header_too_large\"}}");
        const char *cl =
            MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno || *end || (long long)v > h->max_body)
                return queue_simple(
                    r, 413,
                    "{\"error\":{\"message\":\"Request body too large.\","
                    "\"type\":\"invalid_request_error\",\"param\":null,"
                    "\"code\":\"request_too_large\"}}");
        }
        return MHD_YES;
    }
    if (r->rejected) {
        *upload_size = 0; /* discard the rest of the body */
        return MHD_YES;
    }
    if (*upload_size) {
        size_t need;
        /* MHD accepts a response only before the body or after all of it
         * (a chunked body has no Content-Length to refuse up front): skip
         * the rest, bounded by the request deadline, then answer 413. */
        if (r->too_big || qd_add_size(r->body_len, *upload_size, &need) ||
            (int64_t)need > h->max_body) {
            *upload_size = 0;
            r->too_big = 1;
            return MHD_YES;
        }
        if (need + 1 > r->body_cap) {
            size_t nc = r->body_cap ? r->body_cap : 4096;
            while (nc < need + 1)
                nc *= 2;
            char *nb = qd_realloc(r->body, nc);
            if (!nb)
                return MHD_NO;
            r->body = nb;
            r->body_cap = nc;
        }
        memcpy(r->body + r->body_len, upload_data, *upload_size);
        r->body_len = need;
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->peer_gone)
        return MHD_NO;
    if (r->too_big)
        return queue_simple(
            r, 413,
            "{\"error\":{\"message\":\"Request body too large.\","
            "\"type\":\"invalid_request_error\",\"param\":null,"
            "\"code\":\"request_too_large\"}}");
    if (!r->call) {
        r->conn->deadline = 0; /* the whole request has arrived */
        qd_api_req_t req = {
            .method = r->method,
            .path = r->url,
            .header = get_header,
            .hctx = r,
            .body = r->body,
            .body_len = r->body_len,
            .peer = r->conn->peer,
        };
        r->call = qd_api_call_start(h->api, &req, wake_req, r);
        if (!r->call)
            return MHD_NO;
    }
    if (r->queued)
        return MHD_YES;
    if (!qd_api_call_resp(r->call)->status) {
        park(r);
        return MHD_YES;
    }
    return queue_call(r);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)mc;
    qd_http_t *h = cls;
    hreq_t *r = *con_cls;
    if (!r)
        return;
    if (r->call)
        qd_api_call_release(r->call,
                            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (r->conn) {
        unwatch(h, r->conn);
        r->conn->req = NULL;
        r->conn->idle_since = qd_now_ns();
        r->conn->deadline =
            r->conn->idle_since +
            (uint64_t)h->request_timeout_s * 1000000000ull;
    }
    qd_free(r->body);
    qd_free(r->url);
    qd_free(r->method);
    qd_free(r);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *mc,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    qd_http_t *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_t *c = qd_calloc(1, sizeof *c);
        if (!c)
            return; /* on_request answers MHD_NO: the connection closes */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->mc = mc;
        c->fd = ci ? ci->connect_fd : -1;
        ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        snprintf(c->peer, sizeof c->peer, "-");
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
                          c->peer, sizeof c->peer);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6,
                          &((const struct sockaddr_in6 *)sa)->sin6_addr,
                          c->peer, sizeof c->peer);
        }
        c->idle_since = qd_now_ns();
        c->deadline =
            c->idle_since + (uint64_t)h->request_timeout_s * 1000000000ull;
        c->next = h->conns;
        if (h->conns)
            h->conns->prev = c;
        h->conns = c;
        h->n_conns++;
        h->n_active++;
        *socket_context = c;
        if (h->n_active > h->max_conns)
            make_room(h, c);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_t *c = *socket_context;
        if (!c)
            return;
        if (c->prev)
            c->prev->next = c->next;
        else
            h->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        h->n_conns--;
        if (!c->evicted)
            h->n_active--;
        unwatch(h, c);
        if (c->req)
            c->req->conn = NULL;
        qd_free(c);
        *socket_context = NULL;
    }
}

/* Every second: drop clients that take too long to send a request, and
 * notice clients gone while their connection is suspended. */
static void on_sweep(uv_timer_t *t)
{
    qd_http_t *h = t->data;
    uint64_t now = qd_now_ns();
    int resumed = 0;
    for (conn_t *c = h->conns; c; c = c->next) {
        if (c->fd < 0)
            continue;
        if (c->deadline && now > c->deadline) {
            QD_INFO("http", "%s: request not received within %llds, closing",
                    c->peer, (long long)h->request_timeout_s);
            shutdown(c->fd, SHUT_RDWR);
            c->deadline = 0;
            continue;
        }
        hreq_t *r = c->req;
        if (!r && !c->evicted && peer_closed(c->fd)) {
            /* Between requests and reset by the client: MHD has seen the
             * error, but in epoll mode it frees a closed connection only
             * when it next visits it, which can take many seconds (its
             * timeout list is scanned oldest first and stops at the first
             * live one). A connection with its own timeout is visited on
             * every run. */
            MHD_set_connection_option(c->mc, MHD_CONNECTION_OPTION_TIMEOUT,
                                      (unsigned)1);
            c->evicted = 1;
            h->n_active--;
            resumed = 1;
            continue;
        }
        if (r && r->suspended && peer_closed(c->fd)) {
            QD_DEBUG("http", "%s: gone while waiting (noticed by the sweep)",
                     c->peer);
            peer_gone(r);
            resumed = 1;
        }
    }
    if (resumed)
        uv_timer_start(&h->run_timer, on_run_timer, 0, 0);
}

/* Paths are decoded once, by the API's normalizer: keep MHD's copy raw. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    QD_DEBUG("mhd", "%s", msg);
}

int qd_http_start(uv_loop_t *loop, const qd_config_t *cfg, qd_api_t *api,
                  qd_http_t **out)
{
    *out = NULL;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    char port[16];
    snprintf(port, sizeof port, "%lld", (long long)cfg->port);
    int gai = getaddrinfo(cfg->host, port, &hints, &ai);
    if (gai) {
        qd_set_errmsg("host '%s': not a numeric address (%s)", cfg->host,
                      gai_strerror(gai));
        return QD_EINVAL;
    }
    qd_http_t *h = qd_calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(ai);
        return QD_ENOMEM;
    }
    h->loop = loop;
    h->api = api;
    h->max_conns = (int)cfg->max_connections;
    qd_http_reload(h, cfg);
    /* Room above our limit for the connections we answer 503 or that wait
     * to be closed after an eviction (see the file comment). */
    unsigned slack = (unsigned)(qd_http_max_sockets(cfg) - cfg->max_connections);
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    size_t mem = (size_t)QD_MAX(cfg->max_header_bytes * 2, 65536);
    h->d = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, h,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, h, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections + slack,
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        mem, MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        qd_set_errmsg("cannot listen on %s:%lld (address in use or not "
                      "permitted?)",
                      cfg->host, (long long)cfg->port);
        qd_free(h);
        return QD_EIO;
    }
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : (int)cfg->port;
    di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di) {
        MHD_stop_daemon(h->d);
        qd_free(h);
        qd_set_errmsg("libmicrohttpd has no epoll fd");
        return QD_EINTERNAL;
    }
    uv_poll_init(loop, &h->poll, di->listen_fd);
    h->poll.data = h;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    uv_timer_init(loop, &h->run_timer);
    h->run_timer.data = h;
    uv_timer_init(loop, &h->sweep);
    h->sweep.data = h;
    uv_timer_start(&h->sweep, on_sweep, 1000, 1000);
    h->disc_fd = epoll_create1(EPOLL_CLOEXEC);
    if (h->disc_fd >= 0) {
        uv_poll_init(loop, &h->disc_poll, h->disc_fd);
        h->disc_poll.data = h;
        uv_poll_start(&h->disc_poll, UV_READABLE, on_hangup);
    } else {
        QD_WARN("http", "epoll_create1: %s; hang-ups of waiting clients are "
                        "noticed by the 1 s sweep only",
                strerror(errno));
    }
    run_mhd(h);
    *out = h;
    return 0;
}

int qd_http_port(const qd_http_t *h) { return h->port; }
int64_t qd_http_max_sockets(const qd_config_t *cfg)
{
    return cfg->max_connections + QD_MAX(16, cfg->max_connections / 4);
}

int qd_http_n_connections(const qd_http_t *h) { return h->n_conns; }

void qd_http_reload(qd_http_t *h, const qd_config_t *cfg)
{
    h->max_body = cfg->max_body_bytes;
    h->max_header = cfg->max_header_bytes;
    h->request_timeout_s = cfg->request_timeout_s;
    h->max_per_ip = (int)cfg->max_connections_per_ip;
    h->retry_after_s = cfg->retry_after_s;
}

static void on_closed(uv_handle_t *hd)
{
    qd_http_t *h = hd->data;
    if (--h->in_run == (h->disc_fd >= 0 ? -4 : -3)) {
        if (h->disc_fd >= 0)
            close(h->disc_fd);
        qd_free(h);
    }
}

static void close_handles(qd_http_t *h)
{
    h->in_run = 0;
    uv_close((uv_handle_t *)&h->poll, on_closed);
    uv_close((uv_handle_t *)&h->run_timer, on_closed);
    uv_close((uv_handle_t *)&h->sweep, on_closed);
    if (h->disc_fd >= 0)
        uv_close((uv_handle_t *)&h->disc_poll, on_closed);
}

void qd_http_abandon(qd_http_t *h)
{
    if (h)
        close_handles(h);
}

void qd_http_stop(qd_http_t *h)
{
    if (!h)
        return;
    /* MHD aborts the process if it is stopped with a suspended connection.
     * Resume every one (marked gone, so its reader ends instead of
     * suspending again) and let MHD process the resumptions; repeat while
     * any is still parked. Should one stay suspended, leave the daemon
     * unstopped: the process is exiting and the kernel closes the sockets. */
    int parked = 1;
    for (int round = 0; round < 16 && parked; round++) {
        parked = 0;
        for (conn_t *c = h->conns; c; c = c->next) {
            if (c->req && c->req->suspended) {
                peer_gone(c->req);
                parked = 1;
            }
        }
        MHD_run(h->d);
    }
    if (parked)
        QD_WARN("http", "connections still suspended at shutdown: "
                        "closing without stopping libmicrohttpd");
    else
        MHD_stop_daemon(h->d);
    close_handles(h);
}
