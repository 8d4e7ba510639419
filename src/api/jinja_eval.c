/*
 * jinja_eval.c — evaluates a compiled template's AST; qd_jinja_exec.
 *
 * Semantics follow jinja2's (sandboxed) runtime:
 *   - variables resolve through scopes: each for-loop iteration and each
 *     macro call gets a fresh scope, so `{% set %}` inside a loop does not
 *     leak out of the iteration (hence namespace()); `if` has no scope;
 *   - a missing variable, key or attribute is Undefined: it prints as "",
 *     is falsy, iterates as empty, but touching it further (attribute,
 *     item, call, arithmetic) is an error;
 *   - obj.name tries Python attributes first (the str/dict methods we
 *     provide), then obj['name']; obj[key] tries the item first.
 * Every node evaluated costs one step, and recursion depth is counted, so
 * hostile templates stop with QD_ETOOBIG instead of spinning or crashing.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/jinja_int.h"

struct jj_scope {
    jj_scope_t *parent;
    size_t n, cap;
    jj_str_t *names;
    jv_t *vals;
};

struct jj_macro {
    const jj_node_t *def;
    jj_scope_t *closure;
};

static int eval(jj_ctx_t *c, jj_scope_t *sc, const jj_node_t *n, jv_t *out);
static int exec_node(jj_ctx_t *c, jj_scope_t *sc, const jj_node_t *n, jj_buf_t *b);

/* ---- scopes ------------------------------------------------------------ */
static jv_t *scope_find(jj_scope_t *sc, jj_str_t name)
{
    for (; sc; sc = sc->parent)
        for (size_t i = sc->n; i-- > 0;)
            if (sc->names[i].n == name.n && memcmp(sc->names[i].p, name.p, name.n) == 0)
                return &sc->vals[i];
    return NULL;
}

static int scope_set(jj_ctx_t *c, size_t pos, jj_scope_t *sc, jj_str_t name, const jv_t *v)
{
    for (size_t i = 0; i < sc->n; i++) {
        if (sc->names[i].n == name.n && memcmp(sc->names[i].p, name.p, name.n) == 0) {
            sc->vals[i] = *v;
            return 0;
        }
    }
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 8;
        jj_str_t *nn = jj_calloc(c, pos, cap, sizeof *nn);
        jv_t *nv = jj_calloc(c, pos, cap, sizeof *nv);
        if (!nn || !nv)
            return c->err;
        if (sc->n) {
            memcpy(nn, sc->names, sc->n * sizeof *nn);
            memcpy(nv, sc->vals, sc->n * sizeof *nv);
        }
        sc->names = nn;
        sc->vals = nv;
        sc->cap = cap;
    }
    sc->names[sc->n] = name;
    sc->vals[sc->n] = *v;
    sc->n++;
    return 0;
}

static const struct {
    const char *name;
    int fn;
} globals[] = {
    {"range", JF_RANGE},
    {"namespace", JF_NAMESPACE},
    {"raise_exception", JF_RAISE},
    {"strftime_now", JF_STRFTIME},
    {"dict", JF_DICT},
};

static jv_t lookup(jj_ctx_t *c, jj_scope_t *sc, jj_str_t name)
{
    const jv_t *v = scope_find(sc, name);
    if (v)
        return *v;
    v = jv_dict_get_str(c->vars.u.d, name.p, name.n);
    if (v)
        return *v;
    for (size_t i = 0; i < QD_ARRAY_SIZE(globals); i++) {
        if (jj_str_eq(name, globals[i].name)) {
            jv_t f = {.t = JV_FUNC};
            f.u.i = globals[i].fn;
            return f;
        }
    }
    return jv_undef(name);
}

/* ---- attribute and item access --------------------------------------- */
int jj_undefined_error(jj_ctx_t *c, size_t pos, const jv_t *u)
{
    if (u->u.s.p)
        return jj_fail(c, pos, QD_EINVAL, "'%.*s' is undefined", (int)QD_MIN(u->u.s.n, 80),
                       u->u.s.p);
    return jj_fail(c, pos, QD_EINVAL, "use of an undefined value");
}

static int loop_attr(jj_ctx_t *c, size_t pos, const jv_t *obj, jj_str_t name, jv_t *out)
{
    const jj_loop_t *l = obj->u.loop;
    int64_t i = (int64_t)l->i, n = (int64_t)l->n;
    if (jj_str_eq(name, "index"))
        *out = jv_int(i + 1);
    else if (jj_str_eq(name, "index0"))
        *out = jv_int(i);
    else if (jj_str_eq(name, "revindex"))
        *out = jv_int(n - i);
    else if (jj_str_eq(name, "revindex0"))
        *out = jv_int(n - i - 1);
    else if (jj_str_eq(name, "first"))
        *out = jv_bool(i == 0);
    else if (jj_str_eq(name, "last"))
        *out = jv_bool(i == n - 1);
    else if (jj_str_eq(name, "length"))
        *out = jv_int(n);
    else if (jj_str_eq(name, "depth"))
        *out = jv_int(l->depth);
    else if (jj_str_eq(name, "depth0"))
        *out = jv_int(l->depth - 1);
    else if (jj_str_eq(name, "previtem"))
        *out = i > 0 ? l->items[i - 1] : jv_undef((jj_str_t){"previtem", 8});
    else if (jj_str_eq(name, "nextitem"))
        *out = i + 1 < n ? l->items[i + 1] : jv_undef((jj_str_t){"nextitem", 8});
    else if (jj_str_eq(name, "cycle")) {
        jv_method_t *m = jj_calloc(c, pos, 1, sizeof *m);
        if (!m)
            return c->err;
        m->recv = *obj;
        m->name = name;
        out->t = JV_METHOD;
        out->u.m = m;
    } else
        *out = jv_undef(name);
    return 0;
}

