/*
 * jinja_parse.c — tokens to AST (recursive descent, jinja2's grammar) and
 * qd_jinja_compile / qd_jinja_free.
 *
 * Expression precedence, loosest first (as jinja2/parser.py):
 *   a if c else b | or | and | not | comparisons (== != < <= > >= in, not in)
 *   | + - | ~ | * / // % | ** | unary - + | primary with postfix . [] ()
 *   and filter/test suffixes (| f, is t), which bind tighter than binary
 *   operators: `'a' + x | trim` is `'a' + (x | trim)`.
 * Statements: if/elif/else, for (tuple targets, `if` filter, else), set
 * (name, tuple, ns.attr, block form with filters), macro, break/continue,
 * filter blocks, and generation blocks (transformers' extension; rendered
 * as their body). Nesting is limited so that a hostile template cannot
 * exhaust the C stack.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/jinja_int.h"

#define MAX_PARSE_DEPTH 200

typedef struct {
    jj_arena_t *ar;
    const jj_tok_t *t;
    size_t n, i;
    int depth, loop_depth;
    int rc;
    size_t err_pos;
    char err[256];
} parser_t;

static int perr(parser_t *p, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr(parser_t *p, size_t pos, const char *fmt, ...)
{
    if (p->rc)
        return p->rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    p->err_pos = pos;
    p->rc = QD_EINVAL;
    return p->rc;
}

static const jj_tok_t *cur(parser_t *p) { return &p->t[p->i]; }
static const jj_tok_t *peek(parser_t *p, size_t k)
{
    return &p->t[p->i + k < p->n ? p->i + k : p->n - 1];
}
static void adv(parser_t *p)
{
    if (p->i + 1 < p->n)
        p->i++;
}
static bool is_op(parser_t *p, int op) { return cur(p)->type == TK_OP && cur(p)->op == op; }
static bool is_name(parser_t *p, const char *z)
{
    return cur(p)->type == TK_NAME && jj_str_eq(cur(p)->s, z);
}

static const char *tok_desc(const jj_tok_t *t, char *buf, size_t n)
{
    switch (t->type) {
    case TK_EOF: return "end of template";
    case TK_DATA: return "template data";
    case TK_VAR_BEGIN: return "'{{'";
    case TK_VAR_END: return "end of print statement";
    case TK_BLOCK_BEGIN: return "'{%'";
    case TK_BLOCK_END: return "end of statement block";
    case TK_STRING: return "string";
    case TK_INT: return "integer";
    case TK_FLOAT: return "float";
    case TK_NAME:
        snprintf(buf, n, "'%.*s'", (int)QD_MIN(t->s.n, 40), t->s.p);
        return buf;
    default: {
        static const char *const names[] = {
            [OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/",
            [OP_FLOORDIV] = "//", [OP_MOD] = "%", [OP_POW] = "**", [OP_TILDE] = "~",
            [OP_LBRACKET] = "[", [OP_RBRACKET] = "]", [OP_LPAREN] = "(",
            [OP_RPAREN] = ")", [OP_LBRACE] = "{", [OP_RBRACE] = "}", [OP_EQ] = "==",
            [OP_NE] = "!=", [OP_GT] = ">", [OP_GE] = ">=", [OP_LT] = "<",
            [OP_LE] = "<=", [OP_ASSIGN] = "=", [OP_DOT] = ".", [OP_COLON] = ":",
            [OP_PIPE] = "|", [OP_COMMA] = ",", [OP_SEMI] = ";"};
        snprintf(buf, n, "'%s'", t->op < QD_ARRAY_SIZE(names) && names[t->op]
                                     ? names[t->op] : "?");
        return buf;
    }
    }
}

static int unexpected(parser_t *p, const char *what)
{
    char b[64];
    return perr(p, cur(p)->pos, "expected %s, got %s", what, tok_desc(cur(p), b, sizeof b));
}

static int expect_op(parser_t *p, int op, const char *what)
{
    if (!is_op(p, op))
        return unexpected(p, what);
    adv(p);
    return 0;
}

static int expect_block_end(parser_t *p)
{
    if (cur(p)->type != TK_BLOCK_END)
        return unexpected(p, "end of statement block");
    adv(p);
    return 0;
}

static jj_node_t *mk(parser_t *p, int kind, size_t pos)
{
    jj_node_t *n = jj_alloc(p->ar, sizeof *n);
    if (!n) {
        if (!p->rc) {
            snprintf(p->err, sizeof p->err, "out of memory");
            p->rc = QD_ENOMEM;
        }
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    n->pos = pos;
    return n;
}

/* Append a child (and keyword name) to n->kids. */
static int add_kid(parser_t *p, jj_node_t *n, jj_node_t *kid, jj_str_t kw, size_t *cap)
{
    if (n->n_kids == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        jj_node_t **k = jj_grow(p->ar, n->kids, *cap * sizeof *k, nc * sizeof *k);
        jj_str_t *w = k ? jj_alloc(p->ar, nc * sizeof *w) : NULL;
        if (!k || !w) {
            p->rc = QD_ENOMEM;
            snprintf(p->err, sizeof p->err, "out of memory");
            return p->rc;
        }
        if (n->kw)
            memcpy(w, n->kw, n->n_kids * sizeof *w);
        n->kids = k;
        n->kw = w;
        *cap = nc;
    }
    n->kids[n->n_kids] = kid;
    n->kw[n->n_kids] = kw;
    n->n_kids++;
    return 0;
}

