/*
 * quantize.c — `quantd quantize [options] IN.gguf OUT.gguf TYPE [THREADS]`:
 * converts a model with llama.cpp's recipes (see docs/quantization.md).
 * Options may come before or after the positional arguments.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "quantd/common.h"
#include "quantd/convert.h"
#include "quantd/hf_import.h"

#define MAX_OVERRIDES 256

static void usage(FILE *f)
{
    fprintf(f,
            "usage: quantd quantize [options] IN.gguf OUT.gguf TYPE [THREADS]\n"
            "       quantd quantize --to awq|gptq [--group-size G]\n"
            "                       [--calib TEXT] (awq: AWQ's scale search)\n"
            "                       [--tokenizer tokenizer.json]\n"
            "                       [--tokenizer-config tokenizer_config.json]\n"
            "                       IN.gguf OUTDIR\n"
            "         (writes an AutoAWQ-GEMM / AutoGPTQ-v1 checkpoint directory\n"
            "          from an F32/F16/BF16 model; quantd serve loads it back)\n"
            "\n"
            "TYPE: Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0\n"
            "      Q3_K_L Q3_K_M Q3_K_S Q2_K IQ4_XS IQ4_NL BF16 F16 F32\n"
            "      (Q3_K, Q4_K, Q5_K mean the _M variants)\n"
            "\n"
            "options:\n"
            "  --pure                 one type for every matrix (no mixture)\n"
            "  --imatrix FILE         importance matrix (llama-imatrix GGUF or .dat)\n"
            "  --method M             rtn (default), awq or gptq; awq and gptq\n"
            "                         need --calib\n"
            "  --calib TEXT           calibration text for awq / gptq\n"
            "  --calib-chunks N       windows of the text to use (default 64)\n"
            "  --calib-ctx N          window length (default 512)\n"
            "  --tensor-type PAT=TYPE give tensors whose name matches PAT (POSIX\n"
            "                         extended regex, anywhere in the name) the\n"
            "                         ggml type TYPE; repeatable, first match wins\n"
            "  --output-tensor-type TYPE      ggml type of output.weight\n"
            "  --token-embedding-type TYPE    ggml type of token_embd.weight\n"
            "  -t, --threads N        threads (default: physical cores)\n"
            "  -q, --quiet            no progress line\n");
}

typedef struct {
    int quiet;
    int tty;
    uint64_t last_ns;
} progress_state_t;

static void on_progress(void *ud, const qd_quantize_progress_t *p)
{
    progress_state_t *s = ud;
    uint64_t now = qd_now_ns();
    if (s->quiet)
        return;
    if (!s->tty) {
        fprintf(stderr, "[%4lld/%4lld] %-40s %6s -> %-6s\n",
                (long long)p->i_tensor, (long long)p->n_tensors, p->name,
                qd_type_name(p->from), qd_type_name(p->to));
        return;
    }
    if (p->i_tensor != p->n_tensors && now - s->last_ns < 100000000ull)
        return; /* at most 10 updates a second */
    s->last_ns = now;
    double frac = p->bytes_in_total
                      ? (double)p->bytes_in_done / (double)p->bytes_in_total
                      : 1.0;
    double eta = frac > 0 ? p->elapsed_s * (1.0 - frac) / frac : 0;
    fprintf(stderr,
            "\r[%4lld/%4lld] %7.1f MiB in, %7.1f MiB out, %5.1fs, ETA %5.1fs ",
            (long long)p->i_tensor, (long long)p->n_tensors,
            (double)p->bytes_in_done / 1048576.0,
            (double)p->bytes_out_done / 1048576.0, p->elapsed_s, eta);
    if (p->i_tensor == p->n_tensors)
        fputc('\n', stderr);
}

