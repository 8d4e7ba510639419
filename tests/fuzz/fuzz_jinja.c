/*
 * fuzz_jinja.c — libFuzzer target for the chat-template interpreter:
 * compile the input as a template and render it with tight limits. When
 * the input holds a NUL byte, the text after it is the JSON object of
 * variables; otherwise a fixed chat (system/user/assistant messages, tools,
 * bos/eos tokens) is used. Output must respect max_output_bytes and be
 * NUL-terminated at out_len.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "api/jinja.h"
#include "quantd/common.h"

static json_t *default_vars;

static json_t *make_vars(void)
{
    return json_loads(
        "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"Hi \\u00e9\\ud83d\\ude00\"},"
        "{\"role\":\"assistant\",\"content\":\"Hello\",\"tool_calls\":[{"
        "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
        "{\"x\":1}}}]},{\"role\":\"tool\",\"content\":\"42\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"t\"}]}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"parameters\":{\"type\":\"object\"}}}],"
        "\"add_generation_prompt\":true,\"bos_token\":\"<s>\","
        "\"eos_token\":\"</s>\"}",
        0, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!default_vars)
        default_vars = make_vars();
    const char *tmpl = (const char *)data;
    size_t tlen = size;
    json_t *vars = NULL;
    const uint8_t *nul = memchr(data, 0, size);
    if (nul) {
        tlen = (size_t)(nul - data);
        vars = json_loadb((const char *)nul + 1, size - tlen - 1, 0, NULL);
        if (vars && !json_is_object(vars)) {
            json_decref(vars);
            vars = NULL;
        }
    }
    qd_jinja_limits_t lim = {.max_output_bytes = 1 << 16,
                             .max_memory_bytes = 8 << 20,
                             .max_steps = 200000,
                             .max_depth = 64,
                             .now = 1700000000};
    qd_jinja_t *t = NULL;
    if (qd_jinja_compile(tmpl, tlen, &t) == 0) {
        char *out = NULL;
        size_t n = 0;
        int rc = qd_jinja_exec(t, vars ? vars : default_vars, &lim, &out, &n);
        if (rc == 0) {
            if (!out || n > lim.max_output_bytes || out[n] != '\0')
                __builtin_trap();
            qd_free(out);
        } else if (out) {
            __builtin_trap();
        }
        qd_jinja_free(t);
    }
    json_decref(vars);
    return 0;
}
