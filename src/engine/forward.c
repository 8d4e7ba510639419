/*
 * forward.c — execution contexts and the batched forward pass.
 *
 * A qd_ctx_t runs a decoder-only transformer (Llama / Qwen2 / Qwen3) over a
 * batch of tokens from any number of sequences. Every weight matrix is
 * multiplied with all the batch's activation rows at once (qd_matmul reads
 * each weight row once per step); the per-token work (norms, RoPE, KV
 * writes) and attention over (token, head) pairs are split across the
 * compute pool. All buffers are allocated in qd_ctx_create, sized for
 * n_ubatch tokens (a larger batch runs as micro-batches, in order, which
 * keeps causality: a sequence's positions increase through the batch) and
 * logits for n_batch: qd_ctx_decode never allocates.
 *
 * One layer, for the batch's activation rows x (n_tok × n_embd):
 *   xn = rmsnorm(x) * attn_norm
 *   q, k, v = xn·Wq, xn·Wk, xn·Wv  (+ biases: qwen2; per-head RMSNorm: qwen3)
 *   RoPE on q and k at each token's position; k, v written to the KV cache
 *   (all of the micro-batch's writes happen before any attention reads,
 *   so a token sees the earlier tokens of its sequence in the same batch)
 *   att = softmax(q·Kᵀ / sqrt(head_dim)) · V over positions 0..pos
 *   x += att·Wo
 *   xn = rmsnorm(x) * ffn_norm;  x += (silu(xn·Wg) ⊙ xn·Wu)·Wd
 * then logits = rmsnorm(x) * output_norm · Wout for the flagged tokens only.
 *
 * Numerics follow llama.cpp's CPU backend without flash attention: with an
 * f16 cache, K and V are stored as fp16, q is rounded to fp16 for q·Kᵀ, the
 * softmax runs in float32 and the probabilities are rounded to fp16 before
 * the product with V; with an f32 cache everything is float32. With a q8_0
 * cache, K and V rows are quantized to Q8_0 blocks (32 values, fp16 scale,
 * the reference quantize_row_q8_0_ref rounding); q stays float32 and q·Kᵀ
 * dequantizes K block by block (llama.cpp instead quantizes q to Q8_0 for an
 * integer dot), the softmax runs in float32 and the float32 probabilities
 * scale the dequantized V rows.
 */
#include "config.h"
#include "engine/attn.h"
#include "engine/kv_int.h"
#include "engine/model_int.h"
#include "quantd/common.h"
#include "quantd/quant.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

struct qd_ctx {
    const qd_model_t *m;
    qd_ctx_params_t p;
    qd_pool_t *pool;
    qd_kv_t *kv;
    int n_threads;
    int32_t n_q;  /* n_head * head_dim */
    int32_t n_kv; /* n_head_kv * head_dim */
    /* Buffers, allocated once for n_ubatch tokens (logits, out_rows: for
     * n_batch); row t belongs to token t of the micro-batch in progress. */
    float *x;          /* (n_ubatch, n_embd) residual stream */
    float *xn;         /* (n_ubatch, n_embd) normalized x; final: flagged rows */
    float *q;          /* (n_ubatch, n_q) */
    float *k;          /* (n_ubatch, n_kv) */
    float *v;          /* (n_ubatch, n_kv) */
    float *att;        /* (n_ubatch, n_q) attention output */
    float *tmp;        /* (n_ubatch, n_embd) output of Wo / Wd */
    float *gate;       /* (n_ubatch, n_ff) */
    float *up;         /* (n_ubatch, n_ff) */
    float *rope;       /* (n_ubatch, n_rot) cos, sin per rotated pair */
    float *scores;     /* (n_threads, n_ctx + head_dim) scores, then q */
    float *attn_ws;    /* (n_threads, qd__attn_ws_floats) blocked attention */
    float *logits;     /* (n_batch, n_vocab) */
    int32_t *out_rows; /* (n_batch) batch index of each flagged token */
    int32_t n_out;
    void *scratch; /* qd_matmul scratch */
    size_t scratch_bytes;
    /* State of the pass in progress (read by the parallel phases). */
    int32_t ub_out0;   /* micro-batch in progress: its first flagged token */
    int32_t ub_nout;   /* and how many of the flagged tokens it holds */
    int32_t ub_off;    /* batch index of its first token */
    const qd_batch_t *b;
    const qd_layer_t *L;
    int32_t il;
    qd_matmul_observer_fn obs; /* calibration hook, or NULL */
    void *obs_ud;
};

/* fp16 → fp32 by table (256 KiB, built once): the attention loops convert
 * every cached K and V value they read. */
static float f16_table[1 << 16];
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;
static float dot_q_f16_c(const float *q, const qd_fp16_t *k, int n);
static void axpy_f16_c(float *o, float w, const qd_fp16_t *v, int n);
#if defined(__x86_64__)
static float dot_q_f16_x86(const float *q, const qd_fp16_t *k, int n);
static void axpy_f16_x86(float *o, float w, const qd_fp16_t *v, int n);
#endif
static float (*dot_q_f16)(const float *, const qd_fp16_t *, int);
static void (*axpy_f16)(float *, float, const qd_fp16_t *, int);
static float dot_q_q8_0_c(const float *q, const qd_block_q8_0 *k, int n);
static void axpy_q8_0_c(float *o, float w, const qd_block_q8_0 *v, int n);
#if defined(__x86_64__)
static float dot_q_q8_0_x86(const float *q, const qd_block_q8_0 *k, int n);
static void axpy_q8_0_x86(float *o, float w, const qd_block_q8_0 *v, int n);
#endif
static float (*dot_q_q8_0)(const float *, const qd_block_q8_0 *, int);
static void (*axpy_q8_0)(float *, float, const qd_block_q8_0 *, int);

