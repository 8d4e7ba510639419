/*
 * matmul.c — batched matrix products over the compute pool.
 *
 * Phase 1: each thread quantizes a share of the n_tok activation rows to the
 * weight type's vec_dot_type (Q8_0, Q8_1, Q8_K, F16 …) into scratch; when
 * the tiled path will run, it also unpacks them (qd__tile_act: int8 values
 * contiguous, per subblock the scale, the scaled sum and the offset
 * correction ti), or a kernel set lays them out its own way (prefers_act).
 * Phase 2: the threads take chunks of weight rows (multiples of 32 rows)
 * and compute every activation row against them, so a weight row is
 * streamed from memory once per batch, whatever n_tok is. Each thread
 * owns a contiguous stretch of chunks and takes its own first, in order
 * (one stream of weights for the hardware prefetcher, and a start that
 * qd_matmul_hint can name in advance), then helps with the others'.
 * Each output element is computed by one thread in a fixed order, so the
 * result does not depend on the number of threads.
 *
 * Scratch layout: n_tok activation rows (64-aligned stride), then for the
 * tiled path n_tok*n_cols int8 values, then ta, tb and ti (n_tok*n_cols/16
 * floats or int32 each, at most).
 */
#include <stdatomic.h>
#include <string.h>

#include "quant/kernels.h"
#include "quantd/common.h"
#include "quantd/compute.h"

static size_t act_row_bytes(const qd_qmat_t *w)
{
    const qd_type_traits_t *tr = qd_type_traits(w->type);
    return QD_ALIGN_UP(qd_row_size(tr->vec_dot_type, w->n_cols), 64);
}

static size_t tile_bytes(const qd_qmat_t *w, int n_tok)
{
    if (!qd__tile_sub(w->type))
        return 0;
    size_t n = (size_t)(n_tok > 0 ? n_tok : 1);
    size_t qs = QD_ALIGN_UP(n * (size_t)w->n_cols, 64);
    size_t t = QD_ALIGN_UP(n * (size_t)(w->n_cols / 16) * sizeof(float), 64);
    return qs + 3 * t;
}

/* BF16 path: n_tok rows of bf16 values, padded to a multiple of 16. */
static size_t bf16_bytes(const qd_qmat_t *w, int n_tok)
{
    if (!qd__tile_sub(w->type) || w->n_cols % 32)
        return 0;
    size_t n = QD_ALIGN_UP((size_t)(n_tok > 0 ? n_tok : 1), 16);
    return QD_ALIGN_UP(n * (size_t)w->n_cols * 2, 64);
}

size_t qd_matmul_scratch_bytes(const qd_qmat_t *w, int n_tok)
{
    size_t n = (size_t)(n_tok > 0 ? n_tok : 1);
    size_t pref = n * QD_ALIGN_UP(QD_PREFERS_ACT_BYTES(w->n_cols), 64);
    size_t a = act_row_bytes(w) * n + QD_MAX(tile_bytes(w, n_tok), pref);
    return QD_MAX(a, bf16_bytes(w, n_tok));
}

#define MAX_W 4
/* Owners of chunk stretches; with more threads than this, threads share. */
#define MAX_OWN 64
/* Bytes of its first chunks a thread is asked to prefetch (qd_matmul_hint):
 * what a waiting thread can fetch between two phases of a decode step,
 * well inside a core's L2. */
#define HINT_BYTES (256 << 10)

typedef struct {
    _Alignas(64) atomic_llong next; /* next chunk of this stretch to hand out */
} own_ctr_t;

/* How one phase over matrices ws[0..n_w) is cut for nth threads: chunks
 * of ch rows (a multiple of 32), nc of them over all the matrices in
 * order; G stretches, stretch g being chunks [stretch_lo(g),
 * stretch_lo(g+1)); and whether the pool runs it at all (below about
 * 2^18 multiply-adds, tens of microseconds, a pool hand-off costs more
 * than it saves: small models' matrices run on the caller). */
typedef struct {
    int64_t ch, nc;
    int G, pooled;
} plan_t;

typedef struct {
    int n_w;
    plan_t pl;
    const qd_qmat_t *ws[MAX_W]; /* the activation format follows ws[0] */
    float *outs[MAX_W];
    int64_t ldos[MAX_W];
    const float *x;
    int64_t ldx;
    int n_tok;
    uint8_t *act;
    size_t act_stride;
    const qd_kernels_t *k;
    int tiled;
    uint8_t *pact;      /* the kernel set's own layout (prefers_act) or NULL */
    size_t pact_stride;
    uint16_t *bf;   /* bf16 path: blocked bf16 activations */
    int8_t *qs;     /* tiled: n_tok x n_cols */
    float *ta, *tb; /* tiled: n_tok x (n_cols / S) */
    int32_t *ti;    /* tiled: n_tok x (n_cols / S) */
    own_ctr_t own[MAX_OWN];
} matmul_job_t;

