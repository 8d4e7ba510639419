/*
 * tokenizer.h — text ⇄ token ids.
 *
 * Two vocabulary families, loaded either from GGUF metadata
 * (tokenizer.ggml.*) or from a Hugging Face tokenizer.json:
 *   - "llama": SentencePiece BPE with scores and byte fallback (<0xNN>);
 *   - "gpt2":  byte-level BPE with merges and a regex pre-tokenizer chosen by
 *              tokenizer.ggml.pre (default, gpt-2, llama3/llama-bpe, qwen2,
 *              deepseek-llm, deepseek-coder, falcon, starcoder, refact, mpt,
 *              gpt-neox …) or by the tokenizer.json pre_tokenizer.
 * The tokenizer is immutable after creation and safe to share across
 * threads; streaming detokenization keeps its state in qd_detok_t.
 */
#ifndef QUANTD_TOKENIZER_H
#define QUANTD_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/gguf.h"

typedef struct qd_tokenizer qd_tokenizer_t;

/* From GGUF metadata. qd_errmsg() names the bad key on failure. */
int qd_tokenizer_from_gguf(const qd_gguf_t *g, qd_tokenizer_t **out);
/* From tokenizer.json (+ optional tokenizer_config.json, may be NULL). */
int qd_tokenizer_from_hf(const char *tokenizer_json_path,
                         const char *tokenizer_config_path,
                         qd_tokenizer_t **out);
void qd_tokenizer_destroy(qd_tokenizer_t *t);

int32_t qd_tokenizer_n_vocab(const qd_tokenizer_t *t);
int32_t qd_tokenizer_bos(const qd_tokenizer_t *t); /* -1 if none */
int32_t qd_tokenizer_eos(const qd_tokenizer_t *t); /* -1 if none */
int32_t qd_tokenizer_eot(const qd_tokenizer_t *t); /* -1 if none */
/* 1 if tok ends generation (eos, eot, eom, other end-of-generation ids). */
int qd_tokenizer_is_eog(const qd_tokenizer_t *t, int32_t tok);
/* 1 if the model wants BOS prepended (tokenizer.ggml.add_bos_token). */
int qd_tokenizer_add_bos(const qd_tokenizer_t *t);
/* Chat template text from the model (NULL if none). Owned by t. */
const char *qd_tokenizer_chat_template(const qd_tokenizer_t *t);
/* Text of token tok as stored in the vocabulary (NULL if out of range). */
const char *qd_tokenizer_token_text(const qd_tokenizer_t *t, int32_t tok);

/*
 * Encode len bytes of text. add_special: prepend BOS (and append EOS) as the
 * model's metadata asks. parse_special: text of control/special tokens
 * ("<|im_start|>") becomes those tokens; otherwise it is plain text.
 * Writes up to cap ids into toks and returns the total number of tokens the
 * text needs (> cap means the output was truncated: call again with a larger
 * buffer), or a negative QD_E* error.
 */
int qd_tokenize(const qd_tokenizer_t *t, const char *text, size_t len,
                int add_special, int parse_special, int32_t *toks, int cap);

/* Bytes of one token as it appears in text (SPM '▁' → ' ', byte tokens →
 * the raw byte, byte-level BPE unmapped). Control tokens render as their
 * text only if render_special. Returns the number of bytes (may exceed cap:
 * then only cap were written) or a negative error. */
int qd_token_to_piece(const qd_tokenizer_t *t, int32_t tok, char *buf,
                      int cap, int render_special);

/* Streaming detokenizer: feeds tokens, emits only complete UTF-8 sequences
 * (a character split over tokens is held back until complete), and applies
 * the SentencePiece rule that drops the leading space of the first piece
 * when the prompt started with BOS. Initialize with qd_detok_init. */
typedef struct {
    char pending[8];
    int n_pending;
    int first;        /* 1 until the first piece was emitted */
    int strip_space;  /* drop one leading space of the first piece */
} qd_detok_t;
void qd_detok_init(qd_detok_t *d, const qd_tokenizer_t *t);
/* Append the text of tok to out (cap bytes); returns bytes written (<= cap;
 * a 128-byte buffer always suffices for one token), or a negative error. */
int qd_detok_push(qd_detok_t *d, const qd_tokenizer_t *t, int32_t tok,
                  char *out, int cap);
/* Flush held-back bytes at the end (invalid UTF-8 becomes U+FFFD). */
int qd_detok_flush(qd_detok_t *d, char *out, int cap);

#endif /* QUANTD_TOKENIZER_H */
