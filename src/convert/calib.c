/*
 * calib.c — calibration for quantization: runs a model over a text while
 * watching the input of every weight matmul (the engine's observer hook),
 * and turns what it saw into
 *   - an importance matrix in llama-imatrix's GGUF format (qd_imatrix_compute),
 *   - an AWQ- or GPTQ-quantized model (qd_quantize_calibrated), whose
 *     per-tensor types are the recipe's, exactly as `quantd quantize`.
 *
 * Statistics are kept per weight (Σ x², Σ |x|, rows seen) and, for the
 * first weight of each group sharing an input (attn_q for q/k/v, ffn_gate
 * for gate/up, attn_output, ffn_down), optionally Σ x xᵀ (GPTQ) and a
 * sample of input rows (AWQ). Sums are in double.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "convert/calib_int.h"
#include "convert/convert_int.h"
#include "quantd/common.h"
#include "quantd/convert.h"
#include "quantd/engine.h"
#include "quantd/gguf.h"

#define MOD "calib"
#define QD_QNT_VERSION 2 /* general.quantization_version, as ggml */

void qd_calib_params_default(qd_calib_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->n_ctx = 512;
}

/* ---- statistics ---------------------------------------------------------- */

struct qd_calib_stats {
    int n_layer;
    int flags;
    int32_t n_chunks;
    int64_t sample_stride; /* keep every stride-th row of a group's input */
    qd_calib_slot_t *slots; /* [(n_layer + 1) * QD_MM_COUNT]; the last row
                               of slots is il = -1 (output) */
    int failed;            /* out of memory inside the observer */
};

static const char *const mm_names[QD_MM_COUNT] = {
    [QD_MM_ATTN_Q] = "attn_q",       [QD_MM_ATTN_K] = "attn_k",
    [QD_MM_ATTN_V] = "attn_v",       [QD_MM_ATTN_OUTPUT] = "attn_output",
    [QD_MM_FFN_GATE] = "ffn_gate",   [QD_MM_FFN_UP] = "ffn_up",
    [QD_MM_FFN_DOWN] = "ffn_down",   [QD_MM_OUTPUT] = "output",
};

void qd__calib_weight_name(int il, qd_mm_weight_t w, char *buf, size_t cap)
{
    if (w == QD_MM_OUTPUT || il < 0)
        snprintf(buf, cap, "output.weight");
    else
        snprintf(buf, cap, "blk.%d.%s.weight", il, mm_names[w]);
}

/* The weight whose slot holds h / samples for w's input. */
static qd_mm_weight_t group_leader(qd_mm_weight_t w)
{
    if (w == QD_MM_ATTN_K || w == QD_MM_ATTN_V)
        return QD_MM_ATTN_Q;
    if (w == QD_MM_FFN_UP)
        return QD_MM_FFN_GATE;
    return w;
}

static qd_calib_slot_t *slot_at(const qd_calib_stats_t *st, int il,
                                qd_mm_weight_t w)
{
    int row = il < 0 ? st->n_layer : il;
    if (row > st->n_layer || (il < 0) != (w == QD_MM_OUTPUT))
        return NULL;
    return &st->slots[(size_t)row * QD_MM_COUNT + w];
}

const qd_calib_slot_t *qd__calib_slot(const qd_calib_stats_t *st, int il,
                                      qd_mm_weight_t w, int group)
{
    const qd_calib_slot_t *s = slot_at(st, il, group ? group_leader(w) : w);
    return s && s->count > 0 ? s : NULL;
}

int32_t qd__calib_chunks(const qd_calib_stats_t *st)
{
    return st->n_chunks;
}

void qd__calib_free(qd_calib_stats_t *st)
{
    if (!st)
        return;
    for (int i = 0; st->slots && i < (st->n_layer + 1) * QD_MM_COUNT; i++) {
        qd_free(st->slots[i].sum2);
        qd_free(st->slots[i].sum_abs);
        qd_free(st->slots[i].h);
        qd_free(st->slots[i].sample);
    }
    qd_free(st->slots);
    qd_free(st);
}

