/*
 * jinja_lex.c — Jinja source text to tokens.
 *
 * Follows jinja2's lexer (jinja2/lexer.py) with trim_blocks=True and
 * lstrip_blocks=True, because whitespace is where chat templates differ
 * most easily from the reference:
 *   - `{%- ` / `{{-` / `{#-` strip all whitespace before the tag;
 *     `-%}` / `-}}` / `-#}` strip all whitespace after it;
 *   - trim_blocks: one newline right after `%}` or `#}` is dropped (not after
 *     `}}`, nor after `{% raw %}`); `+%}` keeps it;
 *   - lstrip_blocks: spaces and tabs between the start of a line and a `{%`
 *     or `{#` are dropped ("start of a line" includes the position just after
 *     a tag end that consumed a newline); `{%+` keeps them;
 *   - `}}` / `%}` end a tag only when brackets are balanced.
 * The caller has already turned \r\n and \r into \n and removed one trailing
 * newline (keep_trailing_newline=False).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jinja_int.h"

typedef struct {
    jj_arena_t *ar;
    const char *src;
    size_t n, pos;
    jj_tok_t *toks;
    size_t n_toks, cap;
    size_t err_pos;
    char *errbuf;
    size_t errbuf_n;
    bool line_starting;
} lexer_t;

static int lex_err(lexer_t *lx, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int lex_err(lexer_t *lx, size_t pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lx->errbuf, lx->errbuf_n, fmt, ap);
    va_end(ap);
    lx->err_pos = pos;
    return QD_EINVAL;
}

static jj_tok_t *push(lexer_t *lx, int type, size_t pos)
{
    if (lx->n_toks == lx->cap) {
        size_t cap = lx->cap ? lx->cap * 2 : 256;
        jj_tok_t *t = jj_grow(lx->ar, lx->toks, lx->cap * sizeof *t, cap * sizeof *t);
        if (!t)
            return NULL;
        lx->toks = t;
        lx->cap = cap;
    }
    jj_tok_t *t = &lx->toks[lx->n_toks++];
    memset(t, 0, sizeof *t);
    t->type = (uint8_t)type;
    t->pos = pos;
    return t;
}

static int push_data(lexer_t *lx, size_t pos, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    jj_tok_t *t = push(lx, TK_DATA, pos);
    if (!t)
        return QD_ENOMEM;
    t->s.p = p;
    t->s.n = n;
    return 0;
}

static bool at(const lexer_t *lx, size_t i, const char *z)
{
    size_t k = strlen(z);
    return i + k <= lx->n && memcmp(lx->src + i, z, k) == 0;
}

static size_t skip_ws(const lexer_t *lx, size_t i)
{
    return i + jj_ws_prefix(lx->src + i, lx->n - i);
}

/*
 * Whitespace control for the text before a tag (jinja2's OptionalLStrip):
 * sign '-' strips all trailing whitespace; otherwise, for block and comment
 * tags, lstrip_blocks drops a whitespace-only tail after the last newline.
 */
static size_t lstrip_text(const lexer_t *lx, const char *text, size_t n, char sign,
                          bool is_var)
{
    if (sign == '-')
        return n - jj_ws_suffix(text, n);
    if (sign == '+' || is_var)
        return n;
    size_t l = n;
    while (l > 0 && text[l - 1] != '\n')
        l--;
    if (l == 0 && !lx->line_starting)
        return n;
    if (l < n && jj_ws_prefix(text + l, n - l) == n - l)
        return l;
    return n;
}

/* Match `{%[-+]?\s*WORD\s*` at i; returns the position after it or 0. */
static size_t match_tag_word(const lexer_t *lx, size_t i, const char *word, char *sign)
{
    if (!at(lx, i, "{%"))
        return 0;
    size_t j = i + 2;
    *sign = 0;
    if (j < lx->n && (lx->src[j] == '-' || lx->src[j] == '+'))
        *sign = lx->src[j++];
    j = skip_ws(lx, j);
    if (!at(lx, j, word))
        return 0;
    j += strlen(word);
    size_t k = skip_ws(lx, j);
    if (k == j && k < lx->n && lx->src[k] != '-' && lx->src[k] != '%' && lx->src[k] != '+')
        return 0; /* e.g. "rawx" */
    return k;
}

