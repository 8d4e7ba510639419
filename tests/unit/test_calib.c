/*
 * test_calib.c — calibrated quantization: the engine's matmul observer, the
 * imatrix writer (read back by the quantizer's reader, values against a
 * direct computation), AWQ's folding (an F32 model's logits unchanged),
 * GPTQ against plain rounding on a random layer, and both methods end to
 * end on a small generated model.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert/calib_int.h"
#include "convert/convert_int.h"
#include "quantd/common.h"
#include "quantd/convert.h"
#include "quantd/engine.h"
#include "quantd/genmodel.h"
#include "quantd/gguf.h"
#include "util.h"

static void tmp_file(char *buf, size_t cap, const char *tag)
{
    const char *dir = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    snprintf(buf, cap, "%s/calib-%d-%s", dir, (int)getpid(), tag);
}

/* A small F32 Llama (n_head_kv key/value heads of 4) and a text of ~2k
 * bytes beside it. */
static void make_model_kv(char *model, char *text, size_t cap, int n_head_kv)
{
    qd_genmodel_params_t gp;
    cr_assert_eq(qd_genmodel_preset("tiny", &gp), 0);
    gp.n_embd = 64;
    gp.n_head = 4;
    gp.n_head_kv = n_head_kv;
    gp.head_dim = 16;
    gp.n_ff = 128;
    gp.type = QD_TYPE_F32;
    gp.seed = 7;
    tmp_file(model, cap, "model.gguf");
    cr_assert_eq(qd_genmodel_write(&gp, model), 0, "%s", qd_errmsg());
    tmp_file(text, cap, "text.txt");
    FILE *f = fopen(text, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 60; i++)
        fprintf(f, "The %d quick brown foxes jump over %d lazy dogs; ", i,
                i * 7 % 13);
    fclose(f);
}

static void make_model(char *model, char *text, size_t cap)
{
    make_model_kv(model, text, cap, 2);
}

Test(calib, imatrix_roundtrip_and_direct)
{
    char model[256], text[256], im_path[256];
    make_model(model, text, sizeof model);
    tmp_file(im_path, sizeof im_path, "im.gguf");
    qd_calib_params_t p;
    qd_calib_params_default(&p);
    p.n_ctx = 32;
    p.n_chunks = 4;
    p.n_threads = 1;
    int32_t n_chunks = 0;
    cr_assert_eq(qd_imatrix_compute(model, text, &p, im_path, &n_chunks), 0,
                 "%s", qd_errmsg());
    cr_assert_eq(n_chunks, 4);

    /* the file as llama-imatrix writes it */
    qd_gguf_t *g;
    cr_assert_eq(qd_gguf_open(im_path, &g), 0);
    const char *ty;
    size_t len;
    cr_assert_eq(qd_gguf_get_str(g, "general.type", &ty, &len), 0);
    cr_assert_str_eq(ty, "imatrix");
    uint32_t cc;
    cr_assert_eq(qd_gguf_get_u32(g, "imatrix.chunk_count", &cc), 0);
    cr_assert_eq(cc, 4);
    const qd_gguf_tensor_t *cnt =
        qd_gguf_find_tensor(g, "blk.1.ffn_down.weight.counts");
    cr_assert_not_null(cnt);
    cr_assert_float_eq(((const float *)cnt->data)[0], 128.0f, 0);
    cr_assert_null(qd_gguf_find_tensor(g, "output.weight.in_sum2"));
    cr_assert_eq(qd_gguf_n_tensors(g), 2 * 2 * 7);
    qd_gguf_close(g);

    /* read back by the quantizer's reader */
    qd_imatrix_t *im;
    cr_assert_eq(qd_imatrix_load(im_path, &im), 0, "%s", qd_errmsg());
    cr_assert_eq(qd_imatrix_count(im), 14);
    const float *wq, *wk, *wd;
    int per_mat;
    qd_imatrix_lookup(im, "blk.0.attn_q.weight", 64, 1, &wq, &per_mat);
    qd_imatrix_lookup(im, "blk.0.attn_k.weight", 64, 1, &wk, &per_mat);
    qd_imatrix_lookup(im, "blk.1.ffn_down.weight", 128, 1, &wd, &per_mat);
    cr_assert(wq && wk && wd);

    /* direct: layer 0's attention input is rmsnorm(embedding) * attn_norm,
     * which depends on the token only */
    qd_model_t *m;
    cr_assert_eq(qd_model_load(model, &m), 0);
    const qd_gguf_t *mg = qd_model_gguf(m);
    const float *embd = qd_gguf_find_tensor(mg, "token_embd.weight")->data;
    const float *norm = qd_gguf_find_tensor(mg, "blk.0.attn_norm.weight")->data;
    int32_t *toks;
    int64_t n_toks;
    cr_assert_eq(qd__calib_tokens(m, text, &toks, &n_toks), 0);
    cr_assert_geq(n_toks, 128);
    int32_t bos = qd_tokenizer_bos(qd_model_tokenizer(m));
    double sum2[64] = {0};
    for (int i = 0; i < 128; i++) {
        int32_t t = i % 32 == 0 && bos >= 0 ? bos : toks[i];
        const float *e = embd + (size_t)t * 64;
        double ss = 0;
        for (int j = 0; j < 64; j++)
            ss += (double)e[j] * e[j];
        double sc = 1.0 / sqrt(ss / 64 + qd_model_hparams(m)->rms_eps);
        for (int j = 0; j < 64; j++) {
            double x = e[j] * sc * norm[j];
            sum2[j] += x * x;
        }
    }
    for (int j = 0; j < 64; j++) {
        double want = sum2[j] / 128;
        cr_assert(fabs(wq[j] - want) <= 1e-5 * want + 1e-9,
                  "col %d: %g vs %g", j, wq[j], want);
        cr_assert_float_eq(wq[j], wk[j], 0);
    }
    qd_free(toks);
    qd_model_free(m);
    qd_imatrix_free(im);
    unlink(im_path);
    unlink(model);
    unlink(text);
}

