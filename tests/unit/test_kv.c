/* test_kv.c — the paged KV cache: block accounting, all-or-nothing
 * QD_EFULL, prefix sharing by fork and copy on write. */
#include "engine/kv_int.h"
#include "quantd/common.h"

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define N_LAYER 2
#define KV_DIM  8

static qd_kv_t *mk(int32_t n_seq, int32_t n_ctx, size_t kv_bytes)
{
    qd_kv_t *kv = NULL;
    cr_assert_eq(
        qd__kv_create(N_LAYER, KV_DIM, n_seq, n_ctx, kv_bytes, QD_KV_F32, &kv),
        0, "%s", qd_errmsg());
    return kv;
}

/* Append n positions to seq with K/V values tagging (seq tag, pos, layer). */
static int append(qd_kv_t *kv, int32_t seq, int32_t n, float tag)
{
    int32_t toks[64], pos[64], seqs[64];
    int32_t p0 = qd_kv_seq_len(kv, seq);
    for (int32_t i = 0; i < n; i++) {
        toks[i] = 0;
        pos[i] = p0 + i;
        seqs[i] = seq;
    }
    qd_batch_t b = {.n_tokens = n, .toks = toks, .pos = pos, .seq = seqs};
    int rc = qd__kv_prepare(kv, &b);
    if (rc)
        return rc;
    for (int32_t i = 0; i < n; i++)
        for (int l = 0; l < N_LAYER; l++) {
            float *k = (float *)qd__kv_k(kv, seq, p0 + i, l);
            float *v = (float *)qd__kv_v(kv, seq, p0 + i, l);
            for (int d = 0; d < KV_DIM; d++) {
                k[d] = tag + (float)(p0 + i) + 0.01f * l;
                v[d] = -k[d];
            }
        }
    return 0;
}

static int check(const qd_kv_t *kv, int32_t seq, int32_t p0, int32_t p1,
                 float tag)
{
    for (int32_t p = p0; p < p1; p++)
        for (int l = 0; l < N_LAYER; l++) {
            const float *k = (const float *)qd__kv_k(kv, seq, p, l);
            const float *v = (const float *)qd__kv_v(kv, seq, p, l);
            float want = tag + (float)p + 0.01f * l;
            for (int d = 0; d < KV_DIM; d++)
                if (k[d] != want || v[d] != -want)
                    return 0;
        }
    return 1;
}

Test(kv, blocks_follow_positions)
{
    qd_kv_t *kv = mk(2, 64, 0);
    cr_expect_eq(qd_kv_blocks_total(kv), 2 * 4);
    cr_expect_eq(qd_kv_blocks_free(kv), 8);
    cr_assert_eq(append(kv, 0, 1, 100), 0);
    cr_expect_eq(qd_kv_blocks_free(kv), 7);
    cr_assert_eq(append(kv, 0, 15, 100), 0);
    cr_expect_eq(qd_kv_blocks_free(kv), 7);
    cr_assert_eq(append(kv, 0, 1, 100), 0);
    cr_expect_eq(qd_kv_blocks_free(kv), 6);
    cr_expect_eq(qd_kv_seq_len(kv, 0), 17);
    cr_expect(check(kv, 0, 0, 17, 100));
    qd_kv_seq_truncate(kv, 0, 16);
    cr_expect_eq(qd_kv_blocks_free(kv), 7);
    cr_expect_eq(qd_kv_seq_len(kv, 0), 16);
    cr_expect(check(kv, 0, 0, 16, 100));
    qd_kv_seq_clear(kv, 0);
    cr_expect_eq(qd_kv_blocks_free(kv), 8);
    cr_expect_eq(qd_kv_seq_len(kv, 0), 0);
    cr_expect_eq(qd_kv_block_bytes(kv) % 64, 0);
    cr_expect_geq(qd_kv_block_bytes(kv),
                  (size_t)N_LAYER * 2 * QD_KV_BLOCK * KV_DIM * sizeof(float));
    qd__kv_destroy(kv);
}

Test(kv, bad_positions_are_rejected_without_change)
{
    qd_kv_t *kv = mk(2, 32, 0);
    cr_assert_eq(append(kv, 0, 3, 0), 0);
    int32_t toks[2] = {0, 0}, pos[2] = {3, 5}, seq[2] = {0, 0};
    qd_batch_t b = {.n_tokens = 2, .toks = toks, .pos = pos, .seq = seq};
    cr_expect_eq(qd__kv_prepare(kv, &b), QD_EINVAL); /* gap */
    pos[1] = 4;
    seq[1] = 7;
    cr_expect_eq(qd__kv_prepare(kv, &b), QD_EINVAL); /* bad seq */
    cr_expect_eq(qd_kv_seq_len(kv, 0), 3);
    /* past the context */
    cr_assert_eq(append(kv, 1, 32, 0), 0);
    cr_expect_eq(append(kv, 1, 1, 0), QD_ERANGE);
    cr_expect_eq(qd_kv_seq_len(kv, 1), 32);
    qd__kv_destroy(kv);
}

