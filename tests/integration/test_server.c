/*
 * test_server.c — the real daemon on a loopback port, spoken to over HTTP.
 *
 * Every test starts build/quantd (QD_BIN) on stories260K.gguf from
 * QD_SHARED and skips when the model is absent.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"

#define MODEL "stories260K"

static tc_daemon_t D;

static void need_daemon(const char *const *extra)
{
    if (!getenv("QD_BIN"))
        cr_skip_test("QD_BIN not set (run through make check-integration)");
    if (!tc_model_path())
        cr_skip_test("stories260K.gguf not found: QD_SHARED");
    cr_assert_eq(tc_daemon_start(&D, extra), 0, "daemon did not start");
}

static void stop_daemon(void)
{
    if (D.pid > 0)
        tc_daemon_stop(&D);
}

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static json_t *body_json(const tc_resp_t *r)
{
    json_error_t e;
    json_t *j = json_loads(r->body ? r->body : "", 0, &e);
    cr_assert(j, "response is not JSON: %s", r->body);
    return j;
}

/* Check an OpenAI error object and return its code (static). */
static void expect_error(const tc_resp_t *r, int status, const char *type,
                         const char *param, const char *code)
{
    cr_assert_eq(r->status, status, "status %d, want %d: %s", r->status,
                 status, r->body);
    json_t *j = body_json(r);
    json_t *e = json_object_get(j, "error");
    cr_assert(json_is_object(e), "no error object: %s", r->body);
    cr_assert(json_is_string(json_object_get(e, "message")));
    cr_assert_str_eq(json_string_value(json_object_get(e, "type")), type);
    if (param)
        cr_assert_str_eq(json_string_value(json_object_get(e, "param")),
                         param, "%s", r->body);
    if (code)
        cr_assert_str_eq(json_string_value(json_object_get(e, "code")), code,
                         "%s", r->body);
    json_decref(j);
}

/* Parse an SSE body: concatenate the content deltas of choice 0 and
 * return the data events (array of JSON, "[DONE]" as a string). */
static json_t *parse_sse(const char *body, char **content, int chat)
{
    json_t *events = json_array();
    size_t cap = 4096, len = 0;
    *content = calloc(1, cap);
    const char *p = body;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        cr_assert(end, "SSE event not terminated by a blank line: %s", p);
        if (!strncmp(p, "data: ", 6)) {
            size_t n = (size_t)(end - p - 6);
            if (n == 6 && !strncmp(p + 6, "[DONE]", 6)) {
                json_array_append_new(events, json_string("[DONE]"));
            } else {
                json_error_t e;
                json_t *j = json_loadb(p + 6, n, 0, &e);
                cr_assert(j, "bad chunk JSON: %.*s", (int)n, p + 6);
                json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
                json_t *t = chat ? json_object_get(json_object_get(ch, "delta"),
                                                   "content")
                                 : json_object_get(ch, "text");
                if (json_is_string(t) &&
                    json_integer_value(json_object_get(ch, "index")) == 0) {
                    size_t tl = json_string_length(t);
                    if (len + tl + 1 > cap) {
                        cap = (len + tl + 1) * 2;
                        *content = realloc(*content, cap);
                    }
                    memcpy(*content + len, json_string_value(t), tl);
                    len += tl;
                    (*content)[len] = '\0';
                }
                json_array_append_new(events, j);
            }
        } else {
            cr_assert(p[0] == ':', "unexpected SSE line: %.40s", p);
        }
        p = end + 2;
    }
    return events;
}

