/*
 * serve.c — `quantd serve`: the daemon.
 *
 * Start-up: configuration (defaults < file < environment < flags), then the
 * HTTP server starts listening at once — /health answers and /ready says
 * 503 while, on a libuv worker thread, every configured model is added to
 * the model pool (its size estimated from its GGUF header) and the models
 * given with -m or pinned are loaded. Then the server is ready and tells
 * systemd READY=1. Other models load on their first request (api.c) and
 * a 1 s timer unloads those idle for idle_unload_s (qd_modelpool_reap).
 * Each loaded model has its own scheduler (engine thread), created by the
 * pool when it loads and destroyed when it unloads.
 *
 * Signals (on the loop thread, via uv_signal): SIGTERM/SIGINT drain — /ready
 * turns 503, new generations get 503 + Retry-After, running requests finish
 * until drain_timeout_s, then the process exits 0; a second SIGTERM exits at
 * once. SIGHUP re-reads the configuration and applies keys and limits
 * without touching open connections.
 *
 * The systemd watchdog is fed from the engine threads' heartbeat, so a
 * wedged forward pass (not just a live loop) stops the pings.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "cmd/cmd.h"
#include "core/sdnotify.h"
#include "http/http.h"
#include "quantd/common.h"
#include "quantd/config.h"
#include "quantd/engine.h"
#include "quantd/genmodel.h"
#include "quantd/gguf.h"
#include "quantd/pool.h"
#include "quantd/sched.h"
#include "quantd/hf_import.h"

extern char **environ;

/* Connections need descriptors: raise the soft RLIMIT_NOFILE to the hard
 * one (as nginx and systemd services commonly do) and say so when even
 * that cannot hold max_connections plus MHD's slack and the model files. */
