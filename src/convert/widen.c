/*
 * widen.c — pad a small llama model with zeros to dimensions that are
 * multiples of a group size, computing the same function.
 *
 * The only trained model in the test data (stories260K: 64 wide, 8 heads
 * of 8, feed-forward 172) cannot be written as an AWQ checkpoint, whose
 * layers need in_features % 128 == 0 and out_features % 8 == 0. Widening
 * keeps its weights and activations (with the outliers and structure a
 * trained model has, which a random one lacks) and makes every matrix
 * fit, so AWQ's scale search can be measured on a real model:
 *   - the residual width E grows to E' with zero columns/rows, so the
 *     extra channels stay exactly 0 through the network;
 *   - RMSNorm over E' zeros-padded channels sees mean(x²)·E/E': every norm
 *     weight is multiplied by sqrt(E/E') and eps by E/E', which gives the
 *     same output exactly (up to float rounding);
 *   - heads are added (zero q, k, v rows; zero attn_output columns), the
 *     grouped-query ratio kept, so new query heads read only new (zero)
 *     key/value heads and contribute 0;
 *   - the feed-forward width grows with zero gate/up rows (silu(0)·0 = 0)
 *     and zero ffn_down columns.
 * F32 output. The vocabulary and every other key are copied.
 */
#include "convert/convert_int.h"
#include "quantd/common.h"
#include "quantd/gguf.h"
#include "quantd/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int64_t round_up(int64_t x, int64_t m)
{
    return (x + m - 1) / m * m;
}

static int get_u32(const qd_gguf_t *g, const char *k, uint32_t *v)
{
    if (qd_gguf_get_u32(g, k, v) != 0) {
        qd_set_errmsg("widen: metadata key '%s' missing", k);
        return QD_EFORMAT;
    }
    return 0;
}