Test(kv, full_pool_changes_nothing)
{
    size_t bb;
    {
        qd_kv_t *probe = mk(1, 16, 0);
        bb = qd_kv_block_bytes(probe);
        qd__kv_destroy(probe);
    }
    qd_kv_t *kv = mk(3, 256, 3 * bb); /* 3 blocks for 3 sequences */
    cr_assert_eq(qd_kv_blocks_total(kv), 3);
    cr_assert_eq(append(kv, 0, 32, 10), 0); /* 2 blocks */
    cr_assert_eq(append(kv, 1, 5, 20), 0);  /* 1 block */
    cr_expect_eq(qd_kv_blocks_free(kv), 0);
    /* A batch of two sequences, one of which fits in its block, the other
     * needs a new one: all or nothing. */
    int32_t toks[2] = {0, 0}, pos[2] = {5, 32}, seq[2] = {1, 0};
    qd_batch_t b = {.n_tokens = 2, .toks = toks, .pos = pos, .seq = seq};
    cr_expect_eq(qd__kv_prepare(kv, &b), QD_EFULL);
    cr_expect_eq(qd_kv_seq_len(kv, 0), 32);
    cr_expect_eq(qd_kv_seq_len(kv, 1), 5);
    cr_expect_eq(qd_kv_blocks_free(kv), 0);
    cr_expect(check(kv, 0, 0, 32, 10));
    cr_expect(check(kv, 1, 0, 5, 20));
    /* Still usable: sequence 1 grows inside its block, and after clearing
     * sequence 0 everything is available again. */
    cr_expect_eq(append(kv, 1, 3, 20), 0);
    qd_kv_seq_clear(kv, 0);
    cr_expect_eq(qd_kv_blocks_free(kv), 2);
    cr_expect_eq(append(kv, 2, 32, 30), 0);
    cr_expect(check(kv, 2, 0, 32, 30));
    cr_expect(check(kv, 1, 0, 8, 20));
    qd__kv_destroy(kv);
}

Test(kv, fork_shares_whole_blocks_and_copies_on_write)
{
    qd_kv_t *kv = mk(3, 128, 0);
    int32_t total = qd_kv_blocks_total(kv);
    cr_assert_eq(append(kv, 0, 40, 1000), 0); /* blocks 0,1 full, 2 partial */
    cr_expect_eq(qd_kv_blocks_free(kv), total - 3);

    /* Fork 32 positions: two whole blocks by reference, nothing copied. */
    cr_assert_eq(qd_kv_seq_fork(kv, 1, 0, 32), 0);
    cr_expect_eq(qd_kv_blocks_free(kv), total - 3);
    cr_expect_eq(qd_kv_seq_len(kv, 1), 32);
    cr_expect(check(kv, 1, 0, 32, 1000));
    /* Fork 20 positions: one shared block + a copy of the partial one. */
    cr_assert_eq(qd_kv_seq_fork(kv, 2, 0, 20), 0);
    cr_expect_eq(qd_kv_blocks_free(kv), total - 4);
    cr_expect(check(kv, 2, 0, 20, 1000));
    /* Forking into a non-empty sequence is refused. */
    cr_expect_eq(qd_kv_seq_fork(kv, 2, 0, 4), QD_EINVAL);
    cr_expect_eq(qd_kv_seq_fork(kv, 2, 0, 41), QD_EINVAL);

    /* Sequence 2 writes into its own (copied) block: others unchanged. */
    cr_assert_eq(append(kv, 2, 4, 5000), 0);
    cr_expect(check(kv, 2, 0, 20, 1000));
    cr_expect(check(kv, 2, 20, 24, 5000));
    cr_expect(check(kv, 0, 0, 40, 1000));

    /* Truncate 0 into the shared block 1 and write there: copy on write,
     * so sequence 1 still sees the original values. */
    qd_kv_seq_truncate(kv, 0, 20);
    int32_t before = qd_kv_blocks_free(kv);
    cr_assert_eq(append(kv, 0, 4, 7000), 0);
    cr_expect_eq(qd_kv_blocks_free(kv), before - 1);
    cr_expect(check(kv, 0, 0, 20, 1000));
    cr_expect(check(kv, 0, 20, 24, 7000));
    cr_expect(check(kv, 1, 0, 32, 1000));

    /* Releasing everything returns every block exactly once. */
    qd_kv_seq_clear(kv, 0);
    qd_kv_seq_clear(kv, 1);
    qd_kv_seq_clear(kv, 2);
    cr_expect_eq(qd_kv_blocks_free(kv), total);
    qd__kv_destroy(kv);
}

