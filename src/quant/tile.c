/*
 * tile.c — weight decoding for the tiled (prompt / batch) matmul path.
 *
 * Every integer format is brought to one shape: unsigned 8-bit values u,
 * and for each subblock s of S values (S = 16 or 32) a float scale dsc and
 * a float correction corr, such that for an activation subblock with
 * integer values a, scale da and integer sum A:
 *
 *     dot(w_s, x_s) = da * (dsc * sum(u * a) + corr * A)
 *
 * (Q4_K: u = q, dsc = d*sc, corr = -dmin*m; Q8_0: u = q + 128, dsc = d,
 * corr = -128*d; and so on.) The SIMD micro-kernel then needs only
 * u8 x s8 dot products (vpdpbusd) whatever the format, and the weight
 * values of 16 rows are interleaved in groups of 4 (u[(k/4)*64 + r*4 +
 * k%4]) so that one 64-byte vector holds 4 values of each of 16 rows.
 *
 * Decoding is plain C; its cost is amortized over all the activation rows
 * of a batch.
 */
#include <string.h>

#include "quant/kernels.h"
#include "quant/ref_int.h"
#include "quantd/common.h"

static inline float h2f(qd_fp16_t h) { return qd_fp16_to_fp32(h); }

int qd__tile_sub(qd_type_t t)
{
    switch (t) {
    case QD_TYPE_Q4_0: case QD_TYPE_Q4_1: case QD_TYPE_Q5_0:
    case QD_TYPE_Q5_1: case QD_TYPE_Q8_0: case QD_TYPE_IQ4_NL:
    case QD_TYPE_Q4_K: case QD_TYPE_Q5_K: case QD_TYPE_IQ4_XS:
    case QD_TYPE_Q4_G128:
        return 32;
    case QD_TYPE_Q2_K: case QD_TYPE_Q3_K: case QD_TYPE_Q6_K:
        return 16;
    default:
        return 0;
    }
}

static void k4_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Decode nk values of one row from value k0 (both multiples of the block
 * size) into u[0..nk) and dsc/corr per subblock. */
