/*
 * tokenizer_int.h — the vocabulary structure shared by the tokenizer core
 * (tokenizer.c), the algorithms (tokenizer_spm.c, tokenizer_bpe.c) and the
 * loaders (tokenizer_gguf.c, tokenizer_hf.c). A loader only fills this
 * structure through the qd__tok_* builder below; everything after
 * qd__tok_finish() is read-only, so one tokenizer serves many threads.
 */
#ifndef QUANTD_ENGINE_TOKENIZER_INT_H
#define QUANTD_ENGINE_TOKENIZER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/tokenizer.h"

typedef enum {
    QD_VOCAB_SPM = 1, /* "llama": SentencePiece BPE by score, byte fallback */
    QD_VOCAB_BPE,     /* "gpt2": byte-level (or raw) BPE with merge ranks */
    QD_VOCAB_WPM,     /* "bert": WordPiece, longest match */
} qd_vocab_kind_t;

/* Token attributes (GGUF tokenizer.ggml.token_type values are mapped to
 * these by qd__tok_attr_from_type). */
enum {
    QD_TATTR_UNDEFINED = 0,
    QD_TATTR_NORMAL = 1 << 0,
    QD_TATTR_UNKNOWN = 1 << 1,
    QD_TATTR_CONTROL = 1 << 2,
    QD_TATTR_USER_DEFINED = 1 << 3,
    QD_TATTR_BYTE = 1 << 4,
    QD_TATTR_UNUSED = 1 << 5,
    QD_TATTR_LSTRIP = 1 << 6, /* eat whitespace left of it when parsed */
    QD_TATTR_RSTRIP = 1 << 7, /* eat whitespace right of it */
};

/* Pre-tokenizer stages: each splits every chunk of the text further. */
typedef enum {
    QD_PRE_GPT2 = 1,     /* 's|'t|..| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    QD_PRE_LLAMA3,       /* (?i:'s|..)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|... */
    QD_PRE_QWEN2,        /* the same with \p{N} (one digit) */
    QD_PRE_PUNCT,        /* [\p{P}\$\+<=>\^~\|]+ */
    QD_PRE_PUNCT_FALCON, /* [\p{P}\$\+<=>\^~\|`]+ */
    QD_PRE_DIGITS,       /* \p{N}+ */
    QD_PRE_DIGIT1,       /* \p{N} */
    QD_PRE_DIGITS3,      /* [0-9][0-9][0-9] */
    QD_PRE_NEWLINE1,     /* [\r\n] */
    QD_PRE_DSLLM_LETTERS, /* \s?[A-Za-zµÀ-ÖØ-ö...]+ (deepseek-llm) */
    QD_PRE_DSLLM_PUNCT,  /* \s?[!-/:-~！-／：-～‘-‟　-。]+ */
    QD_PRE_TRAILING_WS,  /* \s+$ */
    QD_PRE_CJK,          /* [一-龥ࠀ-一가-퟿]+ */
    QD_PRE_WS_LETTERS,   /* \s?\p{L}+ */
    QD_PRE_WS_PUNCT,     /* \s?\p{P}+ */
} qd_pre_stage_t;

#define QD_PRE_MAX_STAGES 8

struct qd_tokenizer {
    qd_vocab_kind_t kind;
    int32_t n_vocab;
    char **text;      /* [n_vocab] NUL-terminated token texts */
    uint32_t *len;    /* [n_vocab] byte lengths of text */
    float *score;     /* [n_vocab] */
    uint8_t *attr;    /* [n_vocab] QD_TATTR_* */
    int32_t *tmap;    /* open-addressing text → id, tmap_cap slots, -1 empty */
    size_t tmap_cap;
    uint32_t max_len; /* longest token text */

    /* BPE merges: (left id, right id) → rank and merged id (-1 if the
     * concatenation is not a token). */
    struct qd_merge *merges;
    size_t merges_cap, n_merges;