/* Logits of the last token of toks[0..n). */
static void last_logits(const char *path, const int32_t *toks, int n,
                        float *out, int n_vocab)
{
    int32_t nv;
    float *l = tu_logits(path, toks, n, 0, &nv);
    cr_assert_eq(nv, n_vocab);
    memcpy(out, l, (size_t)n_vocab * sizeof *out);
    free(l);
}

/* Fold with alpha 0.5 and compare logits; `changed` must differ from the
 * source (the fold reached it). */
static void fold_case(int n_head_kv, const char *changed, int64_t n_changed)
{
    char model[256], text[256], folded[256];
    make_model_kv(model, text, sizeof model, n_head_kv);
    tmp_file(folded, sizeof folded, "folded.gguf");
    qd_calib_params_t p;
    qd_calib_params_default(&p);
    p.n_ctx = 32;
    p.n_chunks = 2;
    p.n_threads = 1;
    cr_assert_eq(qd__awq_write_folded(model, folded, text, &p, 0.5f), 0, "%s",
                 qd_errmsg());

    /* the fold did change the weights */
    qd_gguf_t *ga, *gb;
    cr_assert_eq(qd_gguf_open(model, &ga), 0);
    cr_assert_eq(qd_gguf_open(folded, &gb), 0);
    const float *na = qd_gguf_find_tensor(ga, changed)->data;
    const float *nb = qd_gguf_find_tensor(gb, changed)->data;
    double diff = 0;
    for (int64_t j = 0; j < n_changed; j++)
        diff += fabs(na[j] - nb[j]);
    cr_assert_gt(diff, 1.0, "%s unchanged (%g)", changed, diff);
    qd_gguf_close(ga);
    qd_gguf_close(gb);

    int32_t toks[40];
    for (int i = 0; i < 40; i++)
        toks[i] = 1 + (i * 37) % 300;
    float la[512], lb[512];
    last_logits(model, toks, 40, la, 512);
    last_logits(folded, toks, 40, lb, 512);
    float maxd = 0;
    for (int i = 0; i < 512; i++)
        maxd = fmaxf(maxd, fabsf(la[i] - lb[i]));
    cr_assert_leq(maxd, 1e-4f, "max logit difference %g", maxd);
    unlink(folded);
    unlink(model);
    unlink(text);
}

Test(calib, awq_fold_keeps_f32_logits)
{
    fold_case(2, "blk.1.ffn_norm.weight", 64);
}

