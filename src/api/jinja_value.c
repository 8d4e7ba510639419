/*
 * jinja_value.c — the arena, UTF-8 helpers and the value model of the Jinja
 * interpreter, with Python's spellings of values: str() ("None", "True",
 * 1.0, "[1, 'a']"), repr() of strings, json.dumps(ensure_ascii=False) and
 * Python's rules for ==, < and truthiness. Output must match jinja2 byte for
 * byte, so these follow CPython (Objects/floatobject.c float_repr,
 * Objects/unicodeobject.c unicode_repr, Lib/json/encoder.py).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/jinja_int.h"

/* ---- arena ------------------------------------------------------------ */
struct jj_chunk {
    jj_chunk_t *next;
    size_t size, used;
    size_t last; /* offset of the latest allocation */
    _Alignas(16) unsigned char data[];
};

#define CHUNK_MIN (64u * 1024u)

void *jj_alloc(jj_arena_t *a, size_t n)
{
    n = QD_ALIGN_UP(n ? n : 1, 16);
    jj_chunk_t *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t sz = QD_MAX(n, (size_t)CHUNK_MIN), total;
        if (qd_add_size(sz, sizeof *c, &total))
            return NULL;
        if (a->cap_bytes && (a->total_bytes > a->cap_bytes || total > a->cap_bytes - a->total_bytes))
            return NULL;
        c = qd_malloc(total);
        if (!c)
            return NULL;
        c->size = sz;
        c->used = 0;
        c->last = 0;
        c->next = a->head;
        a->head = c;
        a->total_bytes += total;
    }
    void *p = c->data + c->used;
    c->last = c->used;
    c->used += n;
    return p;
}

void *jj_grow(jj_arena_t *a, void *p, size_t old_n, size_t new_n)
{
    if (!p)
        return jj_alloc(a, new_n);
    if (new_n <= old_n)
        return p;
    jj_chunk_t *c = a->head;
    size_t need = QD_ALIGN_UP(new_n, 16);
    if (c && (unsigned char *)p == c->data + c->last && c->size - c->last >= need) {
        c->used = c->last + need;
        return p;
    }
    void *q = jj_alloc(a, new_n);
    if (q)
        memcpy(q, p, old_n);
    return q;
}

void jj_arena_free(jj_arena_t *a)
{
    jj_chunk_t *c = a->head;
    while (c) {
        jj_chunk_t *n = c->next;
        qd_free(c);
        c = n;
    }
    a->head = NULL;
    a->total_bytes = 0;
}

/* ---- strings ---------------------------------------------------------- */
bool jj_str_eq(jj_str_t s, const char *z)
{
    size_t n = strlen(z);
    return s.n == n && memcmp(s.p, z, n) == 0;
}

size_t jj_u8_decode(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) {
        *cp = 0;
        return 0;
    }
    if (u[0] < 0x80 || n < 2) {
        *cp = u[0];
        return 1;
    }
    if ((u[0] & 0xE0) == 0xC0) {
        *cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
        return 2;
    }
    if ((u[0] & 0xF0) == 0xE0 && n >= 3) {
        *cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    }
    if (n >= 4) {
        *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
              ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
        return 4;
    }
    *cp = u[0];
    return 1;
}

