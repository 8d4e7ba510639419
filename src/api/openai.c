/*
 * openai.c — validation of OpenAI completion requests and the JSON pieces
 * of responses.
 *
 * Every field is type-checked and range-checked here; values are rejected,
 * never clamped, so a client learns that the server did not do what it
 * asked. Error codes follow OpenAI's vocabulary where it has one
 * (integer_below_min_value, decimal_above_max_value, invalid_type, ...) and
 * are listed in docs/api.md.
 */
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai.h"
#include "engine/unicode.h"
#include "quantd/common.h"

void qd_api_err_set(qd_api_err_t *e, int status, const char *type,
                    const char *param, const char *code, const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

/*
 * jansson's allocations go through qd_malloc (quantd/common.h's failure
 * injection reaches them). jansson 2.14's lexer ignores a failed append to
 * the text it saves and can then trip an assert(0) on the short copy; so
 * while qd_api_json_loadb parses, the first failed allocation makes every
 * later one of that parse fail too, and the result is discarded.
 */
static _Thread_local int js_sticky, js_failed;

static void *json_alloc(size_t n)
{
    if (js_sticky && js_failed)
        return NULL;
    void *p = qd_malloc(n);
    if (!p && js_sticky)
        js_failed = 1;
    return p;
}

void qd_api_json_init(void) { json_set_alloc_funcs(json_alloc, qd_free); }

json_t *qd_api_json_loadb(const char *buf, size_t len, json_error_t *e,
                          int *oom)
{
    js_sticky = 1;
    js_failed = 0;
    json_t *j = json_loadb(buf, len, 0, e);
    *oom = js_failed;
    js_sticky = 0;
    js_failed = 0;
    if (*oom) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* json_dump_callback sink with a sticky failure: jansson 2.14 ignores a
 * failed write of an object key and goes on, so one lost allocation in
 * json_dumps can yield malformed JSON; here any failed write fails the
 * whole dump. */
typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} dump_t;

static int dump_cb(const char *p, size_t n, void *ud)
{
    dump_t *d = ud;
    if (d->failed)
        return -1;
    size_t need;
    if (qd_add_size(d->len, n + 1, &need)) {
        d->failed = 1;
        return -1;
    }
    if (need > d->cap) {
        size_t nc = QD_MAX(d->cap * 2, need + 256);
        char *nb = qd_realloc(d->buf, nc);
        if (!nb) {
            d->failed = 1;
            return -1;
        }
        d->buf = nb;
        d->cap = nc;
    }
    memcpy(d->buf + d->len, p, n);
    d->len += n;
    d->buf[d->len] = '\0';
    return 0;
}

char *qd_api_json_dump(const json_t *j, size_t *len)
{
    dump_t d = {0};
    if (!j || json_dump_callback(j, dump_cb, &d, JSON_COMPACT) || d.failed ||
        !d.buf) {
        qd_free(d.buf);
        return NULL;
    }
    if (len)
        *len = d.len;
    return d.buf;
}

char *qd_api_err_json(const qd_api_err_t *e, size_t *len)
{
    json_t *o = json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message",
                          e->message, "type", e->type ? e->type : "",
                          "param",
                          e->param[0] ? json_string(e->param) : json_null(),
                          "code",
                          e->code[0] ? json_string(e->code) : json_null());
    if (!o)
        return NULL;
    char *d = qd_api_json_dump(o, len);
    json_decref(o);
    return d;
}

int qd_json_depth(const char *s, size_t len)
{
    int depth = 0, max = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                max = depth;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

size_t qd_utf8_complete_len(const char *s, size_t len)
{
    /* Look back at most 3 bytes for the start of the last sequence. */
    size_t i = len;
    int back = 0;
    while (i > 0 && back < 4) {
        unsigned char c = (unsigned char)s[i - 1];
        if ((c & 0xC0) != 0x80) {
            size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2
                                     : (c & 0xF0) == 0xE0   ? 3
                                     : (c & 0xF8) == 0xF0   ? 4
                                                            : 1;
            return (len - (i - 1) >= need) ? len : i - 1;
        }
        i--;
        back++;
    }
    return len; /* stray continuation bytes: not ours to hold */
}

int qd_sse_append(char **buf, size_t *len, size_t *cap, const char *data,
                  size_t n)
{
    size_t need;
    if (qd_add_size(*len, n + 8, &need))
        return QD_EOVERFLOW;
    if (need > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < need)
            nc *= 2;
        char *nb = qd_realloc(*buf, nc);
        if (!nb)
            return QD_ENOMEM;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, "data: ", 6);
    memcpy(*buf + *len + 6, data, n);
    memcpy(*buf + *len + 6 + n, "\n\n", 2);
    *len += n + 8;
    return 0;
}