/* Allocate a slot's arrays on first use. 0 or QD_ENOMEM. */
static int slot_init(qd_calib_stats_t *st, qd_calib_slot_t *s, int leader,
                     int64_t n_cols)
{
    size_t n = (size_t)n_cols;
    s->n_cols = n_cols;
    s->sum2 = qd_calloc(n, sizeof *s->sum2);
    s->sum_abs = qd_calloc(n, sizeof *s->sum_abs);
    if (!s->sum2 || !s->sum_abs)
        return QD_ENOMEM;
    if (leader && (st->flags & QD_CALIB_WANT_H) &&
        !(s->h = qd_calloc(n * n, sizeof *s->h)))
        return QD_ENOMEM;
    if (leader && (st->flags & QD_CALIB_WANT_SAMPLES) && s->cap_sample > 0 &&
        !(s->sample = qd_malloc((size_t)s->cap_sample * n * sizeof(float))))
        return QD_ENOMEM;
    return 0;
}

static void observe(void *ud, int il, qd_mm_weight_t w, const float *x,
                    int64_t ldx, int n_tok, int64_t n_cols)
{
    qd_calib_stats_t *st = ud;
    qd_calib_slot_t *s = slot_at(st, il, w);
    int leader = group_leader(w) == w;
    if (!s || st->failed)
        return;
    if (!s->sum2 && slot_init(st, s, leader, n_cols)) {
        st->failed = 1;
        return;
    }
    if (s->n_cols != n_cols) {
        st->failed = 1;
        return;
    }
    for (int t = 0; t < n_tok; t++) {
        const float *r = x + (size_t)t * ldx;
        for (int64_t j = 0; j < n_cols; j++) {
            s->sum2[j] += (double)r[j] * r[j];
            s->sum_abs[j] += fabs((double)r[j]);
        }
        if (s->h) {
            for (int64_t a = 0; a < n_cols; a++) {
                double ra = r[a];
                double *ha = s->h + (size_t)a * n_cols;
                for (int64_t b = 0; b <= a; b++)
                    ha[b] += ra * r[b];
            }
        }
        if (s->sample && s->n_sample < s->cap_sample &&
            (s->count + t) % st->sample_stride == 0)
            memcpy(s->sample + (size_t)s->n_sample++ * n_cols, r,
                   (size_t)n_cols * sizeof(float));
    }
    s->count += n_tok;
}

int qd__calib_tokens(const qd_model_t *m, const char *path, int32_t **toks,
                     int64_t *n_toks)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    int32_t *t = NULL;
    long len = -1;
    int rc = QD_EIO;
    *toks = NULL;
    *n_toks = 0;
    if (!f) {
        qd_set_errmsg("calibration: cannot open %s", path);
        return QD_EIO;
    }
    if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET)) {
        qd_set_errmsg("calibration: cannot read %s", path);
        goto out;
    }
    if (len > INT32_MAX - 16) {
        rc = QD_EINVAL;
        qd_set_errmsg("calibration: %s is too large (%ld bytes)", path, len);
        goto out;
    }
    if (!(text = qd_malloc((size_t)len + 1)) ||
        !(t = qd_malloc(((size_t)len + 16) * sizeof *t))) {
        rc = QD_ENOMEM;
        qd_set_errmsg("calibration: out of memory for %s", path);
        goto out;
    }
    if (fread(text, 1, (size_t)len, f) != (size_t)len) {
        qd_set_errmsg("calibration: cannot read %s", path);
        goto out;
    }
    const qd_tokenizer_t *tk = qd_model_tokenizer(m);
    int n = qd_tokenize(tk, text, (size_t)len, qd_tokenizer_add_bos(tk), 0, t,
                        (int)len + 16);
    if (n < 0) {
        rc = n;
        goto out;
    }
    *toks = t;
    *n_toks = n;
    t = NULL;
    rc = 0;
out:
    qd_free(t);
    qd_free(text);
    fclose(f);
    return rc;
}