size_t jj_u8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t jj_u8_len(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

bool jj_u8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((u[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (u[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

bool jj_is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 ||
           c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

size_t jj_ws_prefix(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = jj_u8_decode(s + i, n - i, &cp);
        if (!jj_is_space(cp))
            break;
        i += k;
    }
    return i;
}

size_t jj_ws_suffix(const char *s, size_t n)
{
    size_t e = n;
    while (e > 0) {
        size_t b = e - 1;
        while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80)
            b--;
        uint32_t cp;
        jj_u8_decode(s + b, e - b, &cp);
        if (!jj_is_space(cp))
            break;
        e = b;
    }
    return n - e;
}

/* Simple case mappings: ASCII, Latin-1, Greek and Cyrillic basics. */
uint32_t jj_cp_upper(uint32_t c)
{
    if (c >= 'a' && c <= 'z')
        return c - 32;
    if (c < 0x80)
        return c;
    if ((c >= 0xE0 && c <= 0xFE && c != 0xF7))
        return c - 32;
    if (c == 0xFF)
        return 0x178;
    if (c >= 0x100 && c <= 0x17F && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17F) {
        bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
        if (odd_upper ? (c & 1) == 0 : (c & 1) == 1)
            return c - 1;
        return c;
    }
    if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2)
        return c - 32;
    if (c == 0x3C2)
        return 0x3A3;
    if (c >= 0x430 && c <= 0x44F)
        return c - 32;
    if (c >= 0x450 && c <= 0x45F)
        return c - 80;
    return c;
}

uint32_t jj_cp_lower(uint32_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c + 32;
    if (c < 0x80)
        return c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
        return c + 32;
    if (c == 0x178)
        return 0xFF;
    if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x138 && c != 0x149 && c != 0x17F) {
        bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
        if (odd_upper ? (c & 1) == 1 : (c & 1) == 0)
            return c + 1;
        return c;
    }
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
        return c + 32;
    if (c >= 0x410 && c <= 0x42F)
        return c + 32;
    if (c >= 0x400 && c <= 0x40F)
        return c + 80;
    return c;
}

/* ---- context helpers -------------------------------------------------- */
int jj_fail(jj_ctx_t *c, size_t pos, int code, const char *fmt, ...)
{
    if (c->err)
        return c->err;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    jj_line_col(c->tpl->src, c->tpl->src_n, pos, &line, &col);
    qd_set_errmsg("jinja: %d:%d: %s", line, col, msg);
    c->err = code;
    return code;
}

void *jj_calloc(jj_ctx_t *c, size_t pos, size_t n, size_t size)
{
    size_t bytes;
    void *p = NULL;
    if (!qd_mul_size(n, size, &bytes))
        p = jj_alloc(&c->ar, bytes);
    if (!p) {
        if (c->ar.cap_bytes && c->ar.total_bytes + CHUNK_MIN + bytes > c->ar.cap_bytes)
            jj_fail(c, pos, QD_ETOOBIG, "memory limit of %zu bytes exceeded",
                    c->ar.cap_bytes);
        else
            jj_fail(c, pos, QD_ENOMEM, "out of memory");
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

int jj_step(jj_ctx_t *c, size_t pos, long n)
{
    if (c->err)
        return c->err;
    c->steps += n;
    if (c->steps > c->max_steps)
        return jj_fail(c, pos, QD_ETOOBIG, "evaluation step limit (%ld) exceeded",
                       c->max_steps);
    return 0;
}

int jj_buf_put(jj_ctx_t *c, size_t pos, jj_buf_t *b, const char *s, size_t n)
{
    if (c->err)
        return c->err;
    if (n > b->max || b->n > b->max - n)
        return jj_fail(c, pos, QD_ETOOBIG, "output size limit of %zu bytes exceeded",
                       b->max);
    if (b->n + n > b->cap) {
        size_t cap = QD_MAX(b->cap * 2, b->n + n);
        cap = QD_MAX(cap, (size_t)256);
        char *p = jj_grow(&c->ar, b->p, b->cap, cap);
        if (!p) {
            jj_fail(c, pos, QD_ETOOBIG, "memory limit of %zu bytes exceeded", c->ar.cap_bytes);
            return c->err;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static int putz(jj_ctx_t *c, size_t pos, jj_buf_t *b, const char *z)
{
    return jj_buf_put(c, pos, b, z, strlen(z));
}

/* ---- construction ----------------------------------------------------- */
jv_list_t *jv_list_new(jj_ctx_t *c, size_t pos, size_t n)
{
    jv_list_t *l = jj_calloc(c, pos, 1, sizeof *l);
    if (!l)
        return NULL;
    l->n = n;
    if (n && !(l->v = jj_calloc(c, pos, n, sizeof *l->v)))
        return NULL;
    return l;
}

jv_dict_t *jv_dict_new(jj_ctx_t *c, size_t pos, size_t cap)
{
    jv_dict_t *d = jj_calloc(c, pos, 1, sizeof *d);
    if (!d)
        return NULL;
    cap = QD_MAX(cap, (size_t)4);
    d->k = jj_calloc(c, pos, cap, sizeof *d->k);
    d->v = jj_calloc(c, pos, cap, sizeof *d->v);
    if (!d->k || !d->v)
        return NULL;
    d->cap = cap;
    return d;
}

jv_t *jv_dict_get_str(const jv_dict_t *d, const char *key, size_t n)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].u.s.n == n && memcmp(d->k[i].u.s.p, key, n) == 0)
            return &d->v[i];
    return NULL;
}

jv_t *jv_dict_get(jj_ctx_t *c, const jv_dict_t *d, const jv_t *k)
{
    if (k->t == JV_STR)
        return jv_dict_get_str(d, k->u.s.p, k->u.s.n);
    for (size_t i = 0; i < d->n; i++) {
        bool eq = false;
        if (jv_eq(c, &d->k[i], k, 0, &eq))
            return NULL;
        if (eq)
            return &d->v[i];
    }
    return NULL;
}

int jv_dict_set(jj_ctx_t *c, size_t pos, jv_dict_t *d, const jv_t *k, const jv_t *v)
{
    jv_t *slot = jv_dict_get(c, d, k);
    if (c->err)
        return c->err;
    if (slot) {
        *slot = *v;
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap * 2;
        jv_t *nk = jj_calloc(c, pos, cap, sizeof *nk), *nv = jj_calloc(c, pos, cap, sizeof *nv);
        if (!nk || !nv)
            return c->err;
        memcpy(nk, d->k, d->n * sizeof *nk);
        memcpy(nv, d->v, d->n * sizeof *nv);
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = *k;
    d->v[d->n] = *v;
    d->n++;
    return 0;
}

int jv_from_json(jj_ctx_t *c, const void *jp, jv_t *out)
{
    const json_t *j = jp;
    switch (json_typeof(j)) {
    case JSON_NULL: *out = jv_none(); return 0;
    case JSON_TRUE: *out = jv_bool(true); return 0;
    case JSON_FALSE: *out = jv_bool(false); return 0;
    case JSON_INTEGER: *out = jv_int(json_integer_value(j)); return 0;
    case JSON_REAL: *out = jv_float(json_real_value(j)); return 0;
    case JSON_STRING:
        *out = jv_str(json_string_value(j), json_string_length(j));
        return 0;
    case JSON_ARRAY: {
        jv_list_t *l = jv_list_new(c, 0, json_array_size(j));
        if (!l)
            return c->err;
        for (size_t i = 0; i < l->n; i++)
            if (jv_from_json(c, json_array_get(j, i), &l->v[i]))
                return c->err;
        out->t = JV_LIST;
        out->u.l = l;
        return 0;
    }
    case JSON_OBJECT: {
        jv_dict_t *d = jv_dict_new(c, 0, json_object_size(j));
        if (!d)
            return c->err;
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)j, key, val)
        {
            /* keys of a jansson object are unique: append directly */
            d->k[d->n] = jv_str(key, strlen(key));
            if (jv_from_json(c, val, &d->v[d->n]))
                return c->err;
            d->n++;
        }
        out->t = JV_DICT;
        out->u.d = d;
        return 0;
    }
    }
    return jj_fail(c, 0, QD_EINVAL, "unsupported JSON value");
}

/* ---- predicates -------------------------------------------------------- */
bool jv_truthy(const jv_t *v)
{
    switch (v->t) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL:
    case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0.0;
    case JV_STR: return v->u.s.n != 0;
    case JV_LIST: return v->u.l->n != 0;
    case JV_DICT: return v->u.d->n != 0;
    default: return true;
    }
}

bool jv_is_num(const jv_t *v)
{
    return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL;
}

double jv_num(const jv_t *v) { return v->t == JV_FLOAT ? v->u.f : (double)v->u.i; }

int64_t jv_len(const jv_t *v)
{
    switch (v->t) {
    case JV_UNDEF: return 0;
    case JV_STR: return (int64_t)jj_u8_len(v->u.s.p, v->u.s.n);
    case JV_LIST: return (int64_t)v->u.l->n;
    case JV_DICT: return (int64_t)v->u.d->n;
    default: return -1;
    }
}

const char *jv_type_name(const jv_t *v)
{
    switch (v->t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v->u.l->tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_LOOP: return "LoopContext";
    case JV_MACRO: return "Macro";
    default: return "function";
    }
}

int jv_iterate(jj_ctx_t *c, size_t pos, const jv_t *v, const jv_t **items, size_t *n)
{
    switch (v->t) {
    case JV_UNDEF:
        *items = NULL;
        *n = 0;
        return 0;
    case JV_LIST:
        *items = v->u.l->v;
        *n = v->u.l->n;
        return 0;
    case JV_DICT:
        *items = v->u.d->k;
        *n = v->u.d->n;
        return 0;
    case JV_STR: {
        size_t cnt = jj_u8_len(v->u.s.p, v->u.s.n);
        jv_t *out = cnt ? jj_calloc(c, pos, cnt, sizeof *out) : NULL;
        if (cnt && !out)
            return c->err;
        const char *s = v->u.s.p;
        for (size_t i = 0, k = 0; k < cnt; k++) {
            uint32_t cp;
            size_t len = jj_u8_decode(s + i, v->u.s.n - i, &cp);
            out[k] = jv_str(s + i, len);
            i += len;
        }
        *items = out;
        *n = cnt;
        return 0;
    }
    default:
        return jj_fail(c, pos, QD_EINVAL, "'%s' object is not iterable", jv_type_name(v));
    }
}

/* ---- Python float repr ------------------------------------------------ */
void jv_format_float(double f, char out[40])
{
    if (isnan(f)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(f)) {
        strcpy(out, f < 0 ? "-inf" : "inf");
        return;
    }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f)
            break;
    }
    /* tmp = [-]d[.ddd]e[+-]XX : collect digits and exponent */
    char digits[24];
    size_t nd = 0;
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg)
        p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    int decpt = exp10 + 1;
    char *o = out;
    if (neg)
        *o++ = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -decpt; i++)
                *o++ = '0';
            memcpy(o, digits, nd);
            o += nd;
        } else if ((size_t)decpt >= nd) {
            memcpy(o, digits, nd);
            o += nd;
            for (size_t i = nd; i < (size_t)decpt; i++)
                *o++ = '0';
            *o++ = '.';
            *o++ = '0';
        } else {
            memcpy(o, digits, (size_t)decpt);
            o += decpt;
            *o++ = '.';
            memcpy(o, digits + decpt, nd - (size_t)decpt);
            o += nd - (size_t)decpt;
        }
        *o = 0;
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, nd - 1);
            o += nd - 1;
        }
        char eb[16];
        snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', (exp10 < 0 ? -exp10 : exp10) % 1000);
        strcpy(o, eb);
    }
}

