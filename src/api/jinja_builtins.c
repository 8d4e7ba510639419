/*
 * jinja_builtins.c — the filters, tests, global functions and str/dict/list
 * methods that chat templates call, with jinja2's and Python's semantics
 * (jinja2/filters.py, jinja2/tests.py, Python's str methods), plus
 * transformers' tojson (json.dumps with ensure_ascii=False), raise_exception
 * and strftime_now. Anything not listed is an error, never a silent guess.
 * Case mapping covers ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/jinja_int.h"

/* ---- arguments --------------------------------------------------------- */
static size_t n_positional(const jj_args_t *a)
{
    size_t k = 0;
    while (k < a->n && !a->kw[k].p)
        k++;
    return k;
}

/* Argument at position i, or passed as keyword `name`; NULL if absent. */
static const jv_t *arg(const jj_args_t *a, size_t i, const char *name)
{
    size_t np = n_positional(a);
    if (i < np)
        return &a->v[i];
    for (size_t k = np; name && k < a->n; k++)
        if (jj_str_eq(a->kw[k], name))
            return &a->v[k];
    return NULL;
}

static int need_str(jj_ctx_t *c, size_t pos, const jv_t *v, const char *what, jj_str_t *out)
{
    if (v->t != JV_STR) {
        if (v->t == JV_UNDEF)
            return jj_undefined_error(c, pos, v);
        return jj_fail(c, pos, QD_EINVAL, "%s: expected a string, got %s", what,
                       jv_type_name(v));
    }
    *out = v->u.s;
    return 0;
}

static int need_int(jj_ctx_t *c, size_t pos, const jv_t *v, const char *what, int64_t *out)
{
    if (v->t != JV_INT && v->t != JV_BOOL)
        return jj_fail(c, pos, QD_EINVAL, "%s: expected an integer, got %s", what,
                       jv_type_name(v));
    *out = v->u.i;
    return 0;
}

static int soft_str(jj_ctx_t *c, size_t pos, const jv_t *v, jj_str_t *out)
{
    jv_t s;
    if (jv_to_str(c, pos, v, &s))
        return c->err;
    *out = s.u.s;
    return 0;
}

static jv_t list_val(jv_list_t *l)
{
    jv_t v = {.t = JV_LIST};
    v.u.l = l;
    return v;
}

/* ---- string helpers ---------------------------------------------------- */
static bool cp_in(uint32_t cp, jj_str_t set)
{
    for (size_t i = 0; i < set.n;) {
        uint32_t x;
        i += jj_u8_decode(set.p + i, set.n - i, &x);
        if (x == cp)
            return true;
    }
    return false;
}

/* str.strip family: which = 1 left, 2 right, 3 both; chars NULL = whitespace */
static jj_str_t strip(jj_str_t s, const jj_str_t *chars, int which)
{
    size_t b = 0, e = s.n;
    if (which & 1) {
        while (b < e) {
            uint32_t cp;
            size_t k = jj_u8_decode(s.p + b, e - b, &cp);
            if (chars ? !cp_in(cp, *chars) : !jj_is_space(cp))
                break;
            b += k;
        }
    }
    if (which & 2) {
        while (e > b) {
            size_t st = e - 1;
            while (st > b && ((unsigned char)s.p[st] & 0xC0) == 0x80)
                st--;
            uint32_t cp;
            jj_u8_decode(s.p + st, e - st, &cp);
            if (chars ? !cp_in(cp, *chars) : !jj_is_space(cp))
                break;
            e = st;
        }
    }
    return (jj_str_t){s.p + b, e - b};
}

static int strip_args(jj_ctx_t *c, size_t pos, const jj_args_t *a, jj_str_t s, int which,
                      jv_t *out)
{
    const jv_t *ch = arg(a, 0, "chars");
    jj_str_t set;
    if (ch && ch->t != JV_NONE) {
        if (need_str(c, pos, ch, "strip", &set))
            return c->err;
        s = strip(s, &set, which);
    } else {
        s = strip(s, NULL, which);
    }
    *out = jv_str(s.p, s.n);
    return 0;
}

/* Map code points: mode 0 lower, 1 upper, 2 capitalize, 3 swapcase,
 * 4 Python str.title(). */
static int case_map(jj_ctx_t *c, size_t pos, jj_str_t s, int mode, jv_t *out)
{
    char *o = jj_calloc(c, pos, s.n * 2 + 4, 1); /* mappings keep lengths; margin */
    if (!o)
        return c->err;
    size_t on = 0;
    bool first = true, prev_cased = false;
    for (size_t i = 0; i < s.n;) {
        uint32_t cp, m;
        i += jj_u8_decode(s.p + i, s.n - i, &cp);
        uint32_t up = jj_cp_upper(cp), lo = jj_cp_lower(cp);
        bool cased = up != lo || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
        switch (mode) {
        case 0: m = lo; break;
        case 1: m = up; break;
        case 2: m = first ? up : lo; break;
        case 3: m = cp == up ? lo : up; break;
        default: m = prev_cased ? lo : up; break;
        }
        prev_cased = cased;
        first = false;
        size_t k = jj_u8_encode(m, o + on);
        on += k;
    }
    *out = jv_str(o, on);
    return 0;
}

static bool starts_with(jj_str_t s, jj_str_t p)
{
    return p.n <= s.n && memcmp(s.p, p.p, p.n) == 0;
}
static bool ends_with(jj_str_t s, jj_str_t p)
{
    return p.n <= s.n && memcmp(s.p + s.n - p.n, p.p, p.n) == 0;
}

static const char *find_sub(jj_str_t s, jj_str_t sub, size_t from)
{
    if (from > s.n)
        return NULL;
    if (sub.n == 0)
        return s.p + from;
    return memmem(s.p + from, s.n - from, sub.p, sub.n);
}

static int str_replace(jj_ctx_t *c, size_t pos, jj_str_t s, jj_str_t old, jj_str_t new_,
                       int64_t count, jv_t *out)
{
    jj_buf_t b = {.max = c->max_out};
    size_t i = 0;
    int64_t done = 0;
    if (old.n == 0) { /* Python inserts `new` between characters */
        while (count < 0 || done < count) {
            if (jj_buf_put(c, pos, &b, new_.p, new_.n))
                return c->err;
            done++;
            if (i >= s.n)
                break;
            uint32_t cp;
            size_t k = jj_u8_decode(s.p + i, s.n - i, &cp);
            if (jj_buf_put(c, pos, &b, s.p + i, k))
                return c->err;
            i += k;
        }
    } else {
        const char *hit;
        while ((count < 0 || done < count) && (hit = find_sub(s, old, i))) {
            size_t h = (size_t)(hit - s.p);
            if (jj_buf_put(c, pos, &b, s.p + i, h - i) ||
                jj_buf_put(c, pos, &b, new_.p, new_.n))
                return c->err;
            i = h + old.n;
            done++;
        }
    }
    if (jj_buf_put(c, pos, &b, s.p + i, s.n - i))
        return c->err;
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

/* A growable list. */
typedef struct {
    jv_t *v;
    size_t n, cap;
} vec_t;

static int vec_push(jj_ctx_t *c, size_t pos, vec_t *v, jv_t x)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        jv_t *nv = jj_calloc(c, pos, cap, sizeof *nv);
        if (!nv)
            return c->err;
        if (v->n)
            memcpy(nv, v->v, v->n * sizeof *nv);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return 0;
}

static jv_t vec_list(jj_ctx_t *c, size_t pos, vec_t *v, bool tuple)
{
    jv_list_t *l = jv_list_new(c, pos, 0);
    if (!l)
        return jv_none();
    l->n = v->n;
    l->v = v->v;
    l->tuple = tuple;
    return list_val(l);
}