int qd_api_random_id(const char *prefix, char *out, size_t cap)
{
    static const char b62[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char rnd[24];
    size_t pl = strlen(prefix);
    if (cap < pl + 25)
        return QD_EINVAL;
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        qd_set_errmsg("RAND_bytes failed");
        return QD_EINTERNAL;
    }
    memcpy(out, prefix, pl);
    for (size_t i = 0; i < sizeof rnd; i++)
        out[pl + i] = b62[rnd[i] % 62]; /* bias < 2%: ids, not keys */
    out[pl + sizeof rnd] = '\0';
    return 0;
}

json_t *qd_api_usage_json(int32_t prompt, int32_t completion, int32_t cached)
{
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", (int)prompt,
                     "completion_tokens", (int)completion, "total_tokens",
                     (int)(prompt + completion), "prompt_tokens_details",
                     "cached_tokens", (int)cached);
}

static json_t *bytes_array(const char *s, int n)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) {
        if (json_array_append_new(a, json_integer((unsigned char)s[i]))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

json_t *qd_api_json_text(const char *s, size_t n)
{
    /* A piece may be a lone byte of a multi-byte character: jansson needs
     * valid UTF-8, so such pieces are shown with U+FFFD (bytes has the
     * truth, as in OpenAI's responses). jansson checks the UTF-8 itself;
     * only a refusal is looked at again. */
    json_t *j = json_stringn(s, n);
    if (!j && qd__utf8_valid_prefix(s, n) < n)
        j = json_string("\xEF\xBF\xBD");
    return j; /* NULL: out of memory */
}

json_t *qd_api_chat_logprob(const qd_sample_t *s, int32_t n_top,
                            qd_piece_fn piece, void *ud)
{
    char buf[256];
    int n = piece(ud, s->tok, buf, (int)sizeof buf);
    if (n < 0)
        n = 0;
    n = QD_MIN(n, (int)sizeof buf);
    json_t *top = json_array();
    for (int32_t i = 0; top && i < QD_MIN(n_top, s->n_top); i++) {
        char b2[256];
        int m = piece(ud, s->top_toks[i], b2, (int)sizeof b2);
        m = QD_MIN(QD_MAX(m, 0), (int)sizeof b2);
        if (json_array_append_new(
                top, json_pack("{s:o,s:f,s:o}", "token", qd_api_json_text(b2, (size_t)m),
                               "logprob", (double)s->top_logprobs[i],
                               "bytes", bytes_array(b2, m)))) {
            json_decref(top);
            top = NULL;
        }
    }
    return json_pack("{s:o,s:f,s:o,s:o}", "token", qd_api_json_text(buf, (size_t)n),
                     "logprob", (double)s->logprob, "bytes",
                     bytes_array(buf, n), "top_logprobs", top);
}

/* ---- request parsing -------------------------------------------------- */

#define BAD(st, param, code, ...)                                              \
    do {                                                                       \
        qd_api_err_set(err, st, "invalid_request_error", param, code,          \
                       __VA_ARGS__);                                           \
        goto fail;                                                             \
    } while (0)

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "value";
}

/* Optional number field in [lo, hi] (open bounds with lo_open/hi_open). */
static int get_num(json_t *o, const char *key, double lo, int lo_open,
                   double hi, float *out, qd_api_err_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v)) {
        qd_api_err_set(err, 400, "invalid_request_error", key,
                       "invalid_type",
                       "Invalid type for '%s': expected a number, got %s.",
                       key, json_type_name(v));
        return -1;
    }
    double d = json_number_value(v);
    if (d < lo || (lo_open && d == lo)) {
        qd_api_err_set(err, 400, "invalid_request_error", key,
                       "decimal_below_min_value",
                       "Invalid '%s': %g is %s the minimum of %g.", key, d,
                       lo_open ? "not above" : "below", lo);
        return -1;
    }
    if (d > hi) {
        qd_api_err_set(err, 400, "invalid_request_error", key,
                       "decimal_above_max_value",
                       "Invalid '%s': %g is above the maximum of %g.", key, d,
                       hi);
        return -1;
    }
    *out = (float)d;
    return 1;
}