/* ---- str() / repr() ---------------------------------------------------- */
#define MAX_VALUE_DEPTH 200

/* Python's str.isprintable() for the code points that matter here. */
static bool cp_printable(uint32_t c)
{
    if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD)
        return false;
    if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
        (c >= 0x205F && c <= 0x206F) || c == 0x3000 || c == 0xFEFF ||
        (c >= 0xD800 && c <= 0xF8FF) || (c >= 0xFFF9 && c <= 0xFFFB) ||
        c == 0xFFFE || c == 0xFFFF || (c >= 0x600 && c <= 0x605) || c == 0x61C ||
        c == 0x6DD || c == 0x70F || c == 0x180E || (c >= 0xE0000 && c <= 0xE0FFF) ||
        c >= 0xF0000)
        return false;
    return true;
}

static int write_str_repr(jj_ctx_t *c, size_t pos, jj_buf_t *b, jj_str_t s)
{
    bool has_sq = memchr(s.p, '\'', s.n) != NULL, has_dq = memchr(s.p, '"', s.n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (jj_buf_putc(c, pos, b, q))
        return c->err;
    for (size_t i = 0; i < s.n;) {
        uint32_t cp;
        size_t k = jj_u8_decode(s.p + i, s.n - i, &cp);
        char esc[16];
        const char *e = NULL;
        if (cp == (uint32_t)q || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            esc[2] = 0;
            e = esc;
        } else if (cp == '\n') {
            e = "\\n";
        } else if (cp == '\r') {
            e = "\\r";
        } else if (cp == '\t') {
            e = "\\t";
        } else if (!cp_printable(cp)) {
            if (cp < 0x100)
                snprintf(esc, sizeof esc, "\\x%02x", cp);
            else if (cp < 0x10000)
                snprintf(esc, sizeof esc, "\\u%04x", cp);
            else
                snprintf(esc, sizeof esc, "\\U%08x", cp);
            e = esc;
        }
        int rc = e ? putz(c, pos, b, e) : jj_buf_put(c, pos, b, s.p + i, k);
        if (rc)
            return rc;
        i += k;
    }
    return jj_buf_putc(c, pos, b, q);
}

int jv_write_repr(jj_ctx_t *c, size_t pos, jj_buf_t *b, const jv_t *v, int depth)
{
    if (depth > MAX_VALUE_DEPTH)
        return jj_fail(c, pos, QD_EINVAL, "value nested too deeply (or recursive)");
    if (jj_step(c, pos, 1))
        return c->err;
    switch (v->t) {
    case JV_STR: return write_str_repr(c, pos, b, v->u.s);
    case JV_UNDEF: return putz(c, pos, b, "Undefined");
    case JV_LIST: {
        const jv_list_t *l = v->u.l;
        if (jj_buf_putc(c, pos, b, l->tuple ? '(' : '['))
            return c->err;
        for (size_t i = 0; i < l->n; i++) {
            if ((i && putz(c, pos, b, ", ")) || jv_write_repr(c, pos, b, &l->v[i], depth + 1))
                return c->err;
        }
        if (l->tuple && l->n == 1 && jj_buf_putc(c, pos, b, ','))
            return c->err;
        return jj_buf_putc(c, pos, b, l->tuple ? ')' : ']');
    }
    case JV_NS:
    case JV_DICT: {
        const jv_dict_t *d = v->u.d;
        if (v->t == JV_NS && putz(c, pos, b, "<Namespace "))
            return c->err;
        if (jj_buf_putc(c, pos, b, '{'))
            return c->err;
        for (size_t i = 0; i < d->n; i++) {
            if ((i && putz(c, pos, b, ", ")) || jv_write_repr(c, pos, b, &d->k[i], depth + 1) ||
                putz(c, pos, b, ": ") || jv_write_repr(c, pos, b, &d->v[i], depth + 1))
                return c->err;
        }
        if (jj_buf_putc(c, pos, b, '}'))
            return c->err;
        return v->t == JV_NS ? jj_buf_putc(c, pos, b, '>') : 0;
    }
    default: return jv_write_str(c, pos, b, v);
    }
}

int jv_write_str(jj_ctx_t *c, size_t pos, jj_buf_t *b, const jv_t *v)
{
    char tmp[48];
    switch (v->t) {
    case JV_UNDEF: return 0;
    case JV_NONE: return putz(c, pos, b, "None");
    case JV_BOOL: return putz(c, pos, b, v->u.i ? "True" : "False");
    case JV_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i);
        return putz(c, pos, b, tmp);
    case JV_FLOAT:
        jv_format_float(v->u.f, tmp);
        return putz(c, pos, b, tmp);
    case JV_STR: return jj_buf_put(c, pos, b, v->u.s.p, v->u.s.n);
    case JV_LIST:
    case JV_DICT:
    case JV_NS: return jv_write_repr(c, pos, b, v, 0);
    case JV_LOOP: return putz(c, pos, b, "<LoopContext>");
    case JV_MACRO: return putz(c, pos, b, "<Macro>");
    default: return putz(c, pos, b, "<built-in function>");
    }
}