static int add_name(parser_t *p, jj_node_t *n, jj_str_t name, size_t *cap)
{
    if (n->n_names == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        jj_str_t *w = jj_grow(p->ar, n->names, *cap * sizeof *w, nc * sizeof *w);
        if (!w) {
            p->rc = QD_ENOMEM;
            snprintf(p->err, sizeof p->err, "out of memory");
            return p->rc;
        }
        n->names = w;
        *cap = nc;
    }
    n->names[n->n_names++] = name;
    return 0;
}

static const jj_str_t NOKW = {NULL, 0};

static jj_node_t *parse_expression(parser_t *p, bool with_condexpr);
static jj_node_t *parse_tuple(parser_t *p, bool with_condexpr, bool explicit_parens);
static jj_node_t *parse_unary(parser_t *p, bool with_filter);
static jj_node_t *parse_postfix(parser_t *p, jj_node_t *node);
static jj_node_t *parse_primary(parser_t *p);

static bool enter(parser_t *p)
{
    if (++p->depth > MAX_PARSE_DEPTH) {
        perr(p, cur(p)->pos, "template nested too deeply");
        return false;
    }
    return true;
}

/* `(args)` after a callee, filter or test; p is at '('. */
static int parse_call_args(parser_t *p, jj_node_t *n)
{
    size_t cap = 0;
    bool kw_seen = false;
    adv(p);
    while (!is_op(p, OP_RPAREN)) {
        if (n->n_kids && expect_op(p, OP_COMMA, "',' or ')'"))
            return p->rc;
        if (is_op(p, OP_RPAREN))
            break;
        if (is_op(p, OP_MUL) || is_op(p, OP_POW))
            return perr(p, cur(p)->pos, "*args and **kwargs are not supported");
        jj_str_t kw = NOKW;
        if (cur(p)->type == TK_NAME && peek(p, 1)->type == TK_OP && peek(p, 1)->op == OP_ASSIGN) {
            kw = cur(p)->s;
            adv(p);
            adv(p);
            kw_seen = true;
        } else if (kw_seen) {
            return perr(p, cur(p)->pos, "positional argument after keyword argument");
        }
        jj_node_t *e = parse_expression(p, true);
        if (!e || add_kid(p, n, e, kw, &cap))
            return p->rc ? p->rc : QD_ENOMEM;
    }
    adv(p);
    return 0;
}

/* name(.name)* */
static int dotted_name(parser_t *p, jj_str_t *out)
{
    if (cur(p)->type != TK_NAME)
        return unexpected(p, "name");
    *out = cur(p)->s;
    adv(p);
    while (is_op(p, OP_DOT) && peek(p, 1)->type == TK_NAME) {
        adv(p);
        out->n = (size_t)(cur(p)->s.p + cur(p)->s.n - out->p);
        adv(p);
    }
    return 0;
}

/* `| name(args)` chain applied to `node` (NULL: the filter-block input). */
static jj_node_t *parse_filter(parser_t *p, jj_node_t *node, bool start_inline)
{
    while (is_op(p, OP_PIPE) || start_inline) {
        if (!start_inline)
            adv(p);
        start_inline = false;
        jj_node_t *f = mk(p, N_FILTER, cur(p)->pos);
        if (!f || dotted_name(p, &f->name))
            return NULL;
        f->a = node;
        if (is_op(p, OP_LPAREN) && parse_call_args(p, f))
            return NULL;
        node = f;
    }
    return node;
}

