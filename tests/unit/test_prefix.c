/* test_prefix.c — the KV prefix cache: hits, partial hits, LRU eviction,
 * copy before writing a registered block, block accounting under 10,000
 * random operations, and logits with a cache hit equal to logits computed
 * from scratch. */
#include "engine/kv_int.h"
#include "quantd/common.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_LAYER 2
#define KV_DIM  4
#define B       QD_KV_BLOCK

static qd_kv_t *mk(int32_t n_seq, int32_t n_ctx, int32_t n_blocks)
{
    qd_kv_t *kv = NULL;
    size_t bb = (size_t)N_LAYER * 2 * B * 16; /* row = 4 f32 = 16 bytes */
    cr_assert_eq(qd__kv_create(N_LAYER, KV_DIM, n_seq, n_ctx,
                               (size_t)n_blocks * bb, QD_KV_F32, &kv),
                 0, "%s", qd_errmsg());
    cr_assert_eq(qd_kv_blocks_total(kv), n_blocks);
    return kv;
}

/* What a forward pass would store for token `tok` at `pos`: a function of
 * both, so that a wrong block handed out by the cache is caught. */
static float kval(int32_t tok, int32_t pos, int l)
{
    return (float)tok * 1000.0f + (float)pos + 0.25f * (float)l;
}

/* Feed toks[p0, p1) to seq (which holds p0 positions). */
static int feed(qd_kv_t *kv, int32_t seq, const int32_t *toks, int32_t p0,
                int32_t p1)
{
    int32_t t[256], pos[256], seqs[256];
    int32_t n = p1 - p0;
    cr_assert(n >= 0 && n <= 256);
    for (int32_t i = 0; i < n; i++) {
        t[i] = toks[p0 + i];
        pos[i] = p0 + i;
        seqs[i] = seq;
    }
    qd_batch_t b = {.n_tokens = n, .toks = t, .pos = pos, .seq = seqs};
    int rc = qd__kv_prepare(kv, &b);
    if (rc)
        return rc;
    for (int32_t p = p0; p < p1; p++)
        for (int l = 0; l < N_LAYER; l++) {
            float *k = (float *)qd__kv_k(kv, seq, p, l);
            float *v = (float *)qd__kv_v(kv, seq, p, l);
            for (int d = 0; d < KV_DIM; d++) {
                k[d] = kval(toks[p], p, l);
                v[d] = -k[d];
            }
        }
    return 0;
}

static int holds(const qd_kv_t *kv, int32_t seq, const int32_t *toks,
                 int32_t n)
{
    for (int32_t p = 0; p < n; p++)
        for (int l = 0; l < N_LAYER; l++) {
            const float *k = (const float *)qd__kv_k(kv, seq, p, l);
            const float *v = (const float *)qd__kv_v(kv, seq, p, l);
            for (int d = 0; d < KV_DIM; d++)
                if (k[d] != kval(toks[p], p, l) || v[d] != -k[d])
                    return 0;
        }
    return 1;
}

/* Every block is exactly one of: held (refcnt = number of table entries
 * naming it), free (on the stack), idle cached (on the LRU list). */
static void check_accounting(const qd_kv_t *kv)
{
    int32_t nb = kv->n_blocks;
    int32_t *refs = calloc((size_t)nb, sizeof *refs);
    uint8_t *seen = calloc((size_t)nb, 1);
    for (int32_t s = 0; s < kv->n_seq_max; s++) {
        cr_assert(kv->seq_len[s] <= kv->seq_blocks[s] * B);
        cr_assert(kv->seq_len[s] > (kv->seq_blocks[s] - 1) * B);
        for (int32_t i = 0; i < kv->seq_blocks[s]; i++)
            refs[kv->tables[(size_t)s * kv->max_seq_blocks + i]]++;
    }
    for (int32_t i = 0; i < nb; i++)
        cr_assert_eq(refs[i], kv->refcnt[i], "block %d: %d refs, refcnt %d",
                     i, refs[i], kv->refcnt[i]);
    for (int32_t i = 0; i < kv->n_free; i++) {
        int32_t b = kv->free_list[i];
        cr_assert(!seen[b] && kv->refcnt[b] == 0 && !kv->cached[b]);
        seen[b] = 1;
    }
    int32_t n_idle = 0;
    for (int32_t b = kv->lru_head; b >= 0; b = kv->lru_next[b]) {
        cr_assert(!seen[b] && kv->refcnt[b] == 0 && kv->cached[b]);
        seen[b] = 1;
        n_idle++;
    }
    cr_assert_eq(n_idle, kv->n_idle);
    for (int32_t i = 0; i < nb; i++)
        cr_assert(seen[i] || kv->refcnt[i] > 0, "block %d leaked", i);
    free(refs);
    free(seen);
}

