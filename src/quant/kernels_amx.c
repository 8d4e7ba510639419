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
#include "quant/amx.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>

#include "quantd/common.h"

#if defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif


/* Values of K per pass: 32 rows x KC bf16 = 64 KiB of decoded weights,
 * reused by every token group. */
#define KC QD_TILE_K /* the generic tile decoder's unit */

/* Tiles: C00 C01 C10 C11 (0-3) accumulate tokens g0/g1 x row tiles 0/1;
 * A0 A1 (4, 5) activations of g0/g1 (nt rows of 32 bf16); B0 B1 (6, 7)
 * weights of row tiles 0/1 (16 pairs of values x nr rows of 2 bf16). */
static void cfg_load(int nt0, int nt1, int nr0, int nr1)
{
    const int rows[8] = {nt0, nt0, nt1, nt1, nt0, nt1, 16, 16};
    const int cols[8] = {nr0 * 4, nr1 * 4, nr0 * 4, nr1 * 4, 64, 64, nr0 * 4, nr1 * 4};
    qd__amx_cfg_load(rows, cols);
}

/* Decode values [k0, k0+nk) of nr (<= 16) rows into one B operand block:
 * for chunk s of 32 values, pair p, row r: the two bf16 of values
 * 32s+2p, 32s+2p+1 at wb[(s*16 + p)*32 + 2r]. Missing rows are zero. The
 * common types go straight to bf16 (tiledec_avx512.c); the others through
 * the generic u8 tile (quant/tile.c), converted here. */
static void decode_bf16(const qd_qmat_t *w, const uint8_t *row0, int nr,
                        int64_t k0, int nk, uint16_t *wb)
{
    if (qd__tile_decode_bf16_512(w->type, row0, w->row_bytes, nr, k0, nk, wb))
        return;
    const int S = qd__tile_sub(w->type);
    _Alignas(64) uint8_t u[QD_TILE_ROWS * KC];
    _Alignas(64) float dsc[KC / 16 * QD_TILE_ROWS], corr[KC / 16 * QD_TILE_ROWS];
    qd__tile_decode(w->type, row0, w->row_bytes, nr, k0, nk, u, dsc, corr);
    /* group g: 64 bytes = 16 rows x values 4g..4g+3 (u[g*64 + r*4 + j]) */
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    for (int g = 0; g < nk / 4; g++) {
        int s = 4 * g / S;
        __m512 dv = _mm512_load_ps(dsc + s * 16), cv = _mm512_load_ps(corr + s * 16);
        __m512 f[4];
        for (int q = 0; q < 4; q++) {
            /* lanes: row 4q + i/4, value 4g + i%4 */
            __m512i ri = _mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 2);
            ri = _mm512_add_epi32(ri, _mm512_set1_epi32(4 * q));
            __m512 x = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                _mm_load_si128((const __m128i *)(u + (size_t)g * 64 + 16 * q))));
            f[q] = _mm512_fmadd_ps(x, _mm512_permutexvar_ps(ri, dv), _mm512_permutexvar_ps(ri, cv));
        }
        /* dwords: (row, values 4g+0/1) and (row, 4g+2/3) alternate */
        __m512i X = (__m512i)_mm512_cvtne2ps_pbh(f[1], f[0]);
        __m512i Y = (__m512i)_mm512_cvtne2ps_pbh(f[3], f[2]);
        int c = g / 8, p = 2 * (g % 8);
        _mm512_store_si512((void *)(wb + ((size_t)c * 16 + p) * 32), _mm512_permutex2var_epi32(X, ev, Y));
        _mm512_store_si512((void *)(wb + ((size_t)c * 16 + p + 1) * 32), _mm512_permutex2var_epi32(X, od, Y));
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
            /* the next decode's bytes, while this pair meets the tokens */
            if (rp + 32 < r1)
                qd__tile_prefetch(w->type, row0 + (size_t)32 * w->row_bytes, w->row_bytes,
                                  (int)QD_MIN((int64_t)32, r1 - rp - 32), k0, nk);
            else if (k0 + KC < K)
                qd__tile_prefetch(w->type, (const uint8_t *)w->data + (size_t)r0 * w->row_bytes,
                                  w->row_bytes, (int)QD_MIN((int64_t)32, r1 - r0), k0 + KC,
                                  (int)QD_MIN((int64_t)KC, K - k0 - KC));
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

static qd_kernels_t amx_kernels;
static const qd_kernels_t *amx_set; /* NULL: AMX not usable */
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_init(void)
{
    if (!amx_usable())
        return;
    amx_kernels = *qd__kernels_avx512();
    amx_kernels.name = "amx";
    amx_kernels.gemm_bf16 = amx_gemm_bf16;
    amx_kernels.act_bf16 = amx_act_bf16;
    amx_kernels.bf16_min_tok = 32;
    amx_set = &amx_kernels;
}

/* The set, or NULL when AMX cannot be used; built once (the dispatcher and
 * tests may both ask). */
const qd_kernels_t *qd__kernels_amx(void)
{
    pthread_once(&amx_once, amx_init);
    return amx_set;
}