static jj_node_t *parse_test(parser_t *p, jj_node_t *node)
{
    jj_node_t *t = mk(p, N_TEST, cur(p)->pos);
    if (!t)
        return NULL;
    adv(p); /* is */
    if (is_name(p, "not")) {
        t->neg = true;
        adv(p);
    }
    if (dotted_name(p, &t->name))
        return NULL;
    t->a = node;
    const jj_tok_t *c = cur(p);
    if (is_op(p, OP_LPAREN)) {
        if (parse_call_args(p, t))
            return NULL;
    } else if ((c->type == TK_NAME || c->type == TK_STRING || c->type == TK_INT ||
                c->type == TK_FLOAT || is_op(p, OP_LBRACKET) || is_op(p, OP_LBRACE)) &&
               !is_name(p, "else") && !is_name(p, "or") && !is_name(p, "and")) {
        if (is_name(p, "is")) {
            perr(p, c->pos, "you cannot chain multiple tests with is");
            return NULL;
        }
        size_t cap = 0;
        jj_node_t *arg = parse_primary(p);
        if (arg)
            arg = parse_postfix(p, arg);
        if (!arg || add_kid(p, t, arg, NOKW, &cap))
            return NULL;
    }
    return t;
}

static jj_node_t *parse_subscript(parser_t *p, jj_node_t *node)
{
    size_t pos = cur(p)->pos;
    if (is_op(p, OP_DOT)) {
        adv(p);
        if (cur(p)->type == TK_NAME) {
            jj_node_t *g = mk(p, N_GETATTR, pos);
            if (!g)
                return NULL;
            g->a = node;
            g->name = cur(p)->s;
            adv(p);
            return g;
        }
        if (cur(p)->type == TK_INT) {
            jj_node_t *g = mk(p, N_GETITEM, pos), *k = mk(p, N_LIT, cur(p)->pos);
            if (!g || !k)
                return NULL;
            k->lit = jv_int(cur(p)->i);
            g->a = node;
            g->b = k;
            adv(p);
            return g;
        }
        unexpected(p, "name or number");
        return NULL;
    }
    adv(p); /* [ */
    jj_node_t *parts[3] = {NULL, NULL, NULL};
    bool slice = false;
    if (!is_op(p, OP_COLON)) {
        parts[0] = parse_expression(p, true);
        if (!parts[0])
            return NULL;
    }
    if (is_op(p, OP_COLON)) {
        slice = true;
        adv(p);
        if (!is_op(p, OP_RBRACKET) && !is_op(p, OP_COLON) && !is_op(p, OP_COMMA)) {
            if (!(parts[1] = parse_expression(p, true)))
                return NULL;
        }
        if (is_op(p, OP_COLON)) {
            adv(p);
            if (!is_op(p, OP_RBRACKET) && !is_op(p, OP_COMMA)) {
                if (!(parts[2] = parse_expression(p, true)))
                    return NULL;
            }
        }
    }
    if (expect_op(p, OP_RBRACKET, "']'"))
        return NULL;
    jj_node_t *g = mk(p, slice ? N_SLICE : N_GETITEM, pos);
    if (!g)
        return NULL;
    g->a = node;
    g->b = parts[0];
    g->c = parts[1];
    g->d = parts[2];
    return g;
}

static jj_node_t *parse_call(parser_t *p, jj_node_t *node)
{
    jj_node_t *c = mk(p, N_CALL, node->pos);
    if (!c)
        return NULL;
    c->a = node;
    if (parse_call_args(p, c))
        return NULL;
    return c;
}

static jj_node_t *parse_postfix(parser_t *p, jj_node_t *node)
{
    while (node) {
        if (is_op(p, OP_DOT) || is_op(p, OP_LBRACKET))
            node = parse_subscript(p, node);
        else if (is_op(p, OP_LPAREN))
            node = parse_call(p, node);
        else
            break;
    }
    return node;
}

static jj_node_t *parse_filter_expr(parser_t *p, jj_node_t *node)
{
    while (node) {
        if (is_op(p, OP_PIPE))
            node = parse_filter(p, node, false);
        else if (is_name(p, "is"))
            node = parse_test(p, node);
        else if (is_op(p, OP_LPAREN))
            node = parse_call(p, node);
        else
            break;
    }
    return node;
}

