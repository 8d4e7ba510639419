/*
 * pool.c — several models behind one daemon: load on first request, unload
 * when idle or to make room, never past the memory budget.
 *
 * The budget is enforced on estimates made from each model's GGUF header
 * (qd_modelpool_estimate; the header is read through a mapping, not the
 * whole file), not on measured RSS: with mapped weights (model_load =
 * mmap) what is resident depends on the page cache, while the estimate is
 * what the model can come to touch. A model is loaded only when its estimate plus those of
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
#include "quantd/hf_import.h"
#include "quantd/quant.h"

typedef struct {
    char *name;
    char *path;
    qd_sched_params_t sp;
    int pin;
    int refused;         /* estimate over the whole budget: never loads */
    size_t estimate;
    qd_model_t *model;   /* NULL: not loaded */
    qd_sched_t *sched;
    int loading;         /* a thread is loading it (mu not held) */
    uint64_t loads;      /* completed loads */
    int32_t users;
    uint64_t last_used_ns;
    qd_modelpool_header_t hdr;
    char arch[32];       /* of the last load ("" before) */
} entry_t;

struct qd_modelpool {
    qd_modelpool_params_t p;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* an entry's `loading` went to 0 */
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
    pthread_cond_init(&pool->cv, NULL);
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
    pthread_cond_destroy(&pool->cv);
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

/* The dominant matrix type (by bytes) and bits per weight of g. */
static void weight_types(const qd_gguf_t *g, qd_modelpool_header_t *h)
{
    size_t by_type[64] = {0}, by_g128 = 0;
    double n_params = 0, bytes = 0;
    for (int64_t i = 0; i < qd_gguf_n_tensors(g); i++) {
        const qd_gguf_tensor_t *t = qd_gguf_tensor(g, i);
        double ne = 1;
        for (int d = 0; d < t->n_dims; d++)
            ne *= (double)t->ne[d];
        n_params += ne;
        bytes += (double)t->n_bytes;
        if (t->n_dims >= 2 && (unsigned)t->type < 64)
            by_type[t->type] += t->n_bytes;
        else if (t->n_dims >= 2 && t->type == QD_TYPE_Q4_G128)
            by_g128 += t->n_bytes; /* quantd's own type (AWQ imports) */
    }
    int best = -1;
    for (int i = 0; i < 64; i++)
        if (by_type[i] && (best < 0 || by_type[i] > by_type[best]))
            best = i;
    const char *name = best >= 0 ? qd_type_name((qd_type_t)best) : "unknown";
    if (by_g128 && (best < 0 || by_g128 > by_type[best]))
        name = qd_type_name(QD_TYPE_Q4_G128);
    snprintf(h->quant, sizeof h->quant, "%s", name);
    h->bits_per_weight = n_params > 0 ? bytes * 8.0 / n_params : 0;
}

static int estimate_gguf(const char *path, const qd_sched_params_t *sp,
                         size_t *bytes, qd_modelpool_header_t *h)
{
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
     * context (K and V for every layer), capped as the engine caps it. */
    int64_t ctx = sp->n_ctx > 0 ? sp->n_ctx : n_ctx;
    size_t elem = sp->kv_type == QD_KV_F32 ? 4 : 2;
    size_t kv = sp->kv_bytes, t;
    if (!kv) {
        if (qd_mul_size((size_t)ctx, (size_t)sp->n_seq_max, &kv) ||
            qd_mul_size(kv, (size_t)n_layer * 2, &kv) ||
            qd_mul_size(kv, (size_t)(n_head_kv * head_dim), &kv) ||
            qd_mul_size(kv, elem, &kv))
            kv = SIZE_MAX;
        kv = QD_MIN(kv, qd_kv_default_cap()); /* as the engine caps it */
    }
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
    if (h) {
        memset(h, 0, sizeof *h);
        h->n_ctx = ctx;
        h->kv_bytes = kv;
        weight_types(g, h);
    }
    goto out;
overflow:
    qd_set_errmsg("pool: %s: size estimate overflows", path);
    err = QD_EOVERFLOW;
out:
    qd_gguf_close(g);
    return err;
}

/* A Hugging Face checkpoint directory is estimated from the GGUF it is
 * imported into (made now if it is not cached yet). */
static int estimate_any(const char *path, const qd_sched_params_t *sp,
                        size_t *bytes, qd_modelpool_header_t *h)
{
    *bytes = 0;
    if (!qd_hf_is_model_dir(path))
        return estimate_gguf(path, sp, bytes, h);
    qd_hf_import_result_t r;
    memset(&r, 0, sizeof r);
    qd_hf_import_params_t ip = {0};
    int err = qd_hf_import(path, &ip, &r);
    if (!err)
        err = estimate_gguf(r.gguf_path, sp, bytes, h);
    qd_hf_import_result_free(&r);
    return err;
}

int qd_modelpool_estimate(const char *path, const qd_sched_params_t *sp,
                          size_t *bytes)
{
    return estimate_any(path, sp, bytes, NULL);
}

static int too_big(const qd_modelpool_t *pool, const entry_t *e)
{
    qd_set_errmsg("pool: model '%s' needs about %.1f MiB, over the memory "
                  "budget of %zu MiB",
                  e->name, (double)e->estimate / (1 << 20),
                  pool->p.mem_budget >> 20);
    return QD_ETOOBIG;
}

/* A loaded model whose file was truncated under its mapping is unloaded
 * as soon as nobody uses it, so the next acquire reloads it from disk
 * (where a truncated file is refused with a clear message). 0: e is not
 * (or no longer) loaded damaged; QD_EIO: still in use (its scheduler
 * fails the requests, so the users go soon). */
static int drop_damaged(qd_modelpool_t *pool, entry_t *e)
{
    if (!e->model || !qd_model_damaged(e->model))
        return 0;
    if (e->users) {
        qd_set_errmsg("pool: the file of model '%s' changed on disk while "
                      "in use; it reloads when its %d running requests "
                      "have ended",
                      e->name, (int)e->users);
        return QD_EIO;
    }
    QD_WARN("pool", "model '%s': file changed on disk while mapped; "
            "unloading it", e->name);
    unload(pool, e);
    return 0;
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
    qd_modelpool_header_t hdr;
    int err = estimate_any(mp->path, &mp->sched, &est, &hdr);
    if (err)
        return err;
    pthread_mutex_lock(&pool->mu);
    if (find(pool, mp->name)) {
        qd_set_errmsg("pool: model '%s' added twice", mp->name);
        err = QD_EINVAL;
    } else if (pool->n == QD_MODELPOOL_MAX_MODELS) {
        qd_set_errmsg("pool: more than %d models", QD_MODELPOOL_MAX_MODELS);
        err = QD_EFULL;
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
            e->hdr = hdr;
            pool->n++;
            if (pool->p.mem_budget && est > pool->p.mem_budget) {
                e->refused = 1;
                err = too_big(pool, e);
            }
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
            qd_set_errmsg("pool: %.1f MiB more do not fit the budget of %zu "
                          "MiB (%.1f MiB loaded, in use or pinned)",
                          (double)need / (1 << 20), budget >> 20,
                          (double)pool->loaded_bytes / (1 << 20));
            return QD_EBUSY;
        }
        unload(pool, lru);
    }
    return 0;
}