static void fill_toks(int32_t *t, int32_t n, int32_t base)
{
    for (int32_t i = 0; i < n; i++)
        t[i] = base + (i * 7) % 13;
}

Test(prefix, hit_reuses_whole_blocks)
{
    qd_kv_t *kv = mk(2, 128, 16);
    int32_t t[64];
    fill_toks(t, 64, 3);
    cr_assert_eq(feed(kv, 0, t, 0, 40), 0);
    qd_kv_seq_cache(kv, 0, t, 40);
    qd_kv_seq_clear(kv, 0);
    check_accounting(kv);
    cr_expect_eq(qd_kv_blocks_free(kv), 16, "idle cached blocks count free");
    cr_expect_eq(qd_kv_blocks_cached(kv), 2);
    /* Same prompt: the two full blocks come back, holding the same KV. */
    cr_assert_eq(qd_kv_seq_adopt(kv, 1, t, 39), 32);
    cr_expect_eq(qd_kv_seq_len(kv, 1), 32);
    cr_expect_eq(qd_kv_blocks_cached(kv), 0);
    cr_expect_eq(qd_kv_blocks_free(kv), 14);
    cr_expect(holds(kv, 1, t, 32));
    cr_assert_eq(feed(kv, 1, t, 32, 40), 0);
    cr_expect(holds(kv, 1, t, 40));
    check_accounting(kv);
    /* A prompt of exactly 32 tokens: only 31 may be adopted -> 1 block. */
    cr_assert_eq(qd_kv_seq_adopt(kv, 0, t, 31), 16);
    cr_expect_eq(kv->refcnt[kv->tables[0]], 2, "shared with seq 1");
    qd_kv_seq_clear(kv, 0);
    qd_kv_seq_clear(kv, 1);
    check_accounting(kv);
    cr_expect_eq(qd_kv_blocks_free(kv), 16);
    for (int32_t i = 0; i < kv->n_blocks; i++)
        cr_expect_eq(kv->refcnt[i], 0);
    /* Adopting into a non-empty sequence is refused. */
    cr_assert_eq(feed(kv, 0, t, 0, 3), 0);
    cr_expect_eq(qd_kv_seq_adopt(kv, 0, t, 39), QD_EINVAL);
    qd__kv_destroy(kv);
}

Test(prefix, partial_hit_stops_at_divergent_block)
{
    qd_kv_t *kv = mk(2, 128, 16);
    int32_t t[64], u[64];
    fill_toks(t, 64, 3);
    cr_assert_eq(feed(kv, 0, t, 0, 48), 0);
    qd_kv_seq_cache(kv, 0, t, 48);
    qd_kv_seq_clear(kv, 0);
    cr_expect_eq(qd_kv_blocks_cached(kv), 3);
    /* Diverges at token 20 (inside block 1): only block 0 is reused. */
    memcpy(u, t, sizeof u);
    u[20] = 999;
    cr_expect_eq(qd_kv_seq_adopt(kv, 1, u, 63), 16);
    cr_assert_eq(feed(kv, 1, u, 16, 48), 0);
    cr_expect(holds(kv, 1, u, 48));
    qd_kv_seq_clear(kv, 1);
    /* Diverges in the first token: nothing. */
    u[0] = 998;
    cr_expect_eq(qd_kv_seq_adopt(kv, 1, u, 63), 0);
    /* Same block 1 and 2 tokens after a different block 0: no match — a
     * block is found under its whole prefix, not its own tokens. */
    u[20] = t[20];
    cr_expect_eq(qd_kv_seq_adopt(kv, 0, u + 0, 48), 0);
    /* The original still hits in full. */
    qd_kv_seq_clear(kv, 1);
    cr_expect_eq(qd_kv_seq_adopt(kv, 1, t, 48), 48);
    cr_expect(holds(kv, 1, t, 48));
    qd_kv_seq_clear(kv, 0);
    qd_kv_seq_clear(kv, 1);
    check_accounting(kv);
    qd__kv_destroy(kv);
}