/* The AVX-512 loops of the forward pass (attn_avx512.c: blocked attention,
 * SwiGLU, the f16 KV store), with the AVX-512 kernel sets. */
static int fwd_avx512;
/* and attention of long runs on AMX tiles (attn_amx.c), with the amx set,
 * in the batches whose matrix products run in bf16: fwd_amx_min tokens or
 * more (0: never) */
static int fwd_amx_min;

static void f16_table_init(void)
{
#if defined(__x86_64__) && defined(QD_ARCH_X86)
    {
        const char *kn = qd_kernels_name();
        fwd_avx512 = (!strcmp(kn, "avx512") || !strcmp(kn, "amx"));
        fwd_amx_min = !strcmp(kn, "amx") ? qd_matmul_bf16_min_tok() : 0;
    }
#endif
#if defined(__x86_64__)
    /* The x86 attention loops need AVX2+FMA+F16C, which every SIMD kernel
     * set requires: follow the set chosen at start-up (so QD_KERNELS=scalar
     * runs the plain attention too). */
    if (strcmp(qd_kernels_name(), "scalar") != 0) {
        dot_q_f16 = dot_q_f16_x86;
        axpy_f16 = axpy_f16_x86;
        dot_q_q8_0 = dot_q_q8_0_x86;
        axpy_q8_0 = axpy_q8_0_x86;
    }
#endif
    for (uint32_t i = 0; i < (1u << 16); i++)
        f16_table[i] = qd_fp16_to_fp32((qd_fp16_t)i);
}

static inline float f16(qd_fp16_t h)
{
    return f16_table[h];
}

/* Attention inner loops over an f16 cache, with an F16C/FMA variant chosen
 * at run time (this file is built for the baseline ISA). The dot sums in 8
 * lanes then adds them up; the axpy is elementwise in the scalar order. */
static float dot_q_f16_c(const float *q, const qd_fp16_t *k, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += q[i] * f16(k[i]);
    return s;
}

static void axpy_f16_c(float *o, float w, const qd_fp16_t *v, int n)
{
    for (int i = 0; i < n; i++)
        o[i] += w * f16(v[i]);
}

/* The same over a q8_0 cache (n a multiple of 32): per block, the int8
 * values times q summed in float32, times the block's scale. */
static float dot_q_q8_0_c(const float *q, const qd_block_q8_0 *k, int n)
{
    float s = 0.0f;
    for (int b = 0; b < n / QD_QK8_0; b++, q += QD_QK8_0) {
        float sb = 0.0f;
        for (int i = 0; i < QD_QK8_0; i++)
            sb += q[i] * (float)k[b].qs[i];
        s += sb * f16(k[b].d);
    }
    return s;
}

static void axpy_q8_0_c(float *o, float w, const qd_block_q8_0 *v, int n)
{
    for (int b = 0; b < n / QD_QK8_0; b++, o += QD_QK8_0) {
        float wd = w * f16(v[b].d);
        for (int i = 0; i < QD_QK8_0; i++)
            o[i] += wd * (float)v[b].qs[i];
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2,fma,f16c"))) static float
dot_q_f16_x86(const float *q, const qd_fp16_t *k, int n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i),
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8),
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8))), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i),
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), a0);
    a0 = _mm256_add_ps(a0, a1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float s = _mm_cvtss_f32(h);
    for (; i < n; i++)
        s += q[i] * _cvtsh_ss(k[i]);
    return s;
}

__attribute__((target("avx2,fma,f16c"))) static void
axpy_f16_x86(float *o, float w, const qd_fp16_t *v, int n)
{
    __m256 wv = _mm256_set1_ps(w);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i)));
        /* mul then add, as the scalar loop (no contraction) */
        _mm256_storeu_ps(o + i, _mm256_add_ps(_mm256_loadu_ps(o + i), _mm256_mul_ps(wv, x)));
    }
    for (; i < n; i++)
        o[i] += w * _cvtsh_ss(v[i]);
}

__attribute__((target("avx2,fma,f16c"))) static float
dot_q_q8_0_x86(const float *q, const qd_block_q8_0 *k, int n)
{
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QD_QK8_0; b++, q += QD_QK8_0) {
        __m256 sb = _mm256_setzero_ps();
        for (int j = 0; j < QD_QK8_0; j += 8) {
            __m128i i8 = _mm_loadl_epi64((const __m128i *)(k[b].qs + j));
            __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(i8));
            sb = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), x, sb);
        }
        acc = _mm256_fmadd_ps(sb, _mm256_set1_ps(_cvtsh_ss(k[b].d)), acc);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc),
                          _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