int qd__model_widen(const char *in_path, const char *out_path, int mult)
{
    qd_gguf_t *g = NULL;
    qd_gguf_writer_t *w = NULL;
    float *src = NULL, *dst = NULL;
    int rc;
    if (mult < 8) {
        qd_set_errmsg("widen: multiple %d too small", mult);
        return QD_EINVAL;
    }
    if ((rc = qd_gguf_open(in_path, &g)))
        return rc;
    const char *arch;
    size_t alen;
    if (qd_gguf_get_str(g, "general.architecture", &arch, &alen) ||
        strcmp(arch, "llama")) {
        qd_set_errmsg("widen: '%s' is not a llama model", in_path);
        rc = QD_EUNSUPPORTED;
        goto out;
    }
    uint32_t E, F, H, Hkv = 0;
    float eps;
    if ((rc = get_u32(g, "llama.embedding_length", &E)) ||
        (rc = get_u32(g, "llama.feed_forward_length", &F)) ||
        (rc = get_u32(g, "llama.attention.head_count", &H)))
        goto out;
    if (qd_gguf_get_u32(g, "llama.attention.head_count_kv", &Hkv) != 0)
        Hkv = H;
    if (qd_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps)) {
        qd_set_errmsg("widen: no layer_norm_rms_epsilon");
        rc = QD_EFORMAT;
        goto out;
    }
    uint32_t kl;
    if (H == 0 || Hkv == 0 || H % Hkv || E % H ||
        (qd_gguf_get_u32(g, "llama.attention.key_length", &kl) == 0 &&
         kl != E / H)) {
        qd_set_errmsg("widen: unsupported head layout (%u heads, %u kv)", H,
                      Hkv);
        rc = QD_EUNSUPPORTED;
        goto out;
    }
    int64_t hd = E / H, ratio = H / Hkv;
    int64_t E2 = round_up(E, mult), F2 = round_up(F, mult);
    /* heads: H2·hd a multiple of mult (so attn_output's input is), H2 a
     * multiple of ratio, and the kv width a multiple of 8 */
    int64_t H2 = H;
    while ((H2 * hd) % mult || H2 % ratio || (H2 / ratio * hd) % 8 ||
           H2 * hd < E2)
        H2++;
    if (H2 * hd != E2) {
        qd_set_errmsg("widen: no head count gives width %lld with head size "
                      "%lld",
                      (long long)E2, (long long)hd);
        rc = QD_EUNSUPPORTED;
        goto out;
    }
    int64_t Hkv2 = H2 / ratio;
    double shrink = (double)E / (double)E2;
    if (!(w = qd_gguf_writer_create())) {
        rc = QD_ENOMEM;
        goto out;
    }
    for (int64_t i = 0; i < qd_gguf_n_kv(g) && !rc; i++)
        rc = qd_gguf_writer_copy_kv(w, g, i);
    if (rc ||
        (rc = qd_gguf_writer_set_u32(w, "llama.embedding_length",
                                     (uint32_t)E2)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.feed_forward_length",
                                     (uint32_t)F2)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.attention.head_count",
                                     (uint32_t)H2)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.attention.head_count_kv",
                                     (uint32_t)Hkv2)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.attention.key_length",
                                     (uint32_t)hd)) ||
        (rc = qd_gguf_writer_set_u32(w, "llama.attention.value_length",
                                     (uint32_t)hd)) ||
        (rc =
             qd_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon",
                                    (float)(eps * shrink))) ||
        (rc = qd_gguf_writer_set_u32(w, "general.file_type", 0)))
        goto out;
    for (int64_t i = 0; i < qd_gguf_n_tensors(g); i++) {
        const qd_gguf_tensor_t *t = qd_gguf_tensor(g, i);
        const qd_type_traits_t *tr = qd_type_traits(t->type);
        int64_t c0 = t->ne[0], r0 = t->n_dims >= 2 ? t->ne[1] : 1;
        if (t->n_dims > 2 || !tr->to_float) {
            qd_set_errmsg("widen: cannot convert tensor '%s'", t->name);
            rc = QD_EUNSUPPORTED;
            goto out;
        }
        /* new sizes of the two dimensions (columns = ne0) */
        int64_t c2 = c0, r2 = r0;
        int is_norm = strstr(t->name, "_norm.") != NULL;
        const char *nm = t->name;
        if (t->n_dims == 1) {
            c2 = c0 == E ? E2 : c0;
        } else if (strstr(nm, "attn_q.") || strstr(nm, "attn_k.") ||
                   strstr(nm, "attn_v.")) {
            c2 = E2;
            r2 = strstr(nm, "attn_q.") ? H2 * hd : Hkv2 * hd;
        } else if (strstr(nm, "attn_output.")) {
            c2 = H2 * hd;
            r2 = E2;
        } else if (strstr(nm, "ffn_gate.") || strstr(nm, "ffn_up.")) {
            c2 = E2;
            r2 = F2;
        } else if (strstr(nm, "ffn_down.")) {
            c2 = F2;
            r2 = E2;
        } else if (!strcmp(nm, "token_embd.weight") ||
                   !strcmp(nm, "output.weight")) {
            c2 = E2;
        } else {
            qd_set_errmsg("widen: unknown tensor '%s'", nm);
            rc = QD_EUNSUPPORTED;
            goto out;
        }
        size_t rb = qd_row_size(t->type, c0);
        src = qd_malloc((size_t)(c0 * r0) * sizeof *src);
        dst = qd_calloc((size_t)(c2 * r2), sizeof *dst);
        if (!src || !dst) {
            rc = QD_ENOMEM;
            goto out;
        }
        for (int64_t r = 0; r < r0; r++)
            tr->to_float((const uint8_t *)t->data + (size_t)r * rb,
                         src + r * c0, c0);
        /* old rows/columns keep their index: heads and channels append */
        for (int64_t r = 0; r < r0; r++)
            for (int64_t c = 0; c < c0; c++)
                dst[r * c2 + c] = is_norm
                                      ? (float)(src[r * c0 + c] * sqrt(shrink))
                                      : src[r * c0 + c];
        int64_t ne[2] = {c2, r2};
        rc = qd_gguf_writer_add_tensor(w, nm, QD_TYPE_F32, t->n_dims, ne, dst,
                                       (size_t)(c2 * r2) * sizeof *dst, 1);
        qd_free(src);
        qd_free(dst);
        src = dst = NULL;
        if (rc)
            goto out;
    }
    rc = qd_gguf_writer_write(w, out_path);
out:
    qd_free(src);
    qd_free(dst);
    qd_gguf_writer_destroy(w);
    qd_gguf_close(g);
    return rc;
}