int qd_modelpool_acquire(qd_modelpool_t *pool, const char *name,
                         qd_sched_t **sched)
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
    while (e->loading)
        pthread_cond_wait(&pool->cv, &pool->mu);
    if (e->refused) {
        err = too_big(pool, e);
        goto out;
    }
    if ((err = drop_damaged(pool, e)))
        goto out;
    if (!e->model) {
        /* Reserve the bytes, then load without the lock so that other
         * threads (the event loop asking for states) never wait for it. */
        if ((err = make_room(pool, e->estimate)))
            goto out;
        pool->loaded_bytes += e->estimate;
        e->loading = 1;
        pthread_mutex_unlock(&pool->mu);
        uint64_t t0 = qd_now_ns();
        qd_model_t *m = NULL;
        qd_sched_t *s = NULL;
        err = qd_model_open(e->path, &m);
        if (!err && (err = qd_sched_create(m, &e->sp, &s))) {
            qd_model_free(m);
            m = NULL;
        }
        pthread_mutex_lock(&pool->mu);
        e->loading = 0;
        pthread_cond_broadcast(&pool->cv);
        if (err) {
            pool->loaded_bytes -= e->estimate;
            goto out;
        }
        e->model = m;
        e->sched = s;
        e->loads++;
        snprintf(e->arch, sizeof e->arch, "%s", qd_model_arch_name(m));
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

int qd_modelpool_try_acquire(qd_modelpool_t *pool, const char *name,
                             qd_sched_t **sched, const qd_model_t **model)
{
    *sched = NULL;
    *model = NULL;
    int err = 0;
    pthread_mutex_lock(&pool->mu);
    entry_t *e = find(pool, name);
    if (!e) {
        qd_set_errmsg("pool: no model '%s'", name);
        err = QD_ENOTFOUND;
    } else if (e->refused) {
        err = too_big(pool, e);
    } else if ((err = drop_damaged(pool, e))) {
    } else if (!e->model) {
        err = QD_EAGAIN;
    } else {
        e->users++;
        e->last_used_ns = qd_now_ns();
        *sched = e->sched;
        *model = e->model;
    }
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
    for (int i = 0; i < pool->n; i++) {
        entry_t *e = &pool->e[i];
        if (!e->model || e->users)
            continue;
        if (qd_model_damaged(e->model)) { /* pinned or not */
            drop_damaged(pool, e);
            n++;
        } else if (idle_ns && !e->pin && now_ns >= e->last_used_ns + idle_ns) {
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
        memset(out, 0, sizeof *out);
        out->loaded = e->model != NULL;
        out->loading = e->loading;
        out->pinned = e->pin;
        out->refused = e->refused;
        out->users = e->users;
        out->estimate_bytes = e->estimate;
        out->last_used_ns = e->last_used_ns;
        out->loads = e->loads;
        out->header = e->hdr;
        memcpy(out->arch, e->arch, sizeof out->arch);
        if (e->model) {
            out->weight_bytes = qd_model_weight_bytes(e->model);
            out->n_ctx = qd_sched_n_ctx(e->sched);
            qd_sched_stats(e->sched, &out->stats);
        } else {
            out->n_ctx = (int32_t)QD_MIN(e->hdr.n_ctx, INT32_MAX);
        }
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