int jv_to_str(jj_ctx_t *c, size_t pos, const jv_t *v, jv_t *out)
{
    if (v->t == JV_STR) {
        *out = *v;
        return 0;
    }
    jj_buf_t b = {.max = c->max_out};
    if (jv_write_str(c, pos, &b, v))
        return c->err;
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

/* ---- json.dumps ------------------------------------------------------- */
static int write_json_str(jj_ctx_t *c, size_t pos, jj_buf_t *b, jj_str_t s)
{
    if (jj_buf_putc(c, pos, b, '"'))
        return c->err;
    size_t run = 0;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        if (jj_buf_put(c, pos, b, s.p + run, i - run))
            return c->err;
        char esc[8];
        switch (ch) {
        case '"': strcpy(esc, "\\\""); break;
        case '\\': strcpy(esc, "\\\\"); break;
        case '\n': strcpy(esc, "\\n"); break;
        case '\r': strcpy(esc, "\\r"); break;
        case '\t': strcpy(esc, "\\t"); break;
        case '\b': strcpy(esc, "\\b"); break;
        case '\f': strcpy(esc, "\\f"); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", ch); break;
        }
        if (putz(c, pos, b, esc))
            return c->err;
        run = i + 1;
    }
    if (jj_buf_put(c, pos, b, s.p + run, s.n - run))
        return c->err;
    return jj_buf_putc(c, pos, b, '"');
}