int qd__calib_collect(const qd_model_t *m, const int32_t *toks,
                      int64_t n_toks, const qd_calib_params_t *p, int flags,
                      int64_t max_samples, qd_calib_stats_t **out)
{
    const qd_hparams_t *hp = qd_model_hparams(m);
    int32_t n_ctx = p->n_ctx > 0 ? p->n_ctx : 512;
    int64_t n_win = n_toks / n_ctx;
    qd_ctx_t *c = NULL;
    qd_calib_stats_t *st = NULL;
    int32_t *bt = NULL, *bp = NULL, *bs = NULL;
    int rc;
    *out = NULL;
    if (p->n_chunks > 0 && p->n_chunks < n_win)
        n_win = p->n_chunks;
    if (n_win < 1) {
        qd_set_errmsg("calibration: %lld tokens, fewer than one window of %d",
                      (long long)n_toks, n_ctx);
        return QD_EINVAL;
    }
    st = qd_calloc(1, sizeof *st);
    if (!st || !(st->slots = qd_calloc((size_t)(hp->n_layer + 1) * QD_MM_COUNT,
                                       sizeof *st->slots))) {
        rc = QD_ENOMEM;
        goto oom;
    }
    st->n_layer = hp->n_layer;
    st->flags = flags;
    int64_t rows = n_win * n_ctx;
    st->sample_stride = max_samples > 0 ? QD_MAX(rows / max_samples, 1) : 1;
    for (int i = 0; i < (hp->n_layer + 1) * QD_MM_COUNT; i++)
        st->slots[i].cap_sample = max_samples;

    qd_ctx_params_t cp;
    qd_ctx_params_default(&cp);
    cp.n_batch = n_ctx;
    cp.n_ctx = n_ctx;
    cp.kv_type = QD_KV_F32;
    cp.n_threads = p->n_threads;
    if ((rc = qd_ctx_create(m, &cp, &c)))
        goto out;
    bt = qd_malloc((size_t)n_ctx * sizeof *bt);
    bp = qd_malloc((size_t)n_ctx * sizeof *bp);
    bs = qd_calloc((size_t)n_ctx, sizeof *bs);
    if (!bt || !bp || !bs) {
        rc = QD_ENOMEM;
        goto oom;
    }
    qd_ctx_set_observer(c, observe, st);
    int32_t bos = qd_tokenizer_bos(qd_model_tokenizer(m));
    for (int64_t w = 0; w < n_win; w++) {
        memcpy(bt, toks + w * n_ctx, (size_t)n_ctx * sizeof *bt);
        if (bos >= 0 && qd_tokenizer_add_bos(qd_model_tokenizer(m)))
            bt[0] = bos;
        for (int32_t i = 0; i < n_ctx; i++)
            bp[i] = i;
        qd_kv_seq_clear(qd_ctx_kv(c), 0);
        qd_batch_t b = {.n_tokens = n_ctx, .toks = bt, .pos = bp, .seq = bs};
        if ((rc = qd_ctx_decode(c, &b)))
            goto out;
        if (st->failed) {
            rc = QD_ENOMEM;
            goto oom;
        }
        st->n_chunks++;
    }
    /* mirror the lower triangle of each H */
    for (int i = 0; i < (hp->n_layer + 1) * QD_MM_COUNT; i++) {
        qd_calib_slot_t *s = &st->slots[i];
        for (int64_t a = 0; s->h && a < s->n_cols; a++)
            for (int64_t b2 = 0; b2 < a; b2++)
                s->h[(size_t)b2 * s->n_cols + a] = s->h[(size_t)a * s->n_cols + b2];
    }
    *out = st;
    st = NULL;
    rc = 0;
    goto out;
oom:
    qd_set_errmsg("calibration: out of memory for activation statistics");
out:
    qd_free(bt);
    qd_free(bp);
    qd_free(bs);
    qd_ctx_free(c);
    qd__calib_free(st);
    return rc;
}

/* ---- imatrix ------------------------------------------------------------- */