Test(kv, create_rejects_bad_sizes)
{
    qd_kv_t *kv = NULL;
    cr_expect_eq(qd__kv_create(2, 8, 1, 16, 10, QD_KV_F32, &kv), QD_EINVAL);
    cr_expect_eq(qd__kv_create(0, 8, 1, 16, 0, QD_KV_F32, &kv), QD_EINVAL);
    /* q8_0 rows are whole 32-value blocks */
    cr_expect_eq(qd__kv_create(2, 8, 1, 16, 0, QD_KV_Q8_0, &kv), QD_EINVAL);
    cr_expect_eq(qd__kv_create(2, 80, 1, 16, 0, QD_KV_Q8_0, &kv), QD_EINVAL);
    cr_expect_eq(qd__kv_create(2, 8, 1, 16, 0, (qd_kv_type_t)7, &kv),
                 QD_EUNSUPPORTED);
    cr_expect_null(kv);
    qd__kv_destroy(NULL);
}

/* A q8_0 block holds kv_dim / 32 blocks of 34 bytes per row instead of
 * 2 * kv_dim bytes: the same budget holds ~1.9x the positions of f16. */
Test(kv, q8_0_blocks_are_smaller)
{
    static const int32_t dims[] = {32, 128, 256, 1024};
    for (size_t i = 0; i < QD_ARRAY_SIZE(dims); i++) {
        qd_kv_t *k16 = NULL, *k8 = NULL;
        size_t budget = (size_t)64 << 20;
        cr_assert_eq(qd__kv_create(4, dims[i], 2, 512, budget, QD_KV_F16,
                                   &k16),
                     0, "%s", qd_errmsg());
        cr_assert_eq(qd__kv_create(4, dims[i], 2, 512, budget, QD_KV_Q8_0,
                                   &k8),
                     0, "%s", qd_errmsg());
        size_t row = (size_t)dims[i] / 32 * 34;
        cr_expect_eq(k8->row_bytes, row);
        cr_expect_eq(qd_kv_block_bytes(k8),
                     QD_ALIGN_UP(4 * 2 * QD_KV_BLOCK * row, 64));
        double ratio = (double)qd_kv_block_bytes(k16) / qd_kv_block_bytes(k8);
        double held = (double)qd_kv_blocks_total(k8) / qd_kv_blocks_total(k16);
        fprintf(stderr, "kv_dim %4d: block bytes f16 %zu, q8_0 %zu (%.3fx); "
                "blocks in 64 MiB %d vs %d\n",
                dims[i], qd_kv_block_bytes(k16), qd_kv_block_bytes(k8), ratio,
                qd_kv_blocks_total(k16), qd_kv_blocks_total(k8));
        cr_expect_geq(ratio, 1.85);
        cr_expect_geq(held, ratio * 0.99);
        /* Rows of a block do not overlap: K rows then V rows per layer. */
        int32_t toks[QD_KV_BLOCK] = {0}, pos[QD_KV_BLOCK], seq[QD_KV_BLOCK];
        for (int p = 0; p < QD_KV_BLOCK; p++) {
            pos[p] = p;
            seq[p] = 1;
        }
        qd_batch_t b = {
            .n_tokens = QD_KV_BLOCK, .toks = toks, .pos = pos, .seq = seq};
        cr_assert_eq(qd__kv_prepare(k8, &b), 0, "%s", qd_errmsg());
        cr_expect_eq(qd__kv_k(k8, 1, 1, 0) - qd__kv_k(k8, 1, 0, 0),
                     (ptrdiff_t)row);
        cr_expect_eq(qd__kv_v(k8, 1, 0, 0) - qd__kv_k(k8, 1, 0, 0),
                     (ptrdiff_t)(QD_KV_BLOCK * row));
        cr_expect_eq(qd__kv_k(k8, 1, 0, 1) - qd__kv_k(k8, 1, 0, 0),
                     (ptrdiff_t)(2 * QD_KV_BLOCK * row));
        qd__kv_destroy(k16);
        qd__kv_destroy(k8);
    }
}
