/*
 * kernels_amx.c — the AVX-512 set plus a prompt path on AMX (BF16 tiles).
 *
 * Decode and small batches are the AVX-512 set's (matrix-vector products
 * bound by memory; the VNNI tiled path for a few tokens). From
 * bf16_min_tok tokens on, matrices go through AMX's TDPBF16PS: 16 tokens x
 * 16 weight rows x 32 values per instruction, accumulated in float over
 * the whole row inside the tile registers.
 *
 * Why BF16 and not AMX-INT8: the integer formats carry a scale per 16 or
 * 32 values, so an int8 tile product (whose natural depth is 64) has to be
 * stored and rescaled after every subblock; that rescaling on the vector
 * units, not the tile unit, bounded the int8 version at about 1.3x the
 * AVX-512 VNNI path. Decoded to BF16 once per 32 rows and chunk of K (the
 * scales folded in: w = dsc*u + corr, as quant/tile.c defines them), the
 * weights feed TDPBF16PS with no rescaling at all, and the decode is
 * amortized over every token of the batch.
 *
 * Numerics: weights and activations rounded to bf16 (8-bit mantissa),
 * products summed in float. The error is about 2^-8 of sum|w*x|, the size
 * of the 8-bit activation quantization the integer paths use; it is a
 * different rounding, so these results are not bit-identical to the other
 * sets (tests use a bf16 tolerance for this path).
 *
 * Tile state must be granted by the kernel (arch_prctl ARCH_REQ_XCOMP_PERM,
 * Linux 5.16+), once per process; without it, or without AMX-BF16, the
 * set is not offered and the dispatcher keeps the AVX-512 set.
 */
#include "quant/kernels.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quantd/common.h"

#if defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

typedef struct {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tile_cfg_t;

/* Values of K per pass: 32 rows x KC bf16 = 64 KiB of decoded weights,
 * reused by every token group. */
#define KC 1024

/* Tiles: C00 C01 C10 C11 (0-3) accumulate tokens g0/g1 x row tiles 0/1;
 * A0 A1 (4, 5) activations of g0/g1 (nt rows of 32 bf16); B0 B1 (6, 7)
 * weights of row tiles 0/1 (16 pairs of values x nr rows of 2 bf16). */
static void cfg_load(int nt0, int nt1, int nr0, int nr1)
{
    _Alignas(64) tile_cfg_t c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    int rows[8] = {nt0, nt0, nt1, nt1, nt0, nt1, 16, 16};
    int cols[8] = {nr0 * 4, nr1 * 4, nr0 * 4, nr1 * 4, 64, 64, nr0 * 4, nr1 * 4};
    for (int i = 0; i < 8; i++) {
        if (rows[i] && cols[i]) {
            c.rows[i] = (uint8_t)rows[i];
            c.colsb[i] = (uint16_t)cols[i];
        }
    }
    _tile_loadconfig(&c);
}

/* 16x16 transpose of 32-bit elements. */
static inline void transpose16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* now r[i] holds, per 128-bit lane L, the 4 elements of rows
     * 4*(i/4)..+3 at column 4L + (i%4) ... gather the lanes */
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* Decode values [k0, k0+nk) of nr (<= 16) rows into one B operand block:
 * for chunk s of 32 values, 16 pairs p, row r: the two bf16 of values
 * 32s+2p, 32s+2p+1 at wb[(s*16 + p)*32 + 2r]. Missing rows are zero. */
static void decode_bf16(const qd_qmat_t *w, const uint8_t *row0, int nr,
                        int64_t k0, int nk, uint16_t *wb)
{
    const int S = qd__tile_sub(w->type);
    _Alignas(64) uint8_t u[16][KC];
    _Alignas(64) float ds[16][KC / 16], cr[16][KC / 16];
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = row0 + (size_t)r * w->row_bytes;
        if (!qd__tile_decode_row_512(w->type, row, k0, nk, u[r], ds[r], cr[r]))
            qd__tile_decode_row(w->type, row, k0, nk, u[r], ds[r], cr[r]);
    }
    for (int c = 0; c < nk / 32; c++) {
        __m512i v[16];
        /* subblocks of the two halves of this chunk */
        const int s0 = S == 32 ? c : 2 * c, s1 = S == 32 ? c : 2 * c + 1;
        for (int r = 0; r < 16; r++) {
            if (r >= nr) {
                v[r] = _mm512_setzero_si512();
                continue;
            }
            __m128i b0 = _mm_load_si128((const __m128i *)(u[r] + 32 * c));
            __m128i b1 = _mm_load_si128((const __m128i *)(u[r] + 32 * c + 16));
            __m512 f0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b0));
            __m512 f1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b1));
            f0 = _mm512_fmadd_ps(f0, _mm512_set1_ps(ds[r][s0]), _mm512_set1_ps(cr[r][s0]));
            f1 = _mm512_fmadd_ps(f1, _mm512_set1_ps(ds[r][s1]), _mm512_set1_ps(cr[r][s1]));
            /* element j of the result: value j (j < 16 from f0) */
            v[r] = (__m512i)_mm512_cvtne2ps_pbh(f1, f0);
        }
        /* v[r] = 16 pairs (dwords) of row r; transpose to pairs x rows */
        transpose16(v);
        for (int p = 0; p < 16; p++)
            _mm512_store_si512((void *)(wb + ((size_t)c * 16 + p) * 32), v[p]);
    }
}

/* Accumulate one pair of token groups against two decoded row tiles over
 * ns chunks of 32 values. */
