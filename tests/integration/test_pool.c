/*
 * test_pool.c — several models behind one daemon through the model pool:
 * load on first request, unload to make room within mem_budget_mib, unload
 * after idle_unload_s, refuse a model that can never fit.
 *
 * The models are stories260K.gguf from QD_SHARED under several names, each
 * with its own KV budget (kv_mib) so that their estimated sizes differ; the
 * budget is computed here from the same estimate the daemon makes
 * (qd_modelpool_estimate with the scheduler parameters of the config).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "quantd/pool.h"

static tc_daemon_t D;
static char conf_path[1024];

static void stop_daemon(void)
{
    if (D.pid > 0)
        tc_daemon_stop(&D);
    if (conf_path[0])
        unlink(conf_path);
}

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The estimate the daemon makes for a [model.X] with this kv_mib under the
 * settings written by write_conf. */
static size_t estimate(const char *model, int kv_mib)
{
    qd_sched_params_t sp;
    qd_sched_params_default(&sp);
    sp.n_batch = 64;
    sp.n_seq_max = 2;
    sp.n_ctx = 256;
    sp.kv_bytes = (size_t)kv_mib << 20;
    sp.kv_type = QD_KV_F16;
    size_t est = 0;
    cr_assert_eq(qd_modelpool_estimate(model, &sp, &est), 0);
    return est;
}

static const char *need_model(void)
{
    if (!getenv("QD_BIN"))
        cr_skip_test("QD_BIN not set (run through make check-integration)");
    const char *model = tc_model_path();
    if (!model)
        cr_skip_test("stories260K.gguf not found: QD_SHARED");
    return model;
}

/* Models a and b (kv_mib 4 each) and huge (kv_mib 64); budget_mib so that
 * one of a, b fits but not both, and huge never. */
static void write_conf(const char *model, long budget_mib, int idle_s,
                       const char *a_extra, const char *huge_extra)
{
    const char *tmp = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    snprintf(conf_path, sizeof conf_path, "%s/pool-%d.conf", tmp,
             (int)getpid());
    FILE *f = fopen(conf_path, "w");
    cr_assert(f);
    fprintf(f,
            "n_seq_max = 2\nctx = 256\nn_batch = 64\nkv_type = f16\n"
            "mem_budget_mib = %ld\nidle_unload_s = %d\n\n"
            "[model.a]\npath = %s\nkv_mib = 4\n%s\n"
            "[model.b]\npath = %s\nkv_mib = 4\n\n"
            "[model.huge]\npath = %s\nkv_mib = 64\n%s\n",
            budget_mib, idle_s, model, a_extra ? a_extra : "", model, model,
            huge_extra ? huge_extra : "");
    fclose(f);
}

static long budget_for_one(const char *model)
{
    size_t est = estimate(model, 4);
    long mib = (long)((est + (1 << 20) - 1) >> 20);
    cr_assert((size_t)mib << 20 < 2 * est, "budget %ld MiB fits both", mib);
    cr_assert((size_t)mib << 20 < estimate(model, 64), "huge fits");
    return mib;
}

static void start(const char *model, long budget_mib, int idle_s)
{
    write_conf(model, budget_mib, idle_s, NULL, NULL);
    const char *args[] = {"--config", conf_path, NULL};
    cr_assert_eq(tc_daemon_start_model(&D, NULL, args), 0,
                 "daemon did not start (log %s)", D.log);
}

/* The /v1/models entry of `id` (new reference). */
static json_t *model_entry(const char *id)
{
    tc_resp_t r;
    cr_assert_eq(tc_fetch(D.port, "GET", "/v1/models", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    tc_resp_free(&r);
    cr_assert(j);
    json_t *data = json_object_get(j, "data"), *m, *out = NULL;
    size_t i;
    json_array_foreach(data, i, m)
    {
        if (!strcmp(json_string_value(json_object_get(m, "id")), id))
            out = json_incref(m);
    }
    json_decref(j);
    cr_assert(out, "model %s not listed", id);
    return out;
}

static int state_is(const char *id, const char *state)
{
    json_t *m = model_entry(id);
    int eq = !strcmp(json_string_value(json_object_get(m, "state")), state);
    json_decref(m);
    return eq;
}

static void expect_state(const char *id, const char *state)
{
    json_t *m = model_entry(id);
    cr_expect_str_eq(json_string_value(json_object_get(m, "state")), state,
                     "model %s", id);
    json_decref(m);
}

/* A short greedy completion on model `id`; returns the status. */
static int complete(const char *id, tc_resp_t *r)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"prompt\":\"Once upon a time\","
             "\"max_tokens\":8,\"temperature\":0}",
             id);
    cr_assert_eq(tc_fetch(D.port, "POST", "/v1/completions",
                          "Content-Type: application/json\r\n", body, r),
                 0);
    return r->status;
}