static jj_node_t *parse_primary(parser_t *p)
{
    const jj_tok_t *t = cur(p);
    jj_node_t *n;
    char b[64];
    switch (t->type) {
    case TK_NAME:
        if (!(n = mk(p, N_LIT, t->pos)))
            return NULL;
        if (jj_str_eq(t->s, "true") || jj_str_eq(t->s, "True"))
            n->lit = jv_bool(true);
        else if (jj_str_eq(t->s, "false") || jj_str_eq(t->s, "False"))
            n->lit = jv_bool(false);
        else if (jj_str_eq(t->s, "none") || jj_str_eq(t->s, "None"))
            n->lit = jv_none();
        else {
            n->kind = N_NAME;
            n->name = t->s;
        }
        adv(p);
        return n;
    case TK_STRING: {
        if (!(n = mk(p, N_LIT, t->pos)))
            return NULL;
        n->lit = jv_str(t->s.p, t->s.n);
        adv(p);
        while (cur(p)->type == TK_STRING) { /* adjacent literals concatenate */
            jj_str_t s2 = cur(p)->s;
            char *m = jj_alloc(p->ar, n->lit.u.s.n + s2.n + 1);
            if (!m) {
                p->rc = QD_ENOMEM;
                return NULL;
            }
            memcpy(m, n->lit.u.s.p, n->lit.u.s.n);
            memcpy(m + n->lit.u.s.n, s2.p, s2.n);
            n->lit = jv_str(m, n->lit.u.s.n + s2.n);
            adv(p);
        }
        return n;
    }
    case TK_INT:
    case TK_FLOAT:
        if (!(n = mk(p, N_LIT, t->pos)))
            return NULL;
        n->lit = t->type == TK_INT ? jv_int(t->i) : jv_float(t->f);
        adv(p);
        return n;
    case TK_OP:
        if (t->op == OP_LPAREN) {
            adv(p);
            n = parse_tuple(p, true, true);
            if (!n || expect_op(p, OP_RPAREN, "')'"))
                return NULL;
            return n;
        }
        if (t->op == OP_LBRACKET || t->op == OP_LBRACE) {
            bool dict = t->op == OP_LBRACE;
            int close = dict ? OP_RBRACE : OP_RBRACKET;
            if (!(n = mk(p, dict ? N_DICT : N_LIST, t->pos)))
                return NULL;
            size_t cap = 0;
            adv(p);
            while (!is_op(p, close)) {
                if (n->n_kids && expect_op(p, OP_COMMA, dict ? "',' or '}'" : "',' or ']'"))
                    return NULL;
                if (is_op(p, close))
                    break;
                jj_node_t *e = parse_expression(p, true);
                if (!e || add_kid(p, n, e, NOKW, &cap))
                    return NULL;
                if (dict) {
                    if (expect_op(p, OP_COLON, "':'"))
                        return NULL;
                    e = parse_expression(p, true);
                    if (!e || add_kid(p, n, e, NOKW, &cap))
                        return NULL;
                }
            }
            adv(p);
            return n;
        }
        break;
    default:
        break;
    }
    perr(p, t->pos, "unexpected %s", tok_desc(t, b, sizeof b));
    return NULL;
}

static jj_node_t *parse_unary(parser_t *p, bool with_filter)
{
    if (!enter(p))
        return NULL;
    jj_node_t *node;
    if (is_op(p, OP_SUB) || is_op(p, OP_ADD)) {
        node = mk(p, is_op(p, OP_SUB) ? N_NEG : N_POS, cur(p)->pos);
        adv(p);
        if (node && !(node->a = parse_unary(p, false)))
            node = NULL;
    } else {
        node = parse_primary(p);
    }
    node = parse_postfix(p, node);
    if (with_filter)
        node = parse_filter_expr(p, node);
    p->depth--;
    return node;
}

static jj_node_t *binop(parser_t *p, int kind, int op, size_t pos, jj_node_t *l, jj_node_t *r)
{
    if (!l || !r)
        return NULL;
    jj_node_t *n = mk(p, kind, pos);
    if (!n)
        return NULL;
    n->op = (uint8_t)op;
    n->a = l;
    n->b = r;
    return n;
}

static jj_node_t *parse_pow(parser_t *p)
{
    jj_node_t *l = parse_unary(p, true);
    while (l && is_op(p, OP_POW)) {
        size_t pos = cur(p)->pos;
        adv(p);
        l = binop(p, N_BINOP, OP_POW, pos, l, parse_unary(p, true));
    }
    return l;
}

static jj_node_t *parse_math2(parser_t *p)
{
    jj_node_t *l = parse_pow(p);
    while (l && (is_op(p, OP_MUL) || is_op(p, OP_DIV) || is_op(p, OP_FLOORDIV) ||
                 is_op(p, OP_MOD))) {
        int op = cur(p)->op;
        size_t pos = cur(p)->pos;
        adv(p);
        l = binop(p, N_BINOP, op, pos, l, parse_pow(p));
    }
    return l;
}

