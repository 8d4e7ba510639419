/*
 * sampler.c — one row of logits to the next token.
 *
 * Chain (sampler.h): logit_bias → repetition / presence / frequency
 * penalties over the last repeat_last_n accepted tokens → greedy argmax when
 * temperature <= 0 → top_k → softmax with temperature → top_p → min_p →
 * a draw with the sampler's own RNG (xoshiro256**, seeded through
 * splitmix64, so the same seed gives the same tokens on any machine).
 *
 * Penalties as llama.cpp defines them, for a token seen c > 0 times in the
 * window: logit / repeat_penalty if the logit is positive, logit *
 * repeat_penalty otherwise; then logit -= c * frequency_penalty +
 * presence_penalty. Counts are kept incrementally (a ring of the window and
 * a count per vocabulary entry), so accept is O(1).
 *
 * Reported log-probabilities are those of the raw logits (plain softmax).
 * Buffers are allocated at create; sampling does not allocate.
 */
#include "quantd/sampler.h"

#include "quantd/common.h"

#include <math.h>
#include <string.h>

struct qd_sampler {
    qd_sampling_params_t p;
    int32_t n_vocab;
    qd_logit_bias_t *bias; /* [p.n_logit_bias] */
    float *work;           /* [n_vocab] modified logits */
    int32_t *cand;         /* [n_vocab] candidate ids */
    float *prob;           /* [n_vocab] candidate probabilities */
    int32_t *count;        /* [n_vocab] occurrences in the penalty window */
    int32_t *ring;         /* [repeat_last_n] the window (if > 0) */
    int32_t ring_len, ring_pos;
    uint64_t rng[4];
};

void qd_sampling_params_default(qd_sampling_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->presence_penalty = 0.0f;
    p->frequency_penalty = 0.0f;
    p->repeat_last_n = 64;
    p->seed = 0;
}

/* ---- RNG -------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4])
{
    return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53;
}

/* ---- create ----------------------------------------------------------- */

static int invalid(const char *what)
{
    qd_set_errmsg("sampler: %s", what);
    return QD_EINVAL;
}

int qd_sampler_create(const qd_sampling_params_t *p, int32_t n_vocab,
                      qd_sampler_t **out)
{
    *out = NULL;
    if (n_vocab <= 0)
        return invalid("vocabulary size must be positive");
    if (isnan(p->temperature) || isinf(p->temperature))
        return invalid("temperature must be a finite number");
    if (p->top_k < 0)
        return invalid("top_k must be >= 0");
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return invalid("top_p must be in (0, 1]");
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return invalid("min_p must be in [0, 1]");
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
        return invalid("repeat_penalty must be a positive finite number");
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return invalid("presence_penalty must be in [-2, 2]");
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return invalid("frequency_penalty must be in [-2, 2]");
    if (p->repeat_last_n < -1)
        return invalid("repeat_last_n must be >= -1");
    if (p->n_top_logprobs < 0 || p->n_top_logprobs > QD_SAMPLER_MAX_TOP)
        return invalid("n_top_logprobs must be in [0, 20]");
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return invalid("bad logit_bias list");
    for (int32_t i = 0; i < p->n_logit_bias; i++) {
        if (p->logit_bias[i].tok < 0 || p->logit_bias[i].tok >= n_vocab) {
            qd_set_errmsg("sampler: logit_bias token %d outside the "
                          "vocabulary [0, %d)",
                          p->logit_bias[i].tok, n_vocab);
            return QD_EINVAL;
        }
        if (isnan(p->logit_bias[i].bias) || p->logit_bias[i].bias == INFINITY)
            return invalid("logit_bias values must be numbers (-inf bans)");
    }
    qd_sampler_t *s = qd_calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->p = *p;
    s->n_vocab = n_vocab;
    size_t nv = (size_t)n_vocab;
    s->work = qd_malloc(nv * sizeof(float));
    s->cand = qd_malloc(nv * sizeof(int32_t));
    s->prob = qd_malloc(nv * sizeof(float));
    s->count = qd_calloc(nv, sizeof(int32_t));
    if (p->n_logit_bias > 0)
        s->bias = qd_malloc((size_t)p->n_logit_bias * sizeof *s->bias);
    if (p->repeat_last_n > 0)
        s->ring = qd_malloc((size_t)p->repeat_last_n * sizeof(int32_t));
    if (!s->work || !s->cand || !s->prob || !s->count ||
        (p->n_logit_bias > 0 && !s->bias) || (p->repeat_last_n > 0 && !s->ring))
        goto oom;
    if (p->n_logit_bias > 0)
        memcpy(s->bias, p->logit_bias,
               (size_t)p->n_logit_bias * sizeof *s->bias);
    s->p.logit_bias = s->bias;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    *out = s;
    return 0;
oom:
    qd_sampler_destroy(s);
    qd_set_errmsg("sampler: out of memory");
    return QD_ENOMEM;
}