/* The end of a raw block: `{%[-+]?\s*endraw\s*(\+%}|-%}\s*|%}\n?)` at i. */
static size_t match_endraw(const lexer_t *lx, size_t i, char *sign)
{
    size_t j = match_tag_word(lx, i, "endraw", sign);
    if (!j)
        return 0;
    if (at(lx, j, "+%}"))
        return j + 3;
    if (at(lx, j, "-%}"))
        return skip_ws(lx, j + 3);
    if (at(lx, j, "%}"))
        return j + 2 + (at(lx, j + 2, "\n") ? 1 : 0);
    return 0;
}

static int lex_raw(lexer_t *lx, size_t body)
{
    for (size_t k = body; k < lx->n; k++) {
        if (lx->src[k] != '{')
            continue;
        char sign;
        size_t end = match_endraw(lx, k, &sign);
        if (!end)
            continue;
        size_t tn = lstrip_text(lx, lx->src + body, k - body, sign, false);
        int rc = push_data(lx, body, lx->src + body, tn);
        if (rc)
            return rc;
        lx->pos = end;
        lx->line_starting = lx->src[end - 1] == '\n';
        return 0;
    }
    return lex_err(lx, body, "missing end of raw directive");
}

static int lex_comment(lexer_t *lx, size_t body)
{
    for (size_t k = body; k < lx->n; k++) {
        size_t end = 0;
        if (at(lx, k, "+#}"))
            end = k + 3;
        else if (at(lx, k, "-#}"))
            end = skip_ws(lx, k + 3);
        else if (at(lx, k, "#}"))
            end = k + 2 + (at(lx, k + 2, "\n") ? 1 : 0);
        if (end) {
            lx->pos = end;
            lx->line_starting = lx->src[end - 1] == '\n';
            return 0;
        }
    }
    return lex_err(lx, body, "missing end of comment tag");
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name0(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* digits with single underscores between them: `(\d+_)*\d+`; returns end. */
static size_t digits(const lexer_t *lx, size_t i)
{
    if (i >= lx->n || !is_digit(lx->src[i]))
        return i;
    while (i < lx->n) {
        if (is_digit(lx->src[i]))
            i++;
        else if (lx->src[i] == '_' && i + 1 < lx->n && is_digit(lx->src[i + 1]))
            i++;
        else
            break;
    }
    return i;
}

static int lex_number(lexer_t *lx, size_t i)
{
    const char *s = lx->src;
    size_t end = digits(lx, i);
    bool is_float = false;
    /* float: digits ((\.digits)?e[+-]?digits | \.digits), not after a '.' */
    if (!(i > 0 && s[i - 1] == '.')) {
        size_t j = end, frac_end = 0;
        if (j < lx->n && s[j] == '.' && j + 1 < lx->n && is_digit(s[j + 1]))
            frac_end = digits(lx, j + 1);
        size_t e = frac_end ? frac_end : end;
        if (e < lx->n && (s[e] == 'e' || s[e] == 'E')) {
            size_t k = e + 1;
            if (k < lx->n && (s[k] == '+' || s[k] == '-'))
                k++;
            size_t ke = digits(lx, k);
            if (ke > k) {
                end = ke;
                is_float = true;
            } else if (frac_end) {
                end = frac_end;
                is_float = true;
            }
        } else if (frac_end) {
            end = frac_end;
            is_float = true;
        }
    }
    char buf[128];
    size_t bn = 0;
    int base = 10;
    size_t start = i;
    if (!is_float && s[i] == '0' && i + 1 < lx->n &&
        strchr("bBoOxX", s[i + 1]) != NULL) {
        char b = (char)(s[i + 1] | 0x20);
        base = b == 'b' ? 2 : b == 'o' ? 8 : 16;
        size_t k = i + 2;
        while (k < lx->n && (is_hex(s[k]) || s[k] == '_'))
            k++;
        start = i + 2;
        end = k;
    }
    for (size_t k = start; k < end; k++) {
        if (s[k] == '_')
            continue;
        if (bn + 1 >= sizeof buf)
            return lex_err(lx, i, "number literal too long");
        buf[bn++] = s[k];
    }
    buf[bn] = 0;
    jj_tok_t *t = push(lx, is_float ? TK_FLOAT : TK_INT, i);
    if (!t)
        return QD_ENOMEM;
    if (is_float) {
        t->f = strtod(buf, NULL);
    } else {
        char *ep;
        errno = 0;
        unsigned long long v = strtoull(buf, &ep, base);
        if (bn == 0 || *ep || errno || v > INT64_MAX)
            return lex_err(lx, i, "invalid or too large integer literal");
        t->i = (int64_t)v;
    }
    lx->pos = end;
    return 0;
}

static int hexval(char c)
{
    if (is_digit(c))
        return c - '0';
    return (c | 0x20) - 'a' + 10;
}

/* A quoted string at i: decode Python escapes into the arena. */
static int lex_string(lexer_t *lx, size_t i)
{
    const char *s = lx->src;
    char q = s[i];
    size_t k = i + 1;
    while (k < lx->n && s[k] != q) {
        if (s[k] == '\\')
            k++;
        k++;
    }
    if (k >= lx->n)
        return lex_err(lx, i, "unterminated string literal");
    size_t end = k;
    char *out = jj_alloc(lx->ar, end - i + 1);
    if (!out)
        return QD_ENOMEM;
    size_t o = 0;
    for (k = i + 1; k < end;) {
        if (s[k] != '\\') {
            out[o++] = s[k++];
            continue;
        }
        char e = s[k + 1];
        k += 2;
        uint32_t cp;
        int nd = 0;
        switch (e) {
        case '\n': continue;
        case '\\': out[o++] = '\\'; continue;
        case '\'': out[o++] = '\''; continue;
        case '"': out[o++] = '"'; continue;
        case 'a': out[o++] = '\a'; continue;
        case 'b': out[o++] = '\b'; continue;
        case 'f': out[o++] = '\f'; continue;
        case 'n': out[o++] = '\n'; continue;
        case 'r': out[o++] = '\r'; continue;
        case 't': out[o++] = '\t'; continue;
        case 'v': out[o++] = '\v'; continue;
        case 'x': nd = 2; break;
        case 'u': nd = 4; break;
        case 'U': nd = 8; break;
        default:
            if (e >= '0' && e <= '7') {
                cp = (uint32_t)(e - '0');
                for (int m = 0; m < 2 && k < end && s[k] >= '0' && s[k] <= '7'; m++)
                    cp = cp * 8 + (uint32_t)(s[k++] - '0');
                o += jj_u8_encode(cp, out + o);
                continue;
            }
            if (e == 'N')
                return lex_err(lx, k - 2, "\\N{...} escapes are not supported");
            out[o++] = '\\'; /* unknown escape: kept as is */
            k--;
            continue;
        }
        cp = 0;
        for (int m = 0; m < nd; m++, k++) {
            if (k >= end || !is_hex(s[k]))
                return lex_err(lx, k, "truncated \\%c escape in string", e);
            cp = cp * 16 + (uint32_t)hexval(s[k]);
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return lex_err(lx, k, "invalid code point in string escape");
        o += jj_u8_encode(cp, out + o);
    }
    jj_tok_t *t = push(lx, TK_STRING, i);
    if (!t)
        return QD_ENOMEM;
    t->s.p = out;
    t->s.n = o;
    lx->pos = end + 1;
    return 0;
}

static const struct {
    const char *z;
    uint8_t op;
} ops[] = {
    {"//", OP_FLOORDIV}, {"**", OP_POW}, {"==", OP_EQ}, {"!=", OP_NE},
    {">=", OP_GE}, {"<=", OP_LE}, {"+", OP_ADD}, {"-", OP_SUB},
    {"/", OP_DIV}, {"*", OP_MUL}, {"%", OP_MOD}, {"~", OP_TILDE},
    {"[", OP_LBRACKET}, {"]", OP_RBRACKET}, {"(", OP_LPAREN}, {")", OP_RPAREN},
    {"{", OP_LBRACE}, {"}", OP_RBRACE}, {">", OP_GT}, {"<", OP_LT},
    {"=", OP_ASSIGN}, {".", OP_DOT}, {":", OP_COLON}, {"|", OP_PIPE},
    {",", OP_COMMA}, {";", OP_SEMI},
};

/* Tokens inside {% %} or {{ }} up to and including the end tag. */
static int lex_tag(lexer_t *lx, bool is_var, size_t tag_pos)
{
    char stack[64];
    size_t depth = 0;
    for (;;) {
        size_t i = skip_ws(lx, lx->pos);
        lx->pos = i;
        if (i >= lx->n)
            return lex_err(lx, tag_pos, "unexpected end of template: unclosed '%s'",
                           is_var ? "{{" : "{%");
        const char *s = lx->src;
        if (depth == 0) {
            size_t end = 0;
            if (is_var) {
                if (at(lx, i, "-}}"))
                    end = skip_ws(lx, i + 3);
                else if (at(lx, i, "}}"))
                    end = i + 2;
            } else {
                if (at(lx, i, "+%}"))
                    end = i + 3;
                else if (at(lx, i, "-%}"))
                    end = skip_ws(lx, i + 3);
                else if (at(lx, i, "%}"))
                    end = i + 2 + (at(lx, i + 2, "\n") ? 1 : 0);
            }
            if (end) {
                if (!push(lx, is_var ? TK_VAR_END : TK_BLOCK_END, i))
                    return QD_ENOMEM;
                lx->pos = end;
                lx->line_starting = s[end - 1] == '\n';
                return 0;
            }
        }
        int rc;
        char c = s[i];
        if (is_digit(c)) {
            rc = lex_number(lx, i);
        } else if (is_name0(c)) {
            size_t k = i + 1;
            while (k < lx->n && (is_name0(s[k]) || is_digit(s[k])))
                k++;
            jj_tok_t *t = push(lx, TK_NAME, i);
            if (!t)
                return QD_ENOMEM;
            t->s.p = s + i;
            t->s.n = k - i;
            lx->pos = k;
            rc = 0;
        } else if (c == '\'' || c == '"') {
            rc = lex_string(lx, i);
        } else {
            size_t m;
            for (m = 0; m < QD_ARRAY_SIZE(ops); m++)
                if (at(lx, i, ops[m].z))
                    break;
            if (m == QD_ARRAY_SIZE(ops))
                return lex_err(lx, i, "unexpected char '%c'", c);
            uint8_t op = ops[m].op;
            if (op == OP_LBRACE || op == OP_LBRACKET || op == OP_LPAREN) {
                if (depth == sizeof stack)
                    return lex_err(lx, i, "brackets nested too deeply");
                stack[depth++] = op == OP_LBRACE ? '}' : op == OP_LBRACKET ? ']' : ')';
            } else if (op == OP_RBRACE || op == OP_RBRACKET || op == OP_RPAREN) {
                if (depth == 0)
                    return lex_err(lx, i, "unexpected '%c'", c);
                if (stack[--depth] != c)
                    return lex_err(lx, i, "unexpected '%c', expected '%c'", c,
                                   stack[depth]);
            }
            jj_tok_t *t = push(lx, TK_OP, i);
            if (!t)
                return QD_ENOMEM;
            t->op = op;
            lx->pos = i + strlen(ops[m].z);
            rc = 0;
        }
        if (rc)
            return rc;
    }
}

int jj_lex(jj_arena_t *ar, const char *src, size_t n, jj_tok_t **toks, size_t *n_toks,
           size_t *err_pos, char *errbuf, size_t errbuf_n)
{
    lexer_t lx = {.ar = ar, .src = src, .n = n, .errbuf = errbuf,
                  .errbuf_n = errbuf_n, .line_starting = true};
    int rc = 0;
    while (lx.pos < n) {
        size_t i = lx.pos;
        while (i + 1 < n && !(src[i] == '{' && strchr("{%#", src[i + 1]) && src[i + 1]))
            i++;
        if (i + 1 >= n) {
            rc = push_data(&lx, lx.pos, src + lx.pos, n - lx.pos);
            lx.pos = n;
            break;
        }
        char kind = src[i + 1];
        char sign = 0;
        size_t body = i + 2;
        if (body < n && (src[body] == '-' || src[body] == '+'))
            sign = src[body++];
        size_t raw_end = 0;
        if (kind == '%') {
            char rs;
            size_t j = match_tag_word(&lx, i, "raw", &rs);
            if (j && at(&lx, j, "-%}"))
                raw_end = skip_ws(&lx, j + 3);
            else if (j && at(&lx, j, "%}"))
                raw_end = j + 2;
        }
        size_t tn = lstrip_text(&lx, src + lx.pos, i - lx.pos, sign, kind == '{');
        if ((rc = push_data(&lx, lx.pos, src + lx.pos, tn)))
            break;
        lx.line_starting = false;
        if (raw_end) {
            rc = lex_raw(&lx, raw_end);
        } else if (kind == '#') {
            rc = lex_comment(&lx, body);
        } else {
            if (!push(&lx, kind == '{' ? TK_VAR_BEGIN : TK_BLOCK_BEGIN, i)) {
                rc = QD_ENOMEM;
                break;
            }
            lx.pos = body;
            rc = lex_tag(&lx, kind == '{', i);
        }
        if (rc)
            break;
    }
    if (!rc && !push(&lx, TK_EOF, n))
        rc = QD_ENOMEM;
    if (rc == QD_ENOMEM && !errbuf[0])
        snprintf(errbuf, errbuf_n, "out of memory");
    *err_pos = lx.err_pos;
    *toks = lx.toks;
    *n_toks = lx.n_toks;
    return rc;
}
