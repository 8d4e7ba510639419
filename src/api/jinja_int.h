/*
 * jinja_int.h — internals shared by the Jinja interpreter's files:
 *   jinja_lex.c      source text -> tokens (whitespace control, raw, comments)
 *   jinja_parse.c    tokens -> AST; qd_jinja_compile / qd_jinja_free
 *   jinja_value.c    arena, values, Python-like str()/repr()/json.dumps()
 *   jinja_eval.c     AST evaluation; qd_jinja_exec
 *   jinja_builtins.c filters, tests, str/dict methods, globals
 *
 * Memory: a compiled template lives in one arena (tokens, AST, literals);
 * each render allocates every value in a second arena that is freed in one
 * go at the end, so error paths never leak and values can share bytes
 * freely (a slice points into its parent string). Values are immutable
 * except namespace() objects.
 */
#ifndef QUANTD_API_JINJA_INT_H
#define QUANTD_API_JINJA_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/jinja.h"
#include "quantd/common.h"

/* ---- arena ------------------------------------------------------------ */
typedef struct jj_chunk jj_chunk_t;
typedef struct {
    jj_chunk_t *head;
    size_t total_bytes; /* bytes of chunks held */
    size_t cap_bytes;   /* refuse to grow past this (0: no cap) */
} jj_arena_t;

void *jj_alloc(jj_arena_t *a, size_t n); /* 16-aligned; NULL: cap or OOM */
/* Grow the block `p` (old_n bytes, from jj_alloc) to new_n bytes, in place
 * when it is the latest allocation. NULL on failure (p stays valid). */
void *jj_grow(jj_arena_t *a, void *p, size_t old_n, size_t new_n);
void jj_arena_free(jj_arena_t *a);

/* ---- strings ---------------------------------------------------------- */
typedef struct {
    const char *p;
    size_t n;
} jj_str_t;

bool jj_str_eq(jj_str_t s, const char *z);
/* UTF-8 helpers (input is valid UTF-8). */
size_t jj_u8_decode(const char *s, size_t n, uint32_t *cp); /* bytes used */
size_t jj_u8_encode(uint32_t cp, char *out);                /* 1..4 */
size_t jj_u8_len(const char *s, size_t n);                  /* code points */
bool jj_u8_valid(const char *s, size_t n);
bool jj_is_space(uint32_t cp); /* Python str.isspace() */
/* Length of the whitespace run (Python isspace) starting at s / ending at s+n. */
size_t jj_ws_prefix(const char *s, size_t n);
size_t jj_ws_suffix(const char *s, size_t n);
uint32_t jj_cp_upper(uint32_t cp);
uint32_t jj_cp_lower(uint32_t cp);

/* ---- values ----------------------------------------------------------- */
typedef enum {
    JV_UNDEF = 0, /* u.s: the missing name, for messages */
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,   /* also tuples (list->tuple) */
    JV_DICT,
    JV_NS,     /* namespace(): a mutable dict */
    JV_LOOP,   /* the `loop` variable of a for */
    JV_MACRO,
    JV_FUNC,   /* a global function, u.i = JF_* */
    JV_METHOD, /* bound method: u.m */
} jv_type_t;

typedef struct jv jv_t;
typedef struct jv_list jv_list_t;
typedef struct jv_dict jv_dict_t;
typedef struct jj_loop jj_loop_t;
typedef struct jj_macro jj_macro_t;
typedef struct jv_method jv_method_t;

struct jv {
    uint8_t t; /* jv_type_t */
    union {
        int64_t i;
        double f;
        jj_str_t s;
        jv_list_t *l;
        jv_dict_t *d;
        jj_loop_t *loop;
        jj_macro_t *mac;
        jv_method_t *m;
    } u;
};

struct jv_list {
    size_t n;
    bool tuple;
    jv_t *v;
};
struct jv_dict {
    size_t n, cap;
    jv_t *k, *v;
};
struct jj_loop {
    const jv_t *items;
    size_t n, i;
    int depth;
};
struct jv_method {
    jv_t recv;
    jj_str_t name;
};

enum { JF_RANGE = 1, JF_NAMESPACE, JF_RAISE, JF_STRFTIME, JF_DICT, JF_CYCLE };