static jj_node_t *parse_concat(parser_t *p)
{
    jj_node_t *first = parse_math2(p);
    if (!first || !is_op(p, OP_TILDE))
        return first;
    jj_node_t *n = mk(p, N_CONCAT, cur(p)->pos);
    size_t cap = 0;
    if (!n || add_kid(p, n, first, NOKW, &cap))
        return NULL;
    while (is_op(p, OP_TILDE)) {
        adv(p);
        jj_node_t *e = parse_math2(p);
        if (!e || add_kid(p, n, e, NOKW, &cap))
            return NULL;
    }
    return n;
}

static jj_node_t *parse_math1(parser_t *p)
{
    jj_node_t *l = parse_concat(p);
    while (l && (is_op(p, OP_ADD) || is_op(p, OP_SUB))) {
        int op = cur(p)->op;
        size_t pos = cur(p)->pos;
        adv(p);
        l = binop(p, N_BINOP, op, pos, l, parse_concat(p));
    }
    return l;
}

static jj_node_t *parse_compare(parser_t *p)
{
    jj_node_t *expr = parse_math1(p), *result = NULL;
    while (expr) {
        int op;
        size_t pos = cur(p)->pos;
        if (cur(p)->type == TK_OP && (cur(p)->op == OP_EQ || cur(p)->op == OP_NE ||
                                     cur(p)->op == OP_LT || cur(p)->op == OP_LE ||
                                     cur(p)->op == OP_GT || cur(p)->op == OP_GE)) {
            op = cur(p)->op;
            adv(p);
        } else if (is_name(p, "in")) {
            op = OP_IN;
            adv(p);
        } else if (is_name(p, "not") && peek(p, 1)->type == TK_NAME &&
                   jj_str_eq(peek(p, 1)->s, "in")) {
            op = OP_NOTIN;
            adv(p);
            adv(p);
        } else {
            break;
        }
        jj_node_t *rhs = parse_math1(p);
        jj_node_t *cmp = binop(p, N_CMP, op, pos, expr, rhs);
        if (!cmp)
            return NULL;
        /* a < b < c  ==  (a < b) and (b < c) */
        result = result ? binop(p, N_AND, 0, pos, result, cmp) : cmp;
        expr = rhs;
    }
    return result ? result : expr;
}

static jj_node_t *parse_not(parser_t *p)
{
    if (is_name(p, "not")) {
        if (!enter(p))
            return NULL;
        jj_node_t *n = mk(p, N_NOT, cur(p)->pos);
        adv(p);
        if (n && !(n->a = parse_not(p)))
            n = NULL;
        p->depth--;
        return n;
    }
    return parse_compare(p);
}

static jj_node_t *parse_and(parser_t *p)
{
    jj_node_t *l = parse_not(p);
    while (l && is_name(p, "and")) {
        size_t pos = cur(p)->pos;
        adv(p);
        l = binop(p, N_AND, 0, pos, l, parse_not(p));
    }
    return l;
}

static jj_node_t *parse_or(parser_t *p)
{
    jj_node_t *l = parse_and(p);
    while (l && is_name(p, "or")) {
        size_t pos = cur(p)->pos;
        adv(p);
        l = binop(p, N_OR, 0, pos, l, parse_and(p));
    }
    return l;
}

static jj_node_t *parse_condexpr(parser_t *p)
{
    jj_node_t *e1 = parse_or(p);
    while (e1 && is_name(p, "if")) {
        jj_node_t *n = mk(p, N_COND, cur(p)->pos);
        adv(p);
        if (!n || !(n->a = parse_or(p)))
            return NULL;
        n->b = e1;
        if (is_name(p, "else")) {
            adv(p);
            if (!enter(p))
                return NULL;
            n->c = parse_condexpr(p);
            p->depth--;
            if (!n->c)
                return NULL;
        }
        e1 = n;
    }
    return e1;
}

static jj_node_t *parse_expression(parser_t *p, bool with_condexpr)
{
    return with_condexpr ? parse_condexpr(p) : parse_or(p);
}

static bool tuple_end(parser_t *p)
{
    const jj_tok_t *t = cur(p);
    return t->type == TK_VAR_END || t->type == TK_BLOCK_END || t->type == TK_EOF ||
           is_op(p, OP_RPAREN) || is_name(p, "recursive") || is_name(p, "if");
}

