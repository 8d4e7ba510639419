/*
 * sched.c — continuous batching on one model's engine thread.
 *
 * Each step the engine thread
 *   1. applies cancellations (queued, prefilling or decoding requests end
 *      with FINISH(cancelled) + DONE and give their KV back);
 *   2. admits waiting requests in arrival order while sequence slots and KV
 *      blocks allow (strict FCFS: the head of the queue is never overtaken);
 *   3. builds one qd_batch_t: one decode token for every running choice,
 *      then prefill chunks of admitted prompts with the remaining token
 *      budget, oldest first — a long prompt is split over steps, so it
 *      delays the others by at most one chunk per step;
 *   4. runs qd_ctx_decode() and samples every flagged row. A prompt is
 *      prefilled once, on the first choice's sequence; the other choices of
 *      an n > 1 request fork its KV (qd_kv_seq_fork) instead of recomputing.
 *
 * Prefix caching: at admission the first choice adopts the longest cached
 * run of whole KV blocks that starts its prompt (qd_kv_seq_adopt; never
 * the last prompt token, whose logits are needed) and prefills only the
 * rest; the adopted positions are reported as cached_tokens. Once a prompt
 * is prefilled its full blocks are registered (so concurrent requests with
 * the same system prompt share them), and when a choice ends the blocks of
 * its prompt plus generated tokens are registered too (so the next turn of
 * a chat, which repeats them, hits). Registered blocks that no sequence
 * holds stay in the pool until it needs them (LRU eviction in engine/kv.c).
 *
 * KV admission is by reservation: a request is admitted only when the pool
 * can hold all its choices at their maximum length, so qd_ctx_decode()
 * never runs out of blocks mid-generation and nothing has to be preempted.
 * (This is conservative for n > 1, whose choices share the prompt blocks,
 * and for cache hits, whose adopted blocks are counted as if new. Idle
 * cached blocks are not reserved: they count as free, as they can be
 * evicted whenever a block is needed.)
 *
 * Locking: `mu` guards the waiting queue, the cancel list, `stop` and
 * `stats`. The running list, batch, samplers and the context belong to the
 * engine thread alone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "quantd/common.h"
#include "quantd/sched.h"
#include "quantd/tokenizer.h"

enum { REQ_PREFILL = 0, REQ_DECODE };

typedef struct {
    int32_t seq;        /* KV sequence slot */
    int32_t n_pos;      /* positions held in the KV cache */
    int32_t n_gen;      /* tokens generated */
    int32_t last_tok;   /* sampled, not yet fed to the model */
    int done;
    qd_sampler_t *smp;
    qd_detok_t detok;
    char *hold;         /* text not yet released (possible stop prefix) */
    int32_t n_hold, cap_hold;
    int32_t *hist;      /* [n_prompt + max_tokens] prompt, then sampled */
} choice_t;

typedef struct req {
    struct req *next;
    uint64_t id;
    qd_event_cb cb;
    void *ud;
    int32_t *prompt;
    int32_t n_prompt;
    int32_t n_prefilled;
    int32_t max_tokens;
    int32_t n;
    int state;
    int logprobs;
    int ignore_eos;
    char **stop;
    int32_t n_stop;
    int32_t max_stop_len;
    qd_sampling_params_t sampling;
    qd_logit_bias_t *bias;
    choice_t *ch;
    int32_t reserved;   /* KV blocks reserved at admission */
    int32_t n_cached;   /* prompt positions adopted from the prefix cache */
    uint64_t submit_ns;
    uint64_t queued_ns;
    int cancelled;      /* engine thread only */
    int oom;            /* text could not be kept: fails after this step */
} req_t;

struct qd_sched {
    const qd_model_t *model;
    const qd_tokenizer_t *tok;
    qd_sched_params_t p;
    qd_ctx_t *ctx;
    qd_kv_t *kv;
    int32_t n_ctx;
    int32_t n_vocab;
    int32_t batch_cap;
    pthread_t thread;
    int started;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    req_t *wait_head, *wait_tail; /* mu */
    int32_t n_waiting;            /* mu */
    uint64_t *cancels;            /* mu: ids to cancel */
    int32_t n_cancels, cap_cancels;
    int stop;                     /* mu */
    qd_sched_stats_t stats;       /* mu */
    uint64_t next_id;             /* mu */