int qd_imatrix_compute(const char *model_path, const char *text_path,
                       const qd_calib_params_t *p, const char *out_path,
                       int32_t *n_chunks_out)
{
    qd_model_t *m = NULL;
    qd_calib_stats_t *st = NULL;
    qd_gguf_writer_t *w = NULL;
    int32_t *toks = NULL;
    float *buf = NULL;
    int64_t n_toks;
    int rc;
    if ((rc = qd_model_load(model_path, &m)) ||
        (rc = qd__calib_tokens(m, text_path, &toks, &n_toks)) ||
        (rc = qd__calib_collect(m, toks, n_toks, p, 0, 0, &st)))
        goto out;
    if (!(w = qd_gguf_writer_create())) {
        rc = QD_ENOMEM;
        goto oom;
    }
    const char *ds[1] = {text_path};
    if ((rc = qd_gguf_writer_set_str(w, "general.type", "imatrix")) ||
        (rc = qd_gguf_writer_set_arr_str(w, "imatrix.datasets", ds, 1)) ||
        (rc = qd_gguf_writer_set_u32(w, "imatrix.chunk_count",
                                     (uint32_t)st->n_chunks)) ||
        (rc = qd_gguf_writer_set_u32(w, "imatrix.chunk_size",
                                     (uint32_t)(p->n_ctx > 0 ? p->n_ctx
                                                             : 512))))
        goto oom;
    for (int il = 0; il < st->n_layer; il++) {
        for (int k = 0; k < QD_MM_OUTPUT; k++) {
            const qd_calib_slot_t *s = qd__calib_slot(st, il, k, 0);
            char name[128], tn[160];
            if (!s)
                continue;
            qd__calib_weight_name(il, k, name, sizeof name);
            size_t n = (size_t)s->n_cols;
            qd_free(buf);
            if (!(buf = qd_malloc(n * sizeof *buf))) {
                rc = QD_ENOMEM;
                goto oom;
            }
            for (size_t j = 0; j < n; j++)
                buf[j] = (float)s->sum2[j];
            float cnt = (float)s->count;
            /* [n_cols, 1] and [1, 1], stored as llama-imatrix's ggml does:
             * trailing 1s dropped */
            int64_t ne_s[1] = {s->n_cols}, ne_c[1] = {1};
            snprintf(tn, sizeof tn, "%.*s.in_sum2", (int)sizeof name, name);
            if ((rc = qd_gguf_writer_add_tensor(w, tn, QD_TYPE_F32, 1, ne_s,
                                                buf, n * sizeof *buf, 1)))
                goto oom;
            snprintf(tn, sizeof tn, "%.*s.counts", (int)sizeof name, name);
            if ((rc = qd_gguf_writer_add_tensor(w, tn, QD_TYPE_F32, 1, ne_c,
                                                &cnt, sizeof cnt, 1)))
                goto oom;
        }
    }
    if ((rc = qd_gguf_writer_write(w, out_path)))
        goto out;
    if (n_chunks_out)
        *n_chunks_out = st->n_chunks;
    goto out;
oom:
    qd_set_errmsg("imatrix: out of memory");
out:
    qd_free(buf);
    qd_gguf_writer_destroy(w);
    qd__calib_free(st);
    qd_free(toks);
    qd_model_free(m);
    return rc;
}

/* ---- calibrated model writer -------------------------------------------- */

/* One tensor of the input with its float copy (when it is quantized or
 * changed by a fold). */
typedef struct {
    const qd_gguf_tensor_t *in;
    qd_type_t to;
    float *f;  /* owned float data, or NULL */
} tens_t;

static int n_dims_eff(const int64_t ne[4])
{
    for (int d = 3; d >= 1; d--)
        if (ne[d] > 1)
            return d + 1;
    return 1;
}

static int64_t tensor_rows(const qd_gguf_tensor_t *t)
{
    return t->ne[1] * t->ne[2] * t->ne[3];
}

static tens_t *find_tens(tens_t *ts, int64_t n, const char *name)
{
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(ts[i].in->name, name))
            return &ts[i];
    return NULL;
}

/* Make t->f a float copy of the tensor's data. 0, QD_ENOMEM or
 * QD_EUNSUPPORTED. */
static int tens_float(tens_t *t)
{
    if (t->f)
        return 0;
    const qd_type_traits_t *tr = qd_type_traits(t->in->type);
    size_t n;
    if (qd_mul_size((size_t)t->in->ne[0], (size_t)tensor_rows(t->in), &n) ||
        !(t->f = qd_malloc(QD_MAX(n, 1) * sizeof(float)))) {
        qd_set_errmsg("out of memory for tensor '%s' as float", t->in->name);
        return QD_ENOMEM;
    }
    if (t->in->type == QD_TYPE_F32) {
        memcpy(t->f, t->in->data, n * sizeof(float));
    } else if (tr->to_float) {
        tr->to_float(t->in->data, t->f, (int64_t)n);
    } else {
        qd_set_errmsg("tensor '%s': cannot convert from %s", t->in->name,
                      tr->name);
        return QD_EUNSUPPORTED;
    }
    return 0;
}