/* With as many key/value heads as query heads, attn_output's scales fold
 * into attn_v's rows. */
Test(calib, awq_fold_into_v_keeps_f32_logits)
{
    char model[256], text[256];
    fold_case(4, "blk.1.attn_output.weight", 64 * 64);
    /* and not with grouped-query attention: v keeps its rows' scale */
    make_model_kv(model, text, sizeof model, 2);
    char folded[256];
    tmp_file(folded, sizeof folded, "folded-gqa.gguf");
    qd_calib_params_t p;
    qd_calib_params_default(&p);
    p.n_ctx = 32;
    p.n_chunks = 2;
    p.n_threads = 1;
    cr_assert_eq(qd__awq_write_folded(model, folded, text, &p, 0.5f), 0);
    qd_gguf_t *ga, *gb;
    cr_assert_eq(qd_gguf_open(model, &ga), 0);
    cr_assert_eq(qd_gguf_open(folded, &gb), 0);
    const qd_gguf_tensor_t *oa = qd_gguf_find_tensor(ga, "blk.1.attn_output.weight");
    const qd_gguf_tensor_t *ob = qd_gguf_find_tensor(gb, "blk.1.attn_output.weight");
    cr_assert_eq(memcmp(oa->data, ob->data, oa->n_bytes), 0,
                 "attn_output changed under GQA");
    qd_gguf_close(ga);
    qd_gguf_close(gb);
    unlink(folded);
    unlink(model);
    unlink(text);
}

/* Deterministic standard normals (xorshift + Box-Muller). */
static uint64_t rng = 88172645463325252ull;
static double gauss(void)
{
    double u[2];
    for (int k = 0; k < 2; k++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        u[k] = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* Σ_x ‖(W − deq(q)) x‖² over the sample rows. */
static double out_err(qd_type_t type, const float *w, const void *q,
                      const float *x, int rows, int cols, int n)
{
    float *d = malloc((size_t)rows * cols * sizeof *d);
    qd_type_traits(type)->to_float(q, d, (int64_t)rows * cols);
    double e = 0;
    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) {
            double acc = 0;
            for (int j = 0; j < cols; j++)
                acc += ((double)w[r * cols + j] - d[r * cols + j]) *
                       x[t * cols + j];
            e += acc * acc;
        }
    free(d);
    return e;
}

Test(calib, gptq_beats_rtn_on_random_layer)
{
    enum { ROWS = 16, COLS = 768, N = 320, K = 24 };
    static float w[ROWS * COLS], x[N * COLS], mix[K * COLS];
    static double h[COLS * COLS];
    rng = 88172645463325252ull;
    for (int i = 0; i < ROWS * COLS; i++)
        w[i] = (float)gauss();
    for (int i = 0; i < K * COLS; i++)
        mix[i] = (float)gauss();
    /* correlated inputs with uneven channel scales: x = z · mix + noise */
    for (int t = 0; t < N; t++) {
        double z[K];
        for (int k = 0; k < K; k++)
            z[k] = gauss();
        for (int j = 0; j < COLS; j++) {
            double v = 0.1 * gauss();
            for (int k = 0; k < K; k++)
                v += z[k] * mix[k * COLS + j];
            x[t * COLS + j] = (float)(v * (1 + (j % 7)));
        }
    }
    memset(h, 0, sizeof h);
    for (int t = 0; t < N; t++)
        for (int a = 0; a < COLS; a++)
            for (int b = 0; b < COLS; b++)
                h[a * COLS + b] += (double)x[t * COLS + a] * x[t * COLS + b];
    const qd_type_t types[] = {QD_TYPE_Q4_0, QD_TYPE_Q4_K, QD_TYPE_Q3_K};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        qd_type_t ty = types[i];
        size_t bytes = qd_row_size(ty, COLS) * ROWS;
        void *q_rtn = malloc(bytes), *q_gptq = malloc(bytes),
             *q_again = malloc(bytes);
        qd_type_traits(ty)->quantize(w, q_rtn, ROWS, COLS, NULL);
        cr_assert_eq(qd__gptq_quantize(ty, w, ROWS, COLS, h, 0.01, q_gptq), 0);
        cr_assert_eq(qd__gptq_quantize(ty, w, ROWS, COLS, h, 0.01, q_again),
                     0);
        cr_assert_eq(memcmp(q_gptq, q_again, bytes), 0, "not deterministic");
        double e_rtn = out_err(ty, w, q_rtn, x, ROWS, COLS, N);
        double e_gptq = out_err(ty, w, q_gptq, x, ROWS, COLS, N);
        /* the first block of a row gains nothing: with 3 blocks of 256,
         * K-quants can do less than 32-blocks */
        double bound = qd_type_traits(ty)->blck_size == 32 ? 0.8 : 0.95;
        cr_assert_lt(e_gptq, bound * e_rtn, "%s: gptq %g vs rtn %g",
                     qd_type_name(ty), e_gptq, e_rtn);
        fprintf(stderr, "%s: gptq/rtn output error %.3f\n", qd_type_name(ty),
                e_gptq / e_rtn);
        free(q_rtn);
        free(q_gptq);
        free(q_again);
    }
    /* a row length that is not a multiple of the block */
    char dst[4096];
    cr_assert_eq(qd__gptq_quantize(QD_TYPE_Q4_K, w, 1, 64, h, 0.01, dst),
                 QD_EINVAL);
}