static void complete_ok(const char *id, const char *want_text)
{
    tc_resp_t r;
    cr_assert_eq(complete(id, &r), 200, "model %s: %s", id, r.body);
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    cr_assert(j);
    cr_expect_str_eq(json_string_value(json_object_get(j, "model")), id);
    const char *text = json_string_value(json_object_get(
        json_array_get(json_object_get(j, "choices"), 0), "text"));
    cr_assert(text && *text, "no text: %s", r.body);
    if (want_text)
        cr_expect_str_eq(text, want_text, "same model, same greedy text");
    json_decref(j);
    tc_resp_free(&r);
}

Test(pool, budget_swaps_models_and_refuses_too_big, .fini = stop_daemon,
     .timeout = 60)
{
    const char *model = need_model();
    long budget = budget_for_one(model);
    start(model, budget, 0);

    /* Nothing loaded yet: every model listed, with its estimate. */
    const char *ids[] = {"a", "b", "huge"};
    for (int i = 0; i < 3; i++) {
        json_t *m = model_entry(ids[i]);
        cr_expect_str_eq(json_string_value(json_object_get(m, "state")),
                         "unloaded", "%s", ids[i]);
        json_int_t est =
            json_integer_value(json_object_get(m, "estimate_bytes"));
        cr_expect(est > 0);
        cr_expect_eq(json_integer_value(json_object_get(m, "resident_bytes")),
                     est);
        cr_expect_eq(est, (json_int_t)estimate(model, i == 2 ? 64 : 4));
        cr_expect(json_number_value(json_object_get(m, "bits_per_weight")) >
                  0);
        cr_expect_eq(json_integer_value(json_object_get(m, "context_length")),
                     256);
        json_decref(m);
    }
    cr_expect_eq(tc_metric(D.port, "quantd_models_loaded"), 0);

    /* A loads on its first request. */
    tc_resp_t r;
    cr_assert_eq(complete("a", &r), 200, "%s", r.body);
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    char *text_a = strdup(json_string_value(json_object_get(
        json_array_get(json_object_get(j, "choices"), 0), "text")));
    json_decref(j);
    tc_resp_free(&r);
    expect_state("a", "loaded");
    expect_state("b", "unloaded");
    json_t *m = model_entry("a");
    cr_expect(json_integer_value(json_object_get(m, "resident_bytes")) > 0);
    cr_expect(json_integer_value(json_object_get(m, "kv_blocks_total")) > 0);
    cr_expect_str_eq(json_string_value(json_object_get(m, "architecture")),
                     "llama");
    json_decref(m);
    cr_expect_eq(tc_metric(D.port, "quantd_models_loaded"), 1);

    /* B does not fit beside A: idle A is unloaded to make room. */
    complete_ok("b", text_a);
    expect_state("a", "unloaded");
    expect_state("b", "loaded");
    cr_expect_eq(tc_metric(D.port, "quantd_models_loaded"), 1);

    /* huge can never fit: a clear error, and the daemon keeps serving. */
    cr_assert_eq(complete("huge", &r), 507, "%s", r.body);
    j = json_loads(r.body, 0, &e);
    json_t *err = json_object_get(j, "error");
    cr_expect_str_eq(json_string_value(json_object_get(err, "code")),
                     "model_too_large");
    cr_expect_str_eq(json_string_value(json_object_get(err, "param")),
                     "model");
    cr_expect(strstr(json_string_value(json_object_get(err, "message")),
                     "budget"),
              "%s", r.body);
    json_decref(j);
    tc_resp_free(&r);
    expect_state("huge", "unloaded");

    /* Back to A: loads again (B unloaded), same greedy answer. */
    complete_ok("a", text_a);
    expect_state("a", "loaded");
    expect_state("b", "unloaded");
    /* Tokenizing needs no generation but a loaded model. */
    cr_assert_eq(tc_fetch(D.port, "POST", "/tokenize",
                          "Content-Type: application/json\r\n",
                          "{\"model\":\"a\",\"content\":\"Once\"}", &r),
                 0);
    cr_expect_eq(r.status, 200, "%s", r.body);
    tc_resp_free(&r);
    free(text_a);
}

