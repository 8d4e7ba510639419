/*
 * openai.h — the OpenAI wire format: request validation and response JSON.
 *
 * Pure functions over jansson values, with no I/O and no model: the API
 * layer (api.c) parses a body into qd_gen_req_t, checks it against the
 * model, submits it, and builds responses and stream chunks with the
 * builders below. Everything here is unit-tested in tests/unit/test_api.c.
 *
 * Validation rejects out-of-range values (never clamps) with OpenAI's error
 * object: {"error": {"message", "type", "param", "code"}}.
 */
#ifndef QUANTD_API_OPENAI_H
#define QUANTD_API_OPENAI_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "quantd/sampler.h"
#include "quantd/sched.h"

/* An API error: HTTP status and OpenAI's error fields. */
typedef struct {
    int status;        /* 400, 401, 404, ... */
    const char *type;  /* "invalid_request_error", "server_error", ... */
    char param[64];    /* "" → null */
    char code[48];     /* "" → null */
    char message[512];
} qd_api_err_t;

void qd_api_err_set(qd_api_err_t *e, int status, const char *type,
                    const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* {"error": {...}} as a qd_malloc'd string (NULL on OOM). */
char *qd_api_err_json(const qd_api_err_t *e, size_t *len);
/* Route jansson's allocations through qd_malloc/qd_free (process-wide;
 * called by qd_api_create). */
void qd_api_json_init(void);
/* json_loadb that never returns a value built after a failed allocation:
 * NULL with *oom = 1 then (see openai.c). */
json_t *qd_api_json_loadb(const char *buf, size_t len, json_error_t *e,
                          int *oom);
/* Compact JSON text of j (qd_malloc'd, NUL-terminated, *len bytes if len),
 * or NULL if any allocation failed: never a partial text. */
char *qd_api_json_dump(const json_t *j, size_t *len);

typedef struct {
    int32_t max_n;
    int32_t max_stop;
    int32_t max_json_depth;
} qd_api_limits_t;

/* A parsed /v1/completions or /v1/chat/completions request. */
typedef struct {
    int chat;
    char *model;
    json_t *messages;    /* chat: the validated array (new reference) */
    char *prompt;        /* completions: text prompt, or NULL */
    int32_t *prompt_toks; /* completions: token-id prompt, or NULL */
    int32_t n_prompt_toks;
    int32_t max_tokens;  /* -1: not given */
    qd_sampling_params_t sp;
    int seed_set;
    int32_t n;
    int stream;
    int include_usage;
    char *stop[QD_SCHED_MAX_STOP];
    int32_t n_stop;
    qd_logit_bias_t *bias;
    int32_t n_bias;
    int logprobs;        /* 1 if logprobs are requested */
    int32_t top_logprobs;
    int echo;            /* completions: echo (rejected if set, see docs) */
    char *user;
} qd_gen_req_t;

/*
 * Parse and validate a request body. chat: 1 for chat/completions.
 * Returns 0, or fills *err and returns a negative code; on failure *out is
 * cleaned up. Free with qd_gen_req_close.
 */
int qd_gen_req_parse(const qd_api_limits_t *lim, const char *body,
                     size_t len, int chat, qd_gen_req_t *out,
                     qd_api_err_t *err);
void qd_gen_req_close(qd_gen_req_t *r);
/* Range checks that need the model: logit_bias ids < n_vocab and
 * token-id prompts. */
int qd_gen_req_check_vocab(const qd_gen_req_t *r, int32_t n_vocab,
                           qd_api_err_t *err);

/* Depth of JSON nesting ([ and { outside strings) of a body. */
int qd_json_depth(const char *s, size_t len);
/* Length of the longest prefix of s that ends on a UTF-8 character
 * boundary (an incomplete trailing sequence is left out). */
size_t qd_utf8_complete_len(const char *s, size_t len);
/* "data: <json>\n\n" appended to a growable buffer. */
int qd_sse_append(char **buf, size_t *len, size_t *cap, const char *data,
                  size_t n);

/* Random id "<prefix><24 base62 chars>" (OpenSSL RAND_bytes). */
int qd_api_random_id(const char *prefix, char *out, size_t cap);

/* Usage object: prompt/completion/total tokens + cached_tokens. */
json_t *qd_api_usage_json(int32_t prompt, int32_t completion, int32_t cached);

/* n bytes of generated text as a JSON string; bytes that are not whole
 * UTF-8 characters become U+FFFD. NULL: out of memory. */
json_t *qd_api_json_text(const char *s, size_t n);

/* One logprob entry of a chat response: {token, logprob, bytes,
 * top_logprobs: [{token, logprob, bytes}]} for sample `s`, with token
 * texts from piece(tok). */
typedef int (*qd_piece_fn)(void *ud, int32_t tok, char *buf, int cap);
json_t *qd_api_chat_logprob(const qd_sample_t *s, int32_t n_top,
                            qd_piece_fn piece, void *ud);

#endif /* QUANTD_API_OPENAI_H */
