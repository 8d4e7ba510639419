/*
 * fuzz_request.c — libFuzzer target for the OpenAI request validator
 * (qd_gen_req_parse in src/api/openai.c). The first byte picks chat or
 * completions and the vocabulary size for qd_gen_req_check_vocab; the rest
 * is the request body. Every rejection must carry a 4xx status and an
 * error object that serializes; every acceptance must respect the limits.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "api/openai.h"
#include "quantd/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int chat = data[0] & 1;
    int32_t n_vocab = (data[0] & 2) ? 32000 : 260;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    qd_api_limits_t lim = {.max_n = 8, .max_stop = 4, .max_json_depth = 32};
    qd_gen_req_t r;
    qd_api_err_t e;
    memset(&e, 0, sizeof e);
    (void)qd_json_depth(body, len);
    int rc = qd_gen_req_parse(&lim, body, len, chat, &r, &e);
    if (rc) {
        if (e.status < 400 || e.status > 499 || !e.type || !e.message[0])
            __builtin_trap();
        size_t n;
        char *s = qd_api_err_json(&e, &n);
        if (s) {
            json_t *j = json_loadb(s, n, 0, NULL);
            if (!j || !json_is_object(json_object_get(j, "error")))
                __builtin_trap();
            json_decref(j);
            qd_free(s);
        }
        return 0;
    }
    if (r.n < 1 || r.n > lim.max_n || r.n_stop < 0 || r.n_stop > lim.max_stop)
        __builtin_trap();
    if (!r.model || (chat && !json_is_array(r.messages)))
        __builtin_trap();
    if (r.max_tokens < -1 || r.top_logprobs < 0 || r.n_bias < 0)
        __builtin_trap();
    for (int32_t i = 0; i < r.n_stop; i++)
        if (!r.stop[i] || !r.stop[i][0])
            __builtin_trap();
    memset(&e, 0, sizeof e);
    if (qd_gen_req_check_vocab(&r, n_vocab, &e)) {
        if (e.status < 400 || e.status > 499)
            __builtin_trap();
    } else {
        for (int32_t i = 0; i < r.n_bias; i++)
            if (r.bias[i].tok < 0 || r.bias[i].tok >= n_vocab)
                __builtin_trap();
        for (int32_t i = 0; i < r.n_prompt_toks; i++)
            if (r.prompt_toks[i] < 0 || r.prompt_toks[i] >= n_vocab)
                __builtin_trap();
    }
    qd_gen_req_close(&r);
    return 0;
}
