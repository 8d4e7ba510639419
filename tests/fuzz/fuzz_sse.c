/*
 * fuzz_sse.c — libFuzzer target for the UTF-8-safe stream chunking and SSE
 * framing of src/api: text arrives in arbitrary pieces (as token pieces
 * do); each step releases only the prefix qd_utf8_complete_len() calls
 * complete, wraps it in a JSON string as the API does (U+FFFD when jansson
 * refuses the bytes) and appends it with qd_sse_append(). The result must
 * frame correctly: every event is "data: <one line of JSON>\n\n", and when
 * the input was valid UTF-8 the decoded events concatenate back to it.
 *
 * Input: a sequence of [len byte][len % 8 bytes of text].
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai.h"
#include "fuzz_util.h"
#include "quantd/common.h"

static void emit(char **sse, size_t *len, size_t *cap, const char *s, size_t n)
{
    json_t *txt = json_stringn(s, n);
    if (!txt)
        txt = json_string("\xEF\xBF\xBD");
    json_t *j = json_pack("{s:[{s:i,s:{s:o}}]}", "choices", "index", 0,
                          "delta", "content", txt);
    char *d = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!d)
        __builtin_trap();
    if (qd_sse_append(sse, len, cap, d, strlen(d)))
        __builtin_trap();
    free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *pend = malloc(size + 1), *all = malloc(size + 1);
    size_t n_pend = 0, n_all = 0;
    char *sse = NULL;
    size_t len = 0, cap = 0;
    size_t i = 0;
    while (i < size) {
        size_t k = data[i++] % 8;
        if (k > size - i)
            k = size - i;
        memcpy(pend + n_pend, data + i, k);
        memcpy(all + n_all, data + i, k);
        n_pend += k;
        n_all += k;
        i += k;
        size_t c = qd_utf8_complete_len(pend, n_pend);
        if (c > n_pend || n_pend - c > 3)
            __builtin_trap();
        if (c) {
            emit(&sse, &len, &cap, pend, c);
            memmove(pend, pend + c, n_pend - c);
            n_pend -= c;
        }
    }
    if (n_pend)
        emit(&sse, &len, &cap, pend, n_pend);

    /* Parse the stream back. */
    char *got = malloc(n_all * 3 + 16);
    size_t n_got = 0;
    size_t p = 0;
    while (p < len) {
        if (len - p < 8 || memcmp(sse + p, "data: ", 6))
            __builtin_trap();
        char *nl = memchr(sse + p, '\n', len - p);
        if (!nl || (size_t)(nl - sse) + 1 >= len || nl[1] != '\n')
            __builtin_trap(); /* a raw newline inside the payload */
        json_t *j = json_loadb(sse + p + 6, (size_t)(nl - sse) - p - 6,
                               JSON_ALLOW_NUL, NULL);
        json_t *t = json_object_get(
            json_object_get(json_array_get(json_object_get(j, "choices"), 0),
                            "delta"),
            "content");
        if (!json_is_string(t))
            __builtin_trap();
        memcpy(got + n_got, json_string_value(t), json_string_length(t));
        n_got += json_string_length(t);
        json_decref(j);
        p = (size_t)(nl - sse) + 2;
    }
    /* jansson accepts exactly the strict UTF-8 our validator does (and
     * NUL bytes through json_stringn). */
    if (fz_utf8_valid(all, n_all) && (n_got != n_all || memcmp(got, all, n_all)))
        __builtin_trap();
    free(got);
    qd_free(sse);
    free(pend);
    free(all);
    return 0;
}
