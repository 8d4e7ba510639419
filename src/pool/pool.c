/*
 * pool.c — several models behind one daemon: load on first request, unload
 * when idle or to make room, never past the memory budget.
 *
 * The budget is enforced on estimates made from each model's GGUF header
 * (qd_modelpool_estimate), not on measured RSS: weights are mmapped, so what is
 * resident depends on the page cache, while the estimate is what the model
 * can come to touch. A model is loaded only when its estimate plus those of
 * the models already loaded fit; to make room, idle (no users), unpinned
 * models are unloaded least recently used first.
 *
 * Locking: `mu` guards every field of the pool and its entries; loads and
 * unloads run with it held.
 */
#include "quantd/pool.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "quantd/common.h"
#include "quantd/engine.h"
#include "quantd/gguf.h"

typedef struct {
    char *name;
    char *path;
    qd_sched_params_t sp;
    int pin;
    size_t estimate;
    qd_model_t *model;   /* NULL: not loaded */
    qd_sched_t *sched;
    int32_t users;
    uint64_t last_used_ns;
} entry_t;

struct qd_modelpool {
    qd_modelpool_params_t p;
    pthread_mutex_t mu;
    entry_t e[QD_MODELPOOL_MAX_MODELS];
    int n;
    size_t loaded_bytes;
};

int qd_modelpool_create(const qd_modelpool_params_t *p, qd_modelpool_t **out)
{
    *out = NULL;
    qd_modelpool_t *pool = qd_calloc(1, sizeof *pool);
    if (!pool) {
        qd_set_errmsg("pool: out of memory");
        return QD_ENOMEM;
    }
    pool->p = *p;
    pthread_mutex_init(&pool->mu, NULL);
    *out = pool;
    return 0;
}

static void unload(qd_modelpool_t *pool, entry_t *e)
{
    qd_sched_destroy(e->sched);
    qd_model_free(e->model);
    e->sched = NULL;
    e->model = NULL;
    pool->loaded_bytes -= e->estimate;
    QD_INFO("pool", "unloaded model '%s'", e->name);
}

void qd_modelpool_destroy(qd_modelpool_t *pool)
{
    if (!pool)
        return;
    for (int i = 0; i < pool->n; i++) {
        if (pool->e[i].model)
            unload(pool, &pool->e[i]);
        qd_free(pool->e[i].name);
        qd_free(pool->e[i].path);
    }
    pthread_mutex_destroy(&pool->mu);
    qd_free(pool);
}

/* An integer hyperparameter stored as any integer type; `def` if absent
 * (-1 def: required). */
static int get_int(const qd_gguf_t *g, const char *arch, const char *key,
                   int64_t def, int64_t *out)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    if (qd_gguf_get_u32(g, full, &u32) == 0)
        *out = u32;
    else if (qd_gguf_get_i32(g, full, &i32) == 0)
        *out = i32;
    else if (qd_gguf_get_u64(g, full, &u64) == 0 && u64 <= INT64_MAX)
        *out = (int64_t)u64;
    else if (def >= 0)
        *out = def;
    else {
        qd_set_errmsg("pool: GGUF has no integer '%s'", full);
        return QD_EFORMAT;
    }
    if (*out < 0 || *out > (INT64_C(1) << 40)) {
        qd_set_errmsg("pool: GGUF '%s' = %lld is out of range", full,
                      (long long)*out);
        return QD_EFORMAT;
    }
    return 0;
}