    /* engine thread */
    req_t *run_head;
    int32_t n_running;
    uint8_t *slot_used; /* [n_seq_max] */
    int32_t n_slots_used;
    int32_t blocks_reserved;
    qd_batch_t batch;
    req_t **b_req;      /* [batch_cap] owner of each batch entry */
    int32_t *b_choice;  /* [batch_cap] choice index (-1: prompt chunk) */
};

const char *qd_finish_name(qd_finish_t f)
{
    switch (f) {
    case QD_FINISH_STOP:
        return "stop";
    case QD_FINISH_LENGTH:
        return "length";
    case QD_FINISH_CANCELLED:
        return "cancelled";
    }
    return "stop";
}

void qd_sched_params_default(qd_sched_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->n_batch = 256;
    p->n_seq_max = 8;
    p->queue_max = 64;
    p->kv_type = QD_KV_F16;
    p->heartbeat_ms = 1000;
}

static const char damaged_msg[] =
    "model file changed on disk (truncated while in use); the model will "
    "be reloaded from disk";

/* ---- request lifetime -------------------------------------------------- */

static void req_free(req_t *r)
{
    if (!r)
        return;
    if (r->ch) {
        for (int32_t i = 0; i < r->n; i++) {
            qd_sampler_destroy(r->ch[i].smp);
            qd_free(r->ch[i].hold);
            qd_free(r->ch[i].hist);
        }
        qd_free(r->ch);
    }
    for (int32_t i = 0; i < r->n_stop; i++)
        qd_free(r->stop[i]);
    qd_free(r->stop);
    qd_free(r->bias);
    qd_free(r->prompt);
    qd_free(r);
}

static void emit(req_t *r, const qd_event_t *ev) { r->cb(ev, r->ud); }

static void emit_text(req_t *r, int32_t c, const char *text, int32_t len,
                      const qd_sample_t *s)
{
    qd_event_t ev = {.type = QD_EV_TOKEN, .req_id = r->id, .choice = c};
    ev.text = text;
    ev.text_len = len;
    if (s)
        ev.sample = *s;
    else
        ev.sample.tok = -1;
    emit(r, &ev);
}

static void emit_finish(req_t *r, int32_t c, qd_finish_t f)
{
    qd_event_t ev = {.type = QD_EV_FINISH, .req_id = r->id, .choice = c};
    ev.finish = f;
    emit(r, &ev);
}

static void emit_done(req_t *r)
{
    qd_event_t ev = {.type = QD_EV_DONE, .req_id = r->id};
    ev.prompt_tokens = r->n_prompt;
    for (int32_t i = 0; r->ch && i < r->n; i++)
        ev.completion_tokens += r->ch[i].n_gen;
    ev.cached_tokens = r->n_cached;
    ev.queued_ns = r->queued_ns;
    emit(r, &ev);
}

static void emit_error(req_t *r, int err, const char *msg)
{
    qd_event_t ev = {.type = QD_EV_ERROR, .req_id = r->id};
    ev.error = err;
    ev.message = msg;
    emit(r, &ev);
}

/* Give back the request's sequences and reservation (engine thread). With
 * `keep`, the KV is known good: register its full blocks in the prefix
 * cache first. */
static void release_slots(qd_sched_t *s, req_t *r, int keep)
{
    if (!r->ch)
        return;
    for (int32_t i = 0; i < r->n; i++) {
        int32_t seq = r->ch[i].seq;
        if (seq >= 0 && keep && r->ch[i].hist)
            qd_kv_seq_cache(s->kv, seq, r->ch[i].hist,
                            r->n_prompt + r->ch[i].n_gen);
        if (seq >= 0) {
            qd_kv_seq_clear(s->kv, seq);
            s->slot_used[seq] = 0;
            s->n_slots_used--;
            r->ch[i].seq = -1;
        }
    }
    s->blocks_reserved -= r->reserved;
    r->reserved = 0;
}

static void unlink_running(qd_sched_t *s, req_t *r)
{
    for (req_t **pp = &s->run_head; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            s->n_running--;
            return;
        }
    }
}

/* End a running request: events, KV, memory. */
static void finish_running(qd_sched_t *s, req_t *r)
{
    release_slots(s, r, 1);
    unlink_running(s, r);
    emit_done(r);
    req_free(r);
}

/* End a running request with an ERROR; its KV is not kept. */
static void fail_running(qd_sched_t *s, req_t *r, int err, const char *msg)
{
    release_slots(s, r, 0);
    unlink_running(s, r);
    emit_error(r, err, msg);
    req_free(r);
}

