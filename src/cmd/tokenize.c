/*
 * tokenize.c — `quantd tokenize -m MODEL.gguf|tokenizer.json [--no-bos]
 * [--ids] [--no-parse-special]`: reads text on stdin and prints its
 * tokens, either as one line of space-separated ids (--ids) or one
 * `id 'piece'` per line. Special tokens (BOS, and EOS where the model asks
 * for it) are added unless --no-bos; special-token text in the input
 * becomes special tokens unless --no-parse-special. For a tokenizer.json,
 * the tokenizer_config.json next to it is read too when present.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "quantd/common.h"
#include "quantd/gguf.h"
#include "quantd/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: quantd tokenize -m MODEL.gguf|tokenizer.json "
               "[--no-bos] [--ids] [--no-parse-special]\n"
               "  reads text on stdin and prints its token ids\n"
               "  --ids               one line of space-separated ids\n"
               "  --no-bos            add no BOS (nor EOS) even if the model "
               "asks\n"
               "  --no-parse-special  special-token text is plain text\n");
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* All of stdin in a malloc'd buffer (freed by the caller); NULL on error. */
static char *read_stdin(size_t *n)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, stdin);
        if (len < cap) {
            if (ferror(stdin)) {
                free(buf);
                return NULL;
            }
            break;
        }
        char *nb = realloc(buf, cap * 2);
        if (!nb)
            free(buf);
        buf = nb;
        cap *= 2;
    }
    *n = len;
    return buf;
}

static void print_piece(const char *p, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\\' || c == '\'')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7F)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
}

static int load(const char *model, qd_gguf_t **g, qd_tokenizer_t **t)
{
    if (!ends_with(model, ".json")) {
        int rc = qd_gguf_open(model, g);
        return rc ? rc : qd_tokenizer_from_gguf(*g, t);
    }
    char *cfg = malloc(strlen(model) + sizeof("tokenizer_config.json"));
    if (!cfg)
        return QD_ENOMEM;
    strcpy(cfg, model);
    char *slash = strrchr(cfg, '/');
    strcpy(slash ? slash + 1 : cfg, "tokenizer_config.json");
    FILE *f = fopen(cfg, "rb");
    if (f)
        fclose(f);
    int rc = qd_tokenizer_from_hf(model, f ? cfg : NULL, t);
    free(cfg);
    return rc;
}

int qd_cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL;
    int ids = 0, add_special = 1, parse_special = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (++i >= argc) {
                usage(stderr);
                return 2;
            }
            model = argv[i];
        } else if (!strcmp(argv[i], "--ids")) {
            ids = 1;
        } else if (!strcmp(argv[i], "--no-bos")) {
            add_special = 0;
        } else if (!strcmp(argv[i], "--no-parse-special")) {
            parse_special = 0;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "quantd tokenize: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!model) {
        usage(stderr);
        return 2;
    }

    qd_gguf_t *g = NULL;
    qd_tokenizer_t *t = NULL;
    char *text = NULL;
    int32_t *toks = NULL;
    int status = 1, n = 0;
    int rc = load(model, &g, &t);
    if (rc) {
        fprintf(stderr, "quantd tokenize: %s: %s: %s\n", model,
                qd_strerror(rc), qd_errmsg());
        goto out;
    }
    size_t len;
    if (!(text = read_stdin(&len))) {
        fprintf(stderr, "quantd tokenize: cannot read stdin\n");
        goto out;
    }
    for (int cap = 1024;;) {
        int32_t *nt = realloc(toks, sizeof(int32_t) * (size_t)cap);
        if (!nt) {
            fprintf(stderr, "quantd tokenize: out of memory\n");
            goto out;
        }
        toks = nt;
        n = qd_tokenize(t, text, len, add_special, parse_special, toks, cap);
        if (n < 0) {
            fprintf(stderr, "quantd tokenize: %s: %s\n", qd_strerror(n),
                    qd_errmsg());
            goto out;
        }
        if (n <= cap)
            break;
        cap = n;
    }
    if (ids) {
        for (int i = 0; i < n; i++)
            printf("%s%d", i ? " " : "", toks[i]);
        putchar('\n');
    } else {
        char piece[1024];
        for (int i = 0; i < n; i++) {
            int k = qd_token_to_piece(t, toks[i], piece, sizeof(piece), 1);
            printf("%6d '", toks[i]);
            print_piece(piece, QD_MIN(k, (int)sizeof(piece)));
            puts("'");
        }
    }
    status = fflush(stdout) ? 1 : 0;
out:
    free(toks);
    free(text);
    qd_tokenizer_destroy(t);
    qd_gguf_close(g);
    return status;
}