    qd_pre_stage_t pre[QD_PRE_MAX_STAGES];
    int n_pre;
    int byte_encode;      /* BPE: GPT-2 byte alphabet (0: raw UTF-8) */
    int ignore_merges;    /* BPE: a whole word that is a token wins */
    int add_space_prefix; /* SPM: dummy ' ' before the first fragment */
    int escape_ws;        /* BPE: ' ' → U+2581 (SPM-style BPE) */
    int byte_fallback;    /* BPE: unknown bytes → <0xXX> tokens */
    int wpm_lowercase, wpm_strip_accents;

    int32_t bos, eos, eot, eom, unk, pad, sep;
    int add_bos, add_eos;
    int32_t *eog;         /* end-of-generation ids */
    int n_eog;
    int32_t *special;     /* partition order: text length descending */
    int n_special;
    char *chat_template;
    char **piece;         /* [n_vocab] detokenized bytes (special as text) */
    uint32_t *piece_len;
    uint32_t max_piece;
};

struct qd_merge {
    uint64_t key; /* (left << 32) | right, UINT64_MAX = empty */
    int32_t rank;
    int32_t result;
};

/* ---- builder (loaders) ------------------------------------------------ */
int qd__tok_create(qd_vocab_kind_t kind, int64_t n_vocab, qd_tokenizer_t **out);
/* Copy text[0..len) as token id. */
int qd__tok_set_token(qd_tokenizer_t *t, int32_t id, const char *text,
                      size_t len, float score, int attr);
/* After all tokens are set: build the text index; refuses duplicates and
 * unset ids. */
int qd__tok_index(qd_tokenizer_t *t);
/* Lookup (valid after qd__tok_index); -1 if absent. */
int32_t qd__tok_find(const qd_tokenizer_t *t, const char *s, size_t len);
/* Add merge `a b` with the given rank (BPE). Unknown parts are refused. */
int qd__tok_add_merge(qd_tokenizer_t *t, const char *a, size_t alen,
                      const char *b, size_t blen, int32_t rank,
                      const char *where);
/* Pre-tokenizer by GGUF name (tokenizer.ggml.pre); NULL → "default". */
int qd__tok_set_pre(qd_tokenizer_t *t, const char *pre);
/* GGUF token_type value → QD_TATTR_*. */
int qd__tok_attr_from_type(int64_t type);
/* Final checks and caches (special tokens, EOG set, pieces). */
int qd__tok_finish(qd_tokenizer_t *t);

/* ---- algorithms ------------------------------------------------------- */
typedef struct {
    int32_t *v;
    size_t n, cap;
} qd__tokvec_t;
int qd__tokvec_push(qd__tokvec_t *tv, int32_t tok);

/* SPM: escapes ' ' as U+2581 (after a dummy prefix space when
 * add_prefix) and merges by score. */
int qd__spm_encode(const qd_tokenizer_t *t, const char *text, size_t len,
                   int add_prefix, qd__tokvec_t *out);
/* BPE: pre-tokenize, then merge each piece; add_prefix puts a U+2581
 * first (SentencePiece-style BPE only). */
int qd__bpe_encode(const qd_tokenizer_t *t, const char *text, size_t len,
                   int add_prefix, qd__tokvec_t *out);
int qd__wpm_encode(const qd_tokenizer_t *t, const char *text, size_t len,
                   qd__tokvec_t *out);
/* A candidate merge of the adjacent symbols left and right, in the queue
 * both BPE (by merge rank) and SPM (by score) pop from: higher prio first,
 * then the leftmost. a, b and size are the caller's (to notice stale
 * entries after the symbols changed). */
typedef struct {
    int left, right;
    float prio;
    int32_t a, b;
    size_t size;
} qd__bigram_t;
typedef struct {
    qd__bigram_t *v;
    size_t n, cap;
} qd__bigram_heap_t;
int qd__bigram_push(qd__bigram_heap_t *h, qd__bigram_t b);
/* Pop the first candidate; h must not be empty. */
qd__bigram_t qd__bigram_pop(qd__bigram_heap_t *h);

/* Find the merge (left, right); NULL if none. */
const struct qd_merge *qd__tok_merge(const qd_tokenizer_t *t, int32_t left,
                                     int32_t right);

#endif