static void raise_nofile(const qd_config_t *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        if (want == RLIM_INFINITY || want > 1048576)
            want = 1048576;
        if (want > rl.rlim_cur) {
            rl.rlim_cur = want;
            if (setrlimit(RLIMIT_NOFILE, &rl))
                getrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    int64_t need = qd_http_max_sockets(cfg) + 64;
    if (rl.rlim_cur != RLIM_INFINITY && (int64_t)rl.rlim_cur < need)
        QD_WARN("serve",
                "open-file limit %llu is below the %lld that max_connections "
                "= %lld can use; connections beyond it are refused",
                (unsigned long long)rl.rlim_cur, (long long)need,
                (long long)cfg->max_connections);
}

typedef struct {
    uv_loop_t loop;
    qd_config_t cfg;
    int argc;
    char **argv;
    qd_api_t *api;
    qd_http_t *http;
    qd_modelpool_t *pool;
    char *refused[QD_CONFIG_MAX_MODELS]; /* never fits the budget: why */
    int starting;    /* the start-up work has not called back yet */
    uv_timer_t reap_timer;
    int load_err;
    char load_msg[512];
    uv_work_t load_work;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t drain_timer;
    uint64_t drain_deadline;
    int draining;
    int stopping;
    int exit_now; /* second signal: leave without stopping MHD */
    int exit_code;
    uint64_t watchdog_ns;
    _Atomic uint64_t last_ping;
} server_t;

static void heartbeat(void *ud)
{
    server_t *s = ud;
    if (!s->watchdog_ns)
        return;
    uint64_t now = qd_now_ns(), last = atomic_load(&s->last_ping);
    if (now - last >= s->watchdog_ns / 2 &&
        atomic_compare_exchange_strong(&s->last_ping, &last, now))
        qd_sd_notify("WATCHDOG=1");
}

/* ---- model loading ------------------------------------------------------ */

static void sched_params(const server_t *s, const qd_model_conf_t *mc,
                         qd_sched_params_t *p)
{
    qd_sched_params_default(p);
    p->n_batch = (int32_t)s->cfg.n_batch;
    p->n_seq_max = (int32_t)s->cfg.n_seq_max;
    p->queue_max = (int32_t)s->cfg.queue_max;
    p->n_ctx = (int32_t)(mc->ctx ? mc->ctx : s->cfg.ctx);
    int64_t kv_mib = mc->kv_mib ? mc->kv_mib : s->cfg.kv_mib;
    p->kv_bytes = (size_t)kv_mib << 20;
    p->kv_type = !strcmp(s->cfg.kv_type, "f32")    ? QD_KV_F32
                 : !strcmp(s->cfg.kv_type, "q8_0") ? QD_KV_Q8_0
                                                   : QD_KV_F16;
    p->n_threads = (int32_t)s->cfg.threads;
    p->heartbeat = heartbeat;
    p->heartbeat_ud = (void *)s;
    p->heartbeat_ms = 1000;
}

/* Worker thread: add every model to the pool, load the -m and pinned ones
 * (taking and dropping a reference: pinned ones stay, -m ones stay until
 * idle_unload_s or the budget says otherwise). */
static void load_models(uv_work_t *w)
{
    server_t *s = w->data;
    for (int i = 0; i < s->cfg.n_models && !s->load_err; i++) {
        const qd_model_conf_t *mc = &s->cfg.models[i];
        qd_modelpool_model_params_t mp = {
            .name = mc->name, .path = mc->path, .pin = mc->pin};
        sched_params(s, mc, &mp.sched);
        int err = qd_modelpool_add(s->pool, &mp);
        if (err == QD_ETOOBIG && !mc->pin && !mc->preload) {
            QD_ERROR("serve", "model '%s' (%s) is not served: %s", mc->name,
                     mc->path, qd_errmsg());
            s->refused[i] = qd_strdup(qd_errmsg());
            if (!s->refused[i])
                err = QD_ENOMEM;
            else
                continue;
        }
        if (err) {
            s->load_err = err;
            snprintf(s->load_msg, sizeof s->load_msg,
                     "model '%s' (%s): %s: %s", mc->name, mc->path,
                     qd_strerror(err), qd_errmsg());
        }
    }
    for (int i = 0; i < s->cfg.n_models && !s->load_err; i++) {
        const qd_model_conf_t *mc = &s->cfg.models[i];
        if (!mc->pin && !mc->preload)
            continue;
        uint64_t t0 = qd_now_ns();
        qd_sched_t *sch;
        int err = qd_modelpool_acquire(s->pool, mc->name, &sch);
        if (err) {
            s->load_err = err;
            snprintf(s->load_msg, sizeof s->load_msg, "model '%s' (%s): %s: %s",
                     mc->name, mc->path, qd_strerror(err), qd_errmsg());
            return;
        }
        QD_INFO("serve", "model '%s' ready from %s in %.0f ms: ctx %d",
                mc->name, mc->path, (double)(qd_now_ns() - t0) / 1e6,
                qd_sched_n_ctx(sch));
        qd_modelpool_release(s->pool, mc->name);
    }
}

static void stop_everything(server_t *s);

/* Every second: unload models idle for idle_unload_s; with no model
 * loaded no engine thread feeds the watchdog, so this does. */
static void on_reap_tick(uv_timer_t *t)
{
    server_t *s = t->data;
    qd_modelpool_reap(s->pool, qd_now_ns());
    int loaded = 0;
    for (int i = 0; i < s->cfg.n_models; i++) {
        qd_modelpool_model_info_t info;
        if (!qd_modelpool_info(s->pool, s->cfg.models[i].name, &info))
            loaded += info.loaded;
    }
    if (!loaded)
        heartbeat(s);
}

static void models_loaded(uv_work_t *w, int status)
{
    server_t *s = w->data;
    (void)status;
    s->starting = 0;
    if (s->stopping)
        return;
    if (s->load_err) {
        QD_ERROR("serve", "%s", s->load_msg);
        s->exit_code = 1;
        stop_everything(s);
        return;
    }
    for (int i = 0; i < s->cfg.n_models; i++) {
        const qd_model_conf_t *mc = &s->cfg.models[i];
        int err = qd_api_add_model(s->api, mc->name, s->refused[i]);
        if (err) {
            QD_ERROR("serve", "model '%s': cannot serve: %s: %s", mc->name,
                     qd_strerror(err), qd_errmsg());
            s->exit_code = 1;
            stop_everything(s);
            return;
        }
    }
    uv_timer_start(&s->reap_timer, on_reap_tick, 1000, 1000);
    qd_api_set_state(s->api, QD_API_READY);
    qd_sd_notify("READY=1\nSTATUS=serving");
    QD_INFO("serve", "ready on %s:%d (%d models, budget %lld MiB)",
            s->cfg.host, qd_http_port(s->http), s->cfg.n_models,
            (long long)s->cfg.mem_budget_mib);
}

/* ---- shutdown ------------------------------------------------------------- */

static void on_closed(uv_handle_t *h) { (void)h; }

static void stop_everything(server_t *s)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    uv_timer_stop(&s->drain_timer);
    uv_close((uv_handle_t *)&s->drain_timer, on_closed);
    uv_timer_stop(&s->reap_timer);
    uv_close((uv_handle_t *)&s->reap_timer, on_closed);
    uv_close((uv_handle_t *)&s->sig_term, on_closed);
    uv_close((uv_handle_t *)&s->sig_int, on_closed);
    uv_close((uv_handle_t *)&s->sig_hup, on_closed);
    if (s->exit_now)
        qd_http_abandon(s->http);
    else
        qd_http_stop(s->http);
    s->http = NULL;
    uv_stop(&s->loop);
}