static int get_int(json_t *o, const char *key, int64_t lo, int64_t hi,
                   int64_t *out, qd_api_err_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v)) {
        qd_api_err_set(err, 400, "invalid_request_error", key,
                       "invalid_type",
                       "Invalid type for '%s': expected an integer, got %s.",
                       key, json_type_name(v));
        return -1;
    }
    int64_t i = (int64_t)json_integer_value(v);
    if (i < lo) {
        qd_api_err_set(err, 400, "invalid_request_error", key,
                       "integer_below_min_value",
                       "Invalid '%s': %lld is below the minimum of %lld.",
                       key, (long long)i, (long long)lo);
        return -1;
    }
    if (i > hi) {
        qd_api_err_set(err, 400, "invalid_request_error", key,
                       "integer_above_max_value",
                       "Invalid '%s': %lld is above the maximum of %lld.",
                       key, (long long)i, (long long)hi);
        return -1;
    }
    *out = i;
    return 1;
}

static int get_bool(json_t *o, const char *key, int *out, qd_api_err_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        qd_api_err_set(err, 400, "invalid_request_error", key,
                       "invalid_type",
                       "Invalid type for '%s': expected a boolean, got %s.",
                       key, json_type_name(v));
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

static int check_messages(json_t *msgs, qd_api_err_t *err)
{
    if (!json_is_array(msgs)) {
        qd_api_err_set(err, 400, "invalid_request_error", "messages",
                       "invalid_type",
                       "Invalid type for 'messages': expected an array.");
        return -1;
    }
    if (json_array_size(msgs) == 0) {
        qd_api_err_set(err, 400, "invalid_request_error", "messages",
                       "empty_array",
                       "Invalid 'messages': empty array. Expected an array "
                       "with minimum length 1.");
        return -1;
    }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) {
            qd_api_err_set(err, 400, "invalid_request_error", param,
                           "invalid_type",
                           "Invalid type for '%s': expected an object.",
                           param);
            return -1;
        }
        json_t *role = json_object_get(m, "role");
        const char *r = json_string_value(role);
        if (!r || (strcmp(r, "system") && strcmp(r, "user") &&
                   strcmp(r, "assistant") && strcmp(r, "developer") &&
                   strcmp(r, "tool"))) {
            snprintf(param, sizeof param, "messages[%zu].role", i);
            qd_api_err_set(err, 400, "invalid_request_error", param,
                           "invalid_value",
                           "Invalid value for '%s': expected one of system, "
                           "developer, user, assistant, tool.",
                           param);
            return -1;
        }
        json_t *c = json_object_get(m, "content");
        snprintf(param, sizeof param, "messages[%zu].content", i);
        if (json_is_string(c))
            continue;
        if ((!c || json_is_null(c)) && !strcmp(r, "assistant"))
            continue;
        if (json_is_array(c)) {
            size_t k;
            json_t *part;
            json_array_foreach(c, k, part)
            {
                const char *t =
                    json_string_value(json_object_get(part, "type"));
                if (!t || strcmp(t, "text") ||
                    !json_is_string(json_object_get(part, "text"))) {
                    qd_api_err_set(err, 400, "invalid_request_error", param,
                                   "invalid_value",
                                   "Invalid '%s': only parts of type 'text' "
                                   "with a string 'text' are supported.",
                                   param);
                    return -1;
                }
            }
            continue;
        }
        qd_api_err_set(err, 400, "invalid_request_error", param,
                       "invalid_type",
                       "Invalid type for '%s': expected a string or an array "
                       "of content parts.",
                       param);
        return -1;
    }
    return 0;
}