static inline __attribute__((always_inline)) void
kloop(const int full, int ns, const uint16_t *a0, const uint16_t *a1,
      const uint16_t *b0, const uint16_t *b1, int has_t1, int has_r1)
{
    for (int s = 0; s < ns; s++) {
        _tile_loadd(4, a0 + (size_t)s * 512, 64);
        _tile_loadd(6, b0 + (size_t)s * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        if (full || has_r1) {
            _tile_loadd(7, b1 + (size_t)s * 512, 64);
            _tile_dpbf16ps(1, 4, 7);
        }
        if (full || has_t1) {
            _tile_loadd(5, a1 + (size_t)s * 512, 64);
            _tile_dpbf16ps(2, 5, 6);
            if (full || has_r1)
                _tile_dpbf16ps(3, 5, 7);
        }
    }
}

static void amx_gemm_bf16(const qd_qmat_t *w, int64_t r0, int64_t r1,
                          const uint16_t *act, int n_tok, float *out,
                          int64_t ldo)
{
    const int64_t K = w->n_cols, NC = K / 32;
    _Alignas(64) uint16_t wb[2][KC * 16];
    int cur[4] = {-1, -1, -1, -1};
    /* K chunks outermost: the activations of one chunk (n_tok x KC bf16)
     * stay in L2 while every row pair passes; the partial sums go through
     * `out` between chunks. */
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        int nk = (int)QD_MIN((int64_t)KC, K - k0);
        for (int64_t rp = r0; rp < r1; rp += 32) {
            int nr0 = (int)QD_MIN((int64_t)16, r1 - rp);
            int nr1 = (int)QD_MAX((int64_t)0, QD_MIN((int64_t)16, r1 - rp - 16));
            const uint8_t *row0 = (const uint8_t *)w->data + (size_t)rp * w->row_bytes;
            decode_bf16(w, row0, nr0, k0, nk, wb[0]);
            if (nr1)
                decode_bf16(w, row0 + (size_t)16 * w->row_bytes, nr1, k0, nk, wb[1]);
            for (int t = 0; t < n_tok; t += 32) {
                int nt0 = QD_MIN(16, n_tok - t);
                int nt1 = QD_MAX(0, QD_MIN(16, n_tok - t - 16));
                if (cur[0] != nt0 || cur[1] != nt1 || cur[2] != nr0 || cur[3] != nr1) {
                    cfg_load(nt0, nt1, nr0, nr1);
                    cur[0] = nt0, cur[1] = nt1, cur[2] = nr0, cur[3] = nr1;
                }
                float *o0 = out + (int64_t)t * ldo + rp, *o1 = o0 + 16 * ldo;
                size_t ld = (size_t)ldo * sizeof(float);
                if (k0 == 0) {
                    _tile_zero(0);
                    if (nr1)
                        _tile_zero(1);
                    if (nt1) {
                        _tile_zero(2);
                        if (nr1)
                            _tile_zero(3);
                    }
                } else {
                    _tile_loadd(0, o0, ld);
                    if (nr1)
                        _tile_loadd(1, o0 + 16, ld);
                    if (nt1) {
                        _tile_loadd(2, o1, ld);
                        if (nr1)
                            _tile_loadd(3, o1 + 16, ld);
                    }
                }
                const uint16_t *a0 = act + ((size_t)(t / 16) * NC + k0 / 32) * 512;
                const uint16_t *a1 = a0 + (size_t)NC * 512;
                if (nt1 == 16 && nr1 == 16)
                    kloop(1, nk / 32, a0, a1, wb[0], wb[1], 1, 1);
                else
                    kloop(0, nk / 32, a0, a1, wb[0], wb[1], nt1 > 0, nr1 > 0);
                _tile_stored(0, o0, ld);
                if (nr1)
                    _tile_stored(1, o0 + 16, ld);
                if (nt1) {
                    _tile_stored(2, o1, ld);
                    if (nr1)
                        _tile_stored(3, o1 + 16, ld);
                }
            }
        }
    }
    _tile_release();
}

static void amx_act_bf16(const float *x, int64_t n, uint16_t *dst)
{
    for (int64_t c = 0; c < n / 32; c++) {
        __m512 f0 = _mm512_loadu_ps(x + 32 * c), f1 = _mm512_loadu_ps(x + 32 * c + 16);
        _mm512_storeu_si512((void *)(dst + c * 512), (__m512i)_mm512_cvtne2ps_pbh(f1, f0));
    }
}

static qd_kernels_t amx_kernels;

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int amx_usable(void)
{
#if defined(__linux__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    /* EDX bit 22: AMX-BF16, bit 24: AMX-TILE */
    if (!(d & (1u << 22)) || !(d & (1u << 24)))
        return 0;
    /* leaf 7 subleaf 1 EAX bit 5: AVX512_BF16 (vcvtne2ps2bf16) */
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5)))
        return 0;
    /* The kernel must grant the 8 KiB tile state to this process. */
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return 0;
    return 1;
#else
    return 0;
#endif
}

/* The set, or NULL when AMX cannot be used. Called from the dispatcher's
 * pthread_once (and by tests after it). */
const qd_kernels_t *qd__kernels_amx(void)
{
    static int state; /* 0 unknown, 1 usable, -1 not */
    if (!state)
        state = amx_usable() ? 1 : -1;
    if (state < 0)
        return NULL;
    amx_kernels = *qd__kernels_avx512();
    amx_kernels.name = "amx";
    amx_kernels.gemm_bf16 = amx_gemm_bf16;
    amx_kernels.act_bf16 = amx_act_bf16;
    amx_kernels.bf16_min_tok = 32;
    return &amx_kernels;
}