static inline jv_t jv_undef(jj_str_t name)
{
    jv_t v = {.t = JV_UNDEF};
    v.u.s = name;
    return v;
}
static inline jv_t jv_none(void) { return (jv_t){.t = JV_NONE}; }
static inline jv_t jv_bool(bool b)
{
    jv_t v = {.t = JV_BOOL};
    v.u.i = b;
    return v;
}
static inline jv_t jv_int(int64_t i)
{
    jv_t v = {.t = JV_INT};
    v.u.i = i;
    return v;
}
static inline jv_t jv_float(double f)
{
    jv_t v = {.t = JV_FLOAT};
    v.u.f = f;
    return v;
}
static inline jv_t jv_str(const char *p, size_t n)
{
    jv_t v = {.t = JV_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}

/* ---- growable byte buffer in an arena -------------------------------- */
typedef struct {
    char *p;
    size_t n, cap;
    size_t max; /* QD_ETOOBIG past this */
} jj_buf_t;

/* ---- render context (shared by eval and builtins) --------------------- */
typedef struct jj_node jj_node_t;
typedef struct jj_scope jj_scope_t;

typedef struct {
    const qd_jinja_t *tpl;
    jj_arena_t ar;
    long steps, max_steps;
    int depth, max_depth;
    size_t max_out;
    int64_t now;
    jj_scope_t *root;
    jv_t vars; /* dict of the caller's variables */
    int err;   /* first error; once set every function unwinds */
    int ctl;   /* loop control pending: 1 break, 2 continue */
} jj_ctx_t;

/* Record an error at source offset `pos` (once). Returns code. */
int jj_fail(jj_ctx_t *c, size_t pos, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void *jj_calloc(jj_ctx_t *c, size_t pos, size_t n, size_t size);
int jj_step(jj_ctx_t *c, size_t pos, long n);

int jj_buf_put(jj_ctx_t *c, size_t pos, jj_buf_t *b, const char *s, size_t n);
static inline int jj_buf_putc(jj_ctx_t *c, size_t pos, jj_buf_t *b, char ch)
{
    return jj_buf_put(c, pos, b, &ch, 1);
}

/* Conversions (Python semantics). Return 0 or an error recorded in c. */
int jv_from_json(jj_ctx_t *c, const void *json, jv_t *out);
bool jv_truthy(const jv_t *v);
int jv_to_str(jj_ctx_t *c, size_t pos, const jv_t *v, jv_t *out);    /* str() */
int jv_write_str(jj_ctx_t *c, size_t pos, jj_buf_t *b, const jv_t *v); /* str() */
int jv_write_repr(jj_ctx_t *c, size_t pos, jj_buf_t *b, const jv_t *v, int depth);
int jv_write_json(jj_ctx_t *c, size_t pos, jj_buf_t *b, const jv_t *v,
                  const char *indent, size_t indent_n, bool sort_keys, int level);
void jv_format_float(double f, char out[40]); /* Python repr(float) */
int jv_eq(jj_ctx_t *c, const jv_t *a, const jv_t *b, int depth, bool *eq);
/* Ordering for <, sort: *cmp <0, 0, >0; error for unorderable types. */
int jv_cmp(jj_ctx_t *c, size_t pos, const jv_t *a, const jv_t *b, int *cmp);
const char *jv_type_name(const jv_t *v);

jv_list_t *jv_list_new(jj_ctx_t *c, size_t pos, size_t n);
jv_dict_t *jv_dict_new(jj_ctx_t *c, size_t pos, size_t cap);
/* Insert or replace key k. */
int jv_dict_set(jj_ctx_t *c, size_t pos, jv_dict_t *d, const jv_t *k, const jv_t *v);
/* Find key (Python dict key equality); NULL if absent. */
jv_t *jv_dict_get(jj_ctx_t *c, const jv_dict_t *d, const jv_t *k);
jv_t *jv_dict_get_str(const jv_dict_t *d, const char *key, size_t n);
/* Materialise an iterable as an array of items (list: its items; str: one-char
 * strings; dict: keys; undefined: empty). Error for the rest. */
int jv_iterate(jj_ctx_t *c, size_t pos, const jv_t *v, const jv_t **items, size_t *n);
/* Number of items / code points, or -1 when len() is undefined. */
int64_t jv_len(const jv_t *v);
bool jv_is_num(const jv_t *v); /* int, float or bool */
double jv_num(const jv_t *v);

/* ---- builtins (jinja_builtins.c) ------------------------------------ */
typedef struct {
    size_t n;
    const jv_t *v;          /* n values */
    const jj_str_t *kw;     /* n names; kw[i].p == NULL: positional */
} jj_args_t;

int jj_filter(jj_ctx_t *c, size_t pos, jj_str_t name, const jv_t *in,
              const jj_args_t *a, jv_t *out);
int jj_test(jj_ctx_t *c, size_t pos, jj_str_t name, const jv_t *in,
            const jj_args_t *a, bool *out);
bool jj_test_exists(jj_str_t name);
bool jj_filter_exists(jj_str_t name);
/* obj.name for str/dict/list receivers: a bound method, or false. */
bool jj_method_lookup(jj_ctx_t *c, const jv_t *recv, jj_str_t name, jv_t *out);
int jj_call_method(jj_ctx_t *c, size_t pos, const jv_method_t *m,
                   const jj_args_t *a, jv_t *out);
int jj_call_func(jj_ctx_t *c, size_t pos, int fn, const jv_t *self,
                 const jj_args_t *a, jv_t *out);
/* Attribute / item lookup with sandbox semantics (jinja_eval.c). */
int jj_getattr(jj_ctx_t *c, size_t pos, const jv_t *obj, jj_str_t name, jv_t *out);
int jj_getitem(jj_ctx_t *c, size_t pos, const jv_t *obj, const jv_t *key, jv_t *out);
int jj_undefined_error(jj_ctx_t *c, size_t pos, const jv_t *u);

/* ---- tokens (jinja_lex.c) -------------------------------------------- */
typedef enum {
    TK_EOF = 0,
    TK_DATA,
    TK_VAR_BEGIN,
    TK_VAR_END,
    TK_BLOCK_BEGIN,
    TK_BLOCK_END,
    TK_NAME,
    TK_STRING,
    TK_INT,
    TK_FLOAT,
    TK_OP,
} jj_tok_type_t;

/* operator codes for TK_OP (also used as AST op codes) */
enum {
    OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_TILDE,
    OP_LBRACKET, OP_RBRACKET, OP_LPAREN, OP_RPAREN, OP_LBRACE, OP_RBRACE,
    OP_EQ, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE, OP_ASSIGN, OP_DOT, OP_COLON,
    OP_PIPE, OP_COMMA, OP_SEMI,
    OP_IN, OP_NOTIN /* compare ops made from names */
};

typedef struct {
    uint8_t type; /* jj_tok_type_t */
    uint8_t op;
    size_t pos; /* byte offset in the (normalised) source */
    jj_str_t s; /* DATA text, NAME, decoded STRING */
    int64_t i;
    double f;
} jj_tok_t;

/* Tokenise src (already newline-normalised, held by the arena's owner).
 * Errors: QD_EINVAL with message via *err_pos / errbuf. */
int jj_lex(jj_arena_t *ar, const char *src, size_t n, jj_tok_t **toks,
           size_t *n_toks, size_t *err_pos, char *errbuf, size_t errbuf_n);

/* ---- AST ------------------------------------------------------------- */
typedef enum {
    /* expressions */
    N_LIT = 1, N_NAME, N_LIST, N_TUPLE, N_DICT, N_GETATTR, N_GETITEM, N_SLICE,
    N_BINOP, N_NEG, N_POS, N_NOT, N_AND, N_OR, N_CMP, N_COND, N_CALL,
    N_FILTER, N_TEST, N_CONCAT,
    /* statements */
    N_BODY, N_TEXT, N_PRINT, N_IF, N_FOR, N_SET, N_SETNS, N_SETBLOCK,
    N_MACRO, N_BREAK, N_CONTINUE, N_FILTERBLOCK,
} jj_node_kind_t;

struct jj_node {
    uint8_t kind, op;
    bool neg; /* N_TEST: `is not` */
    size_t pos;
    jj_node_t *a, *b, *c, *d;
    /* children: N_LIST/N_TUPLE items, N_DICT keys+values interleaved, N_CALL
     * N_FILTER N_TEST arguments (kw[i].p != NULL for keyword ones), N_BODY
     * statements, N_MACRO default values (NULL: none) */
    jj_node_t **kids;
    jj_str_t *kw;
    size_t n_kids;
    jj_str_t name;   /* N_NAME, N_GETATTR, N_FILTER, N_TEST, N_SETNS attr, N_MACRO */
    jj_str_t *names; /* N_FOR / N_SET targets, N_MACRO parameters */
    size_t n_names;
    bool unpack; /* N_FOR / N_SET: target written as a tuple */
    jv_t lit;    /* N_LIT */
};

struct qd_jinja {
    jj_arena_t ar;
    char *src; /* normalised source, for line:col of errors */
    size_t src_n;
    jj_node_t *body;
};

/* line:col of a source offset. */
void jj_line_col(const char *src, size_t n, size_t pos, int *line, int *col);

#endif /* QUANTD_API_JINJA_INT_H */