static int str_split(jj_ctx_t *c, size_t pos, jj_str_t s, const jv_t *sepv, int64_t maxsplit,
                     bool from_right, jv_t *out)
{
    vec_t parts = {0};
    if (!sepv || sepv->t == JV_NONE) {
        /* runs of whitespace; leading/trailing ignored */
        if (from_right) {
            size_t e = s.n;
            while (true) {
                e -= jj_ws_suffix(s.p, e);
                if (e == 0)
                    break;
                size_t b = e;
                if (maxsplit >= 0 && (int64_t)parts.n >= maxsplit) {
                    b = 0;
                } else {
                    while (b > 0 && jj_ws_suffix(s.p, b) == 0)
                        b--;
                }
                if (vec_push(c, pos, &parts, jv_str(s.p + b, e - b)))
                    return c->err;
                e = b;
            }
            for (size_t i = 0; i < parts.n / 2; i++) {
                jv_t t = parts.v[i];
                parts.v[i] = parts.v[parts.n - 1 - i];
                parts.v[parts.n - 1 - i] = t;
            }
        } else {
            size_t i = 0;
            while (true) {
                i += jj_ws_prefix(s.p + i, s.n - i);
                if (i >= s.n)
                    break;
                size_t e = i;
                if (maxsplit >= 0 && (int64_t)parts.n >= maxsplit) {
                    e = s.n - jj_ws_suffix(s.p + i, s.n - i);
                } else {
                    while (e < s.n && jj_ws_prefix(s.p + e, s.n - e) == 0) {
                        uint32_t cp;
                        e += jj_u8_decode(s.p + e, s.n - e, &cp);
                    }
                }
                if (vec_push(c, pos, &parts, jv_str(s.p + i, e - i)))
                    return c->err;
                i = e;
            }
        }
    } else {
        jj_str_t sep;
        if (need_str(c, pos, sepv, "split", &sep))
            return c->err;
        if (sep.n == 0)
            return jj_fail(c, pos, QD_EINVAL, "split: empty separator");
        if (from_right) {
            size_t e = s.n;
            vec_t rev = {0};
            while (maxsplit < 0 || (int64_t)rev.n < maxsplit) {
                const char *hit = NULL;
                for (size_t k = e; k >= sep.n; k--) {
                    if (memcmp(s.p + k - sep.n, sep.p, sep.n) == 0) {
                        hit = s.p + k - sep.n;
                        break;
                    }
                }
                if (!hit)
                    break;
                size_t h = (size_t)(hit - s.p);
                if (vec_push(c, pos, &rev, jv_str(s.p + h + sep.n, e - h - sep.n)))
                    return c->err;
                e = h;
            }
            if (vec_push(c, pos, &parts, jv_str(s.p, e)))
                return c->err;
            for (size_t k = rev.n; k-- > 0;)
                if (vec_push(c, pos, &parts, rev.v[k]))
                    return c->err;
        } else {
            size_t i = 0;
            const char *hit;
            while ((maxsplit < 0 || (int64_t)parts.n < maxsplit) && (hit = find_sub(s, sep, i))) {
                size_t h = (size_t)(hit - s.p);
                if (vec_push(c, pos, &parts, jv_str(s.p + i, h - i)))
                    return c->err;
                i = h + sep.n;
            }
            if (vec_push(c, pos, &parts, jv_str(s.p + i, s.n - i)))
                return c->err;
        }
    }
    if (jj_step(c, pos, (long)parts.n))
        return c->err;
    *out = vec_list(c, pos, &parts, false);
    return c->err;
}

/* Python str.splitlines() boundaries. Returns the break length at i (0: none). */
static size_t line_break_at(jj_str_t s, size_t i)
{
    unsigned char ch = (unsigned char)s.p[i];
    if (ch == '\r')
        return i + 1 < s.n && s.p[i + 1] == '\n' ? 2 : 1;
    if (ch == '\n' || ch == '\v' || ch == '\f' || (ch >= 0x1C && ch <= 0x1E))
        return 1;
    if (ch >= 0x80) {
        uint32_t cp;
        size_t k = jj_u8_decode(s.p + i, s.n - i, &cp);
        if (cp == 0x85 || cp == 0x2028 || cp == 0x2029)
            return k;
    }
    return 0;
}

static int splitlines(jj_ctx_t *c, size_t pos, jj_str_t s, bool keepends, vec_t *out)
{
    size_t start = 0, i = 0;
    while (i < s.n) {
        size_t k = line_break_at(s, i);
        if (!k) {
            i++;
            continue;
        }
        if (vec_push(c, pos, out, jv_str(s.p + start, (keepends ? i + k : i) - start)))
            return c->err;
        i += k;
        start = i;
    }
    if (start < s.n && vec_push(c, pos, out, jv_str(s.p + start, s.n - start)))
        return c->err;
    return 0;
}

static int html_escape(jj_ctx_t *c, size_t pos, jj_str_t s, jv_t *out)
{
    jj_buf_t b = {.max = c->max_out};
    for (size_t i = 0; i < s.n; i++) {
        const char *r = NULL;
        switch (s.p[i]) {
        case '&': r = "&amp;"; break;
        case '<': r = "&lt;"; break;
        case '>': r = "&gt;"; break;
        case '"': r = "&#34;"; break;
        case '\'': r = "&#39;"; break;
        }
        if (r ? jj_buf_put(c, pos, &b, r, strlen(r)) : jj_buf_putc(c, pos, &b, s.p[i]))
            return c->err;
    }
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

/* Python str.format with {} / {0} / {name} fields (no format specs). */
static int str_format(jj_ctx_t *c, size_t pos, jj_str_t f, const jj_args_t *a, jv_t *out)
{
    jj_buf_t b = {.max = c->max_out};
    size_t np = n_positional(a), auto_i = 0;
    for (size_t i = 0; i < f.n; i++) {
        char ch = f.p[i];
        if ((ch == '{' || ch == '}') && i + 1 < f.n && f.p[i + 1] == ch) {
            if (jj_buf_putc(c, pos, &b, ch))
                return c->err;
            i++;
            continue;
        }
        if (ch == '}')
            return jj_fail(c, pos, QD_EINVAL, "format: single '}' encountered");
        if (ch != '{') {
            if (jj_buf_putc(c, pos, &b, ch))
                return c->err;
            continue;
        }
        const char *end = memchr(f.p + i, '}', f.n - i);
        if (!end)
            return jj_fail(c, pos, QD_EINVAL, "format: single '{' encountered");
        jj_str_t field = {f.p + i + 1, (size_t)(end - f.p) - i - 1};
        const jv_t *v = NULL;
        if (memchr(field.p, ':', field.n) || memchr(field.p, '!', field.n) ||
            memchr(field.p, '.', field.n) || memchr(field.p, '[', field.n))
            return jj_fail(c, pos, QD_EINVAL, "format: field specs are not supported");
        if (field.n == 0) {
            if (auto_i < np)
                v = &a->v[auto_i++];
        } else if (field.p[0] >= '0' && field.p[0] <= '9') {
            size_t idx = (size_t)strtoul(field.p, NULL, 10);
            if (idx < np)
                v = &a->v[idx];
        } else {
            for (size_t k = np; k < a->n; k++)
                if (a->kw[k].n == field.n && memcmp(a->kw[k].p, field.p, field.n) == 0)
                    v = &a->v[k];
        }
        if (!v)
            return jj_fail(c, pos, QD_EINVAL, "format: missing argument for field '{%.*s}'",
                           (int)QD_MIN(field.n, 40), field.p);
        if (jv_write_str(c, pos, &b, v))
            return c->err;
        i = (size_t)(end - f.p);
    }
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

/* ---- methods ----------------------------------------------------------- */
static const char *const str_methods[] = {
    "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "rsplit",
    "splitlines", "upper", "lower", "title", "capitalize", "swapcase", "casefold",
    "replace", "find", "rfind", "index", "rindex", "count", "join", "format",
    "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "isnumeric",
    "isdecimal", "center", "ljust", "rjust", "zfill", "removeprefix", "removesuffix",
    "partition", "rpartition", NULL};
static const char *const dict_methods[] = {"items", "keys", "values", "get", "copy", NULL};
static const char *const list_methods[] = {"count", "index", "copy", NULL};

static bool in_list(const char *const *l, jj_str_t name)
{
    for (; *l; l++)
        if (jj_str_eq(name, *l))
            return true;
    return false;
}

bool jj_method_lookup(jj_ctx_t *c, const jv_t *recv, jj_str_t name, jv_t *out)
{
    const char *const *l = recv->t == JV_STR ? str_methods : recv->t == JV_DICT ? dict_methods
                           : recv->t == JV_LIST ? list_methods : NULL;
    if (recv->t == JV_DICT && (jj_str_eq(name, "pop") || jj_str_eq(name, "popitem") ||
                               jj_str_eq(name, "update") || jj_str_eq(name, "clear") ||
                               jj_str_eq(name, "setdefault"))) {
        *out = jv_undef(name); /* mutating methods: unsafe in the immutable sandbox */
        return true;
    }
    if (recv->t == JV_LIST && (jj_str_eq(name, "append") || jj_str_eq(name, "extend") ||
                               jj_str_eq(name, "insert") || jj_str_eq(name, "pop") ||
                               jj_str_eq(name, "remove") || jj_str_eq(name, "reverse") ||
                               jj_str_eq(name, "sort") || jj_str_eq(name, "clear"))) {
        *out = jv_undef(name);
        return true;
    }
    if (!l || !in_list(l, name))
        return false;
    jv_method_t *m = jj_calloc(c, 0, 1, sizeof *m);
    if (!m)
        return false;
    m->recv = *recv;
    m->name = name;
    out->t = JV_METHOD;
    out->u.m = m;
    return true;
}

static int dict_items(jj_ctx_t *c, size_t pos, const jv_dict_t *d, int what, jv_t *out)
{
    jv_list_t *l = jv_list_new(c, pos, d->n);
    if (!l)
        return c->err;
    for (size_t i = 0; i < d->n; i++) {
        if (what == 0) {
            jv_list_t *pair = jv_list_new(c, pos, 2);
            if (!pair)
                return c->err;
            pair->tuple = true;
            pair->v[0] = d->k[i];
            pair->v[1] = d->v[i];
            l->v[i] = list_val(pair);
        } else {
            l->v[i] = what == 1 ? d->k[i] : d->v[i];
        }
    }
    *out = list_val(l);
    return 0;
}

static int pred_str(jj_str_t s, int kind)
{
    if (s.n == 0)
        return 0;
    bool any_cased = false;
    for (size_t i = 0; i < s.n;) {
        uint32_t cp;
        i += jj_u8_decode(s.p + i, s.n - i, &cp);
        bool digit = cp >= '0' && cp <= '9';
        bool alpha = jj_cp_upper(cp) != jj_cp_lower(cp) || (cp >= 'a' && cp <= 'z') ||
                     (cp >= 'A' && cp <= 'Z');
        switch (kind) {
        case 0: if (!digit) return 0; break;
        case 1: if (!alpha) return 0; break;
        case 2: if (!alpha && !digit) return 0; break;
        case 3: if (!jj_is_space(cp)) return 0; break;
        case 4:
            if (alpha) {
                any_cased = true;
                if (jj_cp_lower(cp) != cp)
                    return 0;
            }
            break;
        case 5:
            if (alpha) {
                any_cased = true;
                if (jj_cp_upper(cp) != cp)
                    return 0;
            }
            break;
        }
    }
    return kind >= 4 ? any_cased : 1;
}

static int pad(jj_ctx_t *c, size_t pos, jj_str_t s, const jj_args_t *a, int how, jv_t *out)
{
    int64_t width = 0;
    const jv_t *w = arg(a, 0, "width"), *f = arg(a, 1, "fillchar");
    jj_str_t fill = {" ", 1};
    if (!w || need_int(c, pos, w, "pad", &width))
        return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "missing width");
    if (f && (need_str(c, pos, f, "pad", &fill) || jj_u8_len(fill.p, fill.n) != 1))
        return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "fill must be one character");
    int64_t len = (int64_t)jj_u8_len(s.p, s.n);
    if (width > (int64_t)c->max_out)
        return jj_fail(c, pos, QD_ETOOBIG, "width too large");
    if (width <= len) {
        *out = jv_str(s.p, s.n);
        return 0;
    }
    int64_t total = width - len, left;
    if (how == 0) /* center: CPython puts the odd extra on the left if width is odd */
        left = total / 2 + (total & width & 1);
    else
        left = how == 1 ? 0 : total;
    jj_buf_t b = {.max = c->max_out};
    for (int64_t i = 0; i < left; i++)
        if (jj_buf_put(c, pos, &b, fill.p, fill.n))
            return c->err;
    if (jj_buf_put(c, pos, &b, s.p, s.n))
        return c->err;
    for (int64_t i = left; i < total; i++)
        if (jj_buf_put(c, pos, &b, fill.p, fill.n))
            return c->err;
    *out = jv_str(b.p, b.n);
    return 0;
}