void qd_sampler_destroy(qd_sampler_t *s)
{
    if (!s)
        return;
    qd_free(s->work);
    qd_free(s->cand);
    qd_free(s->prob);
    qd_free(s->count);
    qd_free(s->bias);
    qd_free(s->ring);
    qd_free(s);
}

void qd_sampler_accept(qd_sampler_t *s, int32_t tok)
{
    if (tok < 0 || tok >= s->n_vocab || s->p.repeat_last_n == 0)
        return;
    if (s->p.repeat_last_n > 0) {
        if (s->ring_len == s->p.repeat_last_n)
            s->count[s->ring[s->ring_pos]]--;
        else
            s->ring_len++;
        s->ring[s->ring_pos] = tok;
        s->ring_pos = (s->ring_pos + 1) % s->p.repeat_last_n;
    }
    s->count[tok]++;
}

/* ---- sampling --------------------------------------------------------- */

/* Raw log-softmax figures of the unmodified logits: max and log(sum). */
static void raw_logprobs(const qd_sampler_t *s, const float *logits,
                         qd_sample_t *out)
{
    int32_t n = s->n_vocab;
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (logits[i] > max)
            max = logits[i];
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++)
        sum += (double)expf(logits[i] - max);
    float lse = max + (float)log(sum);
    out->logprob = logits[out->tok] - lse;
    /* Top-N by raw logit (insertion into a short sorted list; ties keep
     * the lower id first). */
    int32_t k = s->p.n_top_logprobs, m = 0;
    for (int32_t i = 0; i < n && k > 0; i++) {
        float v = logits[i];
        if (m == k && !(v > logits[out->top_toks[m - 1]]))
            continue;
        int32_t j = m < k ? m++ : k - 1;
        while (j > 0 && v > logits[out->top_toks[j - 1]]) {
            out->top_toks[j] = out->top_toks[j - 1];
            j--;
        }
        out->top_toks[j] = i;
    }
    out->n_top = m;
    for (int32_t j = 0; j < m; j++)
        out->top_logprobs[j] = logits[out->top_toks[j]] - lse;
}

static void apply_penalties(qd_sampler_t *s)
{
    const qd_sampling_params_t *p = &s->p;
    if (p->repeat_last_n == 0 ||
        (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f &&
         p->frequency_penalty == 0.0f))
        return;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        int32_t c = s->count[i];
        if (c == 0)
            continue;
        float l = s->work[i];
        l = l > 0.0f ? l / p->repeat_penalty : l * p->repeat_penalty;
        l -= (float)c * p->frequency_penalty + p->presence_penalty;
        s->work[i] = l;
    }
}