Test(prefix, lru_eviction_under_pressure)
{
    qd_kv_t *kv = mk(2, 128, 4);
    int32_t a[16], b[16], big[64];
    fill_toks(a, 16, 10);
    fill_toks(b, 16, 40);
    fill_toks(big, 64, 70);
    cr_assert_eq(feed(kv, 0, a, 0, 16), 0);
    qd_kv_seq_cache(kv, 0, a, 16);
    qd_kv_seq_clear(kv, 0);
    cr_assert_eq(feed(kv, 0, b, 0, 16), 0);
    qd_kv_seq_cache(kv, 0, b, 16);
    qd_kv_seq_clear(kv, 0);
    cr_expect_eq(qd_kv_blocks_cached(kv), 2);
    cr_expect_eq(qd_kv_blocks_free(kv), 4);
    /* Three blocks: the two free ones, then the oldest idle one (a). */
    cr_assert_eq(feed(kv, 1, big, 0, 48), 0);
    check_accounting(kv);
    cr_expect_eq(qd_kv_blocks_cached(kv), 1);
    cr_expect_eq(qd_kv_seq_adopt(kv, 0, a, 16), 0, "a was evicted");
    cr_expect_eq(qd_kv_seq_adopt(kv, 0, b, 16), 16, "b was kept");
    cr_expect(holds(kv, 0, b, 16));
    /* b is held now, so the pool is full: all or nothing. */
    cr_expect_eq(feed(kv, 1, big, 48, 64), QD_EFULL);
    qd_kv_seq_clear(kv, 0);
    cr_assert_eq(feed(kv, 1, big, 48, 64), 0, "evicts b");
    cr_expect_eq(qd_kv_blocks_cached(kv), 0);
    cr_expect(holds(kv, 1, big, 64));
    qd_kv_seq_clear(kv, 1);
    check_accounting(kv);
    cr_expect_eq(qd_kv_blocks_free(kv), 4);
    qd__kv_destroy(kv);
}

Test(prefix, registered_block_is_copied_before_write)
{
    qd_kv_t *kv = mk(2, 128, 8);
    int32_t t[32], u[32];
    fill_toks(t, 32, 5);
    memcpy(u, t, sizeof u);
    for (int i = 20; i < 32; i++)
        u[i] = 300 + i;
    cr_assert_eq(feed(kv, 0, t, 0, 32), 0);
    qd_kv_seq_cache(kv, 0, t, 32);
    /* Rewrite the tail of block 1 in place: it must be copied first. */
    qd_kv_seq_truncate(kv, 0, 20);
    cr_assert_eq(feed(kv, 0, u, 20, 32), 0);
    cr_expect(holds(kv, 0, u, 32));
    cr_expect_eq(qd_kv_seq_adopt(kv, 1, t, 32), 32);
    cr_expect(holds(kv, 1, t, 32), "the cached block kept its KV");
    /* Registering again after an equal block exists changes nothing. */
    qd_kv_seq_cache(kv, 1, t, 32);
    qd_kv_seq_clear(kv, 0);
    qd_kv_seq_clear(kv, 1);
    check_accounting(kv);
    qd__kv_destroy(kv);
}

/* 10,000 random submit / step / cancel / finish operations over 4
 * sequences sharing a 12-block pool, with a small vocabulary so that
 * prefixes repeat: accounting holds after each, adopted KV always matches
 * its tokens, and nothing is held when all sequences are gone. */
