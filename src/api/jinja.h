/*
 * jinja.h — a small sandboxed Jinja2 interpreter for LLM chat templates.
 *
 * Chat templates (HF tokenizer_config.json `chat_template`, GGUF
 * `tokenizer.chat_template`) are Jinja2 programs. This module renders them
 * the way transformers does: ImmutableSandboxedEnvironment with
 * trim_blocks=True, lstrip_blocks=True and the loopcontrols extension, a
 * tojson filter equal to json.dumps(x, ensure_ascii=False, indent=...),
 * raise_exception(msg) and strftime_now(fmt). The aim is output that is
 * byte-identical to Python's jinja2 for the subset real templates use.
 *
 * Sandbox: templates see only the data they are given (no attributes beyond
 * dict keys and a fixed list of str/dict methods), and every render is
 * bounded in output size, memory, evaluation steps and recursion depth. Any
 * template, however malformed, yields an error, never a crash.
 *
 * A compiled template is immutable: several threads may qd_jinja_exec() the
 * same one at once.
 */
#ifndef QUANTD_API_JINJA_H
#define QUANTD_API_JINJA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qd_jinja qd_jinja_t;

typedef struct {
    size_t max_output_bytes; /* rendered text (and each captured block); 0: 16 MiB */
    size_t max_memory_bytes; /* all values built while rendering; 0: 256 MiB */
    long max_steps;          /* evaluation steps: statements, expression nodes,
                                loop iterations, builtin work; 0: 10,000,000 */
    int max_depth;           /* evaluation recursion depth incl. macro calls; 0: 500 */
    int64_t now;             /* strftime_now(): 0 = current local time; else this
                                Unix time, formatted as UTC (for tests) */
} qd_jinja_limits_t;

/*
 * Parse template text `tmpl` (`tmpl_len` bytes of UTF-8) into *out.
 * Returns 0, or QD_EINVAL with "line:col: what" in qd_errmsg() for a syntax
 * error, QD_ENOMEM. Free with qd_jinja_free().
 */
int qd_jinja_compile(const char *tmpl, size_t tmpl_len, qd_jinja_t **out);
void qd_jinja_free(qd_jinja_t *t); /* NULL is a no-op */

/*
 * Render `t` with the variables of the JSON object `vars` (messages,
 * add_generation_prompt, bos_token, eos_token, tools, ...; NULL = none).
 * `lim` may be NULL (defaults). On success *out is a qd_malloc'd
 * NUL-terminated string the caller frees with qd_free, *out_len its length
 * (out_len may be NULL). On failure returns QD_EINVAL (runtime error,
 * including raise_exception, whose message is in qd_errmsg()), QD_ETOOBIG
 * (a limit was hit) or QD_ENOMEM, and *out is NULL.
 */
int qd_jinja_exec(const qd_jinja_t *t, const json_t *vars,
                  const qd_jinja_limits_t *lim, char **out, size_t *out_len);

/* compile + exec + free in one call. */
int qd_jinja_render(const char *tmpl, size_t tmpl_len, const json_t *vars,
                    const qd_jinja_limits_t *lim, char **out, size_t *out_len);

#endif /* QUANTD_API_JINJA_H */
