/*
 * test_chat.c — chat templates and the default model, through the daemon.
 *
 * The models are gen-model's tiny random-weight Llama (qd_genmodel_write)
 * rewritten with a tokenizer.chat_template key by our GGUF writer, so these
 * tests need no shared data (the Qwen2.5 one uses QD_SHARED's template
 * and skips without it). The expected prompts are written out by hand.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http_client.h"
#include "quantd/common.h"
#include "quantd/genmodel.h"
#include "quantd/gguf.h"

static tc_daemon_t D;

static void stop_daemon(void)
{
    if (D.pid > 0)
        tc_daemon_stop(&D);
}

static const char *tmp_dir(void)
{
    return getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
}

static void need_bin(void)
{
    if (!getenv("QD_BIN"))
        cr_skip_test("QD_BIN not set (run through make check-integration)");
}

/* gen-model tiny → path, with tokenizer.chat_template = tmpl. */
static void write_model(const char *path, const char *tmpl)
{
    char raw[1100];
    snprintf(raw, sizeof raw, "%s.raw", path);
    qd_genmodel_params_t p;
    cr_assert_eq(qd_genmodel_preset("tiny", &p), 0);
    cr_assert_eq(qd_genmodel_write(&p, raw), 0, "%s", qd_errmsg());
    qd_gguf_t *g;
    cr_assert_eq(qd_gguf_open(raw, &g), 0, "%s", qd_errmsg());
    cr_assert_eq(qd_gguf_write_with_str(g, "tokenizer.chat_template", tmpl, path), 0, "%s",
                 qd_errmsg());
    qd_gguf_close(g);
    unlink(raw);
}

static json_t *post_json(const char *path, json_t *body, int want_status)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    tc_resp_t r;
    cr_assert_eq(tc_fetch(D.port, "POST", path,
                          "Content-Type: application/json\r\n", s, &r),
                 0);
    free(s);
    cr_assert_eq(r.status, want_status, "%s: status %d: %s", path, r.status,
                 r.body);
    json_error_t e;
    json_t *j = json_loads(r.body ? r.body : "", 0, &e);
    cr_assert(j, "not JSON: %s", r.body);
    tc_resp_free(&r);
    return j;
}

/* Token count of text through POST /tokenize (add_special: BOS for this
 * model, as the server adds it to a rendered prompt without one). */
static int n_tokens(const char *model, const char *text, int add_special)
{
    json_t *j = post_json("/tokenize",
                          json_pack("{s:s,s:s,s:b}", "model", model,
                                    "content", text, "add_special",
                                    add_special),
                          200);
    int n = (int)json_array_size(json_object_get(j, "tokens"));
    json_decref(j);
    return n;
}

static int chat_prompt_tokens(const char *model, json_t *messages)
{
    json_t *j = post_json("/v1/chat/completions",
                          json_pack("{s:s,s:o,s:i,s:f}", "model", model,
                                    "messages", messages, "max_tokens", 2,
                                    "temperature", 0.0),
                          200);
    json_t *u = json_object_get(j, "usage");
    cr_assert(json_is_object(u));
    int n = (int)json_integer_value(json_object_get(u, "prompt_tokens"));
    json_decref(j);
    return n;
}

static const char chatml[] =
    "{% for message in messages %}"
    "{% if message['role'] == 'system' and message['content'] == 'forbidden' %}"
    "{{ raise_exception('System prompts are not allowed here') }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

Test(chat, template_renders_prompt, .fini = stop_daemon)
{
    need_bin();
    char path[1024];
    snprintf(path, sizeof path, "%s/chat-chatml-%d.gguf", tmp_dir(),
             (int)getpid());
    write_model(path, chatml);
    cr_assert_eq(tc_daemon_start_model(&D, path, NULL), 0,
                 "daemon did not start");
    unlink(path);
    const char *model = strrchr(path, '/') + 1;
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(strlen(model) - 5), model);

    json_t *msgs = json_pack(
        "[{s:s,s:s},{s:s,s:[{s:s,s:s},{s:s,s:s}]}]", "role", "system",
        "content", "Be brief.", "role", "user", "content", "type", "text",
        "text", "Hello ", "type", "text", "text", "there");
    int got = chat_prompt_tokens(name, msgs);
    const char *want_text = "<|im_start|>system\nBe brief.<|im_end|>\n"
                            "<|im_start|>user\nHello there<|im_end|>\n"
                            "<|im_start|>assistant\n";
    int want = n_tokens(name, want_text, 1);
    cr_assert_eq(got, want, "prompt_tokens %d, rendered template has %d",
                 got, want);
    /* Not the fallback format. */
    int fb = n_tokens(name, "system: Be brief.\nuser: Hello there\nassistant:",
                      1);
    cr_assert_neq(got, fb);

    /* raise_exception → 400 with the template's message. */
    json_t *j = post_json(
        "/v1/chat/completions",
        json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}],s:i}", "model", name,
                  "messages", "role", "system", "content", "forbidden",
                  "role", "user", "content", "hi", "max_tokens", 2),
        400);
    json_t *e = json_object_get(j, "error");
    cr_assert_str_eq(json_string_value(json_object_get(e, "type")),
                     "invalid_request_error");
    cr_assert(strstr(json_string_value(json_object_get(e, "message")),
                     "System prompts are not allowed here"),
              "%s", json_string_value(json_object_get(e, "message")));
    json_decref(j);
}

