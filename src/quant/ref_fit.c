/*
 * ref_fit.c — the scale searches shared by the reference quantizers of
 * several formats (legacy blocks with an imatrix, the K-quants). They must
 * reproduce ggml's float arithmetic exactly, so no fused multiply-add.
 */
#include <math.h>
#include <string.h>

#include "quant/ref_int.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

const int8_t qd_kvalues_iq4nl[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/*
 * Symmetric fit x ≈ s*q, q in [-nmax, nmax-1], minimising sum w*(x - s*q)^2
 * with w = weights (or x^2 when weights is NULL). Tries 18 scales around
 * nmax/max and keeps the best least-squares one. L receives q + nmax.
 * Returns s (0 for an all-zero group).
 */
float qd__fit_symmetric(int n, int nmax, const float *restrict x,
                           int8_t *restrict L, const float *restrict weights)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < QD_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = qd__iclamp(qd__nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = weights ? weights[i] : x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int step = -9; step <= 9; step++) {
        if (step == 0)
            continue;
        iscale = -((float)nmax + 0.1f * (float)step) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = qd__iclamp(qd__nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = weights ? weights[i] : x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = qd__iclamp(qd__nearest_int(iscale * x[i]), -nmax, nmax - 1);
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/*
 * Affine fit x ≈ s*q - m with q in [0, nmax], m ≥ 0, minimising the
 * weighted error (|err| when use_mad, err^2 otherwise). Tries nstep+1
 * grid points iscale = (rmin + rdelta*k + nmax)/(max - min), solving the
 * 2x2 least-squares system at each. Returns s and stores m in *the_min.
 *
 * reference = 1 gives ggml's make_qkx2_quants (weights required, plain
 * clamping), reference = 0 its make_qkx3_quants (weights may be NULL: x^2;
 * guards against an updated min near max).
 */
float qd__fit_affine(int n, int nmax, const float *restrict x,
                        const float *restrict weights, uint8_t *restrict L,
                        float *restrict the_min, uint8_t *restrict Laux,
                        float rmin, float rdelta, int nstep, int use_mad,
                        int reference)
{
    float min = x[0], max = x[0];
    float sum_w = weights ? weights[0] : x[0] * x[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        float w = weights ? weights[i] : x[i] * x[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0)
        min = 0;
    if (reference ? max == min : max <= min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; i++) {
        int l = qd__nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)qd__iclamp(l, 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        float w = weights ? weights[i] : x[i] * x[i];
        best_err += w * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int k = 0; k <= nstep; k++) {
        iscale = (rmin + rdelta * (float)k + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l;
            if (reference) {
                l = qd__iclamp(qd__nearest_int(iscale * (x[i] - min)), 0, nmax);
            } else {
                float v = iscale * (x[i] - min);
                l = v > 0 ? qd__nearest_int(v < (float)nmax ? v : (float)nmax) : 0;
            }
            Laux[i] = (uint8_t)l;
            float w = weights ? weights[i] : x[i] * x[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                float w = weights ? weights[i] : x[i] * x[i];
                err += w * diff;
            }
            if (err < best_err) {
                memcpy(L, Laux, (size_t)n);
                best_err = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}
