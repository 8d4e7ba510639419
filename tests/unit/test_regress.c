/*
 * test_regress.c — inputs that once broke (or nearly broke) a parser, kept
 * in the normal suite. Each test names where the input came from: a fuzz
 * target (tests/fuzz/) or an abuse test (tests/integration/test_abuse.c).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai.h"
#include "quantd/common.h"

static const qd_api_limits_t LIM = {.max_n = 8, .max_stop = 4,
                                    .max_json_depth = 32};

static int parse(const char *body, size_t len, int chat, qd_api_err_t *e)
{
    qd_gen_req_t r;
    memset(e, 0, sizeof *e);
    int rc = qd_gen_req_parse(&LIM, body, len, chat, &r, e);
    if (rc == 0) {
        /* what the scheduler would refuse (a 500) must not get through */
        for (int32_t i = 0; i < r.n_stop; i++)
            cr_assert(r.stop[i] && r.stop[i][0], "empty stop string %d", i);
        cr_assert(r.n >= 1 && r.n <= LIM.max_n);
        qd_gen_req_close(&r);
    } else {
        cr_assert(e->status >= 400 && e->status < 500, "status %d",
                  e->status);
    }
    return rc;
}

/* fuzz_request: a stop string made of a NUL escape would reach the
 * scheduler as "" (strdup stops at the NUL) and fail there. jansson
 * refuses \u0000 without JSON_ALLOW_NUL; keep it that way. */
Test(regress, request_stop_nul_escape)
{
    qd_api_err_t e;
    const char *b = "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":[\"\\u0000a\"]}";
    cr_expect_neq(parse(b, strlen(b), 0, &e), 0);
    b = "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":\"\\u0000\"}";
    cr_expect_neq(parse(b, strlen(b), 0, &e), 0);
}

/* test_abuse json_bodies_4xx: depth, numbers and surrogates are 400s. */
Test(regress, request_hostile_json)
{
    static const char *const bodies[] = {
        "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":1e999}",
        "{\"model\":\"m\",\"prompt\":\"x\",\"seed\":18446744073709551616}",
        "{\"model\":\"m\",\"prompt\":\"\\ud800\"}",
        "{\"model\":\"m\",\"prompt\":\"x\",\"n\":1000000}",
        "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":2147483648}",
        "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":100000}",
        "{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\"-1\":1}}",
        "{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\"4294967296\":1}}",
        "[1,2,3]",
        "7",
    };
    qd_api_err_t e;
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++)
        cr_expect_neq(parse(bodies[i], strlen(bodies[i]), 0, &e), 0, "%s",
                      bodies[i]);
    /* nesting 10,000 deep is refused before jansson recurses */
    char *deep = malloc(20001);
    memset(deep, '[', 10000);
    memset(deep + 10000, ']', 10000);
    deep[20000] = '\0';
    cr_expect_neq(parse(deep, 20000, 1, &e), 0);
    cr_expect_eq(qd_json_depth(deep, 20000), 10000);
    free(deep);
}

/* fuzz_sse: a chunk ending inside a multi-byte character is held back by
 * at most 3 bytes; stray continuation bytes are not held. */
Test(regress, utf8_complete_len_bounds)
{
    cr_expect_eq(qd_utf8_complete_len("a\xF0\x9F\x98", 4), 1);
    cr_expect_eq(qd_utf8_complete_len("a\xF0\x9F\x98\x80", 5), 5);
    cr_expect_eq(qd_utf8_complete_len("\x80\x80\x80\x80\x80", 5), 5);
    cr_expect_eq(qd_utf8_complete_len("\xC3", 1), 0);
    cr_expect_eq(qd_utf8_complete_len("\xFF", 1), 1);
    cr_expect_eq(qd_utf8_complete_len("", 0), 0);
}

/* fuzz_jinja found: select/reject/selectattr called without arguments
 * offset a NULL argument array ("applying zero offset to null pointer").
 * clang's UBSan reports that, gcc's does not: the input itself is in the
 * fuzz corpus, replayed by `make fuzz-smoke` (clang) in CI. */
#include "api/jinja.h"
Test(regress, jinja_select_without_arguments)
{
    static const char *const tmpls[] = {
        "{{ [0, 1, 2] | select | list }}",
        "{{ [0, 1, 2] | reject | list }}",
        "{{ messages | selectattr('role') | list | length }}",
        "{{ messages | rejectattr('role') | list | length }}",
        "{{ undefined_name | reject | list }}", /* the fuzzer's case */
    };
    static const char *const want[] = {"[1, 2]", "[0]", "1", "0", "[]"};
    json_t *vars = json_pack("{s:[{s:s}]}", "messages", "role", "user");
    for (size_t i = 0; i < sizeof tmpls / sizeof *tmpls; i++) {
        char *out = NULL;
        size_t n = 0;
        int rc = qd_jinja_render(tmpls[i], strlen(tmpls[i]), vars, NULL, &out,
                                 &n);
        cr_assert_eq(rc, 0, "%s: %s", tmpls[i], qd_errmsg());
        cr_expect_str_eq(out, want[i], "%s", tmpls[i]);
        qd_free(out);
    }
    json_decref(vars);
}
