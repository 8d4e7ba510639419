/*
 * test_api.c — request validation (every error case with its exact
 * type/param/code), path normalization, SSE framing, UTF-8 chunking.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "api/api.h"
#include "api/openai.h"
#include "quantd/common.h"

static const qd_api_limits_t LIM = {.max_n = 8, .max_stop = 4,
                                    .max_json_depth = 16};

static void expect_bad(const char *body, int chat, int status,
                       const char *param, const char *code)
{
    qd_gen_req_t r;
    qd_api_err_t e;
    int rc = qd_gen_req_parse(&LIM, body, strlen(body), chat, &r, &e);
    cr_assert_neq(rc, 0, "accepted: %s", body);
    cr_assert_eq(e.status, status, "%s: status %d", body, e.status);
    cr_assert_str_eq(e.type, "invalid_request_error");
    cr_assert_str_eq(e.param, param ? param : "", "%s: param '%s'", body,
                     e.param);
    cr_assert_str_eq(e.code, code, "%s: code '%s'", body, e.code);
}

#define C "{\"model\":\"m\",\"prompt\":\"p\","
#define H "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"

Test(api, validation_errors)
{
    expect_bad("{", 0, 400, NULL, "invalid_json");
    expect_bad("[1]", 0, 400, NULL, "invalid_json");
    expect_bad("{\"prompt\":\"p\"}", 0, 400, "model",
               "missing_required_parameter");
    expect_bad("{\"model\":1,\"prompt\":\"p\"}", 0, 400, "model",
               "invalid_type");
    expect_bad("{\"model\":\"m\"}", 0, 400, "prompt",
               "missing_required_parameter");
    expect_bad("{\"model\":\"m\"}", 1, 400, "messages",
               "missing_required_parameter");
    expect_bad("{\"model\":\"m\",\"messages\":[]}", 1, 400, "messages",
               "empty_array");
    expect_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"king\","
               "\"content\":\"x\"}]}",
               1, 400, "messages[0].role", "invalid_value");
    expect_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
               "\"content\":5}]}",
               1, 400, "messages[0].content", "invalid_type");
    expect_bad(C "\"temperature\":-0.1}", 0, 400, "temperature",
               "decimal_below_min_value");
    expect_bad(C "\"temperature\":2.01}", 0, 400, "temperature",
               "decimal_above_max_value");
    expect_bad(C "\"temperature\":\"hot\"}", 0, 400, "temperature",
               "invalid_type");
    expect_bad(C "\"top_p\":0}", 0, 400, "top_p", "decimal_below_min_value");
    expect_bad(C "\"top_p\":1.5}", 0, 400, "top_p", "decimal_above_max_value");
    expect_bad(C "\"n\":9}", 0, 400, "n", "integer_above_max_value");
    expect_bad(C "\"n\":0}", 0, 400, "n", "integer_below_min_value");
    expect_bad(C "\"max_tokens\":0}", 0, 400, "max_tokens",
               "integer_below_min_value");
    expect_bad(C "\"max_tokens\":1.5}", 0, 400, "max_tokens", "invalid_type");
    expect_bad(H "\"max_completion_tokens\":-3}", 1, 400,
               "max_completion_tokens", "integer_below_min_value");
    expect_bad(C "\"logprobs\":6}", 0, 400, "logprobs",
               "integer_above_max_value");
    expect_bad(H "\"logprobs\":1}", 1, 400, "logprobs", "invalid_type");
    expect_bad(H "\"top_logprobs\":3}", 1, 400, "top_logprobs",
               "invalid_value");
    expect_bad(H "\"logprobs\":true,\"top_logprobs\":21}", 1, 400,
               "top_logprobs", "integer_above_max_value");
    expect_bad(C "\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 0, 400, "stop",
               "array_above_max_length");
    expect_bad(C "\"stop\":[\"a\",3]}", 0, 400, "stop", "invalid_type");
    expect_bad(C "\"stop\":\"\"}", 0, 400, "stop", "invalid_value");
    expect_bad(C "\"logit_bias\":{\"12\":101}}", 0, 400, "logit_bias",
               "invalid_value");
    expect_bad(C "\"logit_bias\":{\"x\":1}}", 0, 400, "logit_bias",
               "invalid_value");
    expect_bad(C "\"logit_bias\":{\"-1\":1}}", 0, 400, "logit_bias",
               "invalid_value");
    expect_bad(C "\"presence_penalty\":2.5}", 0, 400, "presence_penalty",
               "decimal_above_max_value");
    expect_bad(C "\"stream\":\"yes\"}", 0, 400, "stream", "invalid_type");
    expect_bad(C "\"stream_options\":{\"include_usage\":true}}", 0, 400,
               "stream_options", "invalid_value");
    expect_bad(C "\"echo\":true}", 0, 400, "echo", "unsupported_value");
    expect_bad("{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", 0, 400, "prompt",
               "invalid_value");
    expect_bad(C "\"x\":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}", 0, 400, NULL,
               "invalid_json");
}

Test(api, valid_request)
{
    const char *b =
        H "\"max_tokens\":7,\"temperature\":0,\"top_p\":0.5,\"top_k\":3,"
          "\"seed\":42,\"n\":2,\"stop\":\"END\",\"logit_bias\":{\"5\":-100},"
          "\"logprobs\":true,\"top_logprobs\":2,\"stream\":true,"
          "\"stream_options\":{\"include_usage\":true},\"user\":\"u\"}";
    qd_gen_req_t r;
    qd_api_err_t e;
    cr_assert_eq(qd_gen_req_parse(&LIM, b, strlen(b), 1, &r, &e), 0, "%s",
                 e.message);
    cr_assert_eq(r.max_tokens, 7);
    cr_assert_float_eq(r.sp.temperature, 0, 0);
    cr_assert_eq(r.sp.top_k, 3);
    cr_assert_eq(r.sp.seed, 42);
    cr_assert_eq(r.seed_set, 1);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.n_stop, 1);
    cr_assert_str_eq(r.stop[0], "END");
    cr_assert_eq(r.n_bias, 1);
    cr_assert_eq(r.bias[0].tok, 5);
    cr_assert_eq(r.top_logprobs, 2);
    cr_assert_eq(r.stream, 1);
    cr_assert_eq(r.include_usage, 1);
    cr_assert_eq(qd_gen_req_check_vocab(&r, 6, &e), 0);
    cr_assert_neq(qd_gen_req_check_vocab(&r, 5, &e), 0);
    cr_assert_str_eq(e.param, "logit_bias");
    qd_gen_req_close(&r);

    const char *t = "{\"model\":\"m\",\"prompt\":[1,2,3]}";
    cr_assert_eq(qd_gen_req_parse(&LIM, t, strlen(t), 0, &r, &e), 0);
    cr_assert_eq(r.n_prompt_toks, 3);
    cr_assert_eq(r.max_tokens, -1);
    qd_gen_req_close(&r);
}

Test(api, error_json_shape)
{
    qd_api_err_t e;
    qd_api_err_set(&e, 404, "invalid_request_error", "model",
                   "model_not_found", "no %s", "x");
    size_t n;
    char *s = qd_api_err_json(&e, &n);
    cr_assert_str_eq(s, "{\"error\":{\"message\":\"no x\",\"type\":"
                        "\"invalid_request_error\",\"param\":\"model\","
                        "\"code\":\"model_not_found\"}}");
    cr_assert_eq(n, strlen(s));
    qd_free(s);
    qd_api_err_set(&e, 400, "invalid_request_error", NULL, NULL, "m");
    s = qd_api_err_json(&e, NULL);
    cr_assert(strstr(s, "\"param\":null,\"code\":null"));
    qd_free(s);
}

Test(api, normalize_path)
{
    char out[256];
    static const char *cases[][2] = {
        {"/v1/models", "/v1/models"},   {"//v1//models/", "/v1/models"},
        {"/v1%2Fmodels", "/v1/models"}, {"/v1/../v1/models", "/v1/models"},
        {"/health/../v1/models", "/v1/models"},
        {"/../../v1/./models", "/v1/models"},
        {"/", "/"},                     {"/health?x=1", "/health"},
        {"/%2e%2e/health", "/health"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cr_assert_eq(qd_api_normalize_path(cases[i][0], out, sizeof out), 0);
        cr_assert_str_eq(out, cases[i][1], "%s", cases[i][0]);
    }
    cr_assert_neq(qd_api_normalize_path("/a%2", out, sizeof out), 0);
    cr_assert_neq(qd_api_normalize_path("/a%zz", out, sizeof out), 0);
    cr_assert_neq(qd_api_normalize_path("/a%00b", out, sizeof out), 0);
}

Test(api, sse_and_utf8)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    cr_assert_eq(qd_sse_append(&buf, &len, &cap, "{\"a\":1}", 7), 0);
    cr_assert_eq(qd_sse_append(&buf, &len, &cap, "[DONE]", 6), 0);
    cr_assert_eq(len, strlen("data: {\"a\":1}\n\ndata: [DONE]\n\n"));
    cr_assert(!memcmp(buf, "data: {\"a\":1}\n\ndata: [DONE]\n\n", len));
    qd_free(buf);
    /* "é" = C3 A9, "€" = E2 82 AC, "😀" = F0 9F 98 80 */
    cr_assert_eq(qd_utf8_complete_len("ab", 2), 2);
    cr_assert_eq(qd_utf8_complete_len("a\xC3", 2), 1);
    cr_assert_eq(qd_utf8_complete_len("a\xC3\xA9", 3), 3);
    cr_assert_eq(qd_utf8_complete_len("\xE2\x82", 2), 0);
    cr_assert_eq(qd_utf8_complete_len("x\xE2\x82\xAC", 4), 4);
    cr_assert_eq(qd_utf8_complete_len("x\xF0\x9F\x98", 4), 1);
    cr_assert_eq(qd_utf8_complete_len("\xF0\x9F\x98\x80", 4), 4);
    cr_assert_eq(qd_json_depth("{\"a\":\"[[[\",\"b\":[{}]}", 20), 3);
    char id[64];
    cr_assert_eq(qd_api_random_id("chatcmpl-", id, sizeof id), 0);
    cr_assert_eq(strlen(id), 9 + 24);
    char id2[64];
    qd_api_random_id("chatcmpl-", id2, sizeof id2);
    cr_assert_str_neq(id, id2);
}