static void decode_row(qd_type_t t, const uint8_t *row, int64_t k0, int nk,
                       uint8_t *u, float *dsc, float *corr)
{
    switch (t) {
    case QD_TYPE_Q4_0: {
        const qd_block_q4_0 *b = (const qd_block_q4_0 *)row + k0 / 32;
        for (int i = 0; i < nk / 32; i++, b++, u += 32) {
            for (int j = 0; j < 16; j++) {
                u[j] = b->qs[j] & 0xf;
                u[j + 16] = b->qs[j] >> 4;
            }
            dsc[i] = h2f(b->d);
            corr[i] = -(float)qd__tile_off(QD_TYPE_Q4_0) * dsc[i];
        }
        return;
    }
    case QD_TYPE_Q4_1: {
        const qd_block_q4_1 *b = (const qd_block_q4_1 *)row + k0 / 32;
        for (int i = 0; i < nk / 32; i++, b++, u += 32) {
            for (int j = 0; j < 16; j++) {
                u[j] = b->qs[j] & 0xf;
                u[j + 16] = b->qs[j] >> 4;
            }
            dsc[i] = h2f(b->d);
            corr[i] = h2f(b->m); /* times the activation's s = da * A */
        }
        return;
    }
    case QD_TYPE_Q4_G128: {
        /* each 32-value subblock: the block's d and m */
        const qd_block_q4_g128 *b = (const qd_block_q4_g128 *)row + k0 / 128;
        for (int i = 0; i < nk / 128; i++, b++, u += 128) {
            for (int j = 0; j < 64; j++) {
                u[j] = b->qs[j] & 0xf;
                u[j + 64] = b->qs[j] >> 4;
            }
            for (int h = 0; h < 4; h++) {
                dsc[4 * i + h] = h2f(b->d);
                corr[4 * i + h] = h2f(b->m);
            }
        }
        return;
    }
    case QD_TYPE_Q5_0: case QD_TYPE_Q5_1: {
        int is1 = t == QD_TYPE_Q5_1;
        size_t bb = is1 ? sizeof(qd_block_q5_1) : sizeof(qd_block_q5_0);
        const uint8_t *p = row + (size_t)(k0 / 32) * bb;
        for (int i = 0; i < nk / 32; i++, p += bb, u += 32) {
            qd_fp16_t d, m = 0;
            uint32_t qh;
            memcpy(&d, p, 2);
            if (is1)
                memcpy(&m, p + 2, 2);
            memcpy(&qh, p + (is1 ? 4 : 2), 4);
            const uint8_t *qs = p + (is1 ? 8 : 6);
            for (int j = 0; j < 16; j++) {
                u[j] = (uint8_t)((qs[j] & 0xf) | (((qh >> j) & 1) << 4));
                u[j + 16] = (uint8_t)((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
            }
            dsc[i] = h2f(d);
            corr[i] = is1 ? h2f(m) : -(float)qd__tile_off(QD_TYPE_Q5_0) * dsc[i];
        }
        return;
    }
    case QD_TYPE_Q8_0: {
        const qd_block_q8_0 *b = (const qd_block_q8_0 *)row + k0 / 32;
        for (int i = 0; i < nk / 32; i++, b++, u += 32) {
            for (int j = 0; j < 32; j++)
                u[j] = (uint8_t)(b->qs[j] + 128);
            dsc[i] = h2f(b->d);
            corr[i] = -(float)qd__tile_off(QD_TYPE_Q8_0) * dsc[i];
        }
        return;
    }
    case QD_TYPE_IQ4_NL: {
        const qd_block_iq4_nl *b = (const qd_block_iq4_nl *)row + k0 / 32;
        for (int i = 0; i < nk / 32; i++, b++, u += 32) {
            for (int j = 0; j < 16; j++) {
                u[j] = (uint8_t)(qd_kvalues_iq4nl[b->qs[j] & 0xf] + 128);
                u[j + 16] = (uint8_t)(qd_kvalues_iq4nl[b->qs[j] >> 4] + 128);
            }
            dsc[i] = h2f(b->d);
            corr[i] = -(float)qd__tile_off(QD_TYPE_IQ4_NL) * dsc[i];
        }
        return;
    }
    case QD_TYPE_IQ4_XS: {
        const qd_block_iq4_xs *b = (const qd_block_iq4_xs *)row + k0 / QD_QK_K;
        for (int i = 0; i < nk / QD_QK_K; i++, b++) {
            float d = h2f(b->d);
            for (int ib = 0; ib < 8; ib++, u += 32) {
                const uint8_t *qs = b->qs + 16 * ib;
                for (int j = 0; j < 16; j++) {
                    u[j] = (uint8_t)(qd_kvalues_iq4nl[qs[j] & 0xf] + 128);
                    u[j + 16] = (uint8_t)(qd_kvalues_iq4nl[qs[j] >> 4] + 128);
                }
                *dsc = d * (float)qd__iq4xs_scale(b->scales_l, b->scales_h, ib);
                *corr++ = -(float)qd__tile_off(QD_TYPE_IQ4_XS) * *dsc++;
            }
        }
        return;
    }
    case QD_TYPE_Q4_K: case QD_TYPE_Q5_K: {
        int is5 = t == QD_TYPE_Q5_K;
        size_t bb = is5 ? sizeof(qd_block_q5_K) : sizeof(qd_block_q4_K);
        const uint8_t *p = row + (size_t)(k0 / QD_QK_K) * bb;
        for (int i = 0; i < nk / QD_QK_K; i++, p += bb) {
            qd_fp16_t hd, hm;
            memcpy(&hd, p, 2);
            memcpy(&hm, p + 2, 2);
            float d = h2f(hd), dmin = h2f(hm);
            const uint8_t *scales = p + 4;
            const uint8_t *qh = is5 ? p + 16 : NULL;
            const uint8_t *qs = p + (is5 ? 48 : 16);
            for (int j = 0; j < 4; j++, qs += 32) {
                for (int l = 0; l < 32; l++) {
                    int lo = qs[l] & 0xf, hi = qs[l] >> 4;
                    if (is5) {
                        lo |= ((qh[l] >> (2 * j)) & 1) << 4;
                        hi |= ((qh[l] >> (2 * j + 1)) & 1) << 4;
                    }
                    u[64 * j + l] = (uint8_t)lo;
                    u[64 * j + 32 + l] = (uint8_t)hi;
                }
                for (int h = 0; h < 2; h++) {
                    int sc, m;
                    k4_scale_min(2 * j + h, scales, &sc, &m);
                    *dsc++ = d * (float)sc;
                    *corr++ = -dmin * (float)m;
                }
            }
            u += QD_QK_K;
        }
        return;
    }
    case QD_TYPE_Q6_K: {
        const qd_block_q6_K *b = (const qd_block_q6_K *)row + k0 / QD_QK_K;
        for (int i = 0; i < nk / QD_QK_K; i++, b++) {
            float d = h2f(b->d);
            const uint8_t *ql = b->ql, *qh = b->qh;
            for (int h = 0; h < 2; h++, ql += 64, qh += 32, u += 128) {
                for (int l = 0; l < 32; l++) {
                    u[l] = (uint8_t)((ql[l] & 0xf) | ((qh[l] & 3) << 4));
                    u[l + 32] = (uint8_t)((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4));
                    u[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                    u[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
                }
            }
            for (int g = 0; g < 16; g++) {
                *dsc = d * (float)b->scales[g];
                *corr++ = -(float)qd__tile_off(QD_TYPE_Q6_K) * *dsc++;
            }
        }
        return;
    }
    case QD_TYPE_Q2_K: {
        const qd_block_q2_K *b = (const qd_block_q2_K *)row + k0 / QD_QK_K;
        for (int i = 0; i < nk / QD_QK_K; i++, b++) {
            float d = h2f(b->d), dmin = h2f(b->dmin);
            const uint8_t *q = b->qs;
            int is = 0;
            for (int h = 0; h < 2; h++, q += 32) {
                for (int j = 0; j < 4; j++) {
                    int shift = 2 * j;
                    for (int l = 0; l < 32; l++)
                        u[l] = (q[l] >> shift) & 3;
                    u += 32;
                    for (int k = 0; k < 2; k++, is++) {
                        *dsc++ = d * (float)(b->scales[is] & 0xf);
                        *corr++ = -dmin * (float)(b->scales[is] >> 4);
                    }
                }
            }
        }
        return;
    }
    case QD_TYPE_Q3_K: {
        const qd_block_q3_K *b = (const qd_block_q3_K *)row + k0 / QD_QK_K;
        for (int i = 0; i < nk / QD_QK_K; i++, b++) {
            float d = h2f(b->d);
            const uint8_t *q = b->qs;
            int m = 1, is = 0;
            for (int h = 0; h < 2; h++, q += 32) {
                for (int j = 0; j < 4; j++, m <<= 1) {
                    int shift = 2 * j;
                    for (int l = 0; l < 32; l++)
                        u[l] = (uint8_t)(((q[l] >> shift) & 3) +
                                         ((b->hmask[l] & m) ? 4 : 0));
                    u += 32;
                    for (int k = 0; k < 2; k++, is++) {
                        *dsc = d * (float)qd__q3k_scale(b->scales, is);
                        *corr++ = -(float)qd__tile_off(QD_TYPE_Q3_K) * *dsc++;
                    }
                }
            }
        }
        return;
    }
    default:
        return;
    }
}

void qd__tile_prefetch(qd_type_t t, const uint8_t *row0, size_t row_bytes,
                       int n_rows, int64_t k0, int nk)
{
    size_t off = qd_row_size(t, k0), len = qd_row_size(t, nk);
    for (int r = 0; r < n_rows; r++) {
        const uint8_t *p = row0 + (size_t)r * row_bytes + off;
        for (size_t o = 0; o < len; o += 64)
            __builtin_prefetch(p + o, 0, 2);
    }
}

void qd__tile_prefetch_next(const qd_qmat_t *w, int64_t rt, int64_t r1, int64_t k0)
{
    const int64_t K = w->n_cols;
    const uint8_t *row0 = (const uint8_t *)w->data + (size_t)rt * w->row_bytes;
    if (k0 + QD_TILE_K < K)
        qd__tile_prefetch(w->type, row0, w->row_bytes,
                          (int)QD_MIN((int64_t)QD_TILE_ROWS, r1 - rt), k0 + QD_TILE_K,
                          (int)QD_MIN((int64_t)QD_TILE_K, K - k0 - QD_TILE_K));
    else if (rt + QD_TILE_ROWS < r1)
        qd__tile_prefetch(w->type, row0 + (size_t)QD_TILE_ROWS * w->row_bytes, w->row_bytes,
                          (int)QD_MIN((int64_t)QD_TILE_ROWS, r1 - rt - QD_TILE_ROWS), 0,
                          (int)QD_MIN((int64_t)QD_TILE_K, K));
}

void qd__tile_decode(qd_type_t t, const uint8_t *row0, size_t row_bytes,
                     int n_rows, int64_t k0, int nk, uint8_t *restrict u,
                     float *restrict dsc, float *restrict corr)
{
    int S = qd__tile_sub(t), ns = nk / S;
    _Alignas(64) uint8_t tmp[QD_TILE_K];
    _Alignas(64) float ds[QD_TILE_K / 16], cr[QD_TILE_K / 16];
    for (int r = 0; r < QD_TILE_ROWS; r++) {
        if (r < n_rows) {
            decode_row(t, row0 + (size_t)r * row_bytes, k0, nk, tmp, ds, cr);
        } else {
            memset(tmp, 0, (size_t)nk);
            memset(ds, 0, sizeof(float) * (size_t)ns);
            memset(cr, 0, sizeof(float) * (size_t)ns);
        }
        for (int g = 0; g < nk / 4; g++)
            memcpy(u + (size_t)g * 64 + 4 * r, tmp + 4 * g, 4);
        for (int s = 0; s < ns; s++) {
            dsc[s * QD_TILE_ROWS + r] = ds[s];
            corr[s * QD_TILE_ROWS + r] = cr[s];
        }
    }
}

void qd__tile_act(qd_type_t wt, const void *act, int64_t n,
                  int8_t *restrict qs, float *restrict ta,
                  float *restrict tb, int32_t *restrict ti)
{
    int S = qd__tile_sub(wt), C = qd__tile_off(wt);
    qd_type_t at = qd_type_traits(wt)->vec_dot_type;
    if (at == QD_TYPE_Q8_0 || at == QD_TYPE_Q8_1) {
        int is1 = at == QD_TYPE_Q8_1;
        size_t bb = is1 ? sizeof(qd_block_q8_1) : sizeof(qd_block_q8_0);
        const uint8_t *p = act;
        for (int64_t i = 0; i < n / 32; i++, p += bb) {
            qd_fp16_t d, s;
            memcpy(&d, p, 2);
            memcpy(&s, p + 2, 2);
            const int8_t *q = (const int8_t *)(p + (is1 ? 4 : 2));
            int sum = 0;
            for (int j = 0; j < 32; j++)
                sum += q[j];
            memcpy(qs + 32 * i, q, 32);
            ta[i] = h2f(d);
            /* Q4_1/Q5_1 use the block's stored s, as the reference does */
            tb[i] = is1 ? h2f(s) : ta[i] * (float)sum;
            ti[i] = -C * sum;
        }
    } else { /* Q8_K */
        const qd_block_q8_K *b = act;
        int per = QD_QK_K / S;
        for (int64_t i = 0; i < n / QD_QK_K; i++, b++) {
            memcpy(qs + QD_QK_K * i, b->qs, QD_QK_K);
            for (int s = 0; s < per; s++) {
                int sum = S == 16 ? b->bsums[s] : b->bsums[2 * s] + b->bsums[2 * s + 1];
                ta[i * per + s] = b->d;
                tb[i * per + s] = b->d * (float)sum;
                ti[i * per + s] = -C * sum;
            }
        }
    }
}