static int str_method(jj_ctx_t *c, size_t pos, jj_str_t s, jj_str_t name, const jj_args_t *a,
                      jv_t *out)
{
    const jv_t *a0 = arg(a, 0, NULL), *a1 = arg(a, 1, NULL);
    jj_str_t x, y;
    if (jj_str_eq(name, "strip"))
        return strip_args(c, pos, a, s, 3, out);
    if (jj_str_eq(name, "lstrip"))
        return strip_args(c, pos, a, s, 1, out);
    if (jj_str_eq(name, "rstrip"))
        return strip_args(c, pos, a, s, 2, out);
    if (jj_str_eq(name, "startswith") || jj_str_eq(name, "endswith")) {
        bool sw = name.p[0] == 's';
        if (!a0)
            return jj_fail(c, pos, QD_EINVAL, "%.*s: missing argument", (int)name.n, name.p);
        jj_str_t sub = s;
        if (a1 && a1->t != JV_NONE) { /* start (code points; ASCII fast path) */
            int64_t st = 0;
            if (need_int(c, pos, a1, "startswith", &st))
                return c->err;
            int64_t len = (int64_t)jj_u8_len(s.p, s.n);
            if (st < 0)
                st = QD_MAX(st + len, 0);
            size_t off = 0;
            for (int64_t k = 0; k < st && off < s.n; k++) {
                uint32_t cp;
                off += jj_u8_decode(s.p + off, s.n - off, &cp);
            }
            if (st > len) {
                *out = jv_bool(false);
                return 0;
            }
            sub = (jj_str_t){s.p + off, s.n - off};
        }
        const jv_t *cands = a0;
        size_t nc = 1;
        if (a0->t == JV_LIST) {
            cands = a0->u.l->v;
            nc = a0->u.l->n;
        }
        for (size_t i = 0; i < nc; i++) {
            if (need_str(c, pos, &cands[i], "startswith/endswith", &x))
                return c->err;
            if (sw ? starts_with(sub, x) : ends_with(sub, x)) {
                *out = jv_bool(true);
                return 0;
            }
        }
        *out = jv_bool(false);
        return 0;
    }
    if (jj_str_eq(name, "split") || jj_str_eq(name, "rsplit")) {
        int64_t maxsplit = -1;
        const jv_t *ms = arg(a, 1, "maxsplit");
        if (ms && need_int(c, pos, ms, "split", &maxsplit))
            return c->err;
        return str_split(c, pos, s, arg(a, 0, "sep"), maxsplit, name.p[0] == 'r', out);
    }
    if (jj_str_eq(name, "splitlines")) {
        vec_t v = {0};
        const jv_t *ke = arg(a, 0, "keepends");
        if (splitlines(c, pos, s, ke && jv_truthy(ke), &v))
            return c->err;
        *out = vec_list(c, pos, &v, false);
        return c->err;
    }
    if (jj_str_eq(name, "upper"))
        return case_map(c, pos, s, 1, out);
    if (jj_str_eq(name, "lower") || jj_str_eq(name, "casefold"))
        return case_map(c, pos, s, 0, out);
    if (jj_str_eq(name, "capitalize"))
        return case_map(c, pos, s, 2, out);
    if (jj_str_eq(name, "swapcase"))
        return case_map(c, pos, s, 3, out);
    if (jj_str_eq(name, "title"))
        return case_map(c, pos, s, 4, out);
    if (jj_str_eq(name, "replace")) {
        int64_t count = -1;
        if (!a0 || !a1 || need_str(c, pos, a0, "replace", &x) ||
            need_str(c, pos, a1, "replace", &y))
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "replace: missing argument");
        const jv_t *cnt = arg(a, 2, "count");
        if (cnt && need_int(c, pos, cnt, "replace", &count))
            return c->err;
        return str_replace(c, pos, s, x, y, count, out);
    }
    if (jj_str_eq(name, "find") || jj_str_eq(name, "index") || jj_str_eq(name, "rfind") ||
        jj_str_eq(name, "rindex") || jj_str_eq(name, "count")) {
        if (!a0 || need_str(c, pos, a0, "find", &x))
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "missing argument");
        if (jj_str_eq(name, "count")) {
            int64_t k = 0;
            if (x.n == 0) {
                k = (int64_t)jj_u8_len(s.p, s.n) + 1;
            } else {
                const char *h;
                for (size_t i = 0; (h = find_sub(s, x, i)); i = (size_t)(h - s.p) + x.n)
                    k++;
            }
            *out = jv_int(k);
            return 0;
        }
        const char *hit = NULL;
        if (name.p[0] == 'r') {
            for (size_t k = s.n + 1; k-- > 0;) {
                if (k + x.n <= s.n && memcmp(s.p + k, x.p, x.n) == 0) {
                    hit = s.p + k;
                    break;
                }
            }
        } else {
            hit = find_sub(s, x, 0);
        }
        if (!hit && (jj_str_eq(name, "index") || jj_str_eq(name, "rindex")))
            return jj_fail(c, pos, QD_EINVAL, "substring not found");
        *out = jv_int(hit ? (int64_t)jj_u8_len(s.p, (size_t)(hit - s.p)) : -1);
        return 0;
    }
    if (jj_str_eq(name, "join")) {
        const jv_t *items;
        size_t n;
        if (!a0 || jv_iterate(c, pos, a0, &items, &n))
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "join: missing argument");
        jj_buf_t b = {.max = c->max_out};
        for (size_t i = 0; i < n; i++) {
            if (need_str(c, pos, &items[i], "join", &x) ||
                (i && jj_buf_put(c, pos, &b, s.p, s.n)) || jj_buf_put(c, pos, &b, x.p, x.n))
                return c->err;
        }
        *out = jv_str(b.p ? b.p : "", b.n);
        return 0;
    }
    if (jj_str_eq(name, "format"))
        return str_format(c, pos, s, a, out);
    static const char *const preds[] = {"isdigit", "isalpha", "isalnum", "isspace",
                                        "islower", "isupper", "isnumeric", "isdecimal"};
    for (int k = 0; k < 8; k++) {
        if (jj_str_eq(name, preds[k])) {
            *out = jv_bool(pred_str(s, k >= 6 ? 0 : k));
            return 0;
        }
    }
    if (jj_str_eq(name, "center"))
        return pad(c, pos, s, a, 0, out);
    if (jj_str_eq(name, "ljust"))
        return pad(c, pos, s, a, 1, out);
    if (jj_str_eq(name, "rjust"))
        return pad(c, pos, s, a, 2, out);
    if (jj_str_eq(name, "zfill")) {
        int64_t w;
        if (!a0 || need_int(c, pos, a0, "zfill", &w))
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "zfill: missing width");
        int64_t len = (int64_t)jj_u8_len(s.p, s.n);
        if (w > (int64_t)c->max_out)
            return jj_fail(c, pos, QD_ETOOBIG, "width too large");
        if (w <= len) {
            *out = jv_str(s.p, s.n);
            return 0;
        }
        jj_buf_t b = {.max = c->max_out};
        size_t sign = s.n && (s.p[0] == '-' || s.p[0] == '+');
        if (jj_buf_put(c, pos, &b, s.p, sign))
            return c->err;
        for (int64_t i = 0; i < w - len; i++)
            if (jj_buf_putc(c, pos, &b, '0'))
                return c->err;
        if (jj_buf_put(c, pos, &b, s.p + sign, s.n - sign))
            return c->err;
        *out = jv_str(b.p, b.n);
        return 0;
    }
    if (jj_str_eq(name, "removeprefix") || jj_str_eq(name, "removesuffix")) {
        if (!a0 || need_str(c, pos, a0, "removeprefix", &x))
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "missing argument");
        if (name.p[6] == 'p')
            *out = starts_with(s, x) ? jv_str(s.p + x.n, s.n - x.n) : jv_str(s.p, s.n);
        else
            *out = ends_with(s, x) ? jv_str(s.p, s.n - x.n) : jv_str(s.p, s.n);
        return 0;
    }
    if (jj_str_eq(name, "partition") || jj_str_eq(name, "rpartition")) {
        if (!a0 || need_str(c, pos, a0, "partition", &x))
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "missing argument");
        if (x.n == 0)
            return jj_fail(c, pos, QD_EINVAL, "partition: empty separator");
        const char *hit = NULL;
        if (name.p[0] == 'r') {
            for (size_t k = s.n + 1; k-- > 0;)
                if (k + x.n <= s.n && memcmp(s.p + k, x.p, x.n) == 0) {
                    hit = s.p + k;
                    break;
                }
        } else {
            hit = find_sub(s, x, 0);
        }
        jv_list_t *l = jv_list_new(c, pos, 3);
        if (!l)
            return c->err;
        l->tuple = true;
        if (!hit) {
            bool r = name.p[0] == 'r';
            l->v[0] = r ? jv_str("", 0) : jv_str(s.p, s.n);
            l->v[1] = jv_str("", 0);
            l->v[2] = r ? jv_str(s.p, s.n) : jv_str("", 0);
        } else {
            size_t h = (size_t)(hit - s.p);
            l->v[0] = jv_str(s.p, h);
            l->v[1] = jv_str(x.p, x.n);
            l->v[2] = jv_str(s.p + h + x.n, s.n - h - x.n);
        }
        *out = list_val(l);
        return 0;
    }
    return jj_fail(c, pos, QD_EINVAL, "str.%.*s is not supported", (int)name.n, name.p);
}