int qd_cmd_quantize(int argc, char **argv)
{
    qd_quantize_params_t qp;
    qd_tensor_override_t ov[MAX_OVERRIDES];
    char *ov_pat[MAX_OVERRIDES] = {0};
    int n_ov = 0, n_pos = 0, status = 2;
    const char *pos[4] = {0};
    progress_state_t ps = {0};
    qd_quant_method_t method = QD_QUANT_RTN;
    int to_hf = 0, hf_group = 128;
    qd_hf_export_fmt_t hf_fmt = QD_HF_EXPORT_AWQ;
    const char *hf_tok = NULL, *hf_tok_cfg = NULL;
    const char *calib = NULL;
    qd_calib_params_t cp;
    qd_calib_params_default(&cp);
    cp.n_chunks = 64;

    qd_quantize_params_default(&qp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            status = 0;
            goto out;
        } else if (!strcmp(a, "--pure")) {
            qp.recipe.pure = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            ps.quiet = 1;
        } else if (!strcmp(a, "--imatrix") && i + 1 < argc) {
            qp.imatrix_path = argv[++i];
        } else if (!strcmp(a, "--to") && i + 1 < argc) {
            const char *f = argv[++i];
            if (!strcmp(f, "awq")) {
                hf_fmt = QD_HF_EXPORT_AWQ;
            } else if (!strcmp(f, "gptq")) {
                hf_fmt = QD_HF_EXPORT_GPTQ;
            } else {
                fprintf(stderr, "quantd quantize: --to wants awq or gptq, "
                                "got '%s'\n", f);
                goto out;
            }
            to_hf = 1;
        } else if (!strcmp(a, "--group-size") && i + 1 < argc) {
            long g;
            if (qd__parse_int(argv[++i], -1, 1 << 20, &g) ||
                (g != -1 && (g < 32 || g % 32))) {
                fprintf(stderr, "quantd quantize: bad --group-size '%s' (a "
                                "multiple of 32, or -1)\n", argv[i]);
                goto out;
            }
            hf_group = (int)g;
        } else if (!strcmp(a, "--tokenizer") && i + 1 < argc) {
            hf_tok = argv[++i];
        } else if (!strcmp(a, "--tokenizer-config") && i + 1 < argc) {
            hf_tok_cfg = argv[++i];
        } else if (!strcmp(a, "--calib") && i + 1 < argc) {
            calib = argv[++i];
        } else if (!strcmp(a, "--method") && i + 1 < argc) {
            const char *mth = argv[++i];
            if (!strcmp(mth, "rtn")) {
                method = QD_QUANT_RTN;
            } else if (!strcmp(mth, "awq")) {
                method = QD_QUANT_AWQ;
            } else if (!strcmp(mth, "gptq")) {
                method = QD_QUANT_GPTQ;
            } else {
                fprintf(stderr, "quantd quantize: unknown method '%s' (rtn, "
                                "awq, gptq)\n", mth);
                goto out;
            }
        } else if ((!strcmp(a, "--calib-chunks") ||
                    !strcmp(a, "--calib-ctx")) && i + 1 < argc) {
            int is_ctx = !strcmp(a, "--calib-ctx");
            int32_t v;
            if (qd__parse_i32(argv[++i], is_ctx ? 4 : 1, 1 << 24, &v)) {
                fprintf(stderr, "quantd quantize: bad %s '%s'\n", a, argv[i]);
                goto out;
            }
            if (is_ctx)
                cp.n_ctx = v;
            else
                cp.n_chunks = v;
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) &&
                   i + 1 < argc) {
            if (qd__parse_i32(argv[++i], 1, 1024, &qp.n_threads)) {
                fprintf(stderr, "quantd quantize: bad thread count '%s'\n",
                        argv[i]);
                goto out;
            }
        } else if ((!strcmp(a, "--output-tensor-type") ||
                    !strcmp(a, "--token-embedding-type")) && i + 1 < argc) {
            int out = a[2] == 'o';
            qd_type_t t;
            if (qd_type_from_name(argv[++i], &t) ||
                (t != QD_TYPE_F32 && !qd_type_traits(t)->quantize)) {
                fprintf(stderr, "quantd quantize: %s: unknown or unsupported "
                                "type '%s'\n", a, argv[i]);
                goto out;
            }
            if (out) {
                qp.recipe.set_output_type = 1;
                qp.recipe.output_type = t;
            } else {
                qp.recipe.set_token_embd_type = 1;
                qp.recipe.token_embd_type = t;
            }
        } else if (!strcmp(a, "--tensor-type") && i + 1 < argc) {
            const char *spec = argv[++i], *eq = strrchr(spec, '=');
            if (!eq || eq == spec || !eq[1]) {
                fprintf(stderr, "quantd quantize: --tensor-type wants "
                                "PATTERN=TYPE, got '%s'\n", spec);
                goto out;
            }
            if (n_ov == MAX_OVERRIDES) {
                fprintf(stderr, "quantd quantize: more than %d --tensor-type\n",
                        MAX_OVERRIDES);
                goto out;
            }
            if (qd_type_from_name(eq + 1, &ov[n_ov].type) ||
                (ov[n_ov].type != QD_TYPE_F32 &&
                 !qd_type_traits(ov[n_ov].type)->quantize)) {
                fprintf(stderr, "quantd quantize: --tensor-type %s: unknown "
                                "or unsupported type '%s'\n", spec, eq + 1);
                goto out;
            }
            /* llama-quantize lowercases the pattern; tensor names are */
            if (!(ov_pat[n_ov] = qd_strndup(spec, (size_t)(eq - spec)))) {
                fprintf(stderr, "quantd quantize: out of memory\n");
                goto out;
            }
            for (char *c = ov_pat[n_ov]; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            ov[n_ov].pattern = ov_pat[n_ov];
            n_ov++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "quantd quantize: unknown or incomplete option "
                            "'%s'\n", a);
            usage(stderr);
            goto out;
        } else if (n_pos < 4) {
            pos[n_pos++] = a;
        } else {
            fprintf(stderr, "quantd quantize: too many arguments\n");
            usage(stderr);
            goto out;
        }
    }
    if (to_hf) {
        if (n_pos != 2) {
            fprintf(stderr, "quantd quantize --to: wants IN.gguf OUTDIR\n");
            goto out;
        }
        qd_hf_export_params_t hp;
        qd_hf_export_params_default(&hp);
        hp.format = hf_fmt;
        hp.group_size = hf_group;
        hp.tokenizer_json = hf_tok;
        hp.tokenizer_config = hf_tok_cfg;
        hp.calib_path = calib;
        hp.calib_ctx = cp.n_ctx;
        hp.calib_chunks = cp.n_chunks;
        hp.n_threads = qp.n_threads;
        if (qp.imatrix_path) {
            fprintf(stderr, "quantd quantize --to: --imatrix is not used by "
                            "the checkpoint export; give --calib TEXT for "
                            "AWQ's scale search\n");
            goto out;
        }
        if (calib && hf_fmt != QD_HF_EXPORT_AWQ) {
            fprintf(stderr, "quantd quantize --to gptq: --calib is not "
                            "supported (GPTQ export is plain rounding)\n");
            goto out;
        }
        uint64_t t0 = qd_now_ns();
        int rc = qd_hf_export(pos[0], pos[1], &hp);
        if (rc) {
            fprintf(stderr, "quantd quantize: %s: %s\n", qd_strerror(rc),
                    qd_errmsg());
            goto out;
        }
        fprintf(stderr, "quantd quantize: %s -> %s (%s, group %d%s) in "
                        "%.1f s\n",
                pos[0], pos[1], hf_fmt == QD_HF_EXPORT_AWQ ? "AWQ" : "GPTQ",
                hf_group, calib ? ", scales searched" : "",
                (double)(qd_now_ns() - t0) / 1e9);
        status = 0;
        goto out;
    }
    if (n_pos < 3) {
        usage(stderr);
        goto out;
    }
    if (qd_ftype_from_name(pos[2], &qp.recipe.ftype)) {
        fprintf(stderr, "quantd quantize: unknown type '%s' (see --help)\n",
                pos[2]);
        goto out;
    }
    if (n_pos == 4 && qd__parse_i32(pos[3], 1, 1024, &qp.n_threads)) {
        fprintf(stderr, "quantd quantize: bad thread count '%s'\n", pos[3]);
        goto out;
    }
    if (!strcmp(pos[0], pos[1])) {
        fprintf(stderr, "quantd quantize: input and output are the same file\n");
        goto out;
    }
    qp.recipe.overrides = ov;
    qp.recipe.n_overrides = n_ov;
    ps.tty = isatty(2);
    qp.progress = on_progress;
    qp.progress_ud = &ps;

    if (method != QD_QUANT_RTN && !calib) {
        fprintf(stderr, "quantd quantize: --method awq/gptq needs --calib "
                        "TEXT\n");
        goto out;
    }
    cp.n_threads = qp.n_threads;

    qd_quantize_stats_t st;
    uint64_t t0 = qd_now_ns();
    int rc = qd_quantize_calibrated(pos[0], pos[1], &qp, method, calib, &cp,
                                    &st);
    if (rc) {
        fprintf(stderr, "quantd quantize: %s: %s\n", qd_strerror(rc),
                qd_errmsg());
        status = 1;
        goto out;
    }
    fprintf(stderr, "quantd quantize: %s -> %s (%s%s): %lld tensors, %lld "
                    "converted, %lld fallbacks\n",
            pos[0], pos[1], qd_ftype_name(qp.recipe.ftype),
            qp.recipe.pure ? ", pure" : "", (long long)st.n_tensors,
            (long long)st.n_quantized, (long long)st.n_fallback);
    fprintf(stderr, "  tensor data %.2f MiB -> %.2f MiB (%.2f bits/weight), "
                    "%.1fs\n  types:",
            (double)st.bytes_in / 1048576.0, (double)st.bytes_out / 1048576.0,
            st.n_weights ? 8.0 * (double)st.bytes_out / (double)st.n_weights
                         : 0.0,
            (double)(qd_now_ns() - t0) * 1e-9);
    for (int t = 0; t < QD_TYPE_COUNT; t++)
        if (st.n_type[t])
            fprintf(stderr, " %lld %s", (long long)st.n_type[t],
                    qd_type_name((qd_type_t)t));
    fputc('\n', stderr);
    status = 0;
out:
    for (int k = 0; k < n_ov; k++)
        qd_free(ov_pat[k]);
    return status;
}