int jj_getattr(jj_ctx_t *c, size_t pos, const jv_t *obj, jj_str_t name, jv_t *out)
{
    switch (obj->t) {
    case JV_UNDEF: return jj_undefined_error(c, pos, obj);
    case JV_LOOP: return loop_attr(c, pos, obj, name, out);
    case JV_NS: {
        const jv_t *v = jv_dict_get_str(obj->u.d, name.p, name.n);
        *out = v ? *v : jv_undef(name);
        return 0;
    }
    default: break;
    }
    if (jj_method_lookup(c, obj, name, out) || c->err)
        return c->err;
    if (obj->t == JV_DICT) {
        const jv_t *v = jv_dict_get_str(obj->u.d, name.p, name.n);
        if (v) {
            *out = *v;
            return 0;
        }
    }
    *out = jv_undef(name);
    return 0;
}

/* Python index for a sequence of n items; false when out of range. */
static bool seq_index(const jv_t *key, size_t n, size_t *idx)
{
    if (key->t != JV_INT && key->t != JV_BOOL)
        return false;
    int64_t i = key->u.i;
    if (i < 0)
        i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n)
        return false;
    *idx = (size_t)i;
    return true;
}

int jj_getitem(jj_ctx_t *c, size_t pos, const jv_t *obj, const jv_t *key, jv_t *out)
{
    size_t idx;
    jj_str_t kname = key->t == JV_STR ? key->u.s : (jj_str_t){NULL, 0};
    switch (obj->t) {
    case JV_UNDEF: return jj_undefined_error(c, pos, obj);
    case JV_DICT:
    case JV_NS: {
        const jv_t *v = jv_dict_get(c, obj->u.d, key);
        if (c->err)
            return c->err;
        if (v) {
            *out = *v;
            return 0;
        }
        break;
    }
    case JV_LIST:
        if (seq_index(key, obj->u.l->n, &idx)) {
            *out = obj->u.l->v[idx];
            return 0;
        }
        break;
    case JV_STR: {
        size_t len = jj_u8_len(obj->u.s.p, obj->u.s.n);
        if (seq_index(key, len, &idx)) {
            const char *s = obj->u.s.p;
            size_t off = 0;
            for (size_t k = 0; k < idx; k++) {
                uint32_t cp;
                off += jj_u8_decode(s + off, obj->u.s.n - off, &cp);
            }
            uint32_t cp;
            *out = jv_str(s + off, jj_u8_decode(s + off, obj->u.s.n - off, &cp));
            return 0;
        }
        break;
    }
    default: break;
    }
    if (kname.p && obj->t != JV_NS)
        return jj_getattr(c, pos, obj, kname, out);
    *out = jv_undef(kname);
    return 0;
}

/* Python slice bounds (PySlice_AdjustIndices). */
static int slice_bound(jj_ctx_t *c, size_t pos, const jv_t *v, int64_t len, int64_t step,
                       bool is_start, int64_t *out)
{
    if (v->t == JV_NONE) {
        *out = step < 0 ? (is_start ? len - 1 : -1) : (is_start ? 0 : len);
        return 0;
    }
    if (v->t != JV_INT && v->t != JV_BOOL)
        return jj_fail(c, pos, QD_EINVAL, "slice indices must be integers or None");
    int64_t i = v->u.i;
    if (i < 0) {
        i = i < -len ? -1 : i + len;
        if (i < 0)
            i = step < 0 ? -1 : 0;
    } else if (i >= len) {
        i = step < 0 ? len - 1 : len;
    }
    *out = i;
    return 0;
}