static int json_newline(jj_ctx_t *c, size_t pos, jj_buf_t *b, const char *indent,
                        size_t indent_n, int level)
{
    if (jj_buf_putc(c, pos, b, '\n'))
        return c->err;
    for (int i = 0; i < level; i++)
        if (jj_buf_put(c, pos, b, indent, indent_n))
            return c->err;
    return 0;
}

/* Key order for sort_keys: Python sorts str keys by code point. */
static const jv_dict_t *sort_dict(jj_ctx_t *c, size_t pos, const jv_dict_t *d)
{
    jv_dict_t *s = jv_dict_new(c, pos, d->n);
    if (!s)
        return NULL;
    memcpy(s->k, d->k, d->n * sizeof *s->k);
    memcpy(s->v, d->v, d->n * sizeof *s->v);
    s->n = d->n;
    for (size_t i = 1; i < s->n; i++) { /* insertion sort: dicts are small */
        for (size_t j = i; j > 0; j--) {
            int cmp;
            if (jv_cmp(c, pos, &s->k[j - 1], &s->k[j], &cmp))
                return NULL;
            if (cmp <= 0)
                break;
            jv_t tk = s->k[j], tv = s->v[j];
            s->k[j] = s->k[j - 1];
            s->v[j] = s->v[j - 1];
            s->k[j - 1] = tk;
            s->v[j - 1] = tv;
        }
    }
    return s;
}