__attribute__((target("avx2,fma,f16c"))) static void
axpy_q8_0_x86(float *o, float w, const qd_block_q8_0 *v, int n)
{
    for (int b = 0; b < n / QD_QK8_0; b++, o += QD_QK8_0) {
        __m256 wd = _mm256_set1_ps(w * _cvtsh_ss(v[b].d));
        for (int j = 0; j < QD_QK8_0; j += 8) {
            __m128i i8 = _mm_loadl_epi64((const __m128i *)(v[b].qs + j));
            __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(i8));
            /* mul then add, as the scalar loop (no contraction) */
            _mm256_storeu_ps(o + j, _mm256_add_ps(_mm256_loadu_ps(o + j),
                                                  _mm256_mul_ps(wd, x)));
        }
    }
}
#endif

static float (*dot_q_f16)(const float *, const qd_fp16_t *, int) = dot_q_f16_c;
static void (*axpy_f16)(float *, float, const qd_fp16_t *, int) = axpy_f16_c;
static float (*dot_q_q8_0)(const float *, const qd_block_q8_0 *,
                           int) = dot_q_q8_0_c;
static void (*axpy_q8_0)(float *, float, const qd_block_q8_0 *,
                         int) = axpy_q8_0_c;

void qd_ctx_params_default(qd_ctx_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->n_batch = 512;
    /* Tile kernels amortize a weight's decode over 256 tokens as well as
     * over 512 (pp256 and pp512 measured the same), at half the buffers. */
    p->n_ubatch = 256;
    p->n_seq_max = 1;
    p->n_ctx = 0;
    p->kv_bytes = 0;
    p->kv_type = QD_KV_F16;
    p->n_threads = 0;
}

/* ---- creation --------------------------------------------------------- */

static size_t max_scratch(const qd_model_t *m, int n_tok)
{
    size_t s = qd_matmul_scratch_bytes(&m->output, n_tok);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const qd_layer_t *L = &m->layers[il];
        const qd_qmat_t *ws[] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                 &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < QD_ARRAY_SIZE(ws); i++)
            s = QD_MAX(s, qd_matmul_scratch_bytes(ws[i], n_tok));
    }
    return s;
}

/* Allocate n * size bytes, 64-aligned, into *p; 0 or QD_ENOMEM. */
static int alloc_buf(void *p, size_t n, size_t size)
{
    size_t bytes;
    if (qd_mul_size(n, size, &bytes))
        return QD_ENOMEM;
    void *q = qd_malloc_aligned(bytes ? bytes : 64, 64);
    *(void **)p = q;
    return q ? 0 : QD_ENOMEM;
}