static jj_node_t *parse_tuple(parser_t *p, bool with_condexpr, bool explicit_parens)
{
    size_t pos = cur(p)->pos, cap = 0;
    jj_node_t *tuple = mk(p, N_TUPLE, pos);
    bool is_tuple = false;
    if (!tuple)
        return NULL;
    for (;;) {
        if (tuple->n_kids && expect_op(p, OP_COMMA, "','"))
            return NULL;
        if (tuple->n_kids && tuple_end(p))
            break;
        if (!tuple->n_kids && explicit_parens && is_op(p, OP_RPAREN))
            return tuple; /* () */
        jj_node_t *e = parse_expression(p, with_condexpr);
        if (!e || add_kid(p, tuple, e, NOKW, &cap))
            return NULL;
        if (is_op(p, OP_COMMA))
            is_tuple = true;
        else
            break;
    }
    return is_tuple ? tuple : tuple->kids[0];
}

/* ---- statements ------------------------------------------------------ */

static jj_node_t *subparse(parser_t *p, const char *const *end_words);

/* Targets of for/set: `a`, `a, b`, `(a, b)`. */
static int parse_targets(parser_t *p, jj_node_t *n)
{
    size_t cap = 0;
    bool paren = is_op(p, OP_LPAREN);
    if (paren)
        adv(p);
    for (;;) {
        if (cur(p)->type != TK_NAME)
            return unexpected(p, "assignment target name");
        if (add_name(p, n, cur(p)->s, &cap))
            return p->rc;
        adv(p);
        if (!is_op(p, OP_COMMA))
            break;
        n->unpack = true;
        adv(p);
        if (paren && is_op(p, OP_RPAREN))
            break;
    }
    if (paren) {
        n->unpack = true;
        if (expect_op(p, OP_RPAREN, "')'"))
            return p->rc;
    }
    return 0;
}

/* After subparse stopped at an end word: is it `w`? Consume it if so. */
static bool take_word(parser_t *p, const char *w)
{
    if (!is_name(p, w))
        return false;
    adv(p);
    return true;
}

static jj_node_t *parse_if(parser_t *p, size_t pos)
{
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const end_only[] = {"endif", NULL};
    jj_node_t *n = mk(p, N_IF, pos), *top = n;
    while (n) {
        if (!(n->a = parse_tuple(p, false, false)) || expect_block_end(p))
            return NULL;
        if (!(n->b = subparse(p, ends)))
            return NULL;
        if (is_name(p, "elif")) {
            jj_node_t *e = mk(p, N_IF, cur(p)->pos);
            adv(p);
            n->c = e;
            n = e;
            continue;
        }
        if (take_word(p, "else")) {
            if (expect_block_end(p) || !(n->c = subparse(p, end_only)))
                return NULL;
        }
        if (!take_word(p, "endif")) {
            unexpected(p, "'endif'");
            return NULL;
        }
        break;
    }
    return n && !expect_block_end(p) ? top : NULL;
}

static jj_node_t *parse_for(parser_t *p, size_t pos)
{
    static const char *const ends[] = {"endfor", "else", NULL};
    static const char *const end_only[] = {"endfor", NULL};
    jj_node_t *n = mk(p, N_FOR, pos);
    if (!n || parse_targets(p, n))
        return NULL;
    if (!take_word(p, "in")) {
        unexpected(p, "'in'");
        return NULL;
    }
    if (!(n->a = parse_tuple(p, false, false)))
        return NULL;
    if (is_name(p, "recursive")) {
        perr(p, cur(p)->pos, "recursive loops are not supported");
        return NULL;
    }
    if (take_word(p, "if") && !(n->d = parse_expression(p, true)))
        return NULL;
    if (expect_block_end(p))
        return NULL;
    p->loop_depth++;
    n->b = subparse(p, ends);
    p->loop_depth--;
    if (!n->b)
        return NULL;
    if (take_word(p, "else")) {
        if (expect_block_end(p) || !(n->c = subparse(p, end_only)))
            return NULL;
    }
    if (!take_word(p, "endfor")) {
        unexpected(p, "'endfor'");
        return NULL;
    }
    return expect_block_end(p) ? NULL : n;
}