static int do_slice(jj_ctx_t *c, size_t pos, const jv_t *obj, const jv_t *lo, const jv_t *hi,
                    const jv_t *st, jv_t *out)
{
    if (obj->t == JV_UNDEF)
        return jj_undefined_error(c, pos, obj);
    if (obj->t != JV_LIST && obj->t != JV_STR) {
        *out = jv_undef((jj_str_t){NULL, 0});
        return 0;
    }
    int64_t step = 1;
    if (st->t != JV_NONE) {
        if (st->t != JV_INT && st->t != JV_BOOL)
            return jj_fail(c, pos, QD_EINVAL, "slice indices must be integers or None");
        step = st->u.i;
        if (step == 0)
            return jj_fail(c, pos, QD_EINVAL, "slice step cannot be zero");
        if (step == INT64_MIN)
            step = -INT64_MAX;
    }
    bool is_str = obj->t == JV_STR;
    int64_t len = is_str ? (int64_t)jj_u8_len(obj->u.s.p, obj->u.s.n) : (int64_t)obj->u.l->n;
    int64_t a, b, cnt;
    if (slice_bound(c, pos, lo, len, step, true, &a) ||
        slice_bound(c, pos, hi, len, step, false, &b))
        return c->err;
    if (step > 0)
        cnt = b > a ? (b - a - 1) / step + 1 : 0;
    else
        cnt = b < a ? (a - b - 1) / (-step) + 1 : 0;
    if (jj_step(c, pos, cnt / 16))
        return c->err;
    if (!is_str) {
        jv_list_t *l = jv_list_new(c, pos, (size_t)cnt);
        if (!l)
            return c->err;
        l->tuple = obj->u.l->tuple;
        for (int64_t k = 0; k < cnt; k++)
            l->v[k] = obj->u.l->v[a + k * step];
        out->t = JV_LIST;
        out->u.l = l;
        return 0;
    }
    const char *s = obj->u.s.p;
    size_t n = obj->u.s.n;
    if ((size_t)len == n) { /* ASCII: bytes are code points */
        if (step == 1) {
            *out = jv_str(s + a, (size_t)cnt);
            return 0;
        }
        char *o = jj_calloc(c, pos, (size_t)cnt + 1, 1);
        if (!o)
            return c->err;
        for (int64_t k = 0; k < cnt; k++)
            o[k] = s[a + k * step];
        *out = jv_str(o, (size_t)cnt);
        return 0;
    }
    size_t *offs = jj_calloc(c, pos, (size_t)len + 1, sizeof *offs);
    if (!offs)
        return c->err;
    for (size_t i = 0, k = 0; k < (size_t)len; k++) {
        uint32_t cp;
        offs[k] = i;
        i += jj_u8_decode(s + i, n - i, &cp);
    }
    offs[len] = n;
    if (step == 1) {
        *out = cnt ? jv_str(s + offs[a], offs[a + cnt] - offs[a]) : jv_str("", 0);
        return 0;
    }
    char *o = jj_calloc(c, pos, n + 1, 1);
    if (!o)
        return c->err;
    size_t on = 0;
    for (int64_t k = 0; k < cnt; k++) {
        int64_t ci = a + k * step;
        size_t cl = offs[ci + 1] - offs[ci];
        memcpy(o + on, s + offs[ci], cl);
        on += cl;
    }
    *out = jv_str(o, on);
    return 0;
}

/* ---- operators -------------------------------------------------------- */
static int type_error(jj_ctx_t *c, size_t pos, const char *op, const jv_t *a, const jv_t *b)
{
    if (a->t == JV_UNDEF)
        return jj_undefined_error(c, pos, a);
    if (b->t == JV_UNDEF)
        return jj_undefined_error(c, pos, b);
    return jj_fail(c, pos, QD_EINVAL, "unsupported operand type(s) for %s: '%s' and '%s'", op,
                   jv_type_name(a), jv_type_name(b));
}

static int overflow(jj_ctx_t *c, size_t pos)
{
    return jj_fail(c, pos, QD_EINVAL, "integer overflow");
}

static int repeat(jj_ctx_t *c, size_t pos, const jv_t *seq, int64_t times, jv_t *out)
{
    if (times < 0)
        times = 0;
    if (seq->t == JV_STR) {
        size_t total;
        if (qd_mul_size(seq->u.s.n, (size_t)times, &total) || total > c->max_out)
            return jj_fail(c, pos, QD_ETOOBIG, "string repetition too large");
        char *o = jj_calloc(c, pos, total + 1, 1);
        if (!o)
            return c->err;
        for (int64_t i = 0; i < times; i++)
            memcpy(o + (size_t)i * seq->u.s.n, seq->u.s.p, seq->u.s.n);
        *out = jv_str(o, total);
        return 0;
    }
    size_t total;
    if (qd_mul_size(seq->u.l->n, (size_t)times, &total) || total > c->max_out)
        return jj_fail(c, pos, QD_ETOOBIG, "list repetition too large");
    if (jj_step(c, pos, (long)total))
        return c->err;
    jv_list_t *l = jv_list_new(c, pos, total);
    if (!l)
        return c->err;
    l->tuple = seq->u.l->tuple;
    for (size_t i = 0; i < total; i++)
        l->v[i] = seq->u.l->v[i % seq->u.l->n];
    out->t = JV_LIST;
    out->u.l = l;
    return 0;
}