/* The plan of ws[0..n_w) x n_tok over nth threads. Chunks: about 4 per
 * thread, fine enough to even out a slowed thread, coarse enough that
 * per-call set-up (the decode dots unpack the activation once per call)
 * stays small. */
static plan_t plan_of(int n_w, const qd_qmat_t *const ws[], int n_tok, int nth)
{
    plan_t p = {0};
    int64_t rows = 0;
    double macs = 0;
    for (int i = 0; i < n_w; i++) {
        rows += ws[i]->n_rows;
        macs += (double)ws[i]->n_rows * (double)ws[i]->n_cols * n_tok;
    }
    p.ch = (int64_t)QD_ALIGN_UP((size_t)QD_MAX(rows / (4 * QD_MAX(nth, 1)), 1), 32);
    for (int i = 0; i < n_w; i++)
        p.nc += (ws[i]->n_rows + p.ch - 1) / p.ch;
    p.G = QD_MIN(QD_MAX(nth, 1), MAX_OWN);
    p.pooled = nth > 1 && macs >= (double)(1 << 18);
    return p;
}

static int64_t stretch_lo(const plan_t *p, int g) { return (int64_t)g * p->nc / p->G; }

/* Chunk c of matrices ws[0..n_w) in chunks of ch rows: its matrix (return
 * value; n_w when c is past the end) and first row. */
static int chunk_at(const qd_qmat_t *const ws[], int n_w, int64_t ch, int64_t c,
                    int64_t *r0)
{
    int64_t base = 0;
    for (int i = 0; i < n_w; i++) {
        int64_t nc = (ws[i]->n_rows + ch - 1) / ch;
        if (c < base + nc) {
            *r0 = (c - base) * ch;
            return i;
        }
        base += nc;
    }
    return n_w;
}

static void quantize_phase(void *v, int ith, int nth)
{
    matmul_job_t *j = v;
    const qd_qmat_t *w = j->ws[0];
    qd_type_t at = qd_type_traits(w->type)->vec_dot_type;
    int64_t ns = j->tiled ? w->n_cols / qd__tile_sub(w->type) : 0;
    if (j->bf) {
        int64_t nc = w->n_cols / 32;
        for (int t = ith; t < j->n_tok; t += nth)
            j->k->act_bf16(j->x + (int64_t)t * j->ldx, w->n_cols,
                           j->bf + ((size_t)(t / 16) * (size_t)nc * 512 + (size_t)(t % 16) * 32));
        return;
    }
    for (int t = ith; t < j->n_tok; t += nth) {
        uint8_t *a = j->act + (size_t)t * j->act_stride;
        j->k->from_float(at, j->x + (int64_t)t * j->ldx, a, w->n_cols);
        if (j->pact)
            j->k->prefers_act(w->type, a, w->n_cols, j->pact + (size_t)t * j->pact_stride);
        if (j->tiled)
            qd__tile_act(w->type, a, w->n_cols, j->qs + (size_t)t * w->n_cols,
                         j->ta + t * ns, j->tb + t * ns, j->ti + t * ns);
    }
}

static void dot_rows(const matmul_job_t *j, const qd_qmat_t *w, float *out,
                     int64_t ldo, int64_t r0, int64_t r1)
{
    if (j->bf)
        j->k->gemm_bf16(w, r0, r1, j->bf, j->n_tok, out, ldo);
    else if (j->tiled)
        j->k->gemm_tiled(w, r0, r1, j->qs, j->ta, j->tb, j->ti, j->n_tok, out, ldo);
    else if (j->pact)
        j->k->gemm(w, r0, r1, j->pact, j->pact_stride, j->n_tok, out, ldo);
    else
        j->k->gemm(w, r0, r1, j->act, j->act_stride, j->n_tok, out, ldo);
}

/* The rows of all the job's matrices, in chunks of j->pl.ch rows. Thread
 * ith takes the chunks of its own stretch first, in order, from the
 * stretch's atomic counter, then those left in the other stretches: a
 * thread that is slowed (by the OS, or by slower memory) ends up with
 * fewer chunks instead of making the other wait. Each output row is
 * computed by one call in a fixed order whoever takes its chunk, so the
 * result does not depend on the thread count. */