Test(server, health_ready_models, .fini = stop_daemon)
{
    need_daemon(NULL);
    tc_resp_t r;
    cr_assert_eq(tc_fetch(D.port, "GET", "/health", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "\"ok\""));
    tc_resp_free(&r);
    cr_assert_eq(tc_fetch(D.port, "GET", "/ready", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    tc_resp_free(&r);
    cr_assert_eq(tc_fetch(D.port, "GET", "/v1/models", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    json_t *j = body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "object")), "list");
    json_t *m = json_array_get(json_object_get(j, "data"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(m, "id")), MODEL);
    cr_assert_str_eq(json_string_value(json_object_get(m, "object")), "model");
    cr_assert_str_eq(json_string_value(json_object_get(m, "owned_by")),
                     "quantd");
    cr_assert(json_is_integer(json_object_get(m, "created")));
    cr_assert(json_is_string(json_object_get(m, "quantization")));
    cr_assert(json_number_value(json_object_get(m, "bits_per_weight")) > 0);
    cr_assert(json_integer_value(json_object_get(m, "context_length")) > 0);
    cr_assert_str_eq(json_string_value(json_object_get(m, "state")), "loaded");
    json_decref(j);
    tc_resp_free(&r);
    cr_assert_eq(tc_fetch(D.port, "GET", "/metrics", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "# TYPE quantd_time_to_first_token_seconds "
                             "histogram"));
    cr_assert(strstr(r.body, "quantd_engine_steps_total{model=\"" MODEL));
    cr_assert(strstr(r.body, "quantd_kv_blocks_total{model="));
    tc_resp_free(&r);
}

Test(server, completions_and_chat, .fini = stop_daemon)
{
    need_daemon(NULL);
    tc_resp_t r;
    cr_assert_eq(tc_fetch(D.port, "POST", "/v1/completions", NULL,
                          "{\"model\":\"" MODEL "\",\"prompt\":\"Once upon a "
                          "time\",\"max_tokens\":20,\"temperature\":0}",
                          &r),
                 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *j = body_json(&r);
    cr_assert(!strncmp(json_string_value(json_object_get(j, "id")), "cmpl-", 5));
    cr_assert_str_eq(json_string_value(json_object_get(j, "object")),
                     "text_completion");
    cr_assert_str_eq(json_string_value(json_object_get(j, "model")), MODEL);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    cr_assert(json_string_length(json_object_get(c0, "text")) > 0);
    const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
    cr_assert(!strcmp(fr, "length") || !strcmp(fr, "stop"));
    json_t *u = json_object_get(j, "usage");
    int pt = (int)json_integer_value(json_object_get(u, "prompt_tokens"));
    int ct = (int)json_integer_value(json_object_get(u, "completion_tokens"));
    cr_assert(pt > 0 && ct > 0 && ct <= 20);
    cr_assert_eq(json_integer_value(json_object_get(u, "total_tokens")),
                 pt + ct);
    cr_assert(json_is_integer(json_object_get(
        json_object_get(u, "prompt_tokens_details"), "cached_tokens")));
    json_decref(j);
    tc_resp_free(&r);

    cr_assert_eq(tc_fetch(D.port, "POST", "/v1/chat/completions", NULL,
                          "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":"
                          "\"user\",\"content\":\"Tell a story\"}],"
                          "\"max_completion_tokens\":16,\"n\":2,\"seed\":3}",
                          &r),
                 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    j = body_json(&r);
    cr_assert(!strncmp(json_string_value(json_object_get(j, "id")),
                       "chatcmpl-", 9));
    cr_assert_str_eq(json_string_value(json_object_get(j, "object")),
                     "chat.completion");
    cr_assert_eq(json_array_size(json_object_get(j, "choices")), 2);
    for (int i = 0; i < 2; i++) {
        json_t *c = json_array_get(json_object_get(j, "choices"), (size_t)i);
        cr_assert_eq(json_integer_value(json_object_get(c, "index")), i);
        json_t *msg = json_object_get(c, "message");
        cr_assert_str_eq(json_string_value(json_object_get(msg, "role")),
                         "assistant");
        cr_assert(json_is_string(json_object_get(msg, "content")));
    }
    json_decref(j);
    tc_resp_free(&r);
}

static void stream_vs_plain(int chat)
{
    const char *path = chat ? "/v1/chat/completions" : "/v1/completions";
    const char *input = chat ? "\"messages\":[{\"role\":\"user\",\"content\":"
                               "\"Once upon a time\"}]"
                             : "\"prompt\":\"Once upon a time\"";
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"" MODEL "\",%s,\"max_tokens\":40,"
             "\"temperature\":0.9,\"seed\":1234}",
             input);
    tc_resp_t r;
    cr_assert_eq(tc_fetch(D.port, "POST", path, NULL, body, &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *j = body_json(&r);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    const char *plain =
        chat ? json_string_value(
                   json_object_get(json_object_get(c0, "message"), "content"))
             : json_string_value(json_object_get(c0, "text"));
    char *plain_copy = strdup(plain);
    json_decref(j);
    tc_resp_free(&r);

    snprintf(body, sizeof body,
             "{\"model\":\"" MODEL "\",%s,\"max_tokens\":40,"
             "\"temperature\":0.9,\"seed\":1234,\"stream\":true,"
             "\"stream_options\":{\"include_usage\":true}}",
             input);
    cr_assert_eq(tc_fetch(D.port, "POST", path, NULL, body, &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char ct[128];
    cr_assert(tc_header(&r, "content-type", ct, sizeof ct));
    cr_assert(!strncmp(ct, "text/event-stream", 17));
    char *streamed;
    json_t *ev = parse_sse(r.body, &streamed, chat);
    size_t n = json_array_size(ev);
    cr_assert(n >= 4, "too few events: %s", r.body);
    cr_assert_str_eq(json_string_value(json_array_get(ev, n - 1)), "[DONE]");
    json_t *usage_chunk = json_array_get(ev, n - 2);
    cr_assert_eq(json_array_size(json_object_get(usage_chunk, "choices")), 0);
    cr_assert(json_integer_value(json_object_get(
                  json_object_get(usage_chunk, "usage"),
                  "completion_tokens")) > 0);
    json_t *last = json_array_get(ev, n - 3);
    cr_assert(json_is_string(json_object_get(
        json_array_get(json_object_get(last, "choices"), 0), "finish_reason")));
    if (chat) {
        json_t *first = json_array_get(ev, 0);
        json_t *d = json_object_get(
            json_array_get(json_object_get(first, "choices"), 0), "delta");
        cr_assert_str_eq(json_string_value(json_object_get(d, "role")),
                         "assistant");
        cr_assert_str_eq(
            json_string_value(json_object_get(first, "object")),
            "chat.completion.chunk");
    }
    cr_assert_str_eq(streamed, plain_copy,
                     "streamed and non-streamed output differ");
    free(streamed);
    free(plain_copy);
    json_decref(ev);
    tc_resp_free(&r);
}

Test(server, streamed_equals_plain, .fini = stop_daemon)
{
    need_daemon(NULL);
    stream_vs_plain(0);
    stream_vs_plain(1);
}

Test(server, error_statuses, .fini = stop_daemon)
{
    const char *args[] = {"--max-body-bytes", "4096", "--max-header-bytes",
                          "2048", NULL};
    need_daemon(args);
    tc_resp_t r;
#define POST(path, body)                                                       \
    cr_assert_eq(tc_fetch(D.port, "POST", path, NULL, body, &r), 0)
    POST("/v1/completions", "{not json");
    expect_error(&r, 400, "invalid_request_error", NULL, "invalid_json");
    tc_resp_free(&r);
    POST("/v1/completions",
         "{\"model\":\"" MODEL "\",\"prompt\":\"x\",\"temperature\":3}");
    expect_error(&r, 400, "invalid_request_error", "temperature",
                 "decimal_above_max_value");
    tc_resp_free(&r);
    POST("/v1/completions",
         "{\"model\":\"" MODEL "\",\"prompt\":\"x\",\"max_tokens\":\"5\"}");
    expect_error(&r, 400, "invalid_request_error", "max_tokens",
                 "invalid_type");
    tc_resp_free(&r);
    POST("/v1/completions",
         "{\"model\":\"" MODEL "\",\"prompt\":\"x\",\"logit_bias\":"
         "{\"99999999\":1}}");
    expect_error(&r, 400, "invalid_request_error", "logit_bias",
                 "invalid_value");
    tc_resp_free(&r);
    POST("/v1/completions",
         "{\"model\":\"" MODEL "\",\"prompt\":\"x\",\"max_tokens\":100000}");
    expect_error(&r, 400, "invalid_request_error", "prompt",
                 "context_length_exceeded");
    tc_resp_free(&r);
    POST("/v1/completions", "{\"model\":\"nope\",\"prompt\":\"x\"}");
    expect_error(&r, 404, "invalid_request_error", "model", "model_not_found");
    tc_resp_free(&r);
    POST("/v1/nothing", "{}");
    expect_error(&r, 404, "invalid_request_error", NULL, "not_found");
    tc_resp_free(&r);
    cr_assert_eq(tc_fetch(D.port, "GET", "/v1/completions", NULL, NULL, &r),
                 0);
    expect_error(&r, 405, "invalid_request_error", NULL, "method_not_allowed");
    tc_resp_free(&r);
    /* 413: a body over max_body_bytes. */
    char *big = malloc(8192);
    memset(big, ' ', 8191);
    big[8191] = '\0';
    big[0] = '{';
    big[8190] = '}';
    POST("/v1/completions", big);
    cr_assert_eq(r.status, 413, "%d", r.status);
    tc_resp_free(&r);
    /* 431: headers over max_header_bytes. */
    char *hdr = malloc(4096);
    snprintf(hdr, 4096, "X-Big: %03000d\r\n", 0);
    cr_assert_eq(tc_fetch(D.port, "GET", "/health", hdr, NULL, &r), 0);
    cr_assert_eq(r.status, 431, "%d", r.status);
    tc_resp_free(&r);
    free(big);
    free(hdr);
    /* Nesting deeper than max_json_depth. */
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 99);
    deep[199] = '\0';
    char body[300];
    snprintf(body, sizeof body,
             "{\"model\":\"" MODEL "\",\"prompt\":\"x\",\"user\":%s]}", deep);
    POST("/v1/completions", body);
    expect_error(&r, 400, "invalid_request_error", NULL, "invalid_json");
    tc_resp_free(&r);
#undef POST
}

Test(server, queue_full_503, .fini = stop_daemon)
{
    const char *args[] = {"--queue-max", "0", NULL};
    need_daemon(args);
    tc_resp_t r;
    cr_assert_eq(tc_fetch(D.port, "POST", "/v1/completions", NULL,
                          "{\"model\":\"" MODEL "\",\"prompt\":\"x\"}", &r),
                 0);
    expect_error(&r, 503, "server_error", NULL, "server_overloaded");
    char ra[32];
    cr_assert(tc_header(&r, "retry-after", ra, sizeof ra));
    tc_resp_free(&r);
}

Test(server, auth, .fini = stop_daemon)
{
    const char *args[] = {"--api-key", "sekrit-key-1", "--api-key", "k2",
                          NULL};
    need_daemon(args);
    tc_resp_t r;
    /* Public. */
    cr_assert_eq(tc_fetch(D.port, "GET", "/health", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    tc_resp_free(&r);
    static const char *paths[] = {"/v1/models",          "//v1/models",
                                  "/v1%2Fmodels",        "/v1/../v1/models",
                                  "/health/../v1/models", "/./v1/models/",
                                  "/metrics",            "/nonexistent"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        cr_assert_eq(tc_fetch(D.port, "GET", paths[i], NULL, NULL, &r), 0);
        expect_error(&r, 401, "invalid_request_error", NULL,
                     "invalid_api_key");
        tc_resp_free(&r);
        cr_assert_eq(tc_fetch(D.port, "GET", paths[i],
                              "Authorization: Bearer sekrit-key-\r\n", NULL,
                              &r),
                     0);
        cr_assert_eq(r.status, 401, "%s: %d", paths[i], r.status);
        tc_resp_free(&r);
    }
    cr_assert_eq(tc_fetch(D.port, "GET", "//v1/models",
                          "Authorization: Bearer sekrit-key-1\r\n", NULL, &r),
                 0);
    cr_assert_eq(r.status, 200);
    tc_resp_free(&r);
    cr_assert_eq(tc_fetch(D.port, "GET", "/v1/models",
                          "Authorization: Bearer k2\r\n", NULL, &r),
                 0);
    cr_assert_eq(r.status, 200);
    tc_resp_free(&r);
}

/* A stream long enough to be cut off: EOS banned, many tokens. */
static const char *long_stream =
    "{\"model\":\"" MODEL "\",\"prompt\":\"Once\",\"max_tokens\":60000,"
    "\"logit_bias\":{\"2\":-100},\"stream\":true,\"seed\":5}";

Test(server, disconnect_cancels, .fini = stop_daemon)
{
    /* A context far beyond what the stream can reach before the test
     * looks, so only the cancellation can stop it. */
    const char *args[] = {"--n-seq-max", "1", "-c", "65536", NULL};
    need_daemon(args);
    int fd = tc_connect(D.port);
    cr_assert(fd >= 0);
    cr_assert_eq(tc_send(fd, "POST", "/v1/completions", NULL, long_stream), 0);
    char buf[4096];
    cr_assert(tc_read_some(fd, buf, sizeof buf, 10000) > 0);
    close(fd);
    /* Within a few steps the server notices and cancels. */
    const char *steps = "quantd_engine_steps_total{model=\"" MODEL "\"}";
    double s1 = -1, s2 = -2;
    for (int i = 0; i < 50 && s1 != s2; i++) {
        s1 = tc_metric(D.port, steps);
        msleep(200);
        s2 = tc_metric(D.port, steps);
    }
    cr_assert_eq(s1, s2, "steps still advancing after disconnect");
    cr_assert(s2 < 60000, "generation ran to the end (%g steps)", s2);
    cr_assert_eq(
        tc_metric(D.port, "quantd_requests_running{model=\"" MODEL "\"}"), 0);
}

Test(server, sigterm_drains_stream, .fini = stop_daemon)
{
    need_daemon(NULL);
    int fd = tc_connect(D.port);
    cr_assert(fd >= 0);
    cr_assert_eq(tc_send(fd, "POST", "/v1/completions", NULL,
                         "{\"model\":\"" MODEL "\",\"prompt\":\"Once\","
                         "\"max_tokens\":400,\"logit_bias\":{\"2\":-100},"
                         "\"stream\":true,\"seed\":5}"),
                 0);
    char *all = calloc(1, 1 << 22);
    size_t len = 0;
    ssize_t n = tc_read_some(fd, all, 4096, 10000);
    cr_assert(n > 0);
    len = (size_t)n;
    kill(D.pid, SIGTERM);
    msleep(100);
    tc_resp_t r;
    if (tc_fetch(D.port, "GET", "/ready", NULL, NULL, &r) == 0)
        cr_assert_eq(r.status, 503, "ready during drain: %d", r.status);
    tc_resp_free(&r);
    while ((n = tc_read_some(fd, all + len, (1 << 22) - len - 1, 20000)) > 0)
        len += (size_t)n;
    close(fd);
    cr_assert(strstr(all, "data: [DONE]"), "stream cut short by SIGTERM");
    cr_assert(strstr(all, "\"finish_reason\":\"length\""));
    free(all);
    int st = 0;
    for (int i = 0; i < 500; i++) {
        if (waitpid(D.pid, &st, WNOHANG) == D.pid) {
            D.pid = 0;
            break;
        }
        msleep(20);
    }
    cr_assert_eq(D.pid, 0, "daemon did not exit after draining");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
}

static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

Test(server, keepalive_no_fd_leak, .fini = stop_daemon)
{
    need_daemon(NULL);
    msleep(300); /* let the readiness probe's connection close */
    int before = count_fds(D.pid);
    cr_assert(before > 0);
    int fd = tc_connect(D.port);
    cr_assert(fd >= 0);
    for (int i = 0; i < 1000; i++) {
        tc_resp_t r;
        cr_assert_eq(tc_request(fd, "GET", i % 2 ? "/health" : "/v1/models",
                                NULL, NULL, &r),
                     0, "request %d failed", i);
        cr_assert_eq(r.status, 200);
        tc_resp_free(&r);
    }
    close(fd);
    msleep(300);
    int after = count_fds(D.pid);
    cr_assert(after <= before, "fds before %d, after %d", before, after);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static int status_with_key(int fd, const char *key)
{
    char hdr[128];
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", key);
    tc_resp_t r;
    cr_assert_eq(tc_request(fd, "GET", "/v1/models", hdr, NULL, &r), 0,
                 "connection dropped");
    int st = r.status;
    tc_resp_free(&r);
    return st;
}

/* SIGHUP re-reads the key file and applies it without dropping an open
 * keep-alive connection; --log-format json writes one JSON object a line. */
Test(server, sighup_reloads_keys_keeps_connections, .fini = stop_daemon)
{
    char keys[600];
    const char *tmp = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    snprintf(keys, sizeof keys, "%s/keys-%d.txt", tmp, (int)getpid());
    write_file(keys, "first-key\n");
    const char *args[] = {"--api-key-file", keys, "--log-format", "json",
                          NULL};
    need_daemon(args);
    int fd = tc_connect(D.port);
    cr_assert(fd >= 0);
    cr_assert_eq(status_with_key(fd, "first-key"), 200);
    cr_assert_eq(status_with_key(fd, "second-key"), 401);

    write_file(keys, "second-key\n");
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    int st = 0;
    for (int i = 0; i < 50 && st != 200; i++) {
        msleep(100);
        st = status_with_key(fd, "second-key"); /* same connection */
    }
    cr_assert_eq(st, 200, "new key not accepted after SIGHUP");
    cr_assert_eq(status_with_key(fd, "first-key"), 401);
    close(fd);
    unlink(keys);

    /* Every log line so far is a JSON object with ts, level, msg. */
    FILE *f = fopen(D.log, "r");
    cr_assert_not_null(f);
    char line[8192];
    int n = 0, reload_seen = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        cr_assert_not_null(j, "not JSON: %s", line);
        cr_assert(json_is_string(json_object_get(j, "level")));
        cr_assert(json_is_string(json_object_get(j, "ts")));
        const char *msg = json_string_value(json_object_get(j, "msg"));
        cr_assert_not_null(msg);
        if (strstr(msg, "SIGHUP"))
            reload_seen = 1;
        json_decref(j);
        n++;
    }
    fclose(f);
    cr_assert_gt(n, 0);
    cr_assert(reload_seen, "no log line about the reload");
}

/* A stream waiting in the queue behind another request gets
 * ": keep-alive" comments every --sse-keepalive-s seconds. */
Test(server, sse_keepalive_while_queued, .fini = stop_daemon)
{
    const char *args[] = {"-c", "65536", "--n-seq-max", "1",
                          "--sse-keepalive-s", "1", NULL};
    need_daemon(args);
    int busy = tc_connect(D.port);
    cr_assert(busy >= 0);
    cr_assert_eq(tc_send(busy, "POST", "/v1/completions", NULL,
                         "{\"model\":\"" MODEL "\",\"prompt\":\"Once\","
                         "\"max_tokens\":60000,\"logit_bias\":{\"2\":-100},"
                         "\"stream\":true}"),
                 0);
    char buf[8192];
    cr_assert(tc_read_some(busy, buf, sizeof buf, 10000) > 0);

    int fd = tc_connect(D.port);
    cr_assert(fd >= 0);
    cr_assert_eq(tc_send(fd, "POST", "/v1/completions", NULL,
                         "{\"model\":\"" MODEL "\",\"prompt\":\"Once\","
                         "\"max_tokens\":4,\"stream\":true}"),
                 0);
    char got[4096] = "";
    size_t n = 0;
    for (int i = 0; i < 40 && !strstr(got, ": keep-alive\n\n"); i++) {
        ssize_t k = tc_read_some(fd, got + n, sizeof got - 1 - n, 200);
        if (k > 0) {
            n += (size_t)k;
            got[n] = '\0';
        }
        tc_read_some(busy, buf, sizeof buf, 1); /* keep the first flowing */
    }
    cr_assert(strstr(got, ": keep-alive\n\n"), "no keep-alive: %s", got);
    close(busy); /* cancels the long one; the queued one then runs */
    tc_resp_t r;
    cr_assert_eq(tc_fetch(D.port, "GET", "/health", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    tc_resp_free(&r);
    close(fd);
}