static jj_node_t *parse_set(parser_t *p, size_t pos)
{
    static const char *const ends[] = {"endset", NULL};
    jj_node_t *n;
    size_t cap = 0;
    if (cur(p)->type == TK_NAME && peek(p, 1)->type == TK_OP && peek(p, 1)->op == OP_DOT) {
        if (!(n = mk(p, N_SETNS, pos)) || add_name(p, n, cur(p)->s, &cap))
            return NULL;
        adv(p);
        adv(p);
        if (cur(p)->type != TK_NAME) {
            unexpected(p, "attribute name");
            return NULL;
        }
        n->name = cur(p)->s;
        adv(p);
        if (expect_op(p, OP_ASSIGN, "'='") || !(n->a = parse_tuple(p, true, false)))
            return NULL;
        return expect_block_end(p) ? NULL : n;
    }
    if (!(n = mk(p, N_SET, pos)) || parse_targets(p, n))
        return NULL;
    if (is_op(p, OP_ASSIGN)) {
        adv(p);
        if (!(n->a = parse_tuple(p, true, false)))
            return NULL;
        return expect_block_end(p) ? NULL : n;
    }
    if (n->unpack) {
        unexpected(p, "'='");
        return NULL;
    }
    n->kind = N_SETBLOCK;
    if (is_op(p, OP_PIPE) && !(n->c = parse_filter(p, NULL, false)))
        return NULL;
    if (expect_block_end(p) || !(n->b = subparse(p, ends)))
        return NULL;
    adv(p); /* endset */
    return expect_block_end(p) ? NULL : n;
}

static jj_node_t *parse_macro(parser_t *p, size_t pos)
{
    static const char *const ends[] = {"endmacro", NULL};
    jj_node_t *n = mk(p, N_MACRO, pos);
    size_t cap_names = 0, cap_kids = 0;
    if (!n)
        return NULL;
    if (cur(p)->type != TK_NAME) {
        unexpected(p, "macro name");
        return NULL;
    }
    n->name = cur(p)->s;
    adv(p);
    if (expect_op(p, OP_LPAREN, "'('"))
        return NULL;
    while (!is_op(p, OP_RPAREN)) {
        if (n->n_names && expect_op(p, OP_COMMA, "',' or ')'"))
            return NULL;
        if (is_op(p, OP_RPAREN))
            break;
        if (cur(p)->type != TK_NAME) {
            unexpected(p, "parameter name");
            return NULL;
        }
        if (add_name(p, n, cur(p)->s, &cap_names))
            return NULL;
        adv(p);
        jj_node_t *def = NULL;
        if (is_op(p, OP_ASSIGN)) {
            adv(p);
            if (!(def = parse_expression(p, true)))
                return NULL;
        }
        if (add_kid(p, n, def, NOKW, &cap_kids))
            return NULL;
    }
    adv(p);
    if (expect_block_end(p))
        return NULL;
    int saved = p->loop_depth;
    p->loop_depth = 0;
    n->b = subparse(p, ends);
    p->loop_depth = saved;
    if (!n->b)
        return NULL;
    adv(p); /* endmacro */
    if (cur(p)->type == TK_NAME && jj_str_eq(cur(p)->s, "") == false &&
        cur(p)->s.n == n->name.n && memcmp(cur(p)->s.p, n->name.p, n->name.n) == 0)
        adv(p); /* {% endmacro name %} */
    return expect_block_end(p) ? NULL : n;
}

static jj_node_t *parse_statement(parser_t *p)
{
    const jj_tok_t *t = cur(p);
    size_t pos = t->pos;
    jj_str_t w = t->s;
    adv(p);
    if (jj_str_eq(w, "if"))
        return parse_if(p, pos);
    if (jj_str_eq(w, "for"))
        return parse_for(p, pos);
    if (jj_str_eq(w, "set"))
        return parse_set(p, pos);
    if (jj_str_eq(w, "macro"))
        return parse_macro(p, pos);
    if (jj_str_eq(w, "break") || jj_str_eq(w, "continue")) {
        if (p->loop_depth == 0) {
            perr(p, pos, "'%.*s' outside of a loop", (int)w.n, w.p);
            return NULL;
        }
        jj_node_t *n = mk(p, w.p[0] == 'b' ? N_BREAK : N_CONTINUE, pos);
        return n && !expect_block_end(p) ? n : NULL;
    }
    if (jj_str_eq(w, "filter")) {
        static const char *const ends[] = {"endfilter", NULL};
        jj_node_t *n = mk(p, N_FILTERBLOCK, pos);
        if (!n || !(n->c = parse_filter(p, NULL, true)) || expect_block_end(p) ||
            !(n->b = subparse(p, ends)))
            return NULL;
        adv(p);
        return expect_block_end(p) ? NULL : n;
    }
    if (jj_str_eq(w, "generation")) {
        static const char *const ends[] = {"endgeneration", NULL};
        jj_node_t *n;
        if (expect_block_end(p) || !(n = subparse(p, ends)))
            return NULL;
        adv(p);
        return expect_block_end(p) ? NULL : n;
    }
    perr(p, pos, "unknown tag '%.*s'", (int)QD_MIN(w.n, 40), w.p);
    return NULL;
}