int jj_call_method(jj_ctx_t *c, size_t pos, const jv_method_t *m, const jj_args_t *a,
                   jv_t *out)
{
    const jv_t *r = &m->recv;
    const jv_t *a0 = arg(a, 0, NULL);
    if (jj_step(c, pos, 1))
        return c->err;
    if (r->t == JV_STR)
        return str_method(c, pos, r->u.s, m->name, a, out);
    if (r->t == JV_LOOP) { /* loop.cycle(a, b, ...) */
        size_t np = n_positional(a);
        if (np == 0)
            return jj_fail(c, pos, QD_EINVAL, "no items for cycling given");
        *out = a->v[r->u.loop->i % np];
        return 0;
    }
    if (r->t == JV_DICT) {
        const jv_dict_t *d = r->u.d;
        if (jj_str_eq(m->name, "items"))
            return dict_items(c, pos, d, 0, out);
        if (jj_str_eq(m->name, "keys"))
            return dict_items(c, pos, d, 1, out);
        if (jj_str_eq(m->name, "values"))
            return dict_items(c, pos, d, 2, out);
        if (jj_str_eq(m->name, "copy")) {
            *out = *r;
            return 0;
        }
        if (jj_str_eq(m->name, "get")) {
            if (!a0)
                return jj_fail(c, pos, QD_EINVAL, "get expected at least 1 argument");
            const jv_t *v = jv_dict_get(c, d, a0), *def = arg(a, 1, NULL);
            *out = v ? *v : def ? *def : jv_none();
            return c->err;
        }
    }
    if (r->t == JV_LIST) {
        const jv_list_t *l = r->u.l;
        if (jj_str_eq(m->name, "copy")) {
            *out = *r;
            return 0;
        }
        if (!a0)
            return jj_fail(c, pos, QD_EINVAL, "missing argument");
        int64_t k = 0, first = -1;
        for (size_t i = 0; i < l->n; i++) {
            bool eq;
            if (jv_eq(c, &l->v[i], a0, 0, &eq))
                return c->err;
            if (eq) {
                k++;
                if (first < 0)
                    first = (int64_t)i;
            }
        }
        if (jj_str_eq(m->name, "count")) {
            *out = jv_int(k);
            return 0;
        }
        if (first < 0)
            return jj_fail(c, pos, QD_EINVAL, "list.index(x): x not in list");
        *out = jv_int(first);
        return 0;
    }
    return jj_fail(c, pos, QD_EINVAL, "method '%.*s' is not supported", (int)m->name.n,
                   m->name.p);
}

/* ---- global functions ------------------------------------------------- */
static int kwargs_dict(jj_ctx_t *c, size_t pos, const jj_args_t *a, jv_dict_t *d)
{
    for (size_t k = n_positional(a); k < a->n; k++) {
        jv_t key = jv_str(a->kw[k].p, a->kw[k].n);
        if (jv_dict_set(c, pos, d, &key, &a->v[k]))
            return c->err;
    }
    return 0;
}

int jj_call_func(jj_ctx_t *c, size_t pos, int fn, const jv_t *self, const jj_args_t *a,
                 jv_t *out)
{
    size_t np = n_positional(a);
    (void)self;
    switch (fn) {
    case JF_RANGE: {
        int64_t v[3] = {0, 0, 1};
        if (np < 1 || np > 3 || np != a->n)
            return jj_fail(c, pos, QD_EINVAL, "range expected 1 to 3 integer arguments");
        for (size_t i = 0; i < np; i++)
            if (need_int(c, pos, &a->v[i], "range", &v[np == 1 ? 1 : i]))
                return c->err;
        if (v[2] == 0)
            return jj_fail(c, pos, QD_EINVAL, "range() arg 3 must not be zero");
        int64_t cnt = 0;
        if (v[2] > 0 && v[1] > v[0])
            cnt = (int64_t)(((uint64_t)v[1] - (uint64_t)v[0] - 1) / (uint64_t)v[2] + 1);
        else if (v[2] < 0 && v[1] < v[0])
            cnt = (int64_t)(((uint64_t)v[0] - (uint64_t)v[1] - 1) / (uint64_t)(-v[2]) + 1);
        if (cnt < 0 || cnt > c->max_steps || jj_step(c, pos, cnt))
            return c->err ? c->err : jj_fail(c, pos, QD_ETOOBIG, "range too large");
        jv_list_t *l = jv_list_new(c, pos, (size_t)cnt);
        if (!l)
            return c->err;
        for (int64_t i = 0; i < cnt; i++)
            l->v[i] = jv_int(v[0] + i * v[2]);
        *out = list_val(l);
        return 0;
    }
    case JF_NAMESPACE:
    case JF_DICT: {
        jv_dict_t *d = jv_dict_new(c, pos, 8);
        if (!d)
            return c->err;
        if (np > 1)
            return jj_fail(c, pos, QD_EINVAL, "expected at most 1 positional argument");
        if (np == 1) {
            if (a->v[0].t != JV_DICT)
                return jj_fail(c, pos, QD_EINVAL, "positional argument must be a dict");
            for (size_t i = 0; i < a->v[0].u.d->n; i++)
                if (jv_dict_set(c, pos, d, &a->v[0].u.d->k[i], &a->v[0].u.d->v[i]))
                    return c->err;
        }
        if (kwargs_dict(c, pos, a, d))
            return c->err;
        out->t = fn == JF_NAMESPACE ? JV_NS : JV_DICT;
        out->u.d = d;
        return 0;
    }
    case JF_RAISE: {
        jj_str_t msg = {"", 0};
        if (np >= 1 && soft_str(c, pos, &a->v[0], &msg))
            return c->err;
        return jj_fail(c, pos, QD_EINVAL, "%.*s", (int)QD_MIN(msg.n, 300), msg.p);
    }
    case JF_STRFTIME: {
        jj_str_t f;
        if (np != 1 || need_str(c, pos, &a->v[0], "strftime_now", &f))
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "strftime_now(format)");
        char fmt[256], buf[512];
        if (f.n >= sizeof fmt || memchr(f.p, 0, f.n))
            return jj_fail(c, pos, QD_EINVAL, "strftime_now: format too long");
        memcpy(fmt, f.p, f.n);
        fmt[f.n] = 0;
        struct tm tm;
        time_t t = c->now ? (time_t)c->now : time(NULL);
        if (!(c->now ? gmtime_r(&t, &tm) : localtime_r(&t, &tm)))
            return jj_fail(c, pos, QD_EINVAL, "strftime_now: bad time");
        size_t n = f.n ? strftime(buf, sizeof buf, fmt, &tm) : 0;
        char *o = jj_calloc(c, pos, n + 1, 1);
        if (!o)
            return c->err;
        memcpy(o, buf, n);
        *out = jv_str(o, n);
        return 0;
    }
    default: return jj_fail(c, pos, QD_EINTERNAL, "unknown function");
    }
}

