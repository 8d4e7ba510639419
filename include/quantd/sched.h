/*
 * sched.h — one model's scheduler: admission, continuous batching, chunked
 * prefill, stop conditions and cancellation, on the model's engine thread.
 *
 * qd_sched_create() starts the engine thread. Callers on any thread submit
 * generation requests (already tokenized) and cancel them; each step the
 * engine thread builds one qd_batch_t holding one decode token of every
 * running sequence plus prefill chunks of admitted ones (FCFS, within the
 * per-step token budget n_batch), runs the forward pass, samples, and
 * reports through the request's event callback.
 *
 * Events are delivered ON THE ENGINE THREAD; the callback must be short and
 * must not call back into the scheduler (the API copies events into a
 * locked queue and wakes its loop). Every request receives exactly one
 * final event (DONE or ERROR), after which the scheduler never touches its
 * userdata again — also after qd_sched_cancel() and qd_sched_destroy().
 */
#ifndef QUANTD_SCHED_H
#define QUANTD_SCHED_H

#include <stdint.h>

#include "quantd/engine.h"
#include "quantd/sampler.h"

#define QD_SCHED_MAX_STOP 16
#define QD_SCHED_MAX_N 128

typedef struct {
    int32_t n_batch;   /* tokens per step (decode + prefill chunks) */
    int32_t n_seq_max; /* concurrent sequences (each choice is one) */
    int32_t queue_max; /* waiting requests before QD_EFULL */
    int32_t n_ctx;     /* positions per sequence (0: model's) */
    size_t kv_bytes;   /* KV pool budget (0: n_ctx * n_seq_max) */
    qd_kv_type_t kv_type;
    int32_t n_threads; /* compute threads (0: physical cores) */
    /* Called on the engine thread after every step and at least every
     * `heartbeat_ms` while idle (systemd watchdog); may be NULL. */
    void (*heartbeat)(void *ud);
    void *heartbeat_ud;
    int32_t heartbeat_ms;
} qd_sched_params_t;

void qd_sched_params_default(qd_sched_params_t *p);

typedef struct {
    const int32_t *prompt; /* copied at submit */
    int32_t n_prompt;      /* >= 1 */
    int32_t max_tokens;    /* >= 1, per choice */
    int32_t n;             /* choices, 1..QD_SCHED_MAX_N */
    qd_sampling_params_t sampling; /* choice i uses seed + i */
    const char *const *stop; /* n_stop non-empty strings, copied */
    int32_t n_stop;
    int logprobs;            /* 1: report each token's logprob */
    int32_t top_logprobs;    /* 0..QD_SAMPLER_MAX_TOP */
    int ignore_eos;          /* 1: EOG tokens do not stop generation */
} qd_gen_params_t;

typedef enum {
    QD_FINISH_STOP = 0,  /* EOG token or stop string */
    QD_FINISH_LENGTH,    /* max_tokens or context full */
    QD_FINISH_CANCELLED,
} qd_finish_t;

const char *qd_finish_name(qd_finish_t f); /* "stop" | "length" | ... */

typedef enum {
    QD_EV_TOKEN = 0, /* one sampled token of a choice (text may be empty) */
    QD_EV_FINISH,    /* a choice ended (finish) */
    QD_EV_DONE,      /* the whole request ended (final) */
    QD_EV_ERROR,     /* the request failed (final) */
} qd_event_type_t;

typedef struct {
    qd_event_type_t type;
    uint64_t req_id;
    int32_t choice;
    /* TOKEN: text released by this token (complete UTF-8; text held back
     * as a possible stop-string prefix comes out with a later token). The
     * pointer is valid only during the callback. */
    const char *text;
    int32_t text_len;
    qd_sample_t sample; /* TOKEN: id, logprob, top logprobs (if asked) */
    /* FINISH */
    qd_finish_t finish;
    /* DONE: usage over all choices */
    int32_t prompt_tokens;
    int32_t completion_tokens;
    int32_t cached_tokens;
    uint64_t queued_ns;     /* time from submit to first scheduled step */
    /* ERROR */
    int error;              /* QD_E* */
    const char *message;
} qd_event_t;

typedef void (*qd_event_cb)(const qd_event_t *ev, void *userdata);

typedef struct qd_sched qd_sched_t;

typedef struct {
    int32_t queued;      /* waiting for admission */
    int32_t running;     /* admitted requests */
    int32_t seqs_used;   /* sequence slots in use */
    uint64_t steps;      /* forward steps run since start */
    uint64_t tokens_in;  /* prompt tokens processed */
    uint64_t tokens_out; /* tokens generated */
    int32_t kv_blocks_used;
    int32_t kv_blocks_total;
    int32_t kv_blocks_cached; /* idle blocks kept by the prefix cache */
    uint64_t tokens_cached;   /* prompt tokens adopted from the cache */
} qd_sched_stats_t;

/* Create the context and start the engine thread. The model must outlive
 * the scheduler. */
int qd_sched_create(const qd_model_t *m, const qd_sched_params_t *p,
                    qd_sched_t **out);
/* Cancel everything still running (each gets its final event), join the
 * engine thread, free. NULL is a no-op. */
void qd_sched_destroy(qd_sched_t *s);

/*
 * Queue a request. 0 and *req_id on success; QD_EFULL if the queue is full;
 * QD_EINVAL for bad parameters (qd_errmsg says which); QD_ETOOBIG if the
 * prompt plus max_tokens can never fit the context or the KV pool;
 * QD_EIO if the model file was truncated under its mapping
 * (qd_model_damaged: running requests then end with ERROR QD_EIO too).
 */
int qd_sched_submit(qd_sched_t *s, const qd_gen_params_t *g, qd_event_cb cb,
                    void *userdata, uint64_t *req_id);
/* Ask a request to stop; takes effect at the next step (queued, prefilling
 * or decoding), frees its KV and ends it with FINISH(cancelled) for each
 * unfinished choice + DONE. Unknown or finished ids are ignored. */
void qd_sched_cancel(qd_sched_t *s, uint64_t req_id);
void qd_sched_stats(qd_sched_t *s, qd_sched_stats_t *out);
/* Positions per sequence this scheduler runs with. */
int32_t qd_sched_n_ctx(const qd_sched_t *s);

#endif /* QUANTD_SCHED_H */
