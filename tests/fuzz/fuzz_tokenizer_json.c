/*
 * fuzz_tokenizer_json.c — libFuzzer target for the Hugging Face
 * tokenizer.json loader (qd_tokenizer_from_hf). The input up to the first
 * NUL byte is tokenizer.json; what follows, if anything, is
 * tokenizer_config.json. Both reach the loader as memory files. An
 * accepted tokenizer must tokenize and detokenize a few strings.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "quantd/common.h"
#include "quantd/tokenizer.h"

static int fd_tok = -1, fd_cfg = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char p_tok[64], p_cfg[64];
    const uint8_t *nul = memchr(data, 0, size);
    size_t n_tok = nul ? (size_t)(nul - data) : size;
    fd_tok = fz_memfile(fd_tok, data, n_tok, p_tok, sizeof p_tok);
    if (fd_tok < 0)
        return 0;
    if (nul) {
        fd_cfg = fz_memfile(fd_cfg, nul + 1, size - n_tok - 1, p_cfg,
                            sizeof p_cfg);
        if (fd_cfg < 0)
            return 0;
    }
    qd_tokenizer_t *t = NULL;
    if (qd_tokenizer_from_hf(p_tok, nul ? p_cfg : NULL, &t)) {
        if (t || !qd_errmsg()[0])
            __builtin_trap();
        return 0;
    }
    static const char *const texts[] = {"ab ab", "<s>hello</s>", "\xC3\xA9 \xF0\x9F\x98\x80", "  \n\t 123"};
    int32_t nv = qd_tokenizer_n_vocab(t);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t toks[256];
        int n = qd_tokenize(t, texts[i], strlen(texts[i]), 1, 1, toks, 256);
        if (n > 256)
            n = 256;
        qd_detok_t d;
        qd_detok_init(&d, t);
        char out[256 * 128 + 128];
        size_t o = 0;
        for (int k = 0; k < n; k++) {
            if (toks[k] < 0 || toks[k] >= nv)
                __builtin_trap();
            int m = qd_detok_push(&d, t, toks[k], out + o, 128);
            if (m < 0 || m > 128)
                __builtin_trap();
            o += (size_t)m;
        }
        int m = qd_detok_flush(&d, out + o, 128);
        if (m > 0)
            o += (size_t)m;
        if (!fz_utf8_valid(out, o))
            __builtin_trap();
    }
    for (int32_t k = 0; k < nv && k < 64; k++) {
        char piece[64];
        qd_token_to_piece(t, k, piece, sizeof piece, 1);
    }
    qd_tokenizer_destroy(t);
    return 0;
}