Test(chat, qwen25_template, .fini = stop_daemon)
{
    need_bin();
    const char *sh = getenv("QD_SHARED");
    char src[1024];
    snprintf(src, sizeof src, "%s/chat_templates/Qwen-Qwen2.5-7B-Instruct.jinja",
             sh ? sh : "");
    FILE *f = sh ? fopen(src, "rb") : NULL;
    if (!f)
        cr_skip_test("Qwen2.5 chat template not found: QD_SHARED");
    static char tmpl[65536];
    size_t n = fread(tmpl, 1, sizeof tmpl - 1, f);
    fclose(f);
    tmpl[n] = '\0';
    char path[1024];
    snprintf(path, sizeof path, "%s/chat-qwen-%d.gguf", tmp_dir(),
             (int)getpid());
    write_model(path, tmpl);
    cr_assert_eq(tc_daemon_start_model(&D, path, NULL), 0,
                 "daemon did not start");
    unlink(path);
    char name[256];
    snprintf(name, sizeof name, "chat-qwen-%d", (int)getpid());
    int got = chat_prompt_tokens(
        name, json_pack("[{s:s,s:s}]", "role", "user", "content", "Hello"));
    /* No system message: Qwen2.5 inserts its default one. */
    int want = n_tokens(name,
                        "<|im_start|>system\nYou are Qwen, created by Alibaba "
                        "Cloud. You are a helpful assistant.<|im_end|>\n"
                        "<|im_start|>user\nHello<|im_end|>\n"
                        "<|im_start|>assistant\n",
                        1);
    cr_assert_eq(got, want);
}

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

Test(chat, default_model_generated_then_reused, .fini = stop_daemon)
{
    need_bin();
    char cache[1024], model[1100];
    snprintf(cache, sizeof cache, "%s/qcache-%d/sub", tmp_dir(),
             (int)getpid());
    snprintf(model, sizeof model, "%s/default.gguf", cache);
    unlink(model);
    setenv("QUANTD_CACHE", cache, 1);
    cr_assert_eq(tc_daemon_start_model(&D, NULL, NULL), 0,
                 "daemon without -m did not start (log %s)", D.log);
    struct stat st;
    cr_assert_eq(stat(model, &st), 0, "no %s", model);
    cr_assert(file_contains(D.log, "RANDOM WEIGHTS"), "no warning in %s",
              D.log);
    cr_assert(file_contains(D.log, "fetch-default-model.sh"));
    /* Chat works and uses the ChatML template it was generated with. */
    int got = chat_prompt_tokens(
        "default", json_pack("[{s:s,s:s}]", "role", "user", "content", "hi"));
    cr_assert_eq(got, n_tokens("default",
                               "<|im_start|>user\nhi<|im_end|>\n"
                               "<|im_start|>assistant\n",
                               1));
    cr_assert_eq(tc_daemon_stop(&D), 0);

    /* Second start: the cached file is served, nothing regenerated. */
    cr_assert_eq(tc_daemon_start_model(&D, NULL, NULL), 0);
    cr_assert(!file_contains(D.log, "RANDOM WEIGHTS"));
    cr_assert(file_contains(D.log, "serving the default model"));
    tc_resp_t r;
    cr_assert_eq(tc_fetch(D.port, "GET", "/v1/models", NULL, NULL, &r), 0);
    cr_assert(strstr(r.body, "\"default\""), "%s", r.body);
    tc_resp_free(&r);
    tc_daemon_stop(&D);
    unlink(model);
    rmdir(cache);
    *strrchr(cache, '/') = '\0';
    rmdir(cache);
}