static void dot_phase(void *v, int ith, int nth)
{
    matmul_job_t *j = v;
    (void)nth;
    const plan_t *pl = &j->pl;
    for (int d = 0; d < pl->G; d++) {
        int g = (ith + d) % pl->G;
        int64_t hi = stretch_lo(pl, g + 1);
        for (;;) {
            int64_t c = atomic_fetch_add_explicit(&j->own[g].next, 1, memory_order_relaxed);
            if (c >= hi)
                break;
            int64_t r0 = 0;
            int i = chunk_at(j->ws, j->n_w, pl->ch, c, &r0);
            const qd_qmat_t *w = j->ws[i];
            dot_rows(j, w, j->outs[i], j->ldos[i], r0, QD_MIN(r0 + pl->ch, w->n_rows));
        }
    }
}

enum { MODE_DIRECT, MODE_TILED, MODE_BF16 };

/* The path kernel set k takes for n_tok activation rows of w. */
static int mode_of(const qd_kernels_t *k, const qd_qmat_t *w, int n_tok)
{
    int S = qd__tile_sub(w->type);
    if (k->gemm_bf16 && S && n_tok >= k->bf16_min_tok && w->n_cols % 32 == 0)
        return MODE_BF16;
    if (k->gemm_tiled && S && n_tok >= k->tile_min_tok &&
        !(k->gemm_prefers && k->gemm_prefers(w, n_tok)))
        return MODE_TILED;
    return MODE_DIRECT;
}

/* Several matrices of one input: the activations are prepared once and
 * all the matrices' rows are one pool phase. The caller guarantees they
 * share n_cols and the activation format (see qd_matmul_multi). */
static void matmul_shared(const qd_kernels_t *k, qd_pool_t *pool, int n_w,
                          float *const outs[], const int64_t ldos[],
                          const qd_qmat_t *const ws[], const float *restrict x,
                          int64_t ldx, int n_tok, void *scratch)
{
    const qd_qmat_t *w = ws[0];
    matmul_job_t j = {
        .n_w = n_w,
        .x = x,
        .ldx = ldx,
        .n_tok = n_tok,
        .act = scratch,
        .act_stride = act_row_bytes(w),
        .k = k,
    };
    for (int i = 0; i < n_w; i++) {
        j.ws[i] = ws[i];
        j.outs[i] = outs[i];
        j.ldos[i] = ldos[i];
    }
    j.pl = plan_of(n_w, ws, n_tok, qd_pool_size(pool));
    for (int g = 0; g < j.pl.G; g++)
        atomic_init(&j.own[g].next, stretch_lo(&j.pl, g));
    int mode = mode_of(k, w, n_tok);
    if (mode == MODE_BF16) {
        j.bf = scratch;
    } else if (mode == MODE_TILED) {
        uint8_t *p = (uint8_t *)scratch + j.act_stride * (size_t)n_tok;
        size_t tsz = QD_ALIGN_UP((size_t)n_tok * (size_t)(w->n_cols / 16) * sizeof(float), 64);
        j.tiled = 1;
        j.qs = (int8_t *)p;
        p += QD_ALIGN_UP((size_t)n_tok * (size_t)w->n_cols, 64);
        j.ta = (float *)p;
        j.tb = (float *)(p + tsz);
        j.ti = (int32_t *)(p + 2 * tsz);
    } else if (k->prefers_act && k->gemm_prefers && k->gemm_prefers(w, n_tok)) {
        j.pact = (uint8_t *)scratch + j.act_stride * (size_t)n_tok;
        j.pact_stride = QD_ALIGN_UP(k->prefers_act_bytes(w->type, w->n_cols), 64);
    }
    qd_type_t at = qd_type_traits(w->type)->vec_dot_type;
    if (j.bf) {
        qd_pool_run(pool, quantize_phase, &j);
    } else if (at == QD_TYPE_F32) {
        /* F32 weights read the activations as they are. */
        j.act = (uint8_t *)(uintptr_t)x;
        j.act_stride = (size_t)ldx * sizeof(float);
    } else if (n_tok < qd_pool_size(pool)) {
        /* Decode: one activation row costs a few microseconds to
         * quantize, less than a pool hand-off. */
        quantize_phase(&j, 0, 1);
    } else {
        qd_pool_run(pool, quantize_phase, &j);
    }
    /* each output is computed the same way either way */
    if (j.pl.pooled)
        qd_pool_run(pool, dot_phase, &j);
    else
        dot_phase(&j, 0, 1);
}

/* qd_matmul with a given kernel set (tests compare sets through this). */
void qd__matmul_with(const qd_kernels_t *k, qd_pool_t *pool,
                     float *restrict out, int64_t ldo, const qd_qmat_t *w,
                     const float *restrict x, int64_t ldx, int n_tok,
                     void *scratch)
{
    if (n_tok <= 0)
        return;
    float *o = out;
    matmul_shared(k, pool, 1, &o, &ldo, &w, x, ldx, n_tok, scratch);
}