Test(calib, awq_and_gptq_models_load_and_run)
{
    char model[256], text[256], out[256];
    make_model(model, text, sizeof model);
    tmp_file(out, sizeof out, "q.gguf");
    qd_calib_params_t p;
    qd_calib_params_default(&p);
    p.n_ctx = 32;
    p.n_chunks = 2;
    p.n_threads = 1;
    qd_quantize_params_t qp;
    qd_quantize_params_default(&qp);
    qp.recipe.ftype = QD_FTYPE_MOSTLY_Q4_0;
    qp.n_threads = 1;
    int32_t toks[20];
    for (int i = 0; i < 20; i++)
        toks[i] = 1 + (i * 53) % 300;
    float base[512], got[512];
    last_logits(model, toks, 20, base, 512);
    cr_assert_eq(qd_quantize_model(model, out, &qp, NULL), 0);
    last_logits(out, toks, 20, got, 512);
    double rnum = 0, rden = 0;
    for (int i = 0; i < 512; i++) {
        rnum += (got[i] - base[i]) * (got[i] - base[i]);
        rden += base[i] * base[i];
    }
    double rtn_err = sqrt(rnum / rden);
    const qd_quant_method_t ms[] = {QD_QUANT_AWQ, QD_QUANT_GPTQ};
    for (int k = 0; k < 2; k++) {
        qd_quantize_stats_t st;
        cr_assert_eq(qd_quantize_calibrated(model, out, &qp, ms[k], text, &p,
                                            &st), 0, "%s", qd_errmsg());
        cr_assert_gt(st.n_type[QD_TYPE_Q4_0], 0);
        qd_gguf_t *g;
        cr_assert_eq(qd_gguf_open(out, &g), 0);
        const char *meth;
        size_t len;
        cr_assert_eq(qd_gguf_get_str(g, "quantize.method", &meth, &len), 0);
        cr_assert_str_eq(meth, k == 0 ? "awq" : "gptq");
        qd_gguf_close(g);
        last_logits(out, toks, 20, got, 512);
        double num = 0, den = 0;
        for (int i = 0; i < 512; i++) {
            num += (got[i] - base[i]) * (got[i] - base[i]);
            den += base[i] * base[i];
        }
        /* a random model is no calibration target: ask only that the
         * result is as close to F32 as plain rounding, give or take */
        cr_assert_lt(sqrt(num / den), 1.5 * rtn_err,
                     "logits far from F32 (%g, rtn %g)", sqrt(num / den),
                     rtn_err);
        fprintf(stderr, "method %d: relative logit error %.3f (rtn %.3f)\n",
                (int)ms[k], sqrt(num / den), rtn_err);
    }
    qd_quantize_params_t bad = qp;
    bad.imatrix_path = text;
    cr_assert_eq(qd_quantize_calibrated(model, out, &bad, QD_QUANT_GPTQ, text,
                                        &p, NULL), QD_EINVAL);
    unlink(out);
    unlink(model);
    unlink(text);
}