int qd_modelpool_estimate(const char *path, const qd_sched_params_t *sp,
                     size_t *bytes)
{
    *bytes = 0;
    qd_gguf_t *g = NULL;
    int err = qd_gguf_open(path, &g);
    if (err)
        return err;
    const char *arch = NULL;
    size_t arch_len = 0;
    if (qd_gguf_get_str(g, "general.architecture", &arch, &arch_len) ||
        arch_len == 0 || arch_len > 64) {
        qd_set_errmsg("pool: %s: no general.architecture", path);
        err = QD_EFORMAT;
        goto out;
    }
    char a[65];
    memcpy(a, arch, arch_len);
    a[arch_len] = '\0';
    int64_t n_layer, n_head, n_head_kv, n_embd, head_dim, n_ff, n_ctx, n_vocab;
    if ((err = get_int(g, a, "block_count", -1, &n_layer)) ||
        (err = get_int(g, a, "embedding_length", -1, &n_embd)) ||
        (err = get_int(g, a, "attention.head_count", -1, &n_head)) ||
        (err = get_int(g, a, "attention.head_count_kv", n_head,
                       &n_head_kv)) ||
        (err = get_int(g, a, "attention.key_length",
                       n_head ? n_embd / n_head : 0, &head_dim)) ||
        (err = get_int(g, a, "feed_forward_length", 0, &n_ff)) ||
        (err = get_int(g, a, "context_length", -1, &n_ctx)))
        goto out;
    qd_gguf_arr_t toks;
    if (get_int(g, a, "vocab_size", 0, &n_vocab) == 0 && n_vocab == 0 &&
        qd_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) == 0)
        n_vocab = (int64_t)toks.n;
    size_t total = 0;
    for (int64_t i = 0; i < qd_gguf_n_tensors(g); i++)
        if (qd_add_size(total, qd_gguf_tensor(g, i)->n_bytes, &total))
            goto overflow;
    /* KV pool: the budget if one is set, else every sequence at full
     * context; K and V for every layer. */
    int64_t ctx = sp->n_ctx > 0 ? sp->n_ctx : n_ctx;
    size_t elem = sp->kv_type == QD_KV_F32 ? 4 : 2;
    size_t kv = sp->kv_bytes, t;
    if (!kv && (qd_mul_size((size_t)ctx, (size_t)sp->n_seq_max, &kv) ||
                qd_mul_size(kv, (size_t)n_layer * 2, &kv) ||
                qd_mul_size(kv, (size_t)(n_head_kv * head_dim), &kv) ||
                qd_mul_size(kv, elem, &kv)))
        goto overflow;
    /* Forward pass: per batch token, logits plus a few activation rows. */
    size_t per_tok = ((size_t)n_vocab + 4 * (size_t)n_embd +
                      3 * (size_t)n_ff +
                      (size_t)(n_head + 2 * n_head_kv) * (size_t)head_dim) *
                     sizeof(float);
    size_t nb = (size_t)QD_MAX(sp->n_batch, sp->n_seq_max);
    if (qd_mul_size(per_tok, nb, &t) || qd_add_size(total, kv, &total) ||
        qd_add_size(total, t, &total))
        goto overflow;
    *bytes = total;
    goto out;
overflow:
    qd_set_errmsg("pool: %s: size estimate overflows", path);
    err = QD_EOVERFLOW;
out:
    qd_gguf_close(g);
    return err;
}

static entry_t *find(qd_modelpool_t *pool, const char *name)
{
    for (int i = 0; i < pool->n; i++)
        if (!strcmp(pool->e[i].name, name))
            return &pool->e[i];
    return NULL;
}

int qd_modelpool_add(qd_modelpool_t *pool, const qd_modelpool_model_params_t *mp)
{
    size_t est;
    int err = qd_modelpool_estimate(mp->path, &mp->sched, &est);
    if (err)
        return err;
    pthread_mutex_lock(&pool->mu);
    if (find(pool, mp->name)) {
        qd_set_errmsg("pool: model '%s' added twice", mp->name);
        err = QD_EINVAL;
    } else if (pool->n == QD_MODELPOOL_MAX_MODELS) {
        qd_set_errmsg("pool: more than %d models", QD_MODELPOOL_MAX_MODELS);
        err = QD_EFULL;
    } else if (pool->p.mem_budget && est > pool->p.mem_budget) {
        qd_set_errmsg("pool: model '%s' needs about %zu MiB, over the "
                      "memory budget of %zu MiB",
                      mp->name, est >> 20, pool->p.mem_budget >> 20);
        err = QD_ETOOBIG;
    } else {
        entry_t *e = &pool->e[pool->n];
        memset(e, 0, sizeof *e);
        e->name = qd_strdup(mp->name);
        e->path = qd_strdup(mp->path);
        if (!e->name || !e->path) {
            qd_free(e->name);
            qd_free(e->path);
            qd_set_errmsg("pool: out of memory");
            err = QD_ENOMEM;
        } else {
            e->sp = mp->sched;
            e->pin = mp->pin;
            e->estimate = est;
            pool->n++;
        }
    }
    pthread_mutex_unlock(&pool->mu);
    return err;
}