static int32_t argmax(const float *v, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

/* 1 if candidate a ranks before b: higher logit first, then lower id. */
static int ranks_before(const float *w, int32_t a, int32_t b)
{
    return w[a] > w[b] || (w[a] == w[b] && a < b);
}

/* Heap sort helper: sift a[r] down in a heap of n whose root is the
 * candidate ranked last. */
static void sift_down(int32_t *a, const float *w, int32_t r, int32_t n)
{
    for (;;) {
        int32_t ch = 2 * r + 1;
        if (ch >= n)
            break;
        if (ch + 1 < n && ranks_before(w, a[ch], a[ch + 1]))
            ch++;
        if (!ranks_before(w, a[r], a[ch]))
            break;
        int32_t t = a[r];
        a[r] = a[ch];
        a[ch] = t;
        r = ch;
    }
}

/* Sort cand[0..n) best first (in place, no allocation, deterministic). */
static void sort_cands(qd_sampler_t *s, int32_t n)
{
    int32_t *a = s->cand;
    for (int32_t r = n / 2 - 1; r >= 0; r--)
        sift_down(a, s->work, r, n);
    for (int32_t end = n - 1; end > 0; end--) {
        int32_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, s->work, 0, end);
    }
}

int qd_sampler_sample(qd_sampler_t *s, const float *logits, qd_sample_t *out)
{
    const qd_sampling_params_t *p = &s->p;
    int32_t nv = s->n_vocab;
    memcpy(s->work, logits, (size_t)nv * sizeof(float));
    for (int32_t i = 0; i < p->n_logit_bias; i++)
        s->work[p->logit_bias[i].tok] += p->logit_bias[i].bias;
    apply_penalties(s);

    int32_t tok;
    if (p->temperature <= 0.0f) {
        tok = argmax(s->work, nv);
    } else {
        /* Candidates: all ids with a finite modified logit. */
        int32_t n = 0;
        for (int32_t i = 0; i < nv; i++)
            if (s->work[i] > -INFINITY)
                s->cand[n++] = i;
        if (n == 0) {
            qd_set_errmsg("sampler: every token is banned");
            return QD_EINVAL;
        }
        int need_sorted = (p->top_k > 0 && p->top_k < n) || p->top_p < 1.0f;
        if (need_sorted)
            sort_cands(s, n);
        if (p->top_k > 0 && p->top_k < n)
            n = p->top_k;
        /* Softmax with temperature over the candidates. */
        float max = -INFINITY;
        for (int32_t j = 0; j < n; j++)
            max = QD_MAX(max, s->work[s->cand[j]]);
        double sum = 0.0;
        for (int32_t j = 0; j < n; j++) {
            float e = expf((s->work[s->cand[j]] - max) / p->temperature);
            s->prob[j] = e;
            sum += e;
        }
        for (int32_t j = 0; j < n; j++)
            s->prob[j] = (float)(s->prob[j] / sum);
        /* top_p: the smallest sorted prefix reaching p (at least one). */
        if (p->top_p < 1.0f) {
            double cum = 0.0;
            int32_t keep = n;
            for (int32_t j = 0; j < n; j++) {
                cum += s->prob[j];
                if (cum >= p->top_p) {
                    keep = j + 1;
                    break;
                }
            }
            n = keep;
        }
        /* min_p: drop candidates below min_p times the most likely. */
        if (p->min_p > 0.0f) {
            float pmax = 0.0f;
            for (int32_t j = 0; j < n; j++)
                pmax = QD_MAX(pmax, s->prob[j]);
            float thr = p->min_p * pmax;
            int32_t k = 0;
            for (int32_t j = 0; j < n; j++) {
                if (s->prob[j] >= thr) {
                    s->cand[k] = s->cand[j];
                    s->prob[k] = s->prob[j];
                    k++;
                }
            }
            n = k;
        }
        /* Draw from what is left (renormalized). */
        double total = 0.0;
        for (int32_t j = 0; j < n; j++)
            total += s->prob[j];
        double r = rng_uniform(s->rng) * total, acc = 0.0;
        tok = s->cand[n - 1];
        for (int32_t j = 0; j < n; j++) {
            acc += s->prob[j];
            if (r < acc) {
                tok = s->cand[j];
                break;
            }
        }
    }
    out->tok = tok;
    raw_logprobs(s, logits, out);
    return 0;
}