/* Detach the whole wait queue (under mu; with drop_cancels, the pending
 * cancellations too); the caller ends its requests. */
static req_t *take_waiting(qd_sched_t *s, int drop_cancels)
{
    pthread_mutex_lock(&s->mu);
    req_t *w = s->wait_head;
    s->wait_head = s->wait_tail = NULL;
    s->n_waiting = 0;
    if (drop_cancels)
        s->n_cancels = 0;
    pthread_mutex_unlock(&s->mu);
    return w;
}

static void cancel_req(req_t *r)
{
    for (int32_t i = 0; r->ch && i < r->n; i++) {
        if (!r->ch[i].done) {
            r->ch[i].done = 1;
            emit_finish(r, i, QD_FINISH_CANCELLED);
        }
    }
    if (!r->ch)
        for (int32_t i = 0; i < r->n; i++)
            emit_finish(r, i, QD_FINISH_CANCELLED);
}

/* ---- submission ------------------------------------------------------- */

static int32_t reserve_blocks(const req_t *r)
{
    int64_t per = ((int64_t)r->n_prompt + r->max_tokens + QD_KV_BLOCK - 1) /
                  QD_KV_BLOCK;
    return (int32_t)QD_MIN(per * r->n, INT32_MAX);
}

int qd_sched_submit(qd_sched_t *s, const qd_gen_params_t *g, qd_event_cb cb,
                    void *userdata, uint64_t *req_id)
{
    if (!g || !cb || g->n_prompt < 1 || !g->prompt || g->max_tokens < 1 ||
        g->n < 1 || g->n > QD_SCHED_MAX_N || g->n > s->p.n_seq_max ||
        g->n_stop < 0 || g->n_stop > QD_SCHED_MAX_STOP ||
        g->top_logprobs < 0 || g->top_logprobs > QD_SAMPLER_MAX_TOP) {
        qd_set_errmsg("sched: invalid generation parameters");
        return QD_EINVAL;
    }
    for (int32_t i = 0; i < g->n_prompt; i++) {
        if (g->prompt[i] < 0 || g->prompt[i] >= s->n_vocab) {
            qd_set_errmsg("sched: prompt token %d at %d outside the vocab",
                          g->prompt[i], i);
            return QD_EINVAL;
        }
    }
    if (qd_model_damaged(s->model)) {
        qd_set_errmsg("%s", damaged_msg);
        return QD_EIO;
    }
    if ((int64_t)g->n_prompt + g->max_tokens > s->n_ctx) {
        qd_set_errmsg("sched: %d prompt + %d new tokens exceed the context "
                      "of %d",
                      g->n_prompt, g->max_tokens, s->n_ctx);
        return QD_ETOOBIG;
    }
    int err = QD_ENOMEM;
    req_t *r = qd_calloc(1, sizeof *r);
    if (!r)
        return QD_ENOMEM;
    r->cb = cb;
    r->ud = userdata;
    r->n_prompt = g->n_prompt;
    r->max_tokens = g->max_tokens;
    r->n = g->n;
    r->logprobs = g->logprobs;
    r->ignore_eos = g->ignore_eos;
    r->sampling = g->sampling;
    r->sampling.n_top_logprobs = g->logprobs ? g->top_logprobs : 0;
    if (!(r->prompt = qd_malloc((size_t)g->n_prompt * sizeof *r->prompt)))
        goto fail;
    memcpy(r->prompt, g->prompt, (size_t)g->n_prompt * sizeof *r->prompt);
    if (g->sampling.n_logit_bias > 0) {
        size_t nb = (size_t)g->sampling.n_logit_bias;
        if (!(r->bias = qd_malloc(nb * sizeof *r->bias)))
            goto fail;
        memcpy(r->bias, g->sampling.logit_bias, nb * sizeof *r->bias);
        r->sampling.logit_bias = r->bias;
    }
    if (g->n_stop) {
        if (!(r->stop = qd_calloc((size_t)g->n_stop, sizeof *r->stop)))
            goto fail;
        for (int32_t i = 0; i < g->n_stop; i++) {
            size_t len = strlen(g->stop[i]);
            if (!len) {
                qd_set_errmsg("sched: empty stop string");
                err = QD_EINVAL;
                goto fail;
            }
            if (!(r->stop[i] = qd_strdup(g->stop[i])))
                goto fail;
            r->n_stop++;
            if ((int32_t)len > r->max_stop_len)
                r->max_stop_len = (int32_t)len;
        }
    }
    r->reserved = 0;
    if (reserve_blocks(r) > qd_kv_blocks_total(s->kv)) {
        qd_set_errmsg("sched: request needs %d KV blocks, the pool has %d",
                      reserve_blocks(r), qd_kv_blocks_total(s->kv));
        err = QD_ETOOBIG;
        goto fail;
    }
    r->submit_ns = qd_now_ns();

    pthread_mutex_lock(&s->mu);
    if (s->stop || s->n_waiting >= s->p.queue_max) {
        pthread_mutex_unlock(&s->mu);
        qd_set_errmsg("sched: queue full (%d waiting)", s->p.queue_max);
        err = QD_EFULL;
        goto fail;
    }
    r->id = ++s->next_id;
    if (s->wait_tail)
        s->wait_tail->next = r;
    else
        s->wait_head = r;
    s->wait_tail = r;
    s->n_waiting++;
    s->stats.queued = s->n_waiting;
    *req_id = r->id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
fail:
    req_free(r);
    return err;
}