/* ---- tests ------------------------------------------------------------- */
static const char *const test_names[] = {
    "defined", "undefined", "none", "boolean", "false", "true", "integer", "float",
    "number", "string", "mapping", "iterable", "sequence", "callable", "sameas",
    "escaped", "even", "odd", "divisibleby", "eq", "equalto", "==", "ne", "!=", "lt",
    "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "lower",
    "upper", "filter", "test", NULL};

bool jj_test_exists(jj_str_t name) { return in_list(test_names, name); }

static int int_mod(jj_ctx_t *c, size_t pos, const jv_t *v, const jv_t *m, bool *zero)
{
    if (v->t == JV_UNDEF)
        return jj_undefined_error(c, pos, v);
    if (!jv_is_num(v) || !jv_is_num(m))
        return jj_fail(c, pos, QD_EINVAL, "expected a number, got %s", jv_type_name(v));
    if (jv_num(m) == 0)
        return jj_fail(c, pos, QD_EINVAL, "modulo by zero");
    if (v->t == JV_FLOAT || m->t == JV_FLOAT) {
        double r = fmod(jv_num(v), jv_num(m));
        *zero = r == 0.0;
    } else {
        *zero = m->u.i == -1 || v->u.i % m->u.i == 0;
    }
    return 0;
}

int jj_test(jj_ctx_t *c, size_t pos, jj_str_t name, const jv_t *v, const jj_args_t *a,
            bool *out)
{
    const jv_t *a0 = arg(a, 0, NULL);
    int t = v->t;
    bool r = false;
    if (jj_str_eq(name, "defined"))
        r = t != JV_UNDEF;
    else if (jj_str_eq(name, "undefined"))
        r = t == JV_UNDEF;
    else if (jj_str_eq(name, "none"))
        r = t == JV_NONE;
    else if (jj_str_eq(name, "boolean"))
        r = t == JV_BOOL;
    else if (jj_str_eq(name, "false"))
        r = t == JV_BOOL && !v->u.i;
    else if (jj_str_eq(name, "true"))
        r = t == JV_BOOL && v->u.i;
    else if (jj_str_eq(name, "integer"))
        r = t == JV_INT;
    else if (jj_str_eq(name, "float"))
        r = t == JV_FLOAT;
    else if (jj_str_eq(name, "number"))
        r = jv_is_num(v);
    else if (jj_str_eq(name, "string"))
        r = t == JV_STR;
    else if (jj_str_eq(name, "mapping"))
        r = t == JV_DICT;
    else if (jj_str_eq(name, "iterable"))
        r = t == JV_STR || t == JV_LIST || t == JV_DICT || t == JV_UNDEF || t == JV_LOOP;
    else if (jj_str_eq(name, "sequence"))
        r = t == JV_STR || t == JV_LIST || t == JV_DICT;
    else if (jj_str_eq(name, "callable"))
        r = t == JV_MACRO || t == JV_FUNC || t == JV_METHOD || t == JV_UNDEF;
    else if (jj_str_eq(name, "escaped"))
        r = false;
    else if (jj_str_eq(name, "sameas")) {
        if (!a0)
            return jj_fail(c, pos, QD_EINVAL, "sameas needs an argument");
        if ((t == JV_NONE || t == JV_BOOL || t == JV_UNDEF) && a0->t == t)
            r = t != JV_BOOL || v->u.i == a0->u.i;
        else if (t == a0->t && (t == JV_DICT || t == JV_NS))
            r = v->u.d == a0->u.d;
        else if (t == JV_LIST && a0->t == JV_LIST)
            r = v->u.l == a0->u.l;
        else if (t == JV_INT && a0->t == JV_INT)
            r = v->u.i == a0->u.i && v->u.i >= -5 && v->u.i <= 256;
    } else if (jj_str_eq(name, "even") || jj_str_eq(name, "odd")) {
        bool zero;
        jv_t two = jv_int(2);
        if (int_mod(c, pos, v, &two, &zero))
            return c->err;
        r = zero == (name.p[0] == 'e');
    } else if (jj_str_eq(name, "divisibleby")) {
        if (!a0)
            return jj_fail(c, pos, QD_EINVAL, "divisibleby needs an argument");
        if (int_mod(c, pos, v, a0, &r))
            return c->err;
    } else if (jj_str_eq(name, "eq") || jj_str_eq(name, "equalto") || jj_str_eq(name, "==") ||
               jj_str_eq(name, "ne") || jj_str_eq(name, "!=")) {
        if (!a0)
            return jj_fail(c, pos, QD_EINVAL, "missing argument for test");
        if (jv_eq(c, v, a0, 0, &r))
            return c->err;
        if (name.p[0] == 'n' || name.p[0] == '!')
            r = !r;
    } else if (jj_str_eq(name, "lt") || jj_str_eq(name, "lessthan") || jj_str_eq(name, "<") ||
               jj_str_eq(name, "le") || jj_str_eq(name, "<=") || jj_str_eq(name, "gt") ||
               jj_str_eq(name, "greaterthan") || jj_str_eq(name, ">") ||
               jj_str_eq(name, "ge") || jj_str_eq(name, ">=")) {
        int cmp;
        if (!a0)
            return jj_fail(c, pos, QD_EINVAL, "missing argument for test");
        if (jv_cmp(c, pos, v, a0, &cmp))
            return c->err;
        bool lt = name.p[0] == 'l' || name.p[0] == '<';
        bool eq = name.n == 2 && (name.p[1] == 'e' || name.p[1] == '=');
        r = lt ? (eq ? cmp <= 0 : cmp < 0) : (eq ? cmp >= 0 : cmp > 0);
    } else if (jj_str_eq(name, "in")) {
        if (!a0)
            return jj_fail(c, pos, QD_EINVAL, "missing argument for test");
        const jv_t *items;
        size_t n;
        if (a0->t == JV_STR) {
            if (t != JV_STR)
                return jj_fail(c, pos, QD_EINVAL, "'in <string>' requires string as left operand");
            r = memmem(a0->u.s.p, a0->u.s.n, v->u.s.p, v->u.s.n) != NULL || v->u.s.n == 0;
        } else if (a0->t == JV_DICT) {
            r = jv_dict_get(c, a0->u.d, v) != NULL;
        } else {
            if (jv_iterate(c, pos, a0, &items, &n))
                return c->err;
            for (size_t i = 0; i < n && !r; i++)
                if (jv_eq(c, v, &items[i], 0, &r))
                    return c->err;
        }
    } else if (jj_str_eq(name, "lower") || jj_str_eq(name, "upper")) {
        jj_str_t s;
        if (soft_str(c, pos, v, &s))
            return c->err;
        r = pred_str(s, name.p[0] == 'l' ? 4 : 5);
    } else if (jj_str_eq(name, "filter") || jj_str_eq(name, "test")) {
        jj_str_t s;
        if (!a0 && t == JV_STR)
            s = v->u.s;
        else if (t == JV_STR)
            s = v->u.s;
        else
            return jj_fail(c, pos, QD_EINVAL, "expected a name");
        r = name.p[0] == 'f' ? jj_filter_exists(s) : jj_test_exists(s);
    } else {
        return jj_fail(c, pos, QD_EINVAL, "no test named '%.*s'", (int)QD_MIN(name.n, 40),
                       name.p);
    }
    *out = r;
    return 0;
}

/* ---- filters ----------------------------------------------------------- */
static const char *const filter_names[] = {
    "trim", "tojson", "length", "count", "items", "upper", "lower", "capitalize",
    "title", "default", "d", "join", "first", "last", "list", "string", "int",
    "float", "abs", "replace", "selectattr", "rejectattr", "map", "select", "reject",
    "unique", "sort", "reverse", "safe", "escape", "e", "round", "min", "max", "sum",
    "dictsort", "indent", "wordcount", "center", "batch", "attr", "format", NULL};

bool jj_filter_exists(jj_str_t name) { return in_list(filter_names, name); }

/* Item getter of selectattr/map(attribute=)/sort(attribute=): "a.b.0". */
static int get_path(jj_ctx_t *c, size_t pos, const jv_t *item, jj_str_t path, jv_t *out)
{
    jv_t cur = *item;
    size_t i = 0;
    while (true) {
        const char *dot = memchr(path.p + i, '.', path.n - i);
        size_t e = dot ? (size_t)(dot - path.p) : path.n;
        jj_str_t part = {path.p + i, e - i};
        bool digits = part.n > 0;
        for (size_t k = 0; k < part.n; k++)
            digits &= part.p[k] >= '0' && part.p[k] <= '9';
        jv_t key = digits && part.n < 18 ? jv_int(strtoll(part.p, NULL, 10))
                                         : jv_str(part.p, part.n);
        if (jj_getitem(c, pos, &cur, &key, &cur))
            return c->err;
        if (!dot)
            break;
        i = e + 1;
    }
    *out = cur;
    return 0;
}

