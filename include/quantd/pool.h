/*
 * pool.h — the model pool: several configured models ([model.NAME]
 * sections), each loaded on its first request with its own scheduler,
 * unloaded when idle, within a memory budget.
 *
 * Every model's footprint is estimated from its GGUF header when it is
 * added (tensor bytes + KV cache + forward-pass buffers), so a model that
 * can never fit the budget is refused at configuration time and a load
 * that does not fit now first unloads idle models, least recently used
 * first, and fails with QD_EBUSY if models in use hold the memory.
 *
 * Threading: all functions may be called from any thread; one mutex
 * guards the table. qd_modelpool_acquire() of a model that is not loaded
 * loads it (with the mutex released, so the other functions do not wait
 * for it) and can block for the load time: call it from a worker thread,
 * not the event loop; qd_modelpool_try_acquire() never loads or waits.
 * Unloading an idle model (reap, or to make room) joins its scheduler's
 * idle engine thread under the mutex.
 */
#ifndef QUANTD_POOL_H
#define QUANTD_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/sched.h"

#define QD_MODELPOOL_MAX_MODELS 16

typedef struct {
    size_t mem_budget;        /* bytes for all loaded models; 0: no limit */
    uint64_t idle_unload_ms;  /* unload after this long unused; 0: never */
} qd_modelpool_params_t;

typedef struct {
    const char *name;         /* copied */
    const char *path;         /* GGUF file, copied */
    qd_sched_params_t sched;  /* scheduler of this model */
    int pin;                  /* 1: never unloaded for idleness or room */
} qd_modelpool_model_params_t;

typedef struct qd_modelpool qd_modelpool_t;

int qd_modelpool_create(const qd_modelpool_params_t *p, qd_modelpool_t **out);
/* Unload everything; no model may be acquired any more. NULL: no-op. */
void qd_modelpool_destroy(qd_modelpool_t *pool);

/*
 * Bytes a model will take when loaded with these scheduler parameters,
 * estimated from the GGUF header alone (nothing is loaded): all tensor
 * data, the KV pool and the forward pass's per-batch buffers.
 */
int qd_modelpool_estimate(const char *path, const qd_sched_params_t *sp,
                     size_t *bytes);

/* Add a model (not loaded yet). QD_EINVAL: duplicate name; QD_EFULL: too
 * many models; header errors as from qd_gguf_open. QD_ETOOBIG: its
 * estimate exceeds the whole budget: it is still listed (info says
 * `refused`, with its estimate) but every acquire fails with QD_ETOOBIG. */
int qd_modelpool_add(qd_modelpool_t *pool, const qd_modelpool_model_params_t *mp);

/* What the GGUF header of a model says (filled at add time). */
typedef struct {
    int64_t n_ctx;          /* positions per sequence it will run with */
    size_t kv_bytes;        /* KV pool bytes in the estimate */
    double bits_per_weight; /* over all tensors */
    char quant[24];         /* dominant matrix type ("Q4_K", "F16") */
} qd_modelpool_header_t;

/*
 * Take a reference on model `name`, loading it (and starting its
 * scheduler) if needed; *sched stays valid until the matching
 * qd_modelpool_release(). QD_ENOTFOUND: unknown name; QD_ETOOBIG: refused
 * at add time; QD_EBUSY: not enough
 * budget left even after unloading every idle model; QD_EIO: the loaded
 * model's file was truncated under its mapping and requests still use it
 * (unused, it is unloaded and reloaded here); load errors as from
 * qd_model_load / qd_sched_create.
 */
int qd_modelpool_acquire(qd_modelpool_t *pool, const char *name, qd_sched_t **sched);
/* Take a reference only if the model is loaded now (never loads, never
 * waits for a load): 0, QD_EAGAIN (not loaded or loading; a damaged
 * unused model is unloaded first), QD_EIO (damaged, still in use),
 * QD_ENOTFOUND.
 * *model and *sched stay valid until the matching release. */
int qd_modelpool_try_acquire(qd_modelpool_t *pool, const char *name,
                             qd_sched_t **sched, const qd_model_t **model);
void qd_modelpool_release(qd_modelpool_t *pool, const char *name);

/* Unload unpinned models unused for idle_unload_ms as of now_ns
 * (qd_now_ns clock), and unused models whose file was truncated under
 * their mapping (qd_model_damaged). Returns how many were unloaded. */
int qd_modelpool_reap(qd_modelpool_t *pool, uint64_t now_ns);

typedef struct {
    int loaded;
    int loading;            /* a thread is loading it now */
    int pinned;
    int refused;            /* can never fit the budget (see add) */
    int32_t users;
    size_t estimate_bytes;
    uint64_t last_used_ns;
    uint64_t loads;         /* completed loads (changes on every reload) */
    qd_modelpool_header_t header;
    int32_t n_ctx;          /* the scheduler's if loaded, else header's */
    char arch[32];          /* architecture of the last load; "" before */
    /* loaded only: */
    size_t weight_bytes;    /* tensor data of the loaded model */
    qd_sched_stats_t stats; /* of its scheduler */
} qd_modelpool_model_info_t;

/* QD_ENOTFOUND if unknown. */
int qd_modelpool_info(qd_modelpool_t *pool, const char *name,
                 qd_modelpool_model_info_t *out);
/* Sum of the estimates of the loaded models. */
size_t qd_modelpool_bytes_loaded(qd_modelpool_t *pool);

#endif /* QUANTD_POOL_H */