int qd_gen_req_parse(const qd_api_limits_t *lim, const char *body,
                     size_t len, int chat, qd_gen_req_t *r, qd_api_err_t *err)
{
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->max_tokens = -1;
    r->n = 1;
    qd_sampling_params_default(&r->sp);
    json_t *root = NULL;
    int64_t iv;
    int rc;

    if (qd_json_depth(body, len) > lim->max_json_depth)
        BAD(400, NULL, "invalid_json",
            "The request body nests JSON deeper than %d levels.",
            lim->max_json_depth);
    json_error_t je;
    int oom;
    root = qd_api_json_loadb(body, len, &je, &oom);
    if (oom) {
        qd_api_err_set(err, 500, "server_error", NULL, "out_of_memory",
                       "The server ran out of memory reading the request.");
        goto fail;
    }
    if (!root)
        BAD(400, NULL, "invalid_json",
            "We could not parse the JSON body of your request: %s (line "
            "%d, column %d).",
            je.text, je.line, je.column);
    if (!json_is_object(root))
        BAD(400, NULL, "invalid_json",
            "The request body must be a JSON object.");

    json_t *model = json_object_get(root, "model");
    if (!model)
        BAD(400, "model", "missing_required_parameter",
            "Missing required parameter: 'model'.");
    if (!json_is_string(model))
        BAD(400, "model", "invalid_type",
            "Invalid type for 'model': expected a string.");
    if (!(r->model = qd_strdup(json_string_value(model))))
        goto oom;

    if (chat) {
        json_t *msgs = json_object_get(root, "messages");
        if (!msgs)
            BAD(400, "messages", "missing_required_parameter",
                "Missing required parameter: 'messages'.");
        if (check_messages(msgs, err))
            goto fail;
        r->messages = json_incref(msgs);
    } else {
        json_t *p = json_object_get(root, "prompt");
        if (!p)
            BAD(400, "prompt", "missing_required_parameter",
                "Missing required parameter: 'prompt'.");
        if (json_is_array(p) && json_array_size(p) == 1 &&
            json_is_string(json_array_get(p, 0)))
            p = json_array_get(p, 0);
        if (json_is_string(p)) {
            if (!(r->prompt = qd_strdup(json_string_value(p))))
                goto oom;
        } else if (json_is_array(p) && json_array_size(p) > 0 &&
                   json_is_integer(json_array_get(p, 0))) {
            size_t n = json_array_size(p), i;
            json_t *t;
            if (n > (1u << 24))
                BAD(400, "prompt", "invalid_value", "Prompt too long.");
            if (!(r->prompt_toks = qd_malloc(n * sizeof *r->prompt_toks)))
                goto oom;
            json_array_foreach(p, i, t)
            {
                if (!json_is_integer(t) || json_integer_value(t) < 0 ||
                    json_integer_value(t) > INT32_MAX)
                    BAD(400, "prompt", "invalid_value",
                        "Invalid 'prompt': element %zu is not a token id.",
                        i);
                r->prompt_toks[i] = (int32_t)json_integer_value(t);
            }
            r->n_prompt_toks = (int32_t)n;
        } else if (json_is_array(p)) {
            BAD(400, "prompt", "invalid_value",
                "Invalid 'prompt': one prompt per request is supported (a "
                "string, a one-string array or an array of token ids).");
        } else {
            BAD(400, "prompt", "invalid_type",
                "Invalid type for 'prompt': expected a string or an array.");
        }
        if (get_bool(root, "echo", &r->echo, err) < 0)
            goto fail;
        if (r->echo)
            BAD(400, "echo", "unsupported_value",
                "'echo' is not supported by this server.");
    }

    /* max_completion_tokens (chat, newer) takes precedence. */
    if ((rc = get_int(root, "max_tokens", 1, INT32_MAX, &iv, err)) < 0)
        goto fail;
    if (rc)
        r->max_tokens = (int32_t)iv;
    if ((rc = get_int(root, "max_completion_tokens", 1, INT32_MAX, &iv,
                      err)) < 0)
        goto fail;
    if (rc)
        r->max_tokens = (int32_t)iv;

    if (get_num(root, "temperature", 0, 0, 2, &r->sp.temperature, err) < 0 ||
        get_num(root, "top_p", 0, 1, 1, &r->sp.top_p, err) < 0 ||
        get_num(root, "min_p", 0, 0, 1, &r->sp.min_p, err) < 0 ||
        get_num(root, "presence_penalty", -2, 0, 2, &r->sp.presence_penalty,
                err) < 0 ||
        get_num(root, "frequency_penalty", -2, 0, 2,
                &r->sp.frequency_penalty, err) < 0 ||
        get_num(root, "repetition_penalty", 0, 1, 10, &r->sp.repeat_penalty,
                err) < 0 ||
        get_num(root, "repeat_penalty", 0, 1, 10, &r->sp.repeat_penalty,
                err) < 0)
        goto fail;
    if ((rc = get_int(root, "top_k", 0, 1 << 20, &iv, err)) < 0)
        goto fail;
    if (rc)
        r->sp.top_k = (int32_t)iv;
    if ((rc = get_int(root, "seed", INT64_MIN, INT64_MAX, &iv, err)) < 0)
        goto fail;
    if (rc) {
        r->sp.seed = (uint64_t)iv;
        r->seed_set = 1;
    }
    if ((rc = get_int(root, "n", 1, lim->max_n, &iv, err)) < 0)
        goto fail;
    if (rc)
        r->n = (int32_t)iv;
    if (get_bool(root, "stream", &r->stream, err) < 0)
        goto fail;

    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            BAD(400, "stream_options", "invalid_type",
                "Invalid type for 'stream_options': expected an object.");
        if (!r->stream)
            BAD(400, "stream_options", "invalid_value",
                "The 'stream_options' parameter is only allowed when "
                "'stream' is enabled.");
        if (get_bool(so, "include_usage", &r->include_usage, err) < 0) {
            snprintf(err->param, sizeof err->param,
                     "stream_options.include_usage");
            goto fail;
        }
    }

    json_t *stop = json_object_get(root, "stop");
    if (stop && !json_is_null(stop)) {
        if (json_is_string(stop)) {
            if (json_string_length(stop) == 0)
                BAD(400, "stop", "invalid_value",
                    "Invalid 'stop': empty string.");
            if (lim->max_stop < 1)
                BAD(400, "stop", "array_above_max_length",
                    "Invalid 'stop': this server allows no stop strings.");
            if (!(r->stop[0] = qd_strdup(json_string_value(stop))))
                goto oom;
            r->n_stop = 1;
        } else if (json_is_array(stop)) {
            size_t i;
            json_t *s;
            int32_t max = QD_MIN(lim->max_stop, QD_SCHED_MAX_STOP);
            if ((int64_t)json_array_size(stop) > max)
                BAD(400, "stop", "array_above_max_length",
                    "Invalid 'stop': array too long. Expected an array with "
                    "maximum length %d, but got an array with length %zu "
                    "instead.",
                    max, json_array_size(stop));
            json_array_foreach(stop, i, s)
            {
                if (!json_is_string(s))
                    BAD(400, "stop", "invalid_type",
                        "Invalid type for 'stop[%zu]': expected a string.",
                        i);
                if (json_string_length(s) == 0)
                    BAD(400, "stop", "invalid_value",
                        "Invalid 'stop[%zu]': empty string.", i);
                if (!(r->stop[r->n_stop] = qd_strdup(json_string_value(s))))
                    goto oom;
                r->n_stop++;
            }
        } else {
            BAD(400, "stop", "invalid_type",
                "Invalid type for 'stop': expected a string or an array of "
                "strings.");
        }
    }

    json_t *lb = json_object_get(root, "logit_bias");
    if (lb && !json_is_null(lb)) {
        if (!json_is_object(lb))
            BAD(400, "logit_bias", "invalid_type",
                "Invalid type for 'logit_bias': expected an object.");
        size_t n = json_object_size(lb);
        if (n > 300)
            BAD(400, "logit_bias", "invalid_value",
                "Invalid 'logit_bias': at most 300 entries.");
        if (n && !(r->bias = qd_calloc(n, sizeof *r->bias)))
            goto oom;
        const char *key;
        json_t *v;
        json_object_foreach(lb, key, v)
        {
            char *end;
            long long id = strtoll(key, &end, 10);
            if (!*key || *end || id < 0 || id > INT32_MAX)
                BAD(400, "logit_bias", "invalid_value",
                    "Invalid key in 'logit_bias': '%s' is not a token id.",
                    key);
            if (!json_is_number(v))
                BAD(400, "logit_bias", "invalid_type",
                    "Invalid type for 'logit_bias[%s]': expected a number.",
                    key);
            double b = json_number_value(v);
            if (b < -100 || b > 100)
                BAD(400, "logit_bias", "invalid_value",
                    "Invalid 'logit_bias[%s]': %g is outside [-100, 100].",
                    key, b);
            r->bias[r->n_bias].tok = (int32_t)id;
            r->bias[r->n_bias].bias = (float)b;
            r->n_bias++;
        }
        r->sp.logit_bias = r->bias;
        r->sp.n_logit_bias = r->n_bias;
    }

    if (chat) {
        if (get_bool(root, "logprobs", &r->logprobs, err) < 0)
            goto fail;
        if ((rc = get_int(root, "top_logprobs", 0, QD_SAMPLER_MAX_TOP, &iv,
                          err)) < 0)
            goto fail;
        if (rc) {
            if (!r->logprobs)
                BAD(400, "top_logprobs", "invalid_value",
                    "'top_logprobs' requires 'logprobs' to be true.");
            r->top_logprobs = (int32_t)iv;
        }
    } else {
        /* Completions: logprobs is an integer 0..5 (OpenAI's limit). */
        if ((rc = get_int(root, "logprobs", 0, 5, &iv, err)) < 0)
            goto fail;
        if (rc) {
            r->logprobs = 1;
            r->top_logprobs = (int32_t)iv;
        }
    }

    json_t *user = json_object_get(root, "user");
    if (user && !json_is_null(user)) {
        if (!json_is_string(user))
            BAD(400, "user", "invalid_type",
                "Invalid type for 'user': expected a string.");
        if (!(r->user = qd_strdup(json_string_value(user))))
            goto oom;
    }
    json_decref(root);
    return 0;