/* How awq_apply chooses scales. */
typedef struct {
    int fixed;                   /* 1: alpha below, no search */
    float alpha;
    const qd_awq_rounder_t *rd;  /* NULL: round to each tensor's type */
    int n_threads;               /* of the search's products (0: cores) */
} awq_opts_t;

/* AWQ on one group: the weights named by ws[0..nw) share the input whose
 * statistics are in slot s; fold 1/s into the `prev` vector (a norm weight,
 * or the rows of a matrix, and its bias if any, when prev_rows). Groups
 * where no weight is quantized, or whose shapes do not match (attn_output
 * after a grouped-query attn_v), are left alone. */
static int awq_group(tens_t *ts, int64_t nt, const qd_calib_slot_t *s,
                     const char *const *ws, int nw, const char *prev,
                     int prev_rows, const awq_opts_t *o, int il)
{
    tens_t *tw[4], *tp = find_tens(ts, nt, prev);
    const float *wf[4];
    int64_t rows[4];
    qd_type_t types[4];
    int any_q = 0, rc;
    if (!s || !tp)
        return 0;
    for (int k = 0; k < nw; k++) {
        if (!(tw[k] = find_tens(ts, nt, ws[k])) || tw[k]->in->ne[0] != s->n_cols)
            return 0;
        if ((rc = tens_float(tw[k])))
            return rc;
        wf[k] = tw[k]->f;
        rows[k] = tensor_rows(tw[k]->in);
        types[k] = tw[k]->to;
        any_q |= o->rd || qd_type_traits(types[k])->is_quantized;
    }
    int64_t n = s->n_cols;
    if (prev_rows ? tensor_rows(tp->in) != n : tp->in->ne[0] != n)
        return 0;
    tens_t *tb = NULL;
    if (prev_rows) {
        char bn[128];
        size_t pl = strlen(prev);
        if (pl > 7 && pl - 7 + 6 < sizeof bn &&
            !strcmp(prev + pl - 7, ".weight")) {
            snprintf(bn, sizeof bn, "%.*s.bias", (int)(pl - 7), prev);
            tb = find_tens(ts, nt, bn);
            if (tb && tb->in->ne[0] != n)
                return 0;
        }
    }
    if ((rc = tens_float(tp)) || (tb && (rc = tens_float(tb))))
        return rc;
    float *sc = qd_malloc((size_t)n * sizeof *sc);
    double *mean = qd_malloc((size_t)n * sizeof *mean);
    if (!sc || !mean) {
        qd_free(sc);
        qd_free(mean);
        qd_set_errmsg("awq: out of memory");
        return QD_ENOMEM;
    }
    for (int64_t j = 0; j < n; j++)
        mean[j] = s->sum_abs[j] / (double)s->count;
    float alpha = o->alpha;
    double err = 0, err0 = 0;
    qd_awq_rounder_t trd = qd__awq_type_rounder(types);
    rc = 0;
    if (o->fixed) {
        qd__awq_scales(mean, n, alpha, sc);
    } else if (!any_q || !s->sample) {
        goto done;
    } else if ((rc = qd__awq_search(s->sample, s->n_sample, n, mean, wf, rows,
                                    nw, o->rd ? o->rd : &trd, o->n_threads,
                                    sc, &alpha, &err, &err0))) {
        goto done;
    } else {
        QD_INFO(MOD, "awq layer %d %s: alpha %.2f, output error %.4g -> %.4g",
                il, ws[0], alpha, err0, err);
    }
    for (int k = 0; k < nw; k++)
        for (int64_t r = 0; r < rows[k]; r++)
            for (int64_t j = 0; j < n; j++)
                tw[k]->f[r * n + j] *= sc[j];
    if (prev_rows) {
        int64_t pc = tp->in->ne[0];
        for (int64_t r = 0; r < n; r++)
            for (int64_t j = 0; j < pc; j++)
                tp->f[r * pc + j] /= sc[r];
        for (int64_t r = 0; tb && r < n; r++)
            tb->f[r] /= sc[r];
    } else {
        for (int64_t j = 0; j < n; j++)
            tp->f[j] /= sc[j];
    }
done:
    qd_free(sc);
    qd_free(mean);
    return rc;
}

