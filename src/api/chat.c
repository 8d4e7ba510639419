/*
 * chat.c — chat messages to prompt tokens.
 *
 * The model's own template (tokenizer.chat_template) decides the prompt
 * format, rendered by the sandboxed Jinja interpreter (api/jinja.c) with the
 * variables transformers passes: messages, add_generation_prompt,
 * bos_token, eos_token. Content given as an array of text parts is joined
 * into one string first, since most templates expect a string.
 *
 * A model without a template gets the fallback documented in docs/api.md:
 * each message as "<role>: <content>\n", then "assistant:" — plain text
 * that any base model continues sensibly.
 */
#include <stdlib.h>
#include <string.h>

#include "api/chat.h"
#include "quantd/common.h"
#include "quantd/tokenizer.h"

/* Content of a message as one string (new reference). */
static json_t *flat_content(const json_t *c)
{
    if (json_is_string(c))
        return json_incref((json_t *)c);
    if (!json_is_array(c))
        return json_string("");
    size_t total = 0, i;
    json_t *part;
    json_array_foreach(c, i, part)
        total += json_string_length(json_object_get(part, "text"));
    char *buf = qd_malloc(total + 1);
    if (!buf)
        return NULL;
    size_t off = 0;
    json_array_foreach(c, i, part)
    {
        json_t *t = json_object_get(part, "text");
        memcpy(buf + off, json_string_value(t), json_string_length(t));
        off += json_string_length(t);
    }
    json_t *s = json_stringn(buf, off);
    qd_free(buf);
    return s;
}

int qd_chat_render_fallback(const json_t *messages, char **out,
                            size_t *out_len)
{
    size_t cap = 64, len = 0, i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        json_t *c = flat_content(json_object_get(m, "content"));
        cap += json_string_length(c) +
               strlen(json_string_value(json_object_get(m, "role"))) + 4;
        json_decref(c);
    }
    char *buf = qd_malloc(cap);
    if (!buf)
        return QD_ENOMEM;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *c = flat_content(json_object_get(m, "content"));
        if (!c) {
            qd_free(buf);
            return QD_ENOMEM;
        }
        len += (size_t)snprintf(buf + len, cap - len, "%s: ", role);
        memcpy(buf + len, json_string_value(c), json_string_length(c));
        len += json_string_length(c);
        buf[len++] = '\n';
        json_decref(c);
    }
    len += (size_t)snprintf(buf + len, cap - len, "assistant:");
    *out = buf;
    *out_len = len;
    return 0;
}

int qd_chat_template_compile(const qd_tokenizer_t *tok, qd_jinja_t **out)
{
    *out = NULL;
    const char *src = qd_tokenizer_chat_template(tok);
    if (!src || !*src)
        return 0;
    return qd_jinja_compile(src, strlen(src), out);
}

static const char *special_text(const qd_tokenizer_t *tok, int32_t id)
{
    const char *s = id >= 0 ? qd_tokenizer_token_text(tok, id) : NULL;
    return s ? s : "";
}

/* The template variables: messages with flattened content, the
 * generation prompt flag and the BOS/EOS texts. NULL on OOM. */
static json_t *template_vars(const qd_tokenizer_t *tok, const json_t *messages)
{
    json_t *msgs = json_array(), *vars = NULL;
    if (!msgs)
        return NULL;
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        /* jansson's json_copy drops a key whose insertion fails and
         * still returns the copy: check that it is whole. */
        json_t *copy = json_copy((json_t *)m);
        json_t *c = json_object_get(m, "content");
        if (copy && json_object_size(copy) != json_object_size(m)) {
            json_decref(copy);
            copy = NULL;
        }
        if (!copy) {
            json_decref(msgs);
            return NULL;
        }
        if (json_is_array(c)) {
            json_t *flat = flat_content(c);
            if (!flat || json_object_set_new(copy, "content", flat)) {
                json_decref(copy);
                json_decref(msgs);
                return NULL;
            }
        }
        if (json_array_append_new(msgs, copy)) {
            json_decref(msgs);
            return NULL;
        }
    }
    vars = json_pack("{s:o,s:b,s:s,s:s}", "messages", msgs,
                     "add_generation_prompt", 1, "bos_token",
                     special_text(tok, qd_tokenizer_bos(tok)), "eos_token",
                     special_text(tok, qd_tokenizer_eos(tok)));
    return vars;
}

int qd_chat_render(const qd_tokenizer_t *tok, const qd_jinja_t *tmpl,
                   const json_t *messages, char **out, size_t *out_len,
                   int *has_bos, qd_api_err_t *err)
{
    *out = NULL;
    *has_bos = 0;
    int rc;
    if (tmpl) {
        json_t *vars = template_vars(tok, messages);
        if (!vars) {
            qd_api_err_set(err, 500, "server_error", NULL, NULL,
                           "out of memory rendering the chat prompt");
            return QD_ENOMEM;
        }
        rc = qd_jinja_exec(tmpl, vars, NULL, out, out_len);
        json_decref(vars);
        if (rc == QD_EINVAL) {
            qd_api_err_set(err, 400, "invalid_request_error", "messages",
                           NULL, "Chat template error: %s", qd_errmsg());
            return rc;
        }
        if (rc == QD_ETOOBIG) {
            qd_api_err_set(err, 400, "invalid_request_error", "messages",
                           NULL, "The chat template exceeded a limit: %s",
                           qd_errmsg());
            return rc;
        }
    } else {
        rc = qd_chat_render_fallback(messages, out, out_len);
    }
    if (rc) {
        qd_api_err_set(err, 500, "server_error", NULL, NULL,
                       "out of memory rendering the chat prompt");
        return rc;
    }
    const char *bos = special_text(tok, qd_tokenizer_bos(tok));
    if (*bos && !strncmp(*out, bos, strlen(bos)))
        *has_bos = 1;
    return 0;
}

int qd_chat_tokenize(const qd_tokenizer_t *tok, const char *text, size_t len,
                     int add_special, int32_t **toks_out, int32_t *n_out)
{
    int cap = (int)QD_MIN(len + 16, (size_t)1 << 20);
    int32_t *toks = qd_malloc((size_t)cap * sizeof *toks);
    if (!toks)
        return QD_ENOMEM;
    int n = qd_tokenize(tok, text, len, add_special, 1, toks, cap);
    if (n > cap) {
        int32_t *t2 = qd_realloc(toks, (size_t)n * sizeof *toks);
        if (!t2) {
            qd_free(toks);
            return QD_ENOMEM;
        }
        toks = t2;
        cap = n;
        n = qd_tokenize(tok, text, len, add_special, 1, toks, cap);
    }
    if (n < 0) {
        qd_free(toks);
        return n;
    }
    *toks_out = toks;
    *n_out = n;
    return 0;
}