int qd_ctx_create(const qd_model_t *m, const qd_ctx_params_t *p, qd_ctx_t **out)
{
    *out = NULL;
    const qd_hparams_t *hp = &m->hp;
    qd_ctx_params_t prm = *p;
    if (prm.n_ctx == 0)
        prm.n_ctx = hp->n_ctx_train;
    if (prm.n_threads == 0)
        prm.n_threads = qd_physical_cores();
    if (prm.n_ubatch == 0 || prm.n_ubatch > prm.n_batch)
        prm.n_ubatch = prm.n_batch;
    if (prm.n_batch <= 0 || prm.n_ubatch <= 0 || prm.n_seq_max <= 0 ||
        prm.n_ctx <= 0 || prm.n_threads <= 0 || prm.n_threads > 1024) {
        qd_set_errmsg("ctx: invalid parameters (n_batch %d, n_ubatch %d, "
                      "n_seq_max %d, n_ctx %d, n_threads %d)",
                      prm.n_batch, prm.n_ubatch, prm.n_seq_max, prm.n_ctx,
                      prm.n_threads);
        return QD_EINVAL;
    }
    if (prm.kv_type != QD_KV_F32 && prm.kv_type != QD_KV_F16 &&
        prm.kv_type != QD_KV_Q8_0) {
        qd_set_errmsg("ctx: KV cache type %d not supported (f32, f16, q8_0)",
                      (int)prm.kv_type);
        return QD_EUNSUPPORTED;
    }
    if (prm.kv_type == QD_KV_Q8_0 && hp->head_dim % QD_QK8_0 != 0) {
        qd_set_errmsg("ctx: q8_0 KV cache needs head_dim to be a multiple of "
                      "%d; this model's head_dim is %d (use f16 or f32)",
                      QD_QK8_0, (int)hp->head_dim);
        return QD_EUNSUPPORTED;
    }
    pthread_once(&f16_once, f16_table_init);
    qd_ctx_t *c = qd_calloc(1, sizeof *c);
    if (!c) {
        qd_set_errmsg("ctx: out of memory");
        return QD_ENOMEM;
    }
    c->m = m;
    c->p = prm;
    c->n_threads = prm.n_threads;
    c->n_q = hp->n_head * hp->head_dim;
    c->n_kv = hp->n_head_kv * hp->head_dim;
    int rc = qd_pool_create(prm.n_threads, &c->pool);
    if (rc < 0)
        goto fail;
    rc = qd__kv_create(hp->n_layer, c->n_kv, prm.n_seq_max, prm.n_ctx,
                       prm.kv_bytes, prm.kv_type, &c->kv);
    if (rc < 0)
        goto fail;
    /* Activations for a micro-batch; logits for every flagged token of
     * the whole batch (pages of unflagged rows are never touched). */
    size_t nb = (size_t)prm.n_ubatch;
    c->scratch_bytes = max_scratch(m, prm.n_ubatch);
    rc = QD_ENOMEM;
    if (alloc_buf(&c->x, nb * hp->n_embd, sizeof(float)) ||
        alloc_buf(&c->xn, nb * hp->n_embd, sizeof(float)) ||
        alloc_buf(&c->q, nb * c->n_q, sizeof(float)) ||
        alloc_buf(&c->k, nb * c->n_kv, sizeof(float)) ||
        alloc_buf(&c->v, nb * c->n_kv, sizeof(float)) ||
        alloc_buf(&c->att, nb * c->n_q, sizeof(float)) ||
        alloc_buf(&c->tmp, nb * hp->n_embd, sizeof(float)) ||
        alloc_buf(&c->gate, nb * hp->n_ff, sizeof(float)) ||
        alloc_buf(&c->up, nb * hp->n_ff, sizeof(float)) ||
        alloc_buf(&c->rope, nb * m->n_rot, sizeof(float)) ||
        alloc_buf(&c->scores, (size_t)c->n_threads * (prm.n_ctx + hp->head_dim),
                  sizeof(float)) ||
        alloc_buf(&c->attn_ws, (size_t)c->n_threads * qd__attn_ws_floats(hp->head_dim),
                  sizeof(float)) ||
        alloc_buf(&c->logits, (size_t)prm.n_batch * hp->n_vocab, sizeof(float)) ||
        alloc_buf(&c->out_rows, (size_t)prm.n_batch, sizeof(int32_t)) ||
        alloc_buf(&c->scratch, c->scratch_bytes, 1)) {
        qd_set_errmsg("ctx: out of memory for the buffers of %d tokens "
                      "(micro-batches of %d)",
                      prm.n_batch, prm.n_ubatch);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    qd_ctx_free(c);
    return rc;
}

void qd_ctx_free(qd_ctx_t *c)
{
    if (!c)
        return;
    qd_pool_destroy(c->pool);
    qd__kv_destroy(c->kv);
    float *fbufs[] = {c->x,   c->xn,   c->q,  c->k,    c->v,      c->att,
                      c->tmp, c->gate, c->up, c->rope, c->scores, c->attn_ws,
                      c->logits};
    for (size_t i = 0; i < QD_ARRAY_SIZE(fbufs); i++)
        qd_free_aligned(fbufs[i]);
    qd_free_aligned(c->out_rows);
    qd_free_aligned(c->scratch);
    qd_free(c);
}

qd_kv_t *qd_ctx_kv(qd_ctx_t *c)
{
    return c->kv;
}
const qd_model_t *qd_ctx_model(const qd_ctx_t *c)
{
    return c->m;
}

const float *qd_ctx_logits(const qd_ctx_t *c, int32_t j)
{
    if (j < 0 || j >= c->n_out)
        return NULL;
    return c->logits + (size_t)j * c->m->hp.n_vocab;
}

/* ---- per-token kernels ------------------------------------------------ */

/* out = x / sqrt(mean(x²) + eps) * w, as ggml: sum of squares in double,
 * normalize, then multiply by the weight. out may equal x. */
static void rms_norm(float *out, const float *x, const float *w, int n,
                     float eps)
{
    /* squares summed in double like ggml's, in 8 interleaved partial
     * sums (a serial chain of double adds cost 2.5% of a prompt) */
    double part[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            part[j] += (double)(x[i + j] * x[i + j]);
    for (; i < n; i++)
        part[i % 8] += (double)(x[i] * x[i]);
    double sum = ((part[0] + part[4]) + (part[2] + part[6])) +
                 ((part[1] + part[5]) + (part[3] + part[7]));
    float mean = (float)(sum / n);
    float scale = 1.0f / sqrtf(mean + eps);
    for (i = 0; i < n; i++)
        out[i] = (x[i] * scale) * w[i];
}

/* cos/sin of every rotated pair at position pos, as ggml's rope cache:
 * θ_i = pos · base^(−2i/n_rot) / freqs[i], the power built by repeated
 * multiplication in float. */
static void rope_cache(float *cs, int32_t pos, int n_rot, float base,
                       const float *freqs)
{
    float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i0 = 0; i0 < n_rot; i0 += 2) {
        float ff = freqs ? freqs[i0 / 2] : 1.0f;
        float th = theta / ff;
        cs[i0] = cosf(th);
        cs[i0 + 1] = sinf(th);
        theta *= theta_scale;
    }
}

static void rope_apply(float *x, const float *cs, int n_rot, int neox)
{
    for (int i0 = 0; i0 < n_rot; i0 += 2) {
        int a = neox ? i0 / 2 : i0, b = neox ? i0 / 2 + n_rot / 2 : i0 + 1;
        float c = cs[i0], s = cs[i0 + 1];
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

/* Token range of thread ith among nth for n items (contiguous). */
static void split(int32_t n, int ith, int nth, int32_t *i0, int32_t *i1)
{
    *i0 = (int32_t)((int64_t)n * ith / nth);
    *i1 = (int32_t)((int64_t)n * (ith + 1) / nth);
}

/* Embedding rows (dequantized, no activation rounding) and RoPE tables. */
static void phase_embed(void *arg, int ith, int nth)
{
    qd_ctx_t *c = arg;
    const qd_model_t *m = c->m;
    const qd_qmat_t *e = &m->tok_embd;
    const qd_type_traits_t *tr = qd_type_traits(e->type);
    int32_t t0, t1;
    split(c->b->n_tokens, ith, nth, &t0, &t1);
    for (int32_t t = t0; t < t1; t++) {
        const uint8_t *row =
            (const uint8_t *)e->data + (size_t)c->b->toks[t] * e->row_bytes;
        tr->to_float(row, c->x + (size_t)t * m->hp.n_embd, m->hp.n_embd);
        rope_cache(c->rope + (size_t)t * m->n_rot, c->b->pos[t], m->n_rot,
                   m->hp.rope_base, m->rope_freqs);
    }
}

static void phase_attn_norm(void *arg, int ith, int nth)
{
    qd_ctx_t *c = arg;
    int n = c->m->hp.n_embd;
    int32_t t0, t1;
    split(c->b->n_tokens, ith, nth, &t0, &t1);
    for (int32_t t = t0; t < t1; t++)
        rms_norm(c->xn + (size_t)t * n, c->x + (size_t)t * n, c->L->attn_norm,
                 n, c->m->hp.rms_eps);
}

/* Biases, q/k norms, RoPE, then K and V into the cache. */
static void phase_qkv_post(void *arg, int ith, int nth)
{
    qd_ctx_t *c = arg;
    const qd_model_t *m = c->m;
    const qd_hparams_t *hp = &m->hp;
    const qd_layer_t *L = c->L;
    int hd = hp->head_dim;
    int32_t t0, t1;
    split(c->b->n_tokens, ith, nth, &t0, &t1);
    for (int32_t t = t0; t < t1; t++) {
        float *q = c->q + (size_t)t * c->n_q;
        float *k = c->k + (size_t)t * c->n_kv;
        float *v = c->v + (size_t)t * c->n_kv;
        if (L->bq) {
            for (int i = 0; i < c->n_q; i++)
                q[i] += L->bq[i];
            for (int i = 0; i < c->n_kv; i++) {
                k[i] += L->bk[i];
                v[i] += L->bv[i];
            }
        }
        if (L->q_norm) {
            for (int h = 0; h < hp->n_head; h++)
                rms_norm(q + h * hd, q + h * hd, L->q_norm, hd, hp->rms_eps);
            for (int h = 0; h < hp->n_head_kv; h++)
                rms_norm(k + h * hd, k + h * hd, L->k_norm, hd, hp->rms_eps);
        }
        const float *cs = c->rope + (size_t)t * m->n_rot;
        for (int h = 0; h < hp->n_head; h++)
            rope_apply(q + h * hd, cs, m->n_rot, hp->rope_neox);
        for (int h = 0; h < hp->n_head_kv; h++)
            rope_apply(k + h * hd, cs, m->n_rot, hp->rope_neox);
        uint8_t *kd = qd__kv_k(c->kv, c->b->seq[t], c->b->pos[t], c->il);
        uint8_t *vd = qd__kv_v(c->kv, c->b->seq[t], c->b->pos[t], c->il);
        if (c->kv->type == QD_KV_F32) {
            memcpy(kd, k, (size_t)c->n_kv * sizeof(float));
            memcpy(vd, v, (size_t)c->n_kv * sizeof(float));
        } else if (c->kv->type == QD_KV_Q8_0) {
            qd_from_float_fn quant =
                qd_type_traits(QD_TYPE_Q8_0)->from_float_ref;
            quant(k, kd, c->n_kv);
            quant(v, vd, c->n_kv);
        } else {
            qd_fp16_t *k16 = (qd_fp16_t *)kd, *v16 = (qd_fp16_t *)vd;
#if defined(QD_ARCH_X86)
            if (fwd_avx512) {
                qd__f32_to_f16_avx512(k, k16, c->n_kv);
                qd__f32_to_f16_avx512(v, v16, c->n_kv);
                continue;
            }
#endif
            for (int i = 0; i < c->n_kv; i++) {
                k16[i] = qd_fp32_to_fp16(k[i]);
                v16[i] = qd_fp32_to_fp16(v[i]);
            }
        }
    }
}

/* Attention of one (token, head): scores over positions 0..pos of the
 * token's sequence, softmax, weighted sum of V. */
static void attend(qd_ctx_t *c, int32_t t, int h, float *sc)
{
    const qd_hparams_t *hp = &c->m->hp;
    const qd_kv_t *kv = c->kv;
    int hd = hp->head_dim;
    int g = h / (hp->n_head / hp->n_head_kv);
    int32_t seq = c->b->seq[t], n_pos = c->b->pos[t] + 1;
    const float *q = c->q + (size_t)t * c->n_q + (size_t)h * hd;
    float *o = c->att + (size_t)t * c->n_q + (size_t)h * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const int32_t *tab = qd__kv_table(kv, seq);
    size_t koff = (size_t)c->il * kv->layer_bytes,
           voff = koff + QD_KV_BLOCK * kv->row_bytes;
    int half = kv->type == QD_KV_F16, q8 = kv->type == QD_KV_Q8_0;
    float *qf = sc + c->p.n_ctx; /* q, rounded to fp16 with an f16 cache */
    if (half) {
        for (int i = 0; i < hd; i++)
            qf[i] = f16(qd_fp32_to_fp16(q[i]));
    } else {
        memcpy(qf, q, (size_t)hd * sizeof(float));
    }
    float max = -INFINITY;
    for (int32_t p = 0; p < n_pos; p++) {
        const uint8_t *row = kv->data +
                             (size_t)tab[p / QD_KV_BLOCK] * kv->block_bytes +
                             koff + (size_t)(p % QD_KV_BLOCK) * kv->row_bytes;
        float s = 0.0f;
        if (half) {
            s = dot_q_f16(qf, (const qd_fp16_t *)row + (size_t)g * hd, hd);
        } else if (q8) {
            s = dot_q_q8_0(qf,
                           (const qd_block_q8_0 *)row +
                               (size_t)g * (hd / QD_QK8_0),
                           hd);
        } else {
            const float *kr = (const float *)row + (size_t)g * hd;
            for (int i = 0; i < hd; i++)
                s += qf[i] * kr[i];
        }
        s *= scale;
        sc[p] = s;
        if (s > max)
            max = s;
    }
    double sum = 0.0;
    for (int32_t p = 0; p < n_pos; p++) {
        float e = expf(sc[p] - max);
        sc[p] = e;
        sum += (double)e;
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < hd; i++)
        o[i] = 0.0f;
    for (int32_t p = 0; p < n_pos; p++) {
        const uint8_t *row = kv->data +
                             (size_t)tab[p / QD_KV_BLOCK] * kv->block_bytes +
                             voff + (size_t)(p % QD_KV_BLOCK) * kv->row_bytes;
        float w = sc[p] * inv;
        if (half) {
            w = f16(qd_fp32_to_fp16(w));
            axpy_f16(o, w, (const qd_fp16_t *)row + (size_t)g * hd, hd);
        } else if (q8) {
            axpy_q8_0(o, w,
                      (const qd_block_q8_0 *)row + (size_t)g * (hd / QD_QK8_0),
                      hd);
        } else {
            const float *vr = (const float *)row + (size_t)g * hd;
            for (int i = 0; i < hd; i++)
                o[i] += w * vr[i];
        }
    }
}

#if defined(QD_ARCH_X86)
/* Blocked attention: runs of up to QD_ATTN_ROWS / n_rep tokens of one
 * sequence, times the KV heads, dealt round-robin to the threads. */
static void attention_blocked(qd_ctx_t *c, int ith, int nth)
{
    const qd_hparams_t *hp = &c->m->hp;
    const qd_kv_t *kv = c->kv;
    int n_rep = hp->n_head / hp->n_head_kv, hd = hp->head_dim;
    int per = QD_MAX(1, QD_ATTN_ROWS / n_rep);
    float *ws = c->attn_ws + (size_t)ith * qd__attn_ws_floats(hd);
    const qd_batch_t *b = c->b;
    int item = 0;
    for (int32_t t = 0; t < b->n_tokens;) {
        int32_t e = t + 1;
        while (e < b->n_tokens && e - t < per && b->seq[e] == b->seq[t])
            e++;
        for (int g = 0; g < hp->n_head_kv; g++, item++) {
            if (item % nth != ith)
                continue;
            qd_attn_kv_t a = {
                .data = kv->data,
                .tab = qd__kv_table(kv, b->seq[t]),
                .block_bytes = kv->block_bytes,
                .koff = (size_t)c->il * kv->layer_bytes,
                .voff = (size_t)c->il * kv->layer_bytes + QD_KV_BLOCK * kv->row_bytes,
                .row_bytes = kv->row_bytes,
                .f16 = kv->type == QD_KV_F16,
                .hd = hd,
                .n_rep = n_rep,
                .g = g,
                .scale = 1.0f / sqrtf((float)hd),
            };
            size_t off = (size_t)g * n_rep * hd;
            /* In the batches whose matrix products run in bf16 on AMX,
             * runs of 32 rows or more go to AMX tiles too; smaller batches
             * keep the exact vector path, whatever their makeup. */
            if (fwd_amx_min && b->n_tokens >= fwd_amx_min && (e - t) * n_rep >= 32 &&
                qd__attn_amx(&a, e - t, c->q + (size_t)t * c->n_q + off, c->n_q, b->pos + t,
                             c->att + (size_t)t * c->n_q + off, c->n_q, ws) == 0)
                continue;
            qd__attn_avx512(&a, e - t, c->q + (size_t)t * c->n_q + off, c->n_q,
                            b->pos + t, c->att + (size_t)t * c->n_q + off, c->n_q, ws);
        }
        t = e;
    }
}
#endif

static void phase_attention(void *arg, int ith, int nth)
{
    qd_ctx_t *c = arg;
#if defined(QD_ARCH_X86)
    if (fwd_avx512 && c->kv->type != QD_KV_Q8_0 && c->m->hp.head_dim % 16 == 0 &&
        c->m->hp.n_head / c->m->hp.n_head_kv <= QD_ATTN_ROWS) {
        attention_blocked(c, ith, nth);
        return;
    }
#endif
    int n_head = c->m->hp.n_head;
    float *sc = c->scores + (size_t)ith * (c->p.n_ctx + c->m->hp.head_dim);
    int32_t n = c->b->n_tokens * n_head;
    for (int32_t i = ith; i < n; i += nth)
        attend(c, i / n_head, i % n_head, sc);
}

/* x += tmp, then xn = rmsnorm(x) * ffn_norm. */
static void phase_attn_residual(void *arg, int ith, int nth)
{
    qd_ctx_t *c = arg;
    int n = c->m->hp.n_embd;
    int32_t t0, t1;
    split(c->b->n_tokens, ith, nth, &t0, &t1);
    for (int32_t t = t0; t < t1; t++) {
        float *x = c->x + (size_t)t * n;
        const float *d = c->tmp + (size_t)t * n;
        for (int i = 0; i < n; i++)
            x[i] += d[i];
        rms_norm(c->xn + (size_t)t * n, x, c->L->ffn_norm, n, c->m->hp.rms_eps);
    }
}

/* gate = silu(gate) * up */
static void phase_swiglu(void *arg, int ith, int nth)
{
    qd_ctx_t *c = arg;
    int n = c->m->hp.n_ff;
    int32_t t0, t1;
    split(c->b->n_tokens, ith, nth, &t0, &t1);
    for (int32_t t = t0; t < t1; t++) {
        float *g = c->gate + (size_t)t * n;
        const float *u = c->up + (size_t)t * n;
#if defined(QD_ARCH_X86)
        if (fwd_avx512) {
            qd__swiglu_avx512(g, u, n);
            continue;
        }
#endif
        for (int i = 0; i < n; i++)
            g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

/* x += tmp (the FFN output). */
static void phase_ffn_residual(void *arg, int ith, int nth)
{
    qd_ctx_t *c = arg;
    int n = c->m->hp.n_embd;
    int32_t t0, t1;
    split(c->b->n_tokens, ith, nth, &t0, &t1);
    for (int32_t t = t0; t < t1; t++) {
        float *x = c->x + (size_t)t * n;
        const float *d = c->tmp + (size_t)t * n;
        for (int i = 0; i < n; i++)
            x[i] += d[i];
    }
}

/* xn row j = rmsnorm(x row of the micro-batch's j-th flagged token) *
 * output_norm. */
static void phase_out_norm(void *arg, int ith, int nth)
{
    qd_ctx_t *c = arg;
    int n = c->m->hp.n_embd;
    int32_t j0, j1;
    split(c->ub_nout, ith, nth, &j0, &j1);
    for (int32_t j = j0; j < j1; j++) {
        int32_t t = c->out_rows[c->ub_out0 + j] - c->ub_off;
        rms_norm(c->xn + (size_t)j * n, c->x + (size_t)t * n,
                 c->m->out_norm, n, c->m->hp.rms_eps);
    }
}

/* ---- the pass --------------------------------------------------------- */

void qd_ctx_set_observer(qd_ctx_t *c, qd_matmul_observer_fn fn, void *ud)
{
    c->obs = fn;
    c->obs_ud = ud;
}

/* Which weight w is (for the observer): the output matrix or a field of
 * the current layer. */
static void observe(qd_ctx_t *c, const qd_qmat_t *w, const float *x,
                    int64_t ldx, int n_tok)
{
    int id = QD_MM_OUTPUT, il = -1;
    if (w != &c->m->output) {
        const qd_layer_t *L = c->L;
        const qd_qmat_t *ws[] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                 &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < (int)QD_ARRAY_SIZE(ws); i++)
            if (w == ws[i])
                id = i;
        il = c->il;
    }
    c->obs(c->obs_ud, il, (qd_mm_weight_t)id, x, ldx, n_tok, w->n_cols);
}

/* A token-parallel phase: with fewer tokens than threads the work is one
 * token's worth, cheaper on the caller than a pool hand-off (decode runs
 * hundreds of phases per token). Each token's result is computed the same
 * way either way. */
static void run_tok(qd_ctx_t *c, int32_t n_items, qd_pool_fn fn)
{
    if (n_items < qd_pool_size(c->pool))
        fn(c, 0, 1);
    else
        qd_pool_run(c->pool, fn, c);
}

static void matmul(qd_ctx_t *c, float *out, int64_t ldo, const qd_qmat_t *w,
                   const float *x, int64_t ldx, int n_tok)
{
    if (c->obs)
        observe(c, w, x, ldx, n_tok);
    qd_matmul(c->pool, out, ldo, w, x, ldx, n_tok, c->scratch);
}

/* Matrices that read the same input (q/k/v, gate/up): one activation
 * preparation and one pool phase where their formats allow. */
static void matmul_n(qd_ctx_t *c, int n_w, float *const outs[],
                     const int64_t ldos[], const qd_qmat_t *const ws[],
                     const float *x, int64_t ldx, int n_tok)
{
    if (c->obs)
        for (int i = 0; i < n_w; i++)
            observe(c, ws[i], x, ldx, n_tok);
    qd_matmul_multi(c->pool, n_w, outs, ldos, ws, x, ldx, n_tok, c->scratch);
}

/* Name layer L's q/k/v product as the pool's next prefetch hint. */
static void hint_qkv(qd_ctx_t *c, const qd_layer_t *L, int32_t n)
{
    const qd_qmat_t *ws[] = {&L->wq, &L->wk, &L->wv};
    qd_matmul_hint(c->pool, 3, ws, n);
}

/* One micro-batch through every layer, then the logits of its flagged
 * tokens into their rows of c->logits. */
static void forward(qd_ctx_t *c, const qd_batch_t *b)
{
    const qd_model_t *m = c->m;
    const qd_hparams_t *hp = &m->hp;
    int32_t n = b->n_tokens;
    c->b = b;
    /* Multiply-adds of this step's attention, to decide whether it is
     * worth splitting over the pool. */
    double attn_work = 0;
    for (int32_t t = 0; t < n; t++)
        attn_work += 2.0 * (b->pos[t] + 1) * hp->n_head * hp->head_dim;
    run_tok(c, n, phase_embed);
    for (int il = 0; il < hp->n_layer; il++) {
        const qd_layer_t *L = &m->layers[il];
        const qd_qmat_t *qkv[] = {&L->wq, &L->wk, &L->wv};
        const qd_qmat_t *gate_up[] = {&L->w_gate, &L->w_up};
        const qd_qmat_t *wo[] = {&L->wo}, *down[] = {&L->w_down};
        c->L = L;
        c->il = il;
        run_tok(c, n, phase_attn_norm);
        /* Before each product the one after it is named to the pool: the
         * threads prefetch its first rows while they wait (for the end of
         * this product, the serial steps after it). */
        qd_matmul_hint(c->pool, 1, wo, n);
        {
            float *outs[] = {c->q, c->k, c->v};
            const int64_t ldos[] = {c->n_q, c->n_kv, c->n_kv};
            matmul_n(c, 3, outs, ldos, qkv, c->xn, hp->n_embd, n);
        }
        run_tok(c, n, phase_qkv_post);
        if (attn_work < (double)(1 << 18))
            phase_attention(c, 0, 1); /* too small to split */
        else
            qd_pool_run(c->pool, phase_attention, c);
        qd_matmul_hint(c->pool, 2, gate_up, n);
        matmul(c, c->tmp, hp->n_embd, &L->wo, c->att, c->n_q, n);
        run_tok(c, n, phase_attn_residual);
        qd_matmul_hint(c->pool, 1, down, n);
        {
            float *outs[] = {c->gate, c->up};
            const int64_t ldos[] = {hp->n_ff, hp->n_ff};
            matmul_n(c, 2, outs, ldos, gate_up, c->xn, hp->n_embd, n);
        }
        run_tok(c, n, phase_swiglu);
        /* after the last layer: the output matrix, or the next step's
         * first layer */
        if (il + 1 < hp->n_layer) {
            hint_qkv(c, &m->layers[il + 1], n);
        } else if (c->ub_nout > 0) {
            const qd_qmat_t *out[] = {&m->output};
            qd_matmul_hint(c->pool, 1, out, c->ub_nout);
        } else {
            hint_qkv(c, &m->layers[0], n);
        }
        matmul(c, c->tmp, hp->n_embd, &L->w_down, c->gate, hp->n_ff, n);
        run_tok(c, n, phase_ffn_residual);
    }
    if (c->ub_nout > 0) {
        hint_qkv(c, &m->layers[0], n); /* the next step's first product */
        run_tok(c, c->ub_nout, phase_out_norm);
        matmul(c, c->logits + (size_t)c->ub_out0 * hp->n_vocab, hp->n_vocab,
               &m->output, c->xn, hp->n_embd, c->ub_nout);
    }
}

int qd_ctx_decode(qd_ctx_t *c, const qd_batch_t *b)
{
    const qd_model_t *m = c->m;
    const qd_hparams_t *hp = &m->hp;
    int32_t n = b->n_tokens;
    if (n <= 0 || n > c->p.n_batch) {
        qd_set_errmsg("decode: batch of %d tokens (1..%d allowed)", n,
                      c->p.n_batch);
        return QD_EINVAL;
    }
    for (int32_t t = 0; t < n; t++) {
        if (b->toks[t] < 0 || b->toks[t] >= hp->n_vocab) {
            qd_set_errmsg("decode: batch token %d: id %d outside the "
                          "vocabulary [0, %d)",
                          t, b->toks[t], hp->n_vocab);
            return QD_EINVAL;
        }
    }
    int rc = qd__kv_prepare(c->kv, b);
    if (rc < 0)
        return rc;
    /* From here on nothing can fail. Without a logits array only the last
     * token's logits are kept (llama.cpp's convention). */
    c->n_out = 0;
    for (int32_t t = 0; t < n; t++)
        if (b->logits ? b->logits[t] != 0 : t == n - 1)
            c->out_rows[c->n_out++] = t;
    /* Micro-batches of at most n_ubatch tokens, in batch order, their
     * sizes within one of each other (a short last one could take another
     * matmul path than the rest). */
    int32_t n_ub = (n + c->p.n_ubatch - 1) / c->p.n_ubatch;
    int32_t j = 0;
    for (int32_t u = 0, off = 0; u < n_ub; u++) {
        qd_batch_t ub = {
            .n_tokens = n / n_ub + (u < n % n_ub),
            .toks = b->toks + off,
            .pos = b->pos + off,
            .seq = b->seq + off,
        };
        c->ub_off = off;
        c->ub_out0 = j;
        while (j < c->n_out && c->out_rows[j] < off + ub.n_tokens)
            j++;
        c->ub_nout = j - c->ub_out0;
        forward(c, &ub);
        off += ub.n_tokens;
    }
    c->b = NULL;
    c->L = NULL;
    return 0;
}