/* Whether a and b can share prepared activations on kernel set k. */
static int share(const qd_kernels_t *k, const qd_qmat_t *a, const qd_qmat_t *b,
                 int n_tok)
{
    if (a->n_cols != b->n_cols)
        return 0;
    int ma = mode_of(k, a, n_tok), mb = mode_of(k, b, n_tok);
    if (ma != mb)
        return 0;
    if (ma == MODE_BF16)
        return 1; /* bf16 activations do not depend on the type */
    if (qd_type_traits(a->type)->vec_dot_type != qd_type_traits(b->type)->vec_dot_type)
        return 0;
    /* direct: the same activation layout (the kernel set's own or not) */
    if (k->gemm_prefers &&
        !k->gemm_prefers(a, n_tok) != !k->gemm_prefers(b, n_tok))
        return 0;
    if (k->prefers_layout && k->gemm_prefers && k->gemm_prefers(a, n_tok) &&
        k->prefers_layout(a->type) != k->prefers_layout(b->type))
        return 0;
    /* tiled: per-subblock sums of the same length, the same offset
     * folded into them (qd__tile_act's ti) */
    return ma == MODE_DIRECT || (qd__tile_sub(a->type) == qd__tile_sub(b->type) &&
                                 qd__tile_off(a->type) == qd__tile_off(b->type));
}

/* The end of the longest run of ws from i that shares i's activations
 * (one matmul_shared phase). */
static int run_end(const qd_kernels_t *k, int n_w, const qd_qmat_t *const ws[],
                   int i, int n_tok)
{
    int e = i + 1;
    while (e < n_w && e - i < MAX_W && share(k, ws[i], ws[e], n_tok))
        e++;
    return e;
}

void qd__matmul_multi_with(const qd_kernels_t *k, qd_pool_t *pool, int n_w,
                           float *const outs[], const int64_t ldos[],
                           const qd_qmat_t *const ws[], const float *restrict x,
                           int64_t ldx, int n_tok, void *scratch)
{
    if (n_tok <= 0)
        return;
    int i = 0;
    while (i < n_w) {
        int e = run_end(k, n_w, ws, i, n_tok);
        matmul_shared(k, pool, e - i, outs + i, ldos + i, ws + i, x, ldx, n_tok, scratch);
        i = e;
    }
}

void qd_matmul_multi(qd_pool_t *pool, int n_w, float *const outs[],
                     const int64_t ldos[], const qd_qmat_t *const ws[],
                     const float *restrict x, int64_t ldx, int n_tok,
                     void *scratch)
{
    qd__matmul_multi_with(qd_kernels(), pool, n_w, outs, ldos, ws, x, ldx, n_tok, scratch);
}

void qd_matmul_hint(qd_pool_t *pool, int n_w, const qd_qmat_t *const ws[], int n_tok)
{
    if (n_w < 1 || n_tok < 1)
        return;
    /* the first phase of qd_matmul_multi(ws): its chunks and stretches */
    int e = run_end(qd_kernels(), n_w, ws, 0, n_tok);
    const plan_t pl = plan_of(e, ws, n_tok, qd_pool_size(pool));
    if (!pl.pooled) /* the caller alone will run it */
        return;
    /* threads past G share stretches; each stretch's first thread
     * prefetches it */
    const void *base[MAX_OWN];
    size_t n[MAX_OWN];
    for (int t = 0; t < pl.G; t++) {
        base[t] = NULL;
        n[t] = 0;
        int64_t c0 = stretch_lo(&pl, t), c1 = stretch_lo(&pl, t + 1), r0 = 0;
        if (c0 >= c1)
            continue;
        int i = chunk_at(ws, e, pl.ch, c0, &r0);
        int64_t r1 = ws[i]->n_rows, rl = 0;
        if (chunk_at(ws, e, pl.ch, c1 - 1, &rl) == i)
            r1 = QD_MIN(rl + pl.ch, r1); /* the stretch ends inside matrix i */
        base[t] = (const uint8_t *)ws[i]->data + (size_t)r0 * ws[i]->row_bytes;
        n[t] = QD_MIN((size_t)(r1 - r0) * ws[i]->row_bytes, (size_t)HINT_BYTES);
    }
    qd_pool_hint(pool, pl.G, base, n);
}

void qd_matmul(qd_pool_t *pool, float *restrict out, int64_t ldo,
               const qd_qmat_t *w, const float *restrict x, int64_t ldx,
               int n_tok, void *scratch)
{
    qd__matmul_with(qd_kernels(), pool, out, ldo, w, x, ldx, n_tok, scratch);
}