int jv_write_json(jj_ctx_t *c, size_t pos, jj_buf_t *b, const jv_t *v, const char *indent,
                  size_t indent_n, bool sort_keys, int level)
{
    char tmp[48];
    if (level > MAX_VALUE_DEPTH)
        return jj_fail(c, pos, QD_EINVAL, "tojson: circular reference or nesting too deep");
    if (jj_step(c, pos, 1))
        return c->err;
    switch (v->t) {
    case JV_NONE: return putz(c, pos, b, "null");
    case JV_BOOL: return putz(c, pos, b, v->u.i ? "true" : "false");
    case JV_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i);
        return putz(c, pos, b, tmp);
    case JV_FLOAT:
        if (isnan(v->u.f))
            return putz(c, pos, b, "NaN");
        if (isinf(v->u.f))
            return putz(c, pos, b, v->u.f < 0 ? "-Infinity" : "Infinity");
        jv_format_float(v->u.f, tmp);
        return putz(c, pos, b, tmp);
    case JV_STR: return write_json_str(c, pos, b, v->u.s);
    case JV_LIST: {
        const jv_list_t *l = v->u.l;
        if (l->n == 0)
            return putz(c, pos, b, "[]");
        if (jj_buf_putc(c, pos, b, '['))
            return c->err;
        for (size_t i = 0; i < l->n; i++) {
            if (i && putz(c, pos, b, indent ? "," : ", "))
                return c->err;
            if (indent && json_newline(c, pos, b, indent, indent_n, level + 1))
                return c->err;
            if (jv_write_json(c, pos, b, &l->v[i], indent, indent_n, sort_keys, level + 1))
                return c->err;
        }
        if (indent && json_newline(c, pos, b, indent, indent_n, level))
            return c->err;
        return jj_buf_putc(c, pos, b, ']');
    }
    case JV_DICT: {
        const jv_dict_t *d = v->u.d;
        if (d->n == 0)
            return putz(c, pos, b, "{}");
        if (sort_keys && !(d = sort_dict(c, pos, d)))
            return c->err;
        if (jj_buf_putc(c, pos, b, '{'))
            return c->err;
        for (size_t i = 0; i < d->n; i++) {
            if (i && putz(c, pos, b, indent ? "," : ", "))
                return c->err;
            if (indent && json_newline(c, pos, b, indent, indent_n, level + 1))
                return c->err;
            const jv_t *k = &d->k[i];
            int rc;
            if (k->t == JV_STR) {
                rc = write_json_str(c, pos, b, k->u.s);
            } else if (k->t == JV_INT || k->t == JV_FLOAT || k->t == JV_BOOL ||
                       k->t == JV_NONE) {
                jj_buf_t kb = {.max = c->max_out};
                if (k->t == JV_BOOL || k->t == JV_NONE)
                    rc = putz(c, pos, &kb, k->t == JV_NONE ? "null" : k->u.i ? "true" : "false");
                else
                    rc = jv_write_json(c, pos, &kb, k, NULL, 0, false, level + 1);
                if (!rc)
                    rc = write_json_str(c, pos, b, (jj_str_t){kb.p, kb.n});
            } else {
                return jj_fail(c, pos, QD_EINVAL, "tojson: keys must be str, int, float, "
                                                  "bool or None, not %s", jv_type_name(k));
            }
            if (rc || putz(c, pos, b, ": ") ||
                jv_write_json(c, pos, b, &d->v[i], indent, indent_n, sort_keys, level + 1))
                return c->err;
        }
        if (indent && json_newline(c, pos, b, indent, indent_n, level))
            return c->err;
        return jj_buf_putc(c, pos, b, '}');
    }
    default:
        return jj_fail(c, pos, QD_EINVAL, "tojson: object of type %s is not JSON serializable",
                       jv_type_name(v));
    }
}