static void on_drain_tick(uv_timer_t *t)
{
    server_t *s = t->data;
    int active = qd_api_n_active(s->api);
    if (active == 0) {
        QD_INFO("serve", "drained, exiting");
        stop_everything(s);
    } else if (qd_now_ns() >= s->drain_deadline) {
        QD_WARN("serve", "drain deadline reached with %d requests running",
                active);
        stop_everything(s);
    }
}

static void on_term(uv_signal_t *h, int signum)
{
    server_t *s = h->data;
    if (s->draining) {
        QD_WARN("serve", "second signal %d: exiting now", signum);
        s->exit_now = 1;
        stop_everything(s);
        return;
    }
    s->draining = 1;
    qd_sd_notify("STOPPING=1");
    qd_api_set_state(s->api, QD_API_DRAINING);
    s->drain_deadline =
        qd_now_ns() + (uint64_t)s->cfg.drain_timeout_s * 1000000000ull;
    QD_INFO("serve", "signal %d: draining (%d requests, up to %llds)",
            signum, qd_api_n_active(s->api),
            (long long)s->cfg.drain_timeout_s);
    uv_timer_start(&s->drain_timer, on_drain_tick, 0, 50);
}

static void on_hup(uv_signal_t *h, int signum)
{
    (void)signum;
    server_t *s = h->data;
    qd_config_t nc;
    int help;
    int err = qd_config_init(&nc);
    if (!err)
        err = qd_config_from_args(&nc, s->argc, s->argv, environ, &help);
    if (!err)
        err = qd_api_reload(s->api, &nc);
    if (err) {
        QD_ERROR("serve", "SIGHUP: reload failed, keeping the old settings: "
                          "%s",
                 qd_errmsg());
    } else {
        qd_http_reload(s->http, &nc);
        QD_INFO("serve", "SIGHUP: keys and limits reloaded");
    }
    qd_config_close(&nc);
}

/* ---- default model ------------------------------------------------------- */

/* ChatML: what the generated default model formats chat with. */
static const char default_chat_template[] =
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/* mkdir -p for the cache directory (mode 0755). */
static int make_dirs(const char *dir)
{
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf)
        return QD_EINVAL;
    memcpy(buf, dir, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) && errno != EEXIST)
            return QD_EIO;
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST)
        return QD_EIO;
    return 0;
}

/*
 * Generate the tiny random-weight model at `path`: gen-model's "tiny"
 * preset, rewritten with a ChatML tokenizer.chat_template so that
 * /v1/chat/completions works end to end.
 */
static int generate_default_model(const char *path)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.gen", path);
    qd_genmodel_params_t p;
    qd_gguf_t *g = NULL;
    int err = qd_genmodel_preset("tiny", &p);
    if (!err)
        err = qd_genmodel_write(&p, tmp);
    if (!err)
        err = qd_gguf_open(tmp, &g);
    if (!err)
        err = qd_gguf_write_with_str(g, "tokenizer.chat_template", default_chat_template,
                                     path);
    qd_gguf_close(g);
    unlink(tmp);
    return err;
}

static int find_default_model(qd_config_t *c)
{
    char dir[4096], path[4200];
    const char *qc = getenv("QUANTD_CACHE");
    const char *sd = getenv("CACHE_DIRECTORY"); /* systemd CacheDirectory= */
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (c->default_model_dir && *c->default_model_dir)
        snprintf(dir, sizeof dir, "%s", c->default_model_dir);
    else if (qc && *qc)
        snprintf(dir, sizeof dir, "%s", qc);
    else if (sd && *sd && !strchr(sd, ':'))
        snprintf(dir, sizeof dir, "%s", sd);
    else if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/quantd", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/quantd", home);
    else {
        qd_set_errmsg("no model given (-m PATH or [model.NAME] in the "
                      "config), and neither QUANTD_CACHE, XDG_CACHE_HOME "
                      "nor HOME is set to find the default model");
        return QD_ENOENT;
    }
    snprintf(path, sizeof path, "%s/default.gguf", dir);
    struct stat st;
    if (stat(path, &st) == 0) {
        QD_INFO("serve", "no model given: serving the default model %s",
                path);
    } else {
        int err = make_dirs(dir);
        if (!err)
            err = generate_default_model(path);
        if (err) {
            qd_set_errmsg("no model given (-m PATH or [model.NAME] in the "
                          "config), no default model at %s, and generating "
                          "one there failed: %s",
                          path, err == QD_EIO ? strerror(errno) : qd_errmsg());
            return err;
        }
        QD_WARN("serve",
                "no model given and no default model cached: generated %s, "
                "a tiny model with RANDOM WEIGHTS that produces gibberish. "
                "For a real model run scripts/fetch-default-model.sh (caches "
                "Qwen2.5-0.5B-Instruct there) or start with -m PATH "
                "(GGUF file or HF/AWQ checkpoint directory)",
                path);
    }
    int err = qd_config_add_model_path(c, path);
    if (!err) {
        qd_free(c->models[c->n_models - 1].name);
        c->models[c->n_models - 1].name = qd_strdup("default");
        if (!c->models[c->n_models - 1].name)
            return QD_ENOMEM;
    }
    return err;
}