static int binop(jj_ctx_t *c, size_t pos, int op, const jv_t *a, const jv_t *b, jv_t *out)
{
    static const char *const sym[] = {[OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*",
                                      [OP_DIV] = "/", [OP_FLOORDIV] = "//", [OP_MOD] = "%",
                                      [OP_POW] = "**"};
    if (jv_is_num(a) && jv_is_num(b)) {
        bool fl = a->t == JV_FLOAT || b->t == JV_FLOAT;
        int64_t x = a->u.i, y = b->u.i, r;
        double fx = jv_num(a), fy = jv_num(b);
        switch (op) {
        case OP_ADD:
            if (fl)
                *out = jv_float(fx + fy);
            else if (__builtin_add_overflow(x, y, &r))
                return overflow(c, pos);
            else
                *out = jv_int(r);
            return 0;
        case OP_SUB:
            if (fl)
                *out = jv_float(fx - fy);
            else if (__builtin_sub_overflow(x, y, &r))
                return overflow(c, pos);
            else
                *out = jv_int(r);
            return 0;
        case OP_MUL:
            if (fl)
                *out = jv_float(fx * fy);
            else if (__builtin_mul_overflow(x, y, &r))
                return overflow(c, pos);
            else
                *out = jv_int(r);
            return 0;
        case OP_DIV:
            if (fy == 0.0)
                return jj_fail(c, pos, QD_EINVAL, "division by zero");
            *out = jv_float(fx / fy);
            return 0;
        case OP_FLOORDIV:
        case OP_MOD:
            if (fl ? fy == 0.0 : y == 0)
                return jj_fail(c, pos, QD_EINVAL, "integer division or modulo by zero");
            if (fl) {
                double m = fmod(fx, fy);
                if (m != 0.0 && ((m < 0) != (fy < 0)))
                    m += fy;
                *out = jv_float(op == OP_MOD ? m : floor(fx / fy));
                return 0;
            }
            if (x == INT64_MIN && y == -1)
                return overflow(c, pos);
            {
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    q--;
                    m += y;
                }
                *out = jv_int(op == OP_MOD ? m : q);
            }
            return 0;
        case OP_POW:
            if (!fl && y >= 0) {
                int64_t base = x, acc = 1;
                for (int64_t e = y; e; e >>= 1) {
                    if ((e & 1) && __builtin_mul_overflow(acc, base, &acc))
                        return overflow(c, pos);
                    if (e > 1 && __builtin_mul_overflow(base, base, &base))
                        return overflow(c, pos);
                }
                *out = jv_int(acc);
                return 0;
            }
            if (fx == 0.0 && fy < 0)
                return jj_fail(c, pos, QD_EINVAL, "0.0 cannot be raised to a negative power");
            *out = jv_float(pow(fx, fy));
            return 0;
        }
    }
    if (op == OP_ADD && a->t == JV_STR && b->t == JV_STR) {
        size_t n;
        if (qd_add_size(a->u.s.n, b->u.s.n, &n) || n > c->max_out)
            return jj_fail(c, pos, QD_ETOOBIG, "string too large");
        char *o = jj_calloc(c, pos, n + 1, 1);
        if (!o)
            return c->err;
        memcpy(o, a->u.s.p, a->u.s.n);
        memcpy(o + a->u.s.n, b->u.s.p, b->u.s.n);
        *out = jv_str(o, n);
        return 0;
    }
    if (op == OP_ADD && a->t == JV_LIST && b->t == JV_LIST && a->u.l->tuple == b->u.l->tuple) {
        size_t n = a->u.l->n + b->u.l->n;
        jv_list_t *l = jv_list_new(c, pos, n);
        if (!l)
            return c->err;
        l->tuple = a->u.l->tuple;
        if (a->u.l->n)
            memcpy(l->v, a->u.l->v, a->u.l->n * sizeof *l->v);
        if (b->u.l->n)
            memcpy(l->v + a->u.l->n, b->u.l->v, b->u.l->n * sizeof *l->v);
        out->t = JV_LIST;
        out->u.l = l;
        return 0;
    }
    if (op == OP_MUL && (a->t == JV_STR || a->t == JV_LIST) && (b->t == JV_INT || b->t == JV_BOOL))
        return repeat(c, pos, a, b->u.i, out);
    if (op == OP_MUL && (b->t == JV_STR || b->t == JV_LIST) && (a->t == JV_INT || a->t == JV_BOOL))
        return repeat(c, pos, b, a->u.i, out);
    return type_error(c, pos, sym[op], a, b);
}

static int contains(jj_ctx_t *c, size_t pos, const jv_t *item, const jv_t *seq, bool *res)
{
    *res = false;
    switch (seq->t) {
    case JV_UNDEF: return 0;
    case JV_STR:
        if (item->t != JV_STR)
            return jj_fail(c, pos, QD_EINVAL, "'in <string>' requires string as left operand, "
                                              "not %s", jv_type_name(item));
        *res = item->u.s.n == 0 ||
               memmem(seq->u.s.p, seq->u.s.n, item->u.s.p, item->u.s.n) != NULL;
        return 0;
    case JV_LIST:
        if (jj_step(c, pos, (long)seq->u.l->n / 16))
            return c->err;
        for (size_t i = 0; i < seq->u.l->n; i++) {
            if (jv_eq(c, item, &seq->u.l->v[i], 0, res))
                return c->err;
            if (*res)
                return 0;
        }
        return 0;
    case JV_DICT:
        *res = jv_dict_get(c, seq->u.d, item) != NULL;
        return c->err;
    default:
        return jj_fail(c, pos, QD_EINVAL, "argument of type '%s' is not iterable",
                       jv_type_name(seq));
    }
}

