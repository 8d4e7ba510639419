/*
 * chat.h — messages → prompt text → tokens, with the model's chat template.
 */
#ifndef QUANTD_API_CHAT_H
#define QUANTD_API_CHAT_H

#include <jansson.h>
#include <stdint.h>

#include "api/jinja.h"
#include "api/openai.h"
#include "quantd/tokenizer.h"

/*
 * Render validated OpenAI `messages` with the compiled chat template `tmpl`
 * (add_generation_prompt = true, bos_token, eos_token) or, for a model
 * without one, the fallback format of docs/api.md. *out is qd_malloc'd.
 * *has_bos is set to 1 if the text already starts with the BOS token's
 * text (then tokenize with add_special = 0). On failure fills *err (400
 * for a template that raises, 500 otherwise).
 */
int qd_chat_render(const qd_tokenizer_t *tok, const qd_jinja_t *tmpl,
                   const json_t *messages, char **out, size_t *out_len,
                   int *has_bos, qd_api_err_t *err);

/*
 * Compile the tokenizer's chat template once per model into *out (NULL
 * when the model has none: qd_chat_render then uses the fallback).
 * 0, or qd_jinja_compile's error with qd_errmsg() set.
 */
int qd_chat_template_compile(const qd_tokenizer_t *tok, qd_jinja_t **out);

/* The fallback format, exposed for tests. */
int qd_chat_render_fallback(const json_t *messages, char **out,
                            size_t *out_len);

/* Tokenize text into a qd_malloc'd array (*toks, *n). */
int qd_chat_tokenize(const qd_tokenizer_t *tok, const char *text, size_t len,
                     int add_special, int32_t **toks, int32_t *n);

#endif