/* Unload idle unpinned models, least recently used first, until `need`
 * more bytes fit. 0 or QD_EBUSY. */
static int make_room(qd_modelpool_t *pool, size_t need)
{
    size_t budget = pool->p.mem_budget;
    while (budget && pool->loaded_bytes + need > budget) {
        entry_t *lru = NULL;
        for (int i = 0; i < pool->n; i++) {
            entry_t *e = &pool->e[i];
            if (e->model && !e->users && !e->pin &&
                (!lru || e->last_used_ns < lru->last_used_ns))
                lru = e;
        }
        if (!lru) {
            qd_set_errmsg("pool: %zu MiB more do not fit the budget of %zu "
                          "MiB (%zu MiB loaded and in use)",
                          need >> 20, budget >> 20, pool->loaded_bytes >> 20);
            return QD_EBUSY;
        }
        unload(pool, lru);
    }
    return 0;
}

int qd_modelpool_acquire(qd_modelpool_t *pool, const char *name, qd_sched_t **sched)
{
    *sched = NULL;
    int err = 0;
    pthread_mutex_lock(&pool->mu);
    entry_t *e = find(pool, name);
    if (!e) {
        qd_set_errmsg("pool: no model '%s'", name);
        err = QD_ENOTFOUND;
        goto out;
    }
    if (!e->model) {
        if ((err = make_room(pool, e->estimate)))
            goto out;
        uint64_t t0 = qd_now_ns();
        if ((err = qd_model_load(e->path, &e->model)))
            goto out;
        if ((err = qd_sched_create(e->model, &e->sp, &e->sched))) {
            qd_model_free(e->model);
            e->model = NULL;
            goto out;
        }
        pool->loaded_bytes += e->estimate;
        QD_INFO("pool", "loaded model '%s' in %.0f ms (estimate %zu MiB)",
                e->name, (double)(qd_now_ns() - t0) / 1e6, e->estimate >> 20);
    }
    e->users++;
    e->last_used_ns = qd_now_ns();
    *sched = e->sched;
out:
    pthread_mutex_unlock(&pool->mu);
    return err;
}

void qd_modelpool_release(qd_modelpool_t *pool, const char *name)
{
    pthread_mutex_lock(&pool->mu);
    entry_t *e = find(pool, name);
    if (e && e->users > 0) {
        e->users--;
        e->last_used_ns = qd_now_ns();
    }
    pthread_mutex_unlock(&pool->mu);
}

int qd_modelpool_reap(qd_modelpool_t *pool, uint64_t now_ns)
{
    int n = 0;
    pthread_mutex_lock(&pool->mu);
    uint64_t idle_ns = pool->p.idle_unload_ms * UINT64_C(1000000);
    for (int i = 0; idle_ns && i < pool->n; i++) {
        entry_t *e = &pool->e[i];
        if (e->model && !e->users && !e->pin &&
            now_ns >= e->last_used_ns + idle_ns) {
            unload(pool, e);
            n++;
        }
    }
    pthread_mutex_unlock(&pool->mu);
    return n;
}

int qd_modelpool_info(qd_modelpool_t *pool, const char *name,
                 qd_modelpool_model_info_t *out)
{
    int err = 0;
    pthread_mutex_lock(&pool->mu);
    entry_t *e = find(pool, name);
    if (!e) {
        qd_set_errmsg("pool: no model '%s'", name);
        err = QD_ENOTFOUND;
    } else {
        out->loaded = e->model != NULL;
        out->users = e->users;
        out->estimate_bytes = e->estimate;
        out->last_used_ns = e->last_used_ns;
    }
    pthread_mutex_unlock(&pool->mu);
    return err;
}

size_t qd_modelpool_bytes_loaded(qd_modelpool_t *pool)
{
    pthread_mutex_lock(&pool->mu);
    size_t n = pool->loaded_bytes;
    pthread_mutex_unlock(&pool->mu);
    return n;
}