/* The groups, in AutoAWQ's order: q/k/v after attn_norm, attn_output
 * after attn_v's rows (only when their shapes match: not with grouped-
 * query attention, as AutoAWQ), gate/up after ffn_norm, down after up's
 * rows. */
static int awq_apply(tens_t *ts, int64_t nt, const qd_calib_stats_t *st,
                     int n_layer, const awq_opts_t *o)
{
    char q[96], k[96], v[96], ao[96], g[96], u[96], d[96], an[96], fn[96];
    int rc = 0;
    for (int il = 0; il < n_layer && !rc; il++) {
        qd__calib_weight_name(il, QD_MM_ATTN_Q, q, sizeof q);
        qd__calib_weight_name(il, QD_MM_ATTN_K, k, sizeof k);
        qd__calib_weight_name(il, QD_MM_ATTN_V, v, sizeof v);
        qd__calib_weight_name(il, QD_MM_ATTN_OUTPUT, ao, sizeof ao);
        qd__calib_weight_name(il, QD_MM_FFN_GATE, g, sizeof g);
        qd__calib_weight_name(il, QD_MM_FFN_UP, u, sizeof u);
        qd__calib_weight_name(il, QD_MM_FFN_DOWN, d, sizeof d);
        snprintf(an, sizeof an, "blk.%d.attn_norm.weight", il);
        snprintf(fn, sizeof fn, "blk.%d.ffn_norm.weight", il);
        const char *attn[3] = {q, k, v}, *out[1] = {ao}, *ffn[2] = {g, u},
                   *down[1] = {d};
        if ((rc = awq_group(ts, nt, qd__calib_slot(st, il, QD_MM_ATTN_Q, 1),
                            attn, 3, an, 0, o, il)) ||
            (rc = awq_group(ts, nt,
                            qd__calib_slot(st, il, QD_MM_ATTN_OUTPUT, 1), out,
                            1, v, 1, o, il)) ||
            (rc = awq_group(ts, nt, qd__calib_slot(st, il, QD_MM_FFN_GATE, 1),
                            ffn, 2, fn, 0, o, il)))
            break;
        rc = awq_group(ts, nt, qd__calib_slot(st, il, QD_MM_FFN_DOWN, 1), down,
                       1, u, 1, o, il);
    }
    return rc;
}

/* Which calibration slot feeds tensor `name` ("blk.N.attn_k.weight"), or
 * NULL. */
static const qd_calib_slot_t *slot_of(const qd_calib_stats_t *st,
                                      const char *name)
{
    int il, len = 0;
    char what[64];
    if (sscanf(name, "blk.%d.%63[a-z_].weight%n", &il, what, &len) != 2 ||
        name[len])
        return NULL;
    for (int k = 0; k < QD_MM_OUTPUT; k++)
        if (!strcmp(what, mm_names[k]))
            return qd__calib_slot(st, il, k, 1);
    return NULL;
}

/* The shared pipeline: plan, calibrate, transform, quantize, write.
 * fold != NULL: write the AWQ-folded model without quantizing (tensors
 * keep their types, except that with a rounder, i.e. a search for another
 * format, the tensors the fold changed are written as F32). */