static int attr_arg(jj_ctx_t *c, size_t pos, const jv_t *v, jj_str_t *out)
{
    if (v->t == JV_STR) {
        *out = v->u.s;
        return 0;
    }
    if (v->t == JV_INT) {
        char *b = jj_calloc(c, pos, 24, 1);
        if (!b)
            return c->err;
        out->n = (size_t)snprintf(b, 24, "%lld", (long long)v->u.i);
        out->p = b;
        return 0;
    }
    return jj_fail(c, pos, QD_EINVAL, "attribute must be a string");
}

/* Args of select/reject after `skip` leading ones: test name + its args. */
static int select_common(jj_ctx_t *c, size_t pos, const jv_t *in, const jj_args_t *a,
                         bool by_attr, bool keep_if, jv_t *out)
{
    const jv_t *items;
    size_t n, np = n_positional(a), first = 0;
    jj_str_t attr = {0}, test = {0};
    if (jv_iterate(c, pos, in, &items, &n))
        return c->err;
    if (by_attr) {
        if (np < 1 || attr_arg(c, pos, &a->v[0], &attr))
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "missing attribute name");
        first = 1;
    }
    if (np > first) {
        if (need_str(c, pos, &a->v[first], "select", &test))
            return c->err;
        if (!jj_test_exists(test))
            return jj_fail(c, pos, QD_EINVAL, "no test named '%.*s'", (int)QD_MIN(test.n, 40),
                           test.p);
    }
    /* The test's own arguments follow the attribute and test name; a
     * filter called with none has no argument arrays at all. */
    size_t skip = QD_MIN(a->n, first + 1);
    jj_args_t targs = {.n = a->n - skip, .v = a->v ? a->v + skip : NULL,
                       .kw = a->kw ? a->kw + skip : NULL};
    vec_t res = {0};
    if (jj_step(c, pos, (long)n))
        return c->err;
    for (size_t i = 0; i < n; i++) {
        jv_t val = items[i];
        bool ok;
        if (by_attr && get_path(c, pos, &items[i], attr, &val))
            return c->err;
        if (test.p) {
            if (jj_test(c, pos, test, &val, &targs, &ok))
                return c->err;
        } else {
            ok = jv_truthy(&val);
        }
        if (ok == keep_if && vec_push(c, pos, &res, items[i]))
            return c->err;
    }
    *out = vec_list(c, pos, &res, false);
    return c->err;
}

/* Stable merge sort of (key, value) pairs by key. */
typedef struct {
    jv_t key, val;
} kv_t;

static int msort(jj_ctx_t *c, size_t pos, kv_t *v, kv_t *tmp, size_t n, bool reverse)
{
    if (n < 2)
        return 0;
    size_t h = n / 2;
    if (msort(c, pos, v, tmp, h, reverse) || msort(c, pos, v + h, tmp, n - h, reverse))
        return c->err;
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int cmp;
        if (jv_cmp(c, pos, &v[j].key, &v[i].key, &cmp))
            return c->err;
        if (reverse)
            cmp = -cmp;
        tmp[k++] = cmp < 0 ? v[j++] : v[i++];
    }
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
    return jj_step(c, pos, (long)n);
}

/* Keys for sort/unique/min/max: attribute path, then lowercase strings
 * unless case_sensitive. */
static int sort_key(jj_ctx_t *c, size_t pos, const jv_t *item, jj_str_t attr, bool cs, jv_t *out)
{
    *out = *item;
    if (attr.p && get_path(c, pos, item, attr, out))
        return c->err;
    if (!cs && out->t == JV_STR)
        return case_map(c, pos, out->u.s, 0, out);
    return 0;
}

static int keyed(jj_ctx_t *c, size_t pos, const jv_t *in, const jj_args_t *a, size_t cs_i,
                 size_t attr_i, kv_t **out, size_t *n)
{
    const jv_t *items;
    if (jv_iterate(c, pos, in, &items, n))
        return c->err;
    const jv_t *csv = arg(a, cs_i, "case_sensitive"), *av = arg(a, attr_i, "attribute");
    jj_str_t attr = {0};
    if (av && av->t != JV_NONE && attr_arg(c, pos, av, &attr))
        return c->err;
    kv_t *kv = jj_calloc(c, pos, *n ? *n : 1, sizeof *kv);
    if (!kv)
        return c->err;
    for (size_t i = 0; i < *n; i++) {
        kv[i].val = items[i];
        if (sort_key(c, pos, &items[i], attr, csv && jv_truthy(csv), &kv[i].key))
            return c->err;
    }
    *out = kv;
    return 0;
}

static int to_int(jj_ctx_t *c, size_t pos, const jv_t *v, const jj_args_t *a, jv_t *out)
{
    const jv_t *def = arg(a, 0, "default"), *basev = arg(a, 1, "base");
    jv_t d = def ? *def : jv_int(0);
    int64_t base = 10;
    if (basev && need_int(c, pos, basev, "int", &base))
        return c->err;
    switch (v->t) {
    case JV_INT:
    case JV_BOOL: *out = jv_int(v->u.i); return 0;
    case JV_FLOAT:
        if (!isfinite(v->u.f) || fabs(v->u.f) >= 9.2e18) {
            *out = d;
            return 0;
        }
        *out = jv_int((int64_t)v->u.f);
        return 0;
    case JV_STR: {
        char buf[128];
        jj_str_t s = strip(v->u.s, NULL, 3);
        size_t bn = 0;
        for (size_t i = 0; i < s.n && bn + 1 < sizeof buf; i++)
            if (s.p[i] != '_')
                buf[bn++] = s.p[i];
        buf[bn] = 0;
        if (bn == 0 || s.n >= sizeof buf || base < 2 || base > 36) {
            *out = d;
            return 0;
        }
        char *e;
        errno = 0;
        long long r = strtoll(buf, &e, (int)base);
        if (!*e && !errno) {
            *out = jv_int(r);
            return 0;
        }
        double f = strtod(buf, &e); /* jinja2 falls back to int(float(s)) */
        if (!*e && isfinite(f) && fabs(f) < 9.2e18 && base == 10) {
            *out = jv_int((int64_t)f);
            return 0;
        }
        *out = d;
        return 0;
    }
    default: *out = d; return 0;
    }
}