Test(prefix, random_ops_leak_nothing)
{
    enum { NS = 4, CTX = 64 };
    qd_kv_t *kv = mk(NS, CTX, 12);
    int32_t toks[NS][CTX], len[NS] = {0}, active[NS] = {0};
    uint64_t st = 12345;
#define RND() (st = st * 6364136223846793005ULL + 1442695040888963407ULL, \
               (uint32_t)(st >> 33))
    int64_t hits = 0, fulls = 0;
    for (int op = 0; op < 10000; op++) {
        int32_t s = (int32_t)(RND() % NS);
        if (!active[s]) { /* submit: adopt what is cached, prefill rest */
            int32_t n = 1 + (int32_t)(RND() % 48);
            int32_t fam = (int32_t)(RND() % 3);
            for (int32_t i = 0; i < n; i++)
                toks[s][i] = (RND() % 8 == 0) ? (int32_t)(RND() % 4)
                                              : fam * 10 + i % 5;
            int32_t got = qd_kv_seq_adopt(kv, s, toks[s], n - 1);
            cr_assert(got >= 0 && got % B == 0 && got <= n - 1);
            cr_assert(holds(kv, s, toks[s], got), "op %d: wrong KV", op);
            hits += got;
            if (feed(kv, s, toks[s], got, n)) {
                fulls++;
                qd_kv_seq_clear(kv, s);
            } else {
                len[s] = n;
                active[s] = 1;
            }
        } else {
            uint32_t what = RND() % 4;
            if (what <= 1 && len[s] < CTX) { /* decode one token */
                toks[s][len[s]] = (int32_t)(RND() % 4);
                if (feed(kv, s, toks[s], len[s], len[s] + 1) == 0)
                    len[s]++;
                else
                    fulls++;
            } else if (what == 2) { /* cancel */
                qd_kv_seq_clear(kv, s);
                active[s] = 0;
            } else { /* finish: keep its blocks */
                cr_assert(holds(kv, s, toks[s], len[s]));
                qd_kv_seq_cache(kv, s, toks[s], len[s]);
                qd_kv_seq_clear(kv, s);
                active[s] = 0;
            }
        }
        check_accounting(kv);
    }
    for (int32_t s = 0; s < NS; s++)
        qd_kv_seq_clear(kv, s);
    check_accounting(kv);
    for (int32_t i = 0; i < kv->n_blocks; i++)
        cr_expect_eq(kv->refcnt[i], 0);
    cr_expect_eq(qd_kv_blocks_free(kv), qd_kv_blocks_total(kv));
    cr_expect(hits > 0, "the random workload never hit the cache");
    cr_expect(fulls > 0, "the random workload never filled the pool");
    qd__kv_destroy(kv);
#undef RND
}

/* ---- through the forward pass ----------------------------------------- */

static qd_model_t *load_stories(void)
{
    const char *sh = getenv("QD_SHARED");
    if (!sh || !*sh)
        cr_skip_test("test data not found: QD_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/gguf/stories260K.gguf", sh);
    FILE *f = fopen(path, "rb");
    if (!f)
        cr_skip_test("test data not found: %s", path);
    fclose(f);
    qd_model_t *m = NULL;
    cr_assert_eq(qd_model_load(path, &m), 0, "%s", qd_errmsg());
    return m;
}

static const float *decode_range(qd_ctx_t *c, int32_t seq, const int32_t *t,
                                 int32_t p0, int32_t p1)
{
    int32_t tk[64], pos[64], sq[64];
    int8_t lg[64];
    int32_t n = p1 - p0;
    for (int32_t i = 0; i < n; i++) {
        tk[i] = t[p0 + i];
        pos[i] = p0 + i;
        sq[i] = seq;
        lg[i] = i == n - 1;
    }
    qd_batch_t b = {n, tk, pos, sq, lg};
    cr_assert_eq(qd_ctx_decode(c, &b), 0, "%s", qd_errmsg());
    return qd_ctx_logits(c, 0);
}

Test(prefix, logits_with_hit_equal_scratch)
{
    qd_model_t *m = load_stories();
    int32_t n_vocab = qd_model_hparams(m)->n_vocab;
    qd_ctx_params_t p;
    qd_ctx_params_default(&p);
    p.n_ctx = 128;
    p.n_batch = 64;
    p.n_seq_max = 2;
    p.kv_type = QD_KV_F32;
    p.n_threads = 2;
    qd_ctx_t *c = NULL;
    cr_assert_eq(qd_ctx_create(m, &p, &c), 0, "%s", qd_errmsg());
    qd_kv_t *kv = qd_ctx_kv(c);
    int32_t t[45];
    for (int i = 0; i < 45; i++)
        t[i] = 3 + (i * 37) % (n_vocab - 3);
    float *ref = malloc((size_t)n_vocab * sizeof *ref);
    memcpy(ref, decode_range(c, 0, t, 0, 45), (size_t)n_vocab * sizeof *ref);
    qd_kv_seq_cache(kv, 0, t, 45);
    qd_kv_seq_clear(kv, 0);
    cr_assert_eq(qd_kv_seq_adopt(kv, 1, t, 44), 32);
    const float *hit = decode_range(c, 1, t, 32, 45);
    float worst = 0;
    for (int32_t i = 0; i < n_vocab; i++)
        worst = fmaxf(worst, fabsf(hit[i] - ref[i]));
    cr_expect(worst <= 1e-5f, "max |logit difference| %g", (double)worst);
    qd_kv_seq_clear(kv, 1);
    cr_expect_eq(qd_kv_blocks_free(kv), qd_kv_blocks_total(kv));
    free(ref);
    qd_ctx_free(c);
    qd_model_free(m);
}