static int calibrated(const char *in_path, const char *out_path,
                      const qd_quantize_params_t *qp, qd_quant_method_t method,
                      const char *calib_path, const qd_calib_params_t *cp,
                      const awq_opts_t *fold, qd_quantize_stats_t *stats)
{
    int fold_only = fold != NULL;
    awq_opts_t opts = fold ? *fold : (awq_opts_t){0, 0.0f, NULL, 0};
    opts.n_threads = cp->n_threads;
    qd_gguf_t *g = NULL;
    qd_model_t *m = NULL;
    qd_calib_stats_t *st = NULL;
    qd_gguf_writer_t *w = NULL;
    int32_t *toks = NULL;
    int64_t n_toks = 0, *perm = NULL;
    qd_recipe_tensor_t *rt = NULL;
    qd_type_t *types = NULL;
    int *pflags = NULL;
    tens_t *ts = NULL;
    void *qbuf = NULL;
    qd_quantize_stats_t sts = {0};
    qd_recipe_model_t model = {0};
    int rc;

    if (qp->imatrix_path) {
        qd_set_errmsg("quantize: --imatrix cannot be combined with AWQ/GPTQ");
        return QD_EINVAL;
    }
    if ((rc = qd_gguf_open(in_path, &g)))
        return rc;
    int64_t n = qd_gguf_n_tensors(g);
    qd__recipe_model_info(g, &model, NULL);
    size_t nn = (size_t)QD_MAX(n, 1);
    if ((rc = qd__recipe_tensors(g, &perm, &rt)))
        goto out;
    types = qd_calloc(nn, sizeof *types);
    ts = qd_calloc(nn, sizeof *ts);
    if (!types || !ts) {
        rc = QD_ENOMEM;
        qd_set_errmsg("out of memory planning %lld tensors", (long long)n);
        goto out;
    }
    if (!(pflags = qd_calloc(nn, sizeof *pflags))) {
        rc = QD_ENOMEM;
        goto oom;
    }
    if ((rc = qd_recipe_plan(&model, &qp->recipe, rt, n, types, pflags)))
        goto out;
    for (int64_t i = 0; i < n; i++) {
        ts[i].in = qd_gguf_tensor(g, perm[i]);
        ts[i].to = fold_only ? ts[i].in->type : types[i];
        if (!fold_only && (pflags[i] & QD_RECIPE_FALLBACK))
            sts.n_fallback++;
        if (qd_type_internal((int)ts[i].to)) { /* Q4_G128 of an import cache */
            rc = QD_EUNSUPPORTED;
            qd_set_errmsg("tensor '%s': %s is quantd's own type, not written "
                          "to GGUF files (requantize it)", ts[i].in->name,
                          qd_type_name(ts[i].to));
            goto out;
        }
        if (ts[i].to != ts[i].in->type &&
            !qd_type_traits(ts[i].to)->quantize) {
            rc = QD_EUNSUPPORTED;
            qd_set_errmsg("tensor '%s': no quantizer for %s", ts[i].in->name,
                          qd_type_name(ts[i].to));
            goto out;
        }
    }

    /* calibration */
    int flags = method == QD_QUANT_GPTQ ? QD_CALIB_WANT_H
                                        : QD_CALIB_WANT_SAMPLES;
    if ((rc = qd_model_load(in_path, &m)) ||
        (rc = qd__calib_tokens(m, calib_path, &toks, &n_toks)) ||
        (rc = qd__calib_collect(m, toks, n_toks, cp, flags, 512, &st)))
        goto out;
    QD_INFO(MOD, "calibration: %d windows of %d tokens from %s",
            (int)st->n_chunks, cp->n_ctx, calib_path);
    if (method == QD_QUANT_AWQ &&
        (rc = awq_apply(ts, n, st, qd_model_hparams(m)->n_layer, &opts)))
        goto out;

    /* metadata */
    if (!(w = qd_gguf_writer_create())) {
        rc = QD_ENOMEM;
        goto oom;
    }
    for (int64_t i = 0; i < qd_gguf_n_kv(g) && !rc; i++)
        if (fold_only || !qd__quantize_key_dropped(qd_gguf_kv_key(g, i)))
            rc = qd_gguf_writer_copy_kv(w, g, i);
    const char *mname = method == QD_QUANT_AWQ ? "awq" : "gptq";
    if (!rc && !fold_only)
        rc = qd_gguf_writer_set_u32(w, "general.quantization_version",
                                    QD_QNT_VERSION);
    if (!rc && !fold_only)
        rc = qd_gguf_writer_set_u32(w, "general.file_type",
                                    (uint32_t)qp->recipe.ftype);
    if (!rc)
        rc = qd_gguf_writer_set_str(w, "quantize.tool",
                                    "quantd " PACKAGE_VERSION);
    if (!rc && !fold_only)
        rc = qd_gguf_writer_set_str(w, "quantize.type",
                                    qd_ftype_name(qp->recipe.ftype));
    if (!rc)
        rc = qd_gguf_writer_set_str(w, "quantize.method", mname);
    if (!rc)
        rc = qd_gguf_writer_set_str(w, "quantize.calibration.file",
                                    calib_path);
    if (!rc)
        rc = qd_gguf_writer_set_u32(w, "quantize.calibration.chunks",
                                    (uint32_t)st->n_chunks);
    if (rc)
        goto oom;

    /* tensors */
    for (int64_t i = 0; i < n; i++) {
        tens_t *t = &ts[i];
        const qd_gguf_tensor_t *in = t->in;
        if (fold && fold->rd && t->f)
            t->to = QD_TYPE_F32; /* the exporter rounds it, not us */
        int64_t nrows = tensor_rows(in), ncols = in->ne[0];
        size_t out_bytes = qd_row_size(t->to, ncols) * (size_t)nrows;
        const void *data = in->data;
        if (t->to != in->type || t->f) {
            if ((rc = tens_float(t)))
                goto out;
            qd_free(qbuf);
            if (!(qbuf = qd_malloc(QD_MAX(out_bytes, 1)))) {
                rc = QD_ENOMEM;
                goto oom;
            }
            const qd_type_traits_t *to = qd_type_traits(t->to);
            const qd_calib_slot_t *s =
                method == QD_QUANT_GPTQ ? slot_of(st, in->name) : NULL;
            if (t->to == QD_TYPE_F32) {
                memcpy(qbuf, t->f, out_bytes);
            } else if (s && s->h && to->is_quantized && in->ne[2] == 1 &&
                       s->n_cols == ncols) {
                if ((rc = qd__gptq_quantize(t->to, t->f, nrows, ncols, s->h,
                                            0.01, qbuf)))
                    goto out;
            } else {
                to->quantize(t->f, qbuf, nrows, ncols, NULL);
            }
            data = qbuf;
            if (t->to != in->type)
                sts.n_quantized++;
        }
        if ((rc = qd_gguf_writer_add_tensor(w, in->name, t->to,
                                            n_dims_eff(in->ne), in->ne, data,
                                            out_bytes, 1)))
            goto out;
        sts.n_tensors++;
        sts.bytes_in += in->n_bytes;
        sts.bytes_out += out_bytes;
        sts.n_weights += ncols * nrows;
        sts.n_type[t->to]++;
        qd_free(t->f);
        t->f = NULL;
    }
    if ((rc = qd_gguf_writer_write(w, out_path)))
        goto out;
    if (stats)
        *stats = sts;
    goto out;
oom:
    rc = QD_ENOMEM;
    qd_set_errmsg("quantize: out of memory");
out:
    for (int64_t i = 0; ts && i < n; i++)
        qd_free(ts[i].f);
    qd_free(qbuf);
    qd_gguf_writer_destroy(w);
    qd__calib_free(st);
    qd_free(toks);
    qd_model_free(m);
    qd_free(ts);
    qd_free(types);
    qd_free(pflags);
    qd_free(rt);
    qd_free(perm);
    qd_gguf_close(g);
    return rc;
}