/* ---- comparisons ------------------------------------------------------ */
int jv_eq(jj_ctx_t *c, const jv_t *a, const jv_t *b, int depth, bool *eq)
{
    *eq = false;
    if (depth > MAX_VALUE_DEPTH)
        return jj_fail(c, 0, QD_EINVAL, "comparison of values nested too deeply");
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a->t == JV_FLOAT || b->t == JV_FLOAT)
            *eq = jv_num(a) == jv_num(b);
        else
            *eq = a->u.i == b->u.i;
        return 0;
    }
    if (a->t != b->t)
        return 0;
    switch (a->t) {
    case JV_UNDEF:
    case JV_NONE: *eq = true; return 0;
    case JV_STR:
        *eq = a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
        return 0;
    case JV_LIST: {
        const jv_list_t *x = a->u.l, *y = b->u.l;
        if (x->tuple != y->tuple || x->n != y->n)
            return 0;
        if (jj_step(c, 0, (long)x->n))
            return c->err;
        for (size_t i = 0; i < x->n; i++) {
            if (jv_eq(c, &x->v[i], &y->v[i], depth + 1, eq))
                return c->err;
            if (!*eq)
                return 0;
        }
        *eq = true;
        return 0;
    }
    case JV_DICT: {
        const jv_dict_t *x = a->u.d, *y = b->u.d;
        if (x->n != y->n)
            return 0;
        if (jj_step(c, 0, (long)x->n))
            return c->err;
        for (size_t i = 0; i < x->n; i++) {
            const jv_t *yv = jv_dict_get(c, y, &x->k[i]);
            if (c->err)
                return c->err;
            if (!yv)
                return 0;
            if (jv_eq(c, &x->v[i], yv, depth + 1, eq))
                return c->err;
            if (!*eq)
                return 0;
        }
        *eq = true;
        return 0;
    }
    case JV_NS: *eq = a->u.d == b->u.d; return 0;
    case JV_LOOP: *eq = a->u.loop == b->u.loop; return 0;
    case JV_MACRO: *eq = a->u.mac == b->u.mac; return 0;
    case JV_FUNC: *eq = a->u.i == b->u.i; return 0;
    default: *eq = false; return 0;
    }
}

static int cmp_bytes(jj_str_t a, jj_str_t b)
{
    int r = memcmp(a.p, b.p, QD_MIN(a.n, b.n));
    if (r)
        return r;
    return a.n < b.n ? -1 : a.n > b.n;
}

int jv_cmp(jj_ctx_t *c, size_t pos, const jv_t *a, const jv_t *b, int *cmp)
{
    *cmp = 0;
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a->t == JV_FLOAT || b->t == JV_FLOAT) {
            double x = jv_num(a), y = jv_num(b);
            *cmp = x < y ? -1 : x > y;
        } else {
            *cmp = a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
        }
        return 0;
    }
    if (a->t == JV_STR && b->t == JV_STR) {
        *cmp = cmp_bytes(a->u.s, b->u.s); /* UTF-8 byte order = code point order */
        return 0;
    }
    if (a->t == JV_LIST && b->t == JV_LIST && a->u.l->tuple == b->u.l->tuple) {
        const jv_list_t *x = a->u.l, *y = b->u.l;
        for (size_t i = 0; i < x->n && i < y->n; i++) {
            bool eq;
            if (jv_eq(c, &x->v[i], &y->v[i], 0, &eq))
                return c->err;
            if (!eq)
                return jv_cmp(c, pos, &x->v[i], &y->v[i], cmp);
        }
        *cmp = x->n < y->n ? -1 : x->n > y->n;
        return 0;
    }
    if (a->t == JV_UNDEF || b->t == JV_UNDEF)
        return jj_undefined_error(c, pos, a->t == JV_UNDEF ? a : b);
    return jj_fail(c, pos, QD_EINVAL, "'<' not supported between instances of '%s' and '%s'",
                   jv_type_name(a), jv_type_name(b));
}