oom:
    qd_api_err_set(err, 500, "server_error", NULL, NULL, "out of memory");
fail:
    json_decref(root);
    qd_gen_req_close(r);
    return QD_EINVAL;
}

int qd_gen_req_check_vocab(const qd_gen_req_t *r, int32_t n_vocab,
                           qd_api_err_t *err)
{
    for (int32_t i = 0; i < r->n_bias; i++) {
        if (r->bias[i].tok >= n_vocab) {
            qd_api_err_set(err, 400, "invalid_request_error", "logit_bias",
                           "invalid_value",
                           "Invalid key in 'logit_bias': token id %d is "
                           "outside the vocabulary (0..%d).",
                           r->bias[i].tok, n_vocab - 1);
            return QD_EINVAL;
        }
    }
    for (int32_t i = 0; i < r->n_prompt_toks; i++) {
        if (r->prompt_toks[i] >= n_vocab) {
            qd_api_err_set(err, 400, "invalid_request_error", "prompt",
                           "invalid_value",
                           "Invalid 'prompt': token id %d at %d is outside "
                           "the vocabulary (0..%d).",
                           r->prompt_toks[i], i, n_vocab - 1);
            return QD_EINVAL;
        }
    }
    return 0;
}

void qd_gen_req_close(qd_gen_req_t *r)
{
    if (!r)
        return;
    qd_free(r->model);
    json_decref(r->messages);
    qd_free(r->prompt);
    qd_free(r->prompt_toks);
    for (int32_t i = 0; i < r->n_stop; i++)
        qd_free(r->stop[i]);
    qd_free(r->bias);
    qd_free(r->user);
    memset(r, 0, sizeof *r);
}