void qd_sched_cancel(qd_sched_t *s, uint64_t req_id)
{
    pthread_mutex_lock(&s->mu);
    if (s->n_cancels == s->cap_cancels) {
        int32_t nc = s->cap_cancels ? s->cap_cancels * 2 : 16;
        uint64_t *n = qd_realloc(s->cancels, (size_t)nc * sizeof *n);
        if (!n) {
            /* Keep the request running rather than lose the engine: it
             * ends at max_tokens as usual. */
            pthread_mutex_unlock(&s->mu);
            return;
        }
        s->cancels = n;
        s->cap_cancels = nc;
    }
    s->cancels[s->n_cancels++] = req_id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void qd_sched_stats(qd_sched_t *s, qd_sched_stats_t *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->queued = s->n_waiting;
    pthread_mutex_unlock(&s->mu);
}

int32_t qd_sched_n_ctx(const qd_sched_t *s) { return s->n_ctx; }

/* ---- engine thread ---------------------------------------------------- */

/* Apply pending cancellations (engine thread, mu NOT held on entry). */
static void apply_cancels(qd_sched_t *s)
{
    pthread_mutex_lock(&s->mu);
    int32_t n = s->n_cancels;
    uint64_t ids[64];
    if (n == 0) { /* also: cancels may still be NULL */
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (n > 64)
        n = 64;
    memcpy(ids, s->cancels, (size_t)n * sizeof *ids);
    memmove(s->cancels, s->cancels + n,
            (size_t)(s->n_cancels - n) * sizeof *ids);
    s->n_cancels -= n;
    /* Queued requests are taken out under the lock. */
    req_t *gone = NULL;
    for (int32_t k = 0; k < n; k++) {
        req_t *prev = NULL;
        for (req_t *r = s->wait_head; r; prev = r, r = r->next) {
            if (r->id != ids[k])
                continue;
            if (prev)
                prev->next = r->next;
            else
                s->wait_head = r->next;
            if (s->wait_tail == r)
                s->wait_tail = prev;
            s->n_waiting--;
            r->next = gone;
            gone = r;
            ids[k] = 0;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    while (gone) {
        req_t *r = gone;
        gone = r->next;
        cancel_req(r);
        r->ch = NULL;
        emit_done(r);
        req_free(r);
    }
    for (int32_t k = 0; k < n; k++) {
        if (!ids[k])
            continue;
        for (req_t *r = s->run_head; r; r = r->next) {
            if (r->id == ids[k]) {
                cancel_req(r);
                finish_running(s, r);
                break;
            }
        }
    }
}

/* Set up choices, samplers and sequence slots for an admitted request.
 * Failure ends the request with an ERROR event. */
static int start_req(qd_sched_t *s, req_t *r)
{
    r->ch = qd_calloc((size_t)r->n, sizeof *r->ch);
    if (!r->ch)
        return QD_ENOMEM;
    for (int32_t i = 0; i < r->n; i++)
        r->ch[i].seq = -1;
    for (int32_t i = 0; i < r->n; i++) {
        choice_t *c = &r->ch[i];
        qd_sampling_params_t sp = r->sampling;
        sp.seed = r->sampling.seed + (uint64_t)i;
        int err = qd_sampler_create(&sp, s->n_vocab, &c->smp);
        if (err)
            return err;
        for (int32_t k = 0; k < r->n_prompt; k++)
            qd_sampler_accept(c->smp, r->prompt[k]);
        qd_detok_init(&c->detok, s->tok);
        c->hist = qd_malloc(((size_t)r->n_prompt + (size_t)r->max_tokens) *
                            sizeof *c->hist);
        if (!c->hist)
            return QD_ENOMEM;
        memcpy(c->hist, r->prompt, (size_t)r->n_prompt * sizeof *c->hist);
        for (int32_t seq = 0; seq < s->p.n_seq_max; seq++) {
            if (!s->slot_used[seq]) {
                s->slot_used[seq] = 1;
                s->n_slots_used++;
                c->seq = seq;
                break;
            }
        }
        qd_kv_seq_clear(s->kv, c->seq);
    }
    int32_t got = qd_kv_seq_adopt(s->kv, r->ch[0].seq, r->prompt,
                                  r->n_prompt - 1);
    if (got > 0) {
        r->n_cached = got;
        r->n_prefilled = got;
        r->ch[0].n_pos = got;
    }
    pthread_mutex_lock(&s->mu);
    s->stats.tokens_cached += (uint64_t)r->n_cached;
    pthread_mutex_unlock(&s->mu);
    r->reserved = reserve_blocks(r);
    s->blocks_reserved += r->reserved;
    r->state = REQ_PREFILL;
    r->queued_ns = qd_now_ns() - r->submit_ns;
    return 0;
}

/* Admit waiting requests, oldest first, while they fit. */
static void admit(qd_sched_t *s)
{
    int32_t total = qd_kv_blocks_total(s->kv);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        req_t *r = s->wait_head;
        if (!r || s->n_slots_used + r->n > s->p.n_seq_max ||
            s->blocks_reserved + reserve_blocks(r) > total) {
            pthread_mutex_unlock(&s->mu);
            return;
        }
        s->wait_head = r->next;
        if (!s->wait_head)
            s->wait_tail = NULL;
        s->n_waiting--;
        pthread_mutex_unlock(&s->mu);

        r->next = NULL;
        int err = start_req(s, r);
        if (err) {
            release_slots(s, r, 0);
            emit_error(r, err, "could not start the request (sampler)");
            req_free(r);
            continue;
        }
        /* Append to keep FCFS order for prefill. */
        req_t **pp = &s->run_head;
        while (*pp)
            pp = &(*pp)->next;
        *pp = r;
        s->n_running++;
    }
}

static int hold_append(choice_t *c, const char *t, int32_t n)
{
    if (c->n_hold + n + 1 > c->cap_hold) {
        int32_t nc = QD_MAX(c->cap_hold * 2, c->n_hold + n + 64);
        char *h = qd_realloc(c->hold, (size_t)nc);
        if (!h)
            return QD_ENOMEM;
        c->hold = h;
        c->cap_hold = nc;
    }
    if (n > 0)
        memcpy(c->hold + c->n_hold, t, (size_t)n);
    c->n_hold += n;
    c->hold[c->n_hold] = '\0';
    return 0;
}

/* Earliest stop-string match in the held text (-1 if none). */
static int32_t find_stop(const req_t *r, const choice_t *c)
{
    int32_t best = -1;
    for (int32_t i = 0; i < r->n_stop; i++) {
        const char *m = memmem(c->hold, (size_t)c->n_hold, r->stop[i],
                               strlen(r->stop[i]));
        if (m && (best < 0 || m - c->hold < best))
            best = (int32_t)(m - c->hold);
    }
    return best;
}

/* Length of the longest suffix of the held text that begins a stop
 * string: that much must wait for the next token. */
static int32_t stop_prefix_len(const req_t *r, const choice_t *c)
{
    int32_t keep = 0;
    for (int32_t i = 0; i < r->n_stop; i++) {
        int32_t sl = (int32_t)strlen(r->stop[i]);
        for (int32_t k = QD_MIN(sl - 1, c->n_hold); k > keep; k--) {
            if (!memcmp(c->hold + c->n_hold - k, r->stop[i], (size_t)k)) {
                keep = k;
                break;
            }
        }
    }
    return keep;
}

static void release_held(req_t *r, int32_t ci, int32_t n,
                         const qd_sample_t *smp)
{
    choice_t *c = &r->ch[ci];
    emit_text(r, ci, c->hold, n, smp);
    if (c->n_hold > n)
        memmove(c->hold, c->hold + n, (size_t)(c->n_hold - n));
    c->n_hold -= n;
    if (c->hold)
        c->hold[c->n_hold] = '\0';
}

static void flush_detok(req_t *r, choice_t *c)
{
    char buf[64];
    int n = qd_detok_flush(&c->detok, buf, (int)sizeof buf);
    if (n > 0 && hold_append(c, buf, QD_MIN(n, (int)sizeof buf)))
        r->oom = 1;
}

/* A choice sampled `smp`: emit text, decide whether it ends. */
static void on_sample(qd_sched_t *s, req_t *r, int32_t ci,
                      const qd_sample_t *smp)
{
    choice_t *c = &r->ch[ci];
    int32_t tok = smp->tok;
    c->hist[r->n_prompt + c->n_gen] = tok;
    c->n_gen++;
    qd_sampler_accept(c->smp, tok);
    if (!r->ignore_eos && qd_tokenizer_is_eog(s->tok, tok)) {
        flush_detok(r, c);
        if (r->oom)
            return;
        if (c->n_hold)
            release_held(r, ci, c->n_hold, NULL);
        c->done = 1;
        emit_finish(r, ci, QD_FINISH_STOP);
        return;
    }
    char piece[256];
    int n = qd_detok_push(&c->detok, s->tok, tok, piece, (int)sizeof piece);
    if (n > 0 && hold_append(c, piece, QD_MIN(n, (int)sizeof piece))) {
        /* Dropping the text would end the choice with a silently short
         * answer: the whole request fails instead (see step). */
        r->oom = 1;
        return;
    }
    int32_t at = find_stop(r, c);
    if (at >= 0) {
        c->n_hold = at;
        release_held(r, ci, at, smp);
        c->done = 1;
        emit_finish(r, ci, QD_FINISH_STOP);
        return;
    }
    if (c->n_gen >= r->max_tokens || c->n_pos >= s->n_ctx) {
        flush_detok(r, c);
        if (r->oom)
            return;
        release_held(r, ci, c->n_hold, smp);
        c->done = 1;
        emit_finish(r, ci, QD_FINISH_LENGTH);
        return;
    }
    release_held(r, ci, c->n_hold - stop_prefix_len(r, c), smp);
    c->last_tok = tok;
}

static int all_done(const req_t *r)
{
    for (int32_t i = 0; i < r->n; i++)
        if (!r->ch[i].done)
            return 0;
    return 1;
}

static void batch_add(qd_sched_t *s, req_t *r, int32_t choice, int32_t tok,
                      int32_t pos, int32_t seq, int logits)
{
    qd_batch_t *b = &s->batch;
    int32_t j = b->n_tokens++;
    b->toks[j] = tok;
    b->pos[j] = pos;
    b->seq[j] = seq;
    b->logits[j] = (int8_t)logits;
    s->b_req[j] = r;
    s->b_choice[j] = choice;
}

static void update_stats(qd_sched_t *s);

/* The model's file shrank under its mapping (qd_model_damaged): whatever
 * the last forward pass computed is garbage. End every running and queued
 * request with an ERROR (QD_EIO); new submissions are refused, and the
 * pool unloads the model once its users are gone. */
static void fail_all(qd_sched_t *s)
{
    while (s->run_head)
        fail_running(s, s->run_head, QD_EIO, damaged_msg);
    req_t *w = take_waiting(s, 1);
    while (w) {
        req_t *r = w;
        w = r->next;
        emit_error(r, QD_EIO, damaged_msg);
        req_free(r);
    }
    update_stats(s);
}

/* One scheduling step. Returns 1 if a forward pass ran. */
static int step(qd_sched_t *s)
{
    if (qd_model_damaged(s->model)) {
        fail_all(s);
        return 0;
    }
    apply_cancels(s);
    admit(s);
    qd_batch_t *b = &s->batch;
    b->n_tokens = 0;
    for (req_t *r = s->run_head; r; r = r->next) {
        if (r->state != REQ_DECODE)
            continue;
        for (int32_t i = 0; i < r->n; i++) {
            choice_t *c = &r->ch[i];
            if (!c->done)
                batch_add(s, r, i, c->last_tok, c->n_pos, c->seq, 1);
        }
    }
    int32_t budget = s->batch_cap - b->n_tokens;
    int32_t n_prefill = 0;
    for (req_t *r = s->run_head; r && budget > 0; r = r->next) {
        if (r->state != REQ_PREFILL)
            continue;
        int32_t chunk = QD_MIN(budget, r->n_prompt - r->n_prefilled);
        for (int32_t k = 0; k < chunk; k++) {
            int32_t pos = r->n_prefilled + k;
            batch_add(s, r, -1, r->prompt[pos], pos, r->ch[0].seq,
                      pos == r->n_prompt - 1);
        }
        r->n_prefilled += chunk;
        budget -= chunk;
        n_prefill += chunk;
    }
    if (b->n_tokens == 0) {
        update_stats(s);
        return 0;
    }

    int err = qd_ctx_decode(s->ctx, b);
    if (qd_model_damaged(s->model)) {
        QD_ERROR("sched", "%s", damaged_msg);
        fail_all(s);
        return 1;
    }
    if (err) {
        char msg[300];
        snprintf(msg, sizeof msg, "forward pass failed: %s (%s)",
                 qd_strerror(err), qd_errmsg());
        QD_ERROR("sched", "%s", msg);
        /* Every request in the batch is now in an unknown state. */
        for (int32_t j = 0; j < b->n_tokens; j++) {
            req_t *r = s->b_req[j];
            if (!r)
                continue;
            for (int32_t k = j; k < b->n_tokens; k++)
                if (s->b_req[k] == r)
                    s->b_req[k] = NULL;
            fail_running(s, r, err, msg);
        }
        return 1;
    }

    /* Positions now in the cache. */
    for (int32_t j = 0; j < b->n_tokens; j++) {
        if (s->b_choice[j] >= 0)
            s->b_req[j]->ch[s->b_choice[j]].n_pos++;
        else
            s->b_req[j]->ch[0].n_pos = b->pos[j] + 1;
    }
    int32_t row = 0;
    uint64_t n_out = 0;
    for (int32_t j = 0; j < b->n_tokens; j++) {
        if (!b->logits[j])
            continue;
        const float *logits = qd_ctx_logits(s->ctx, row++);
        req_t *r = s->b_req[j];
        qd_sample_t smp;
        if (s->b_choice[j] >= 0) {
            int32_t ci = s->b_choice[j];
            if (qd_sampler_sample(r->ch[ci].smp, logits, &smp) == 0) {
                on_sample(s, r, ci, &smp);
                n_out++;
            }
            continue;
        }
        /* Last prompt token: fork the prompt's KV to the other choices
         * and draw each choice's first token from the same row. */
        r->state = REQ_DECODE;
        qd_kv_seq_cache(s->kv, r->ch[0].seq, r->prompt, r->n_prompt);
        for (int32_t i = 1; i < r->n; i++) {
            choice_t *c = &r->ch[i];
            if (qd_kv_seq_fork(s->kv, c->seq, r->ch[0].seq, r->n_prompt)) {
                c->done = 1;
                emit_finish(r, i, QD_FINISH_LENGTH);
                continue;
            }
            c->n_pos = r->n_prompt;
        }
        for (int32_t i = 0; i < r->n; i++) {
            if (r->ch[i].done)
                continue;
            if (qd_sampler_sample(r->ch[i].smp, logits, &smp) == 0) {
                on_sample(s, r, i, &smp);
                n_out++;
            }
        }
    }
    /* Retire finished requests; fail those that ran out of memory. */
    for (req_t *r = s->run_head, *next; r; r = next) {
        next = r->next;
        if (r->oom)
            fail_running(s, r, QD_ENOMEM, "out of memory while generating");
        else if (r->state == REQ_DECODE && all_done(r)) {
            finish_running(s, r);
        }
    }
    pthread_mutex_lock(&s->mu);
    s->stats.steps++;
    s->stats.tokens_in += (uint64_t)n_prefill;
    s->stats.tokens_out += n_out;
    pthread_mutex_unlock(&s->mu);
    update_stats(s);
    return 1;
}

static void update_stats(qd_sched_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->stats.running = s->n_running;
    s->stats.seqs_used = s->n_slots_used;
    s->stats.kv_blocks_total = qd_kv_blocks_total(s->kv);
    s->stats.kv_blocks_used =
        s->stats.kv_blocks_total - qd_kv_blocks_free(s->kv);
    s->stats.kv_blocks_cached = qd_kv_blocks_cached(s->kv);
    pthread_mutex_unlock(&s->mu);
}

static void *engine_main(void *arg)
{
    qd_sched_t *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && !s->wait_head && !s->run_head && !s->n_cancels) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ms = s->p.heartbeat_ms > 0 ? s->p.heartbeat_ms : 1000;
            ts.tv_sec += ms / 1000;
            ts.tv_nsec += (ms % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            if (s->p.heartbeat) {
                pthread_mutex_unlock(&s->mu);
                s->p.heartbeat(s->p.heartbeat_ud);
                pthread_mutex_lock(&s->mu);
            }
        }
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        step(s);
        if (s->p.heartbeat)
            s->p.heartbeat(s->p.heartbeat_ud);
    }
    /* Shutdown: everything still queued or running is cancelled. */
    req_t *w = take_waiting(s, 0);
    while (w) {
        req_t *r = w;
        w = r->next;
        cancel_req(r);
        emit_done(r);
        req_free(r);
    }
    while (s->run_head) {
        req_t *r = s->run_head;
        cancel_req(r);
        finish_running(s, r);
    }
    return NULL;
}

int qd_sched_create(const qd_model_t *m, const qd_sched_params_t *p,
                    qd_sched_t **out)
{
    *out = NULL;
    if (p->n_batch < 1 || p->n_seq_max < 1 || p->queue_max < 0) {
        qd_set_errmsg("sched: n_batch and n_seq_max must be >= 1");
        return QD_EINVAL;
    }
    qd_sched_t *s = qd_calloc(1, sizeof *s);
    if (!s)
        return QD_ENOMEM;
    int err = QD_ENOMEM;
    s->model = m;
    s->tok = qd_model_tokenizer(m);
    s->p = *p;
    /* Sample only ids the tokenizer knows: checkpoints often pad the
     * embedding past the vocabulary (Qwen2.5: 151936 rows, 151665 ids). */
    s->n_vocab = QD_MIN(qd_model_hparams(m)->n_vocab,
                        qd_tokenizer_n_vocab(s->tok));
    s->batch_cap = QD_MAX(p->n_batch, p->n_seq_max);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);

    qd_ctx_params_t cp;
    qd_ctx_params_default(&cp);
    cp.n_batch = s->batch_cap;
    cp.n_seq_max = p->n_seq_max;
    cp.n_ctx = p->n_ctx;
    cp.kv_bytes = p->kv_bytes;
    cp.kv_type = p->kv_type;
    cp.n_threads = p->n_threads;
    if ((err = qd_ctx_create(m, &cp, &s->ctx)))
        goto fail;
    err = QD_ENOMEM;
    s->kv = qd_ctx_kv(s->ctx);
    s->n_ctx = p->n_ctx > 0 ? p->n_ctx : qd_model_hparams(m)->n_ctx_train;
    size_t cap = (size_t)s->batch_cap;
    s->batch.toks = qd_calloc(cap, sizeof *s->batch.toks);
    s->batch.pos = qd_calloc(cap, sizeof *s->batch.pos);
    s->batch.seq = qd_calloc(cap, sizeof *s->batch.seq);
    s->batch.logits = qd_calloc(cap, sizeof *s->batch.logits);
    s->b_req = qd_calloc(cap, sizeof *s->b_req);
    s->b_choice = qd_calloc(cap, sizeof *s->b_choice);
    s->slot_used = qd_calloc((size_t)p->n_seq_max, 1);
    if (!s->batch.toks || !s->batch.pos || !s->batch.seq ||
        !s->batch.logits || !s->b_req || !s->b_choice || !s->slot_used)
        goto fail;
    s->stats.kv_blocks_total = qd_kv_blocks_total(s->kv);
    if (pthread_create(&s->thread, NULL, engine_main, s)) {
        qd_set_errmsg("sched: cannot start the engine thread");
        err = QD_EINTERNAL;
        goto fail;
    }
    s->started = 1;
    *out = s;
    return 0;
fail:
    qd_sched_destroy(s);
    return err;
}

void qd_sched_destroy(qd_sched_t *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    qd_ctx_free(s->ctx);
    qd_free(s->batch.toks);
    qd_free(s->batch.pos);
    qd_free(s->batch.seq);
    qd_free(s->batch.logits);
    qd_free(s->b_req);
    qd_free(s->b_choice);
    qd_free(s->slot_used);
    qd_free(s->cancels);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    qd_free(s);
}