/* Statements until EOF (end_words NULL) or a `{% word` in end_words, where
 * it stops with the word as the current token. */
static jj_node_t *subparse(parser_t *p, const char *const *end_words)
{
    if (!enter(p))
        return NULL;
    jj_node_t *body = mk(p, N_BODY, cur(p)->pos);
    size_t cap = 0;
    while (body) {
        const jj_tok_t *t = cur(p);
        jj_node_t *n = NULL;
        if (t->type == TK_EOF) {
            if (end_words) {
                char want[96] = "";
                for (const char *const *w = end_words; *w; w++)
                    snprintf(want + strlen(want), sizeof want - strlen(want), "%s'%s'",
                             w == end_words ? "" : " or ", *w);
                perr(p, t->pos, "unexpected end of template, expected %s", want);
                body = NULL;
            }
            break;
        } else if (t->type == TK_DATA) {
            if ((n = mk(p, N_TEXT, t->pos)))
                n->lit = jv_str(t->s.p, t->s.n);
            adv(p);
        } else if (t->type == TK_VAR_BEGIN) {
            adv(p);
            if ((n = mk(p, N_PRINT, t->pos)) && (n->a = parse_tuple(p, true, false))) {
                if (cur(p)->type != TK_VAR_END) {
                    unexpected(p, "end of print statement");
                    n = NULL;
                } else {
                    adv(p);
                }
            } else {
                n = NULL;
            }
        } else if (t->type == TK_BLOCK_BEGIN) {
            adv(p);
            if (cur(p)->type != TK_NAME) {
                unexpected(p, "statement name");
                body = NULL;
                break;
            }
            if (end_words) {
                bool stop = false;
                for (const char *const *w = end_words; *w; w++)
                    stop |= is_name(p, *w);
                if (stop)
                    break;
            }
            n = parse_statement(p);
        } else {
            char b[64];
            perr(p, t->pos, "unexpected %s", tok_desc(t, b, sizeof b));
        }
        if (!n || add_kid(p, body, n, NOKW, &cap))
            body = NULL;
    }
    p->depth--;
    return body;
}

void jj_line_col(const char *src, size_t n, size_t pos, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < pos && i < n; i++) {
        if (src[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)src[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

int qd_jinja_compile(const char *tmpl, size_t tmpl_len, qd_jinja_t **out)
{
    *out = NULL;
    if (!tmpl && tmpl_len)
        return QD_EINVAL;
    if (!jj_u8_valid(tmpl, tmpl_len)) {
        qd_set_errmsg("jinja: template is not valid UTF-8");
        return QD_EINVAL;
    }
    qd_jinja_t *t = qd_calloc(1, sizeof *t);
    if (!t)
        return QD_ENOMEM;
    int rc = QD_ENOMEM;
    parser_t p = {.ar = &t->ar};
    /* normalise newlines (\r\n, \r -> \n); drop one trailing newline */
    char *src = jj_alloc(&t->ar, tmpl_len + 1);
    if (!src)
        goto out;
    size_t n = 0;
    for (size_t i = 0; i < tmpl_len; i++) {
        if (tmpl[i] == '\r') {
            src[n++] = '\n';
            if (i + 1 < tmpl_len && tmpl[i + 1] == '\n')
                i++;
        } else {
            src[n++] = tmpl[i];
        }
    }
    if (n > 0 && src[n - 1] == '\n')
        n--;
    src[n] = 0;
    t->src = src;
    t->src_n = n;

    jj_tok_t *toks;
    size_t n_toks, err_pos = 0;
    rc = jj_lex(&t->ar, src, n, &toks, &n_toks, &err_pos, p.err, sizeof p.err);
    if (rc) {
        p.err_pos = err_pos;
        goto out;
    }
    p.t = toks;
    p.n = n_toks;
    t->body = subparse(&p, NULL);
    rc = p.rc ? p.rc : t->body ? 0 : QD_ENOMEM;
out:
    if (rc) {
        int line, col;
        jj_line_col(t->src ? t->src : "", t->src_n, p.err_pos, &line, &col);
        qd_set_errmsg("jinja: %d:%d: %s", line, col, p.err[0] ? p.err : qd_strerror(rc));
        qd_jinja_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void qd_jinja_free(qd_jinja_t *t)
{
    if (!t)
        return;
    jj_arena_free(&t->ar);
    qd_free(t);
}