int qd_cmd_serve(int argc, char **argv)
{
    server_t *s = calloc(1, sizeof *s);
    if (!s)
        return 1;
    int help = 0, rc = 1;
    s->argc = argc;
    s->argv = argv;
    if (qd_config_init(&s->cfg)) {
        fprintf(stderr, "quantd serve: out of memory\n");
        free(s);
        return 1;
    }
    int err = qd_config_from_args(&s->cfg, argc, argv, environ, &help);
    if (help) {
        qd_config_print_help(stdout);
        qd_config_close(&s->cfg);
        free(s);
        return 0;
    }
    if (err) {
        fprintf(stderr, "quantd serve: %s\n", qd_errmsg());
        qd_config_close(&s->cfg);
        free(s);
        return 2;
    }
    qd_log_set_json(!strcmp(s->cfg.log_format, "json"));
    qd_log_set_level(!strcmp(s->cfg.log_level, "debug")  ? QD_LOG_DEBUG
                     : !strcmp(s->cfg.log_level, "warn")  ? QD_LOG_WARN
                     : !strcmp(s->cfg.log_level, "error") ? QD_LOG_ERROR
                                                          : QD_LOG_INFO);
    qd_gguf_set_load_name(s->cfg.model_load); /* the config allows only its names */
    if (s->cfg.n_models == 0 && (err = find_default_model(&s->cfg))) {
        fprintf(stderr, "quantd serve: %s\n", qd_errmsg());
        qd_config_close(&s->cfg);
        free(s);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(&s->cfg);
    uint64_t wd = qd_sd_watchdog_usec();
    s->watchdog_ns = wd * 1000;

    uv_loop_init(&s->loop);
    qd_modelpool_params_t pp = {
        .mem_budget = (size_t)s->cfg.mem_budget_mib << 20,
        .idle_unload_ms = (uint64_t)s->cfg.idle_unload_s * 1000};
    if ((err = qd_modelpool_create(&pp, &s->pool))) {
        fprintf(stderr, "quantd serve: %s\n", qd_errmsg());
        goto out;
    }
    if ((err = qd_api_create(&s->loop, &s->cfg, &s->api))) {
        fprintf(stderr, "quantd serve: %s\n", qd_errmsg());
        goto out;
    }
    qd_api_set_pool(s->api, s->pool);
    if ((err = qd_http_start(&s->loop, &s->cfg, s->api, &s->http))) {
        QD_ERROR("serve", "%s", qd_errmsg());
        goto out;
    }
    QD_INFO("serve", "listening on %s:%d", s->cfg.host,
            qd_http_port(s->http));
    uv_signal_init(&s->loop, &s->sig_term);
    uv_signal_init(&s->loop, &s->sig_int);
    uv_signal_init(&s->loop, &s->sig_hup);
    s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
    uv_signal_start(&s->sig_term, on_term, SIGTERM);
    uv_signal_start(&s->sig_int, on_term, SIGINT);
    uv_signal_start(&s->sig_hup, on_hup, SIGHUP);
    uv_timer_init(&s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_timer_init(&s->loop, &s->reap_timer);
    s->reap_timer.data = s;

    s->load_work.data = s;
    s->starting = 1;
    uv_queue_work(&s->loop, &s->load_work, load_models, models_loaded);
    s->exit_code = 0;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    rc = s->exit_code;
out:
    if (s->http) {
        qd_http_stop(s->http);
        s->http = NULL;
    }
    /* The start-up loads and on-demand loads still running are waited
     * for; then the pool's schedulers end their requests (final events go
     * to the API queue), then the API drains that queue and frees the
     * calls. */
    while (s->starting)
        uv_run(&s->loop, UV_RUN_ONCE);
    qd_api_stop_loads(s->api);
    qd_modelpool_destroy(s->pool);
    qd_api_destroy(s->api);
    /* Finish closing handles. */
    uv_run(&s->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < QD_CONFIG_MAX_MODELS; i++)
        qd_free(s->refused[i]);
    if (uv_loop_close(&s->loop))
        QD_DEBUG("serve", "loop closed with handles open");
    qd_config_close(&s->cfg);
    free(s);
    return err && !rc ? 1 : rc;
}