int qd_quantize_calibrated(const char *in_path, const char *out_path,
                           const qd_quantize_params_t *qp,
                           qd_quant_method_t method, const char *calib_path,
                           const qd_calib_params_t *cp,
                           qd_quantize_stats_t *stats)
{
    if (method == QD_QUANT_RTN)
        return qd_quantize_model(in_path, out_path, qp, stats);
    if (method != QD_QUANT_AWQ && method != QD_QUANT_GPTQ) {
        qd_set_errmsg("quantize: unknown method %d", (int)method);
        return QD_EINVAL;
    }
    return calibrated(in_path, out_path, qp, method, calib_path, cp, NULL,
                      stats);
}

int qd__awq_write_folded(const char *in_path, const char *out_path,
                         const char *text_path, const qd_calib_params_t *p,
                         float alpha)
{
    qd_quantize_params_t qp;
    qd_quantize_params_default(&qp);
    qp.recipe.ftype = QD_FTYPE_ALL_F32;
    awq_opts_t o = {1, alpha, NULL, 0};
    return calibrated(in_path, out_path, &qp, QD_QUANT_AWQ, text_path, p, &o,
                      NULL);
}

int qd__awq_write_searched(const char *in_path, const char *out_path,
                           const char *text_path, const qd_calib_params_t *p,
                           const qd_awq_rounder_t *rd)
{
    qd_quantize_params_t qp;
    qd_quantize_params_default(&qp);
    qp.recipe.ftype = QD_FTYPE_ALL_F32;
    awq_opts_t o = {0, 0.0f, rd, 0};
    return calibrated(in_path, out_path, &qp, QD_QUANT_AWQ, text_path, p, &o,
                      NULL);
}