Test(pool, concurrent_requests_wait_for_one_load, .fini = stop_daemon,
     .timeout = 60)
{
    const char *model = need_model();
    start(model, budget_for_one(model), 0);
    /* Three requests for unloaded B sent at once: all wait for the same
     * load and all succeed. */
    int fds[3];
    const char *body = "{\"model\":\"b\",\"prompt\":\"Once upon a time\","
                       "\"max_tokens\":4,\"temperature\":0}";
    for (int i = 0; i < 3; i++) {
        fds[i] = tc_connect(D.port);
        cr_assert(fds[i] >= 0);
        cr_assert_eq(tc_send(fds[i], "POST", "/v1/completions",
                             "Connection: close\r\n",
                             body),
                     0);
    }
    /* While it loads the model is "loading" (or already "loaded"). */
    json_t *m = model_entry("b");
    const char *st = json_string_value(json_object_get(m, "state"));
    cr_expect(!strcmp(st, "loading") || !strcmp(st, "loaded"), "%s", st);
    json_decref(m);
    for (int i = 0; i < 3; i++) {
        char buf[4096];
        size_t n = 0;
        ssize_t k;
        while ((k = tc_read_some(fds[i], buf + n, sizeof buf - 1 - n,
                                 20000)) > 0)
            n += (size_t)k;
        buf[n] = '\0';
        cr_expect(strstr(buf, "\"text_completion\""), "request %d: %s", i,
                  buf);
        close(fds[i]);
    }
    expect_state("b", "loaded");
}

Test(pool, idle_models_unload_and_reload, .fini = stop_daemon, .timeout = 60)
{
    const char *model = need_model();
    start(model, 0, 1);
    complete_ok("a", NULL);
    expect_state("a", "loaded");
    /* Unused for idle_unload_s = 1: unloaded by the 1 s reaper. */
    int waited = 0;
    while (!state_is("a", "unloaded") && waited < 6000) {
        msleep(100);
        waited += 100;
    }
    cr_assert(state_is("a", "unloaded"), "a still loaded after %d ms",
              waited);
    cr_expect_eq(tc_metric(D.port, "quantd_models_loaded"), 0);
    /* The next request loads it again. */
    complete_ok("a", NULL);
    expect_state("a", "loaded");
}

Test(pool, pinned_model_over_budget_refuses_to_start, .fini = stop_daemon,
     .timeout = 60)
{
    const char *model = need_model();
    write_conf(model, budget_for_one(model), 0, NULL, "pin = yes\n");
    const char *args[] = {"--config", conf_path, NULL};
    cr_assert_neq(tc_daemon_start_model(&D, NULL, args), 0,
                  "a pinned model that cannot fit must stop the start-up");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "grep -q 'memory budget' '%s'", D.log);
    cr_expect_eq(system(cmd), 0, "the log names the budget (%s)", D.log);
}

Test(pool, pinned_model_holds_the_budget_503, .fini = stop_daemon,
     .timeout = 60)
{
    const char *model = need_model();
    /* a is pinned (loaded at start-up, never unloaded) and takes the
     * budget: b cannot load now, which is a 503 to retry, not an error of
     * the request. */
    write_conf(model, budget_for_one(model), 0, "pin = yes\n", NULL);
    const char *args[] = {"--config", conf_path, NULL};
    cr_assert_eq(tc_daemon_start_model(&D, NULL, args), 0,
                 "daemon did not start (log %s)", D.log);
    expect_state("a", "loaded");
    json_t *m = model_entry("a");
    cr_expect(json_is_true(json_object_get(m, "pinned")));
    json_decref(m);
    tc_resp_t r;
    cr_assert_eq(complete("b", &r), 503, "%s", r.body);
    char ra[32];
    cr_expect(tc_header(&r, "retry-after", ra, sizeof ra), "no Retry-After");
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "error"), "code")),
                     "model_pool_busy");
    json_decref(j);
    tc_resp_free(&r);
    expect_state("b", "unloaded");
    complete_ok("a", NULL);
}