static int filter_tojson(jj_ctx_t *c, size_t pos, const jv_t *in, const jj_args_t *a, jv_t *out)
{
    const jv_t *ea = arg(a, 0, "ensure_ascii"), *ind = arg(a, 1, "indent"),
               *sep = arg(a, 2, "separators"), *sk = arg(a, 3, "sort_keys");
    if (ea && jv_truthy(ea))
        return jj_fail(c, pos, QD_EUNSUPPORTED, "tojson: ensure_ascii=True is not supported");
    if (sep && sep->t != JV_NONE)
        return jj_fail(c, pos, QD_EUNSUPPORTED, "tojson: separators are not supported");
    const char *indent = NULL;
    size_t indent_n = 0;
    if (ind && ind->t != JV_NONE) {
        if (ind->t == JV_STR) {
            indent = ind->u.s.p;
            indent_n = ind->u.s.n;
        } else if (ind->t == JV_INT) {
            int64_t k = ind->u.i < 0 ? 0 : ind->u.i;
            if (k > 64)
                return jj_fail(c, pos, QD_EINVAL, "tojson: indent too large");
            char *sp = jj_calloc(c, pos, (size_t)k + 1, 1);
            if (!sp)
                return c->err;
            memset(sp, ' ', (size_t)k);
            indent = sp;
            indent_n = (size_t)k;
        } else {
            return jj_fail(c, pos, QD_EINVAL, "tojson: indent must be an int or a string");
        }
    }
    jj_buf_t b = {.max = c->max_out};
    if (in->t == JV_UNDEF)
        return jj_fail(c, pos, QD_EINVAL, "tojson: object of type Undefined is not JSON "
                                          "serializable");
    if (jv_write_json(c, pos, &b, in, indent, indent_n, sk && jv_truthy(sk), 0))
        return c->err;
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

static int filter_title(jj_ctx_t *c, size_t pos, jj_str_t s, jv_t *out)
{
    /* jinja2: words start after runs of [-\s(\{\[<]; first char upper, rest lower */
    char *o = jj_calloc(c, pos, s.n * 2 + 1, 1);
    if (!o)
        return c->err;
    size_t on = 0;
    bool word_start = true;
    for (size_t i = 0; i < s.n;) {
        uint32_t cp;
        i += jj_u8_decode(s.p + i, s.n - i, &cp);
        bool delim = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' ||
                     jj_is_space(cp);
        uint32_t m = delim ? cp : word_start ? jj_cp_upper(cp) : jj_cp_lower(cp);
        word_start = delim;
        on += jj_u8_encode(m, o + on);
    }
    *out = jv_str(o, on);
    return 0;
}

static int filter_indent(jj_ctx_t *c, size_t pos, jj_str_t s, const jj_args_t *a, jv_t *out)
{
    const jv_t *w = arg(a, 0, "width"), *fi = arg(a, 1, "first"), *bl = arg(a, 2, "blank");
    jj_str_t ind = {"    ", 4};
    if (w && w->t == JV_STR) {
        ind = w->u.s;
    } else if (w) {
        int64_t k = 0;
        if (need_int(c, pos, w, "indent", &k))
            return c->err;
        k = k < 0 ? 0 : k;
        if (k > 256)
            return jj_fail(c, pos, QD_EINVAL, "indent: width too large");
        char *sp = jj_calloc(c, pos, (size_t)k + 1, 1);
        if (!sp)
            return c->err;
        memset(sp, ' ', (size_t)k);
        ind = (jj_str_t){sp, (size_t)k};
    }
    char *tmp = jj_calloc(c, pos, s.n + 2, 1);
    if (!tmp)
        return c->err;
    memcpy(tmp, s.p, s.n);
    tmp[s.n] = '\n';
    vec_t lines = {0};
    if (splitlines(c, pos, (jj_str_t){tmp, s.n + 1}, false, &lines))
        return c->err;
    jj_buf_t b = {.max = c->max_out};
    if (fi && jv_truthy(fi) && jj_buf_put(c, pos, &b, ind.p, ind.n))
        return c->err;
    bool blank = bl && jv_truthy(bl);
    for (size_t i = 0; i < lines.n; i++) {
        jj_str_t ln = lines.v[i].u.s;
        if (i && jj_buf_putc(c, pos, &b, '\n'))
            return c->err;
        if (i && (blank || ln.n) && jj_buf_put(c, pos, &b, ind.p, ind.n))
            return c->err;
        if (jj_buf_put(c, pos, &b, ln.p, ln.n))
            return c->err;
    }
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

static int filter_map(jj_ctx_t *c, size_t pos, const jv_t *in, const jj_args_t *a, jv_t *out)
{
    const jv_t *items;
    size_t n, np = n_positional(a);
    if (jv_iterate(c, pos, in, &items, &n))
        return c->err;
    const jv_t *attrv = arg(a, 99, "attribute"), *def = arg(a, 99, "default");
    jj_str_t attr = {0}, fname = {0};
    if (attrv) {
        if (attr_arg(c, pos, attrv, &attr))
            return c->err;
    } else {
        if (np < 1 || need_str(c, pos, &a->v[0], "map", &fname))
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "map: missing filter name");
        if (!jj_filter_exists(fname))
            return jj_fail(c, pos, QD_EINVAL, "no filter named '%.*s'",
                           (int)QD_MIN(fname.n, 40), fname.p);
    }
    jj_args_t fargs = {.n = a->n ? a->n - 1 : 0, .v = a->v + 1, .kw = a->kw + 1};
    jv_list_t *l = jv_list_new(c, pos, n);
    if (!l || jj_step(c, pos, (long)n))
        return c->err;
    for (size_t i = 0; i < n; i++) {
        if (attr.p) {
            if (get_path(c, pos, &items[i], attr, &l->v[i]))
                return c->err;
            if (l->v[i].t == JV_UNDEF && def)
                l->v[i] = *def;
        } else if (jj_filter(c, pos, fname, &items[i], &fargs, &l->v[i])) {
            return c->err;
        }
    }
    *out = list_val(l);
    return 0;
}

int jj_filter(jj_ctx_t *c, size_t pos, jj_str_t name, const jv_t *in, const jj_args_t *a,
              jv_t *out)
{
    const jv_t *a0 = arg(a, 0, NULL);
    jj_str_t s;
    const jv_t *items;
    size_t n;
    if (jj_step(c, pos, 1))
        return c->err;
#define IS(z) jj_str_eq(name, z)
    if (IS("trim")) {
        if (soft_str(c, pos, in, &s))
            return c->err;
        return strip_args(c, pos, a, s, 3, out);
    }
    if (IS("tojson"))
        return filter_tojson(c, pos, in, a, out);
    if (IS("length") || IS("count")) {
        int64_t len = jv_len(in);
        if (len < 0)
            return jj_fail(c, pos, QD_EINVAL, "object of type '%s' has no len()",
                           jv_type_name(in));
        *out = jv_int(len);
        return 0;
    }
    if (IS("items")) {
        if (in->t == JV_UNDEF) {
            jv_list_t *l = jv_list_new(c, pos, 0);
            if (!l)
                return c->err;
            *out = list_val(l);
            return 0;
        }
        if (in->t != JV_DICT)
            return jj_fail(c, pos, QD_EINVAL, "can only get item pairs from a mapping");
        return dict_items(c, pos, in->u.d, 0, out);
    }
    if (IS("upper") || IS("lower") || IS("capitalize")) {
        if (soft_str(c, pos, in, &s))
            return c->err;
        return case_map(c, pos, s, IS("upper") ? 1 : IS("lower") ? 0 : 2, out);
    }
    if (IS("title")) {
        if (soft_str(c, pos, in, &s))
            return c->err;
        return filter_title(c, pos, s, out);
    }
    if (IS("default") || IS("d")) {
        const jv_t *def = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
        bool use = in->t == JV_UNDEF || (boolean && jv_truthy(boolean) && !jv_truthy(in));
        *out = use ? (def ? *def : jv_str("", 0)) : *in;
        return 0;
    }
    if (IS("join")) {
        const jv_t *sep = arg(a, 0, "d"), *attrv = arg(a, 1, "attribute");
        jj_str_t sp = {"", 0}, attr = {0};
        if (sep && soft_str(c, pos, sep, &sp))
            return c->err;
        if (attrv && attrv->t != JV_NONE && attr_arg(c, pos, attrv, &attr))
            return c->err;
        if (jv_iterate(c, pos, in, &items, &n) || jj_step(c, pos, (long)n))
            return c->err;
        jj_buf_t b = {.max = c->max_out};
        for (size_t i = 0; i < n; i++) {
            jv_t it = items[i];
            if (attr.p && get_path(c, pos, &items[i], attr, &it))
                return c->err;
            if ((i && jj_buf_put(c, pos, &b, sp.p, sp.n)) || jv_write_str(c, pos, &b, &it))
                return c->err;
        }
        *out = jv_str(b.p ? b.p : "", b.n);
        return 0;
    }
    if (IS("first") || IS("last")) {
        if (jv_iterate(c, pos, in, &items, &n))
            return c->err;
        if (n == 0) {
            if (IS("last") && in->t != JV_LIST && in->t != JV_STR && in->t != JV_UNDEF)
                return jj_fail(c, pos, QD_EINVAL, "last: not a sequence");
            *out = jv_undef((jj_str_t){NULL, 0});
        } else {
            *out = IS("first") ? items[0] : items[n - 1];
        }
        return 0;
    }
    if (IS("list")) {
        if (jv_iterate(c, pos, in, &items, &n))
            return c->err;
        jv_list_t *l = jv_list_new(c, pos, n);
        if (!l)
            return c->err;
        if (n)
            memcpy(l->v, items, n * sizeof *items);
        *out = list_val(l);
        return 0;
    }
    if (IS("string") || IS("safe"))
        return jv_to_str(c, pos, in, out);
    if (IS("escape") || IS("e")) {
        if (soft_str(c, pos, in, &s))
            return c->err;
        return html_escape(c, pos, s, out);
    }
    if (IS("int"))
        return to_int(c, pos, in, a, out);
    if (IS("float")) {
        const jv_t *def = arg(a, 0, "default");
        jv_t d = def ? *def : jv_float(0.0);
        if (jv_is_num(in)) {
            *out = jv_float(jv_num(in));
        } else if (in->t == JV_STR) {
            char buf[128];
            jj_str_t t = strip(in->u.s, NULL, 3);
            char *e;
            if (t.n == 0 || t.n >= sizeof buf) {
                *out = d;
                return 0;
            }
            memcpy(buf, t.p, t.n);
            buf[t.n] = 0;
            double f = strtod(buf, &e);
            bool hex = strchr(buf, 'x') || strchr(buf, 'X');
            *out = *e || hex ? d : jv_float(f);
        } else {
            *out = d;
        }
        return 0;
    }
    if (IS("abs")) {
        if (in->t == JV_FLOAT)
            *out = jv_float(fabs(in->u.f));
        else if (in->t == JV_INT || in->t == JV_BOOL) {
            if (in->u.i == INT64_MIN)
                return jj_fail(c, pos, QD_EINVAL, "integer overflow");
            *out = jv_int(in->u.i < 0 ? -in->u.i : in->u.i);
        } else
            return jj_fail(c, pos, QD_EINVAL, "bad operand type for abs(): '%s'",
                           jv_type_name(in));
        return 0;
    }
    if (IS("replace")) {
        jj_str_t x, y;
        int64_t count = -1;
        const jv_t *a1 = arg(a, 1, "new"), *cnt = arg(a, 2, "count");
        if (soft_str(c, pos, in, &s))
            return c->err;
        if (!a0 || !a1 || soft_str(c, pos, a0, &x) || soft_str(c, pos, a1, &y))
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "replace: missing argument");
        if (cnt && cnt->t != JV_NONE && need_int(c, pos, cnt, "replace", &count))
            return c->err;
        return str_replace(c, pos, s, x, y, count, out);
    }
    if (IS("selectattr") || IS("rejectattr"))
        return select_common(c, pos, in, a, true, name.p[0] == 's', out);
    if (IS("select") || IS("reject"))
        return select_common(c, pos, in, a, false, name.p[0] == 's', out);
    if (IS("map"))
        return filter_map(c, pos, in, a, out);
    if (IS("unique")) {
        kv_t *kv;
        if (keyed(c, pos, in, a, 0, 1, &kv, &n))
            return c->err;
        vec_t res = {0};
        for (size_t i = 0; i < n; i++) {
            bool seen = false;
            if (jj_step(c, pos, (long)i + 1))
                return c->err;
            for (size_t j = 0; j < i && !seen; j++)
                if (jv_eq(c, &kv[i].key, &kv[j].key, 0, &seen))
                    return c->err;
            if (!seen && vec_push(c, pos, &res, kv[i].val))
                return c->err;
        }
        *out = vec_list(c, pos, &res, false);
        return c->err;
    }
    if (IS("sort")) {
        kv_t *kv, *tmp;
        const jv_t *rev = arg(a, 0, "reverse");
        if (keyed(c, pos, in, a, 1, 2, &kv, &n))
            return c->err;
        if (!(tmp = jj_calloc(c, pos, n ? n : 1, sizeof *tmp)) ||
            msort(c, pos, kv, tmp, n, rev && jv_truthy(rev)))
            return c->err;
        jv_list_t *l = jv_list_new(c, pos, n);
        if (!l)
            return c->err;
        for (size_t i = 0; i < n; i++)
            l->v[i] = kv[i].val;
        *out = list_val(l);
        return 0;
    }
    if (IS("min") || IS("max")) {
        kv_t *kv;
        if (keyed(c, pos, in, a, 0, 1, &kv, &n))
            return c->err;
        if (n == 0) {
            *out = jv_undef((jj_str_t){NULL, 0});
            return 0;
        }
        size_t best = 0;
        for (size_t i = 1; i < n; i++) {
            int cmp;
            if (jv_cmp(c, pos, &kv[i].key, &kv[best].key, &cmp))
                return c->err;
            if (IS("min") ? cmp < 0 : cmp > 0)
                best = i;
        }
        *out = kv[best].val;
        return 0;
    }
    if (IS("sum")) {
        const jv_t *attrv = arg(a, 0, "attribute"), *start = arg(a, 1, "start");
        jj_str_t attr = {0};
        jv_t acc = start ? *start : jv_int(0);
        if (attrv && attrv->t != JV_NONE && attr_arg(c, pos, attrv, &attr))
            return c->err;
        if (jv_iterate(c, pos, in, &items, &n))
            return c->err;
        for (size_t i = 0; i < n; i++) {
            jv_t v = items[i];
            if (attr.p && get_path(c, pos, &items[i], attr, &v))
                return c->err;
            if (!jv_is_num(&acc) || !jv_is_num(&v))
                return jj_fail(c, pos, QD_EINVAL, "sum: unsupported operand types");
            if (acc.t == JV_FLOAT || v.t == JV_FLOAT)
                acc = jv_float(jv_num(&acc) + jv_num(&v));
            else if (__builtin_add_overflow(acc.u.i, v.u.i, &acc.u.i))
                return jj_fail(c, pos, QD_EINVAL, "integer overflow");
            else
                acc.t = JV_INT;
        }
        *out = acc;
        return 0;
    }
    if (IS("dictsort")) {
        const jv_t *cs = arg(a, 0, "case_sensitive"), *by = arg(a, 1, "by"),
                   *rev = arg(a, 2, "reverse");
        if (in->t != JV_DICT)
            return jj_fail(c, pos, QD_EINVAL, "dictsort: expected a mapping");
        bool by_value = by && by->t == JV_STR && jj_str_eq(by->u.s, "value");
        n = in->u.d->n;
        kv_t *kv = jj_calloc(c, pos, n ? n : 1, sizeof *kv), *tmp = jj_calloc(c, pos, n ? n : 1, sizeof *tmp);
        if (!kv || !tmp)
            return c->err;
        for (size_t i = 0; i < n; i++) {
            jv_list_t *pair = jv_list_new(c, pos, 2);
            if (!pair)
                return c->err;
            pair->tuple = true;
            pair->v[0] = in->u.d->k[i];
            pair->v[1] = in->u.d->v[i];
            kv[i].val = list_val(pair);
            if (sort_key(c, pos, by_value ? &pair->v[1] : &pair->v[0], (jj_str_t){0},
                         cs && jv_truthy(cs), &kv[i].key))
                return c->err;
        }
        if (msort(c, pos, kv, tmp, n, rev && jv_truthy(rev)))
            return c->err;
        jv_list_t *l = jv_list_new(c, pos, n);
        if (!l)
            return c->err;
        for (size_t i = 0; i < n; i++)
            l->v[i] = kv[i].val;
        *out = list_val(l);
        return 0;
    }
    if (IS("reverse")) {
        if (in->t == JV_STR) {
            char *o = jj_calloc(c, pos, in->u.s.n + 1, 1);
            if (!o)
                return c->err;
            size_t on = in->u.s.n;
            for (size_t i = 0; i < in->u.s.n;) {
                uint32_t cp;
                size_t k = jj_u8_decode(in->u.s.p + i, in->u.s.n - i, &cp);
                on -= k;
                memcpy(o + on, in->u.s.p + i, k);
                i += k;
            }
            *out = jv_str(o, in->u.s.n);
            return 0;
        }
        if (jv_iterate(c, pos, in, &items, &n))
            return c->err;
        jv_list_t *l = jv_list_new(c, pos, n);
        if (!l)
            return c->err;
        for (size_t i = 0; i < n; i++)
            l->v[i] = items[n - 1 - i];
        *out = list_val(l);
        return 0;
    }
    if (IS("round")) {
        const jv_t *pr = arg(a, 0, "precision"), *me = arg(a, 1, "method");
        int64_t p = 0;
        if (pr && need_int(c, pos, pr, "round", &p))
            return c->err;
        if (!jv_is_num(in))
            return jj_fail(c, pos, QD_EINVAL, "round: expected a number");
        if (p < -20 || p > 20)
            return jj_fail(c, pos, QD_EINVAL, "round: precision out of range");
        double f = jv_num(in), m = pow(10.0, (double)p);
        if (!me || (me->t == JV_STR && jj_str_eq(me->u.s, "common")))
            f = nearbyint(f * m) / m;
        else if (me->t == JV_STR && jj_str_eq(me->u.s, "ceil"))
            f = ceil(f * m) / m;
        else if (me->t == JV_STR && jj_str_eq(me->u.s, "floor"))
            f = floor(f * m) / m;
        else
            return jj_fail(c, pos, QD_EINVAL, "round: method must be common, ceil or floor");
        *out = jv_float(f);
        return 0;
    }
    if (IS("indent")) {
        if (soft_str(c, pos, in, &s))
            return c->err;
        return filter_indent(c, pos, s, a, out);
    }
    if (IS("wordcount")) {
        if (soft_str(c, pos, in, &s))
            return c->err;
        int64_t words = 0;
        bool inw = false;
        for (size_t i = 0; i < s.n; i++) {
            unsigned char ch = (unsigned char)s.p[i];
            bool w = ch >= 0x80 || ch == '_' || (ch >= '0' && ch <= '9') ||
                     ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z');
            words += w && !inw;
            inw = w;
        }
        *out = jv_int(words);
        return 0;
    }
    if (IS("center")) {
        if (soft_str(c, pos, in, &s))
            return c->err;
        jv_t w = a0 ? *a0 : jv_int(80);
        jj_args_t pa = {.n = 1, .v = &w, .kw = (jj_str_t[]){{NULL, 0}}};
        return pad(c, pos, s, &pa, 0, out);
    }
    if (IS("batch")) {
        int64_t size;
        const jv_t *fill = arg(a, 1, "fill_with");
        if (!a0 || need_int(c, pos, a0, "batch", &size) || size <= 0)
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "batch: bad size");
        if (jv_iterate(c, pos, in, &items, &n))
            return c->err;
        size_t nb = (n + (size_t)size - 1) / (size_t)size;
        jv_list_t *l = jv_list_new(c, pos, nb);
        if (!l)
            return c->err;
        for (size_t b = 0; b < nb; b++) {
            size_t cnt = QD_MIN((size_t)size, n - b * (size_t)size);
            jv_list_t *part = jv_list_new(c, pos, fill && fill->t != JV_NONE ? (size_t)size : cnt);
            if (!part)
                return c->err;
            for (size_t i = 0; i < part->n; i++)
                part->v[i] = i < cnt ? items[b * (size_t)size + i] : *fill;
            l->v[b] = list_val(part);
        }
        *out = list_val(l);
        return 0;
    }
    if (IS("attr")) {
        jj_str_t an;
        if (!a0 || need_str(c, pos, a0, "attr", &an))
            return c->err ? c->err : jj_fail(c, pos, QD_EINVAL, "attr: missing name");
        return jj_getattr(c, pos, in, an, out);
    }
    if (IS("format"))
        return jj_fail(c, pos, QD_EUNSUPPORTED, "the format filter (printf-style) is not "
                                                "supported");
#undef IS
    return jj_fail(c, pos, QD_EINVAL, "no filter named '%.*s'", (int)QD_MIN(name.n, 40), name.p);
}