/* ---- calls ------------------------------------------------------------- */
static int eval_args(jj_ctx_t *c, jj_scope_t *sc, const jj_node_t *n, jj_args_t *a)
{
    a->n = n->n_kids;
    a->kw = n->kw;
    a->v = NULL;
    if (!n->n_kids)
        return 0;
    jv_t *v = jj_calloc(c, n->pos, n->n_kids, sizeof *v);
    if (!v)
        return c->err;
    for (size_t i = 0; i < n->n_kids; i++)
        if (eval(c, sc, n->kids[i], &v[i]))
            return c->err;
    a->v = v;
    return 0;
}

static int exec_body_into(jj_ctx_t *c, jj_scope_t *sc, const jj_node_t *body, jv_t *out)
{
    jj_buf_t b = {.max = c->max_out};
    if (exec_node(c, sc, body, &b))
        return c->err;
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

static int call_macro(jj_ctx_t *c, size_t pos, const jj_macro_t *m, const jj_args_t *a,
                      jv_t *out)
{
    const jj_node_t *def = m->def;
    jj_scope_t *ms = jj_calloc(c, pos, 1, sizeof *ms);
    if (!ms)
        return c->err;
    ms->parent = m->closure;
    size_t n_pos = 0;
    while (n_pos < a->n && !a->kw[n_pos].p)
        n_pos++;
    jv_list_t *varargs = jv_list_new(c, pos, n_pos > def->n_names ? n_pos - def->n_names : 0);
    jv_dict_t *kwargs = jv_dict_new(c, pos, 4);
    if (!varargs || !kwargs)
        return c->err;
    for (size_t i = def->n_names; i < n_pos; i++)
        varargs->v[i - def->n_names] = a->v[i];
    for (size_t k = n_pos; k < a->n; k++) {
        bool known = false;
        for (size_t i = 0; i < def->n_names; i++) {
            if (def->names[i].n == a->kw[k].n &&
                memcmp(def->names[i].p, a->kw[k].p, a->kw[k].n) == 0) {
                if (i < n_pos)
                    return jj_fail(c, pos, QD_EINVAL, "macro got multiple values for "
                                   "argument '%.*s'", (int)a->kw[k].n, a->kw[k].p);
                known = true;
            }
        }
        if (!known) {
            jv_t key = jv_str(a->kw[k].p, a->kw[k].n);
            if (jv_dict_set(c, pos, kwargs, &key, &a->v[k]))
                return c->err;
        }
    }
    for (size_t i = 0; i < def->n_names; i++) {
        jv_t v = jv_undef(def->names[i]);
        bool have = false;
        if (i < n_pos) {
            v = a->v[i];
            have = true;
        }
        for (size_t k = n_pos; k < a->n && !have; k++) {
            if (def->names[i].n == a->kw[k].n &&
                memcmp(def->names[i].p, a->kw[k].p, a->kw[k].n) == 0) {
                v = a->v[k];
                have = true;
            }
        }
        if (!have && def->kids[i] && eval(c, ms, def->kids[i], &v))
            return c->err;
        if (scope_set(c, pos, ms, def->names[i], &v))
            return c->err;
    }
    jv_t va = {.t = JV_LIST}, kw = {.t = JV_DICT};
    va.u.l = varargs;
    va.u.l->tuple = true;
    kw.u.d = kwargs;
    if (scope_set(c, pos, ms, (jj_str_t){"varargs", 7}, &va) ||
        scope_set(c, pos, ms, (jj_str_t){"kwargs", 6}, &kw))
        return c->err;
    int rc = exec_body_into(c, ms, def->b, out);
    c->ctl = 0;
    return rc;
}

static int call_value(jj_ctx_t *c, size_t pos, const jv_t *fn, const jj_args_t *a, jv_t *out)
{
    switch (fn->t) {
    case JV_MACRO: return call_macro(c, pos, fn->u.mac, a, out);
    case JV_FUNC: return jj_call_func(c, pos, (int)fn->u.i, NULL, a, out);
    case JV_METHOD: return jj_call_method(c, pos, fn->u.m, a, out);
    case JV_UNDEF: return jj_undefined_error(c, pos, fn);
    default:
        return jj_fail(c, pos, QD_EINVAL, "'%s' object is not callable", jv_type_name(fn));
    }
}

/* Apply a filter chain (innermost ->a == NULL takes `input`). */
static int apply_filters(jj_ctx_t *c, jj_scope_t *sc, const jj_node_t *f, const jv_t *input,
                         jv_t *out)
{
    jv_t in;
    if (f->a) {
        if (apply_filters(c, sc, f->a, input, &in))
            return c->err;
    } else {
        in = *input;
    }
    jj_args_t a;
    if (eval_args(c, sc, f, &a))
        return c->err;
    return jj_filter(c, f->pos, f->name, &in, &a, out);
}

/* ---- expressions ------------------------------------------------------ */
static int eval_inner(jj_ctx_t *c, jj_scope_t *sc, const jj_node_t *n, jv_t *out)
{
    jv_t a, b;
    switch (n->kind) {
    case N_LIT: *out = n->lit; return 0;
    case N_NAME: *out = lookup(c, sc, n->name); return 0;
    case N_LIST:
    case N_TUPLE: {
        jv_list_t *l = jv_list_new(c, n->pos, n->n_kids);
        if (!l)
            return c->err;
        l->tuple = n->kind == N_TUPLE;
        for (size_t i = 0; i < n->n_kids; i++)
            if (eval(c, sc, n->kids[i], &l->v[i]))
                return c->err;
        out->t = JV_LIST;
        out->u.l = l;
        return 0;
    }
    case N_DICT: {
        jv_dict_t *d = jv_dict_new(c, n->pos, n->n_kids / 2);
        if (!d)
            return c->err;
        for (size_t i = 0; i + 1 < n->n_kids; i += 2) {
            if (eval(c, sc, n->kids[i], &a) || eval(c, sc, n->kids[i + 1], &b))
                return c->err;
            if (a.t == JV_LIST && !a.u.l->tuple)
                return jj_fail(c, n->pos, QD_EINVAL, "unhashable type: 'list'");
            if (a.t == JV_DICT || a.t == JV_NS)
                return jj_fail(c, n->pos, QD_EINVAL, "unhashable type: 'dict'");
            if (jv_dict_set(c, n->pos, d, &a, &b))
                return c->err;
        }
        out->t = JV_DICT;
        out->u.d = d;
        return 0;
    }
    case N_GETATTR:
        if (eval(c, sc, n->a, &a))
            return c->err;
        return jj_getattr(c, n->pos, &a, n->name, out);
    case N_GETITEM:
        if (eval(c, sc, n->a, &a) || eval(c, sc, n->b, &b))
            return c->err;
        return jj_getitem(c, n->pos, &a, &b, out);
    case N_SLICE: {
        jv_t lo = jv_none(), hi = jv_none(), st = jv_none();
        if (eval(c, sc, n->a, &a) || (n->b && eval(c, sc, n->b, &lo)) ||
            (n->c && eval(c, sc, n->c, &hi)) || (n->d && eval(c, sc, n->d, &st)))
            return c->err;
        return do_slice(c, n->pos, &a, &lo, &hi, &st, out);
    }
    case N_BINOP:
        if (eval(c, sc, n->a, &a) || eval(c, sc, n->b, &b))
            return c->err;
        return binop(c, n->pos, n->op, &a, &b, out);
    case N_NEG:
    case N_POS:
        if (eval(c, sc, n->a, &a))
            return c->err;
        if (a.t == JV_FLOAT) {
            *out = jv_float(n->kind == N_NEG ? -a.u.f : a.u.f);
            return 0;
        }
        if (a.t == JV_INT || a.t == JV_BOOL) {
            if (n->kind == N_NEG && a.u.i == INT64_MIN)
                return overflow(c, n->pos);
            *out = jv_int(n->kind == N_NEG ? -a.u.i : a.u.i);
            return 0;
        }
        if (a.t == JV_UNDEF)
            return jj_undefined_error(c, n->pos, &a);
        return jj_fail(c, n->pos, QD_EINVAL, "bad operand type for unary %c: '%s'",
                       n->kind == N_NEG ? '-' : '+', jv_type_name(&a));
    case N_NOT:
        if (eval(c, sc, n->a, &a))
            return c->err;
        *out = jv_bool(!jv_truthy(&a));
        return 0;
    case N_AND:
    case N_OR:
        if (eval(c, sc, n->a, &a))
            return c->err;
        if (jv_truthy(&a) == (n->kind == N_OR)) {
            *out = a;
            return 0;
        }
        return eval(c, sc, n->b, out);
    case N_CMP: {
        if (eval(c, sc, n->a, &a) || eval(c, sc, n->b, &b))
            return c->err;
        bool r = false;
        int cmp;
        switch (n->op) {
        case OP_EQ:
        case OP_NE:
            if (jv_eq(c, &a, &b, 0, &r))
                return c->err;
            r = r == (n->op == OP_EQ);
            break;
        case OP_IN:
        case OP_NOTIN:
            if (contains(c, n->pos, &a, &b, &r))
                return c->err;
            r = r == (n->op == OP_IN);
            break;
        default:
            if (jv_cmp(c, n->pos, &a, &b, &cmp))
                return c->err;
            r = n->op == OP_LT ? cmp < 0 : n->op == OP_LE ? cmp <= 0
                : n->op == OP_GT ? cmp > 0 : cmp >= 0;
            break;
        }
        *out = jv_bool(r);
        return 0;
    }
    case N_COND:
        if (eval(c, sc, n->a, &a))
            return c->err;
        if (jv_truthy(&a))
            return eval(c, sc, n->b, out);
        if (n->c)
            return eval(c, sc, n->c, out);
        *out = jv_undef((jj_str_t){NULL, 0});
        return 0;
    case N_CONCAT: {
        jj_buf_t buf = {.max = c->max_out};
        for (size_t i = 0; i < n->n_kids; i++) {
            if (eval(c, sc, n->kids[i], &a) || jv_write_str(c, n->pos, &buf, &a))
                return c->err;
        }
        *out = jv_str(buf.p ? buf.p : "", buf.n);
        return 0;
    }
    case N_CALL: {
        jj_args_t args;
        if (eval(c, sc, n->a, &a) || eval_args(c, sc, n, &args))
            return c->err;
        return call_value(c, n->pos, &a, &args, out);
    }
    case N_FILTER: {
        jj_args_t args;
        if (eval(c, sc, n->a, &a) || eval_args(c, sc, n, &args))
            return c->err;
        return jj_filter(c, n->pos, n->name, &a, &args, out);
    }
    case N_TEST: {
        jj_args_t args;
        bool r;
        if (eval(c, sc, n->a, &a) || eval_args(c, sc, n, &args) ||
            jj_test(c, n->pos, n->name, &a, &args, &r))
            return c->err;
        *out = jv_bool(r != n->neg);
        return 0;
    }
    default:
        return jj_fail(c, n->pos, QD_EINTERNAL, "bad expression node %d", n->kind);
    }
}

static int eval(jj_ctx_t *c, jj_scope_t *sc, const jj_node_t *n, jv_t *out)
{
    if (jj_step(c, n->pos, 1))
        return c->err;
    if (++c->depth > c->max_depth) {
        c->depth--;
        return jj_fail(c, n->pos, QD_ETOOBIG, "recursion depth limit (%d) exceeded",
                       c->max_depth);
    }
    int rc = eval_inner(c, sc, n, out);
    c->depth--;
    return rc ? rc : c->err;
}

/* ---- statements ------------------------------------------------------- */
static int assign_targets(jj_ctx_t *c, jj_scope_t *sc, const jj_node_t *n, const jv_t *v)
{
    if (!n->unpack)
        return scope_set(c, n->pos, sc, n->names[0], v);
    const jv_t *items;
    size_t cnt;
    if (v->t == JV_UNDEF)
        return jj_undefined_error(c, n->pos, v);
    if (jv_iterate(c, n->pos, v, &items, &cnt))
        return c->err;
    if (cnt != n->n_names)
        return jj_fail(c, n->pos, QD_EINVAL, "cannot unpack %zu values into %zu names", cnt,
                       n->n_names);
    for (size_t i = 0; i < cnt; i++)
        if (scope_set(c, n->pos, sc, n->names[i], &items[i]))
            return c->err;
    return 0;
}

static int exec_for(jj_ctx_t *c, jj_scope_t *sc, const jj_node_t *n, jj_buf_t *b)
{
    jv_t seq;
    const jv_t *items;
    size_t cnt;
    if (eval(c, sc, n->a, &seq))
        return c->err;
    if (seq.t == JV_NS)
        return jj_fail(c, n->pos, QD_EINVAL, "'Namespace' object is not iterable");
    if (jv_iterate(c, n->pos, &seq, &items, &cnt))
        return c->err;
    jj_scope_t *it = jj_calloc(c, n->pos, 1, sizeof *it);
    if (!it)
        return c->err;
    it->parent = sc;
    if (n->d && cnt) { /* {% for x in xs if cond %}: filter first */
        jv_t *kept = jj_calloc(c, n->pos, cnt, sizeof *kept);
        size_t nk = 0;
        if (!kept)
            return c->err;
        for (size_t i = 0; i < cnt; i++) {
            jv_t ok;
            it->n = 0;
            if (jj_step(c, n->pos, 1) || assign_targets(c, it, n, &items[i]) ||
                eval(c, it, n->d, &ok))
                return c->err;
            if (jv_truthy(&ok))
                kept[nk++] = items[i];
        }
        items = kept;
        cnt = nk;
    }
    jj_loop_t *lp = jj_calloc(c, n->pos, 1, sizeof *lp);
    if (!lp)
        return c->err;
    lp->items = items;
    lp->n = cnt;
    lp->depth = 1;
    jv_t loopv = {.t = JV_LOOP};
    loopv.u.loop = lp;
    static const jj_str_t loop_name = {"loop", 4};
    for (size_t i = 0; i < cnt; i++) {
        lp->i = i;
        it->n = 0;
        if (jj_step(c, n->pos, 1) || scope_set(c, n->pos, it, loop_name, &loopv) ||
            assign_targets(c, it, n, &items[i]) || exec_node(c, it, n->b, b))
            return c->err;
        if (c->ctl == 1) {
            c->ctl = 0;
            break;
        }
        c->ctl = 0;
    }
    if (cnt == 0 && n->c)
        return exec_node(c, sc, n->c, b);
    return 0;
}

static int exec_inner(jj_ctx_t *c, jj_scope_t *sc, const jj_node_t *n, jj_buf_t *b)
{
    jv_t v;
    switch (n->kind) {
    case N_BODY:
        for (size_t i = 0; i < n->n_kids && !c->ctl; i++)
            if (exec_node(c, sc, n->kids[i], b))
                return c->err;
        return 0;
    case N_TEXT: return jj_buf_put(c, n->pos, b, n->lit.u.s.p, n->lit.u.s.n);
    case N_PRINT:
        if (eval(c, sc, n->a, &v))
            return c->err;
        return jv_write_str(c, n->pos, b, &v);
    case N_IF:
        if (eval(c, sc, n->a, &v))
            return c->err;
        if (jv_truthy(&v))
            return exec_node(c, sc, n->b, b);
        return n->c ? exec_node(c, sc, n->c, b) : 0;
    case N_FOR: return exec_for(c, sc, n, b);
    case N_SET:
        if (eval(c, sc, n->a, &v))
            return c->err;
        return assign_targets(c, sc, n, &v);
    case N_SETNS: {
        jv_t *ns = scope_find(sc, n->names[0]);
        jv_t nsv = ns ? *ns : lookup(c, sc, n->names[0]);
        if (nsv.t != JV_NS)
            return jj_fail(c, n->pos, QD_EINVAL, "cannot assign attribute on non-namespace "
                                                 "object '%.*s'", (int)n->names[0].n,
                           n->names[0].p);
        if (eval(c, sc, n->a, &v))
            return c->err;
        jv_t key = jv_str(n->name.p, n->name.n);
        return jv_dict_set(c, n->pos, nsv.u.d, &key, &v);
    }
    case N_SETBLOCK:
        if (exec_body_into(c, sc, n->b, &v))
            return c->err;
        if (n->c && apply_filters(c, sc, n->c, &v, &v))
            return c->err;
        return scope_set(c, n->pos, sc, n->names[0], &v);
    case N_FILTERBLOCK:
        if (exec_body_into(c, sc, n->b, &v) || apply_filters(c, sc, n->c, &v, &v))
            return c->err;
        return jv_write_str(c, n->pos, b, &v);
    case N_MACRO: {
        jj_macro_t *m = jj_calloc(c, n->pos, 1, sizeof *m);
        if (!m)
            return c->err;
        m->def = n;
        m->closure = sc;
        v.t = JV_MACRO;
        v.u.mac = m;
        return scope_set(c, n->pos, sc, n->name, &v);
    }
    case N_BREAK: c->ctl = 1; return 0;
    case N_CONTINUE: c->ctl = 2; return 0;
    default:
        return jj_fail(c, n->pos, QD_EINTERNAL, "bad statement node %d", n->kind);
    }
}

static int exec_node(jj_ctx_t *c, jj_scope_t *sc, const jj_node_t *n, jj_buf_t *b)
{
    if (jj_step(c, n->pos, 1))
        return c->err;
    if (++c->depth > c->max_depth) {
        c->depth--;
        return jj_fail(c, n->pos, QD_ETOOBIG, "recursion depth limit (%d) exceeded",
                       c->max_depth);
    }
    int rc = exec_inner(c, sc, n, b);
    c->depth--;
    return rc ? rc : c->err;
}

int qd_jinja_exec(const qd_jinja_t *t, const json_t *vars, const qd_jinja_limits_t *lim,
                  char **out, size_t *out_len)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!t)
        return QD_EINVAL;
    if (vars && !json_is_object(vars)) {
        qd_set_errmsg("jinja: template variables must be a JSON object");
        return QD_EINVAL;
    }
    qd_jinja_limits_t l = lim ? *lim : (qd_jinja_limits_t){0};
    jj_ctx_t c = {
        .tpl = t,
        .max_out = l.max_output_bytes ? l.max_output_bytes : (size_t)16 << 20,
        .max_steps = l.max_steps > 0 ? l.max_steps : 10000000L,
        .max_depth = l.max_depth > 0 ? l.max_depth : 500,
        .now = l.now,
    };
    c.ar.cap_bytes = l.max_memory_bytes ? l.max_memory_bytes : (size_t)256 << 20;
    int rc;
    jj_scope_t *root = jj_calloc(&c, 0, 1, sizeof *root);
    jv_dict_t *empty = jv_dict_new(&c, 0, 4);
    if (!root || !empty) {
        rc = c.err;
        goto out;
    }
    c.root = root;
    c.vars.t = JV_DICT;
    c.vars.u.d = empty;
    if (vars && jv_from_json(&c, vars, &c.vars)) {
        rc = c.err;
        goto out;
    }
    jj_buf_t b = {.max = c.max_out};
    rc = exec_node(&c, root, t->body, &b);
    if (!rc && c.err)
        rc = c.err;
    if (rc)
        goto out;
    char *s = qd_malloc(b.n + 1);
    if (!s) {
        rc = QD_ENOMEM;
        goto out;
    }
    if (b.n)
        memcpy(s, b.p, b.n);
    s[b.n] = 0;
    *out = s;
    if (out_len)
        *out_len = b.n;
out:
    jj_arena_free(&c.ar);
    return rc;
}

int qd_jinja_render(const char *tmpl, size_t tmpl_len, const json_t *vars,
                    const qd_jinja_limits_t *lim, char **out, size_t *out_len)
{
    qd_jinja_t *t;
    *out = NULL;
    int rc = qd_jinja_compile(tmpl, tmpl_len, &t);
    if (rc)
        return rc;
    rc = qd_jinja_exec(t, vars, lim, out, out_len);
    qd_jinja_free(t);
    return rc;
}
