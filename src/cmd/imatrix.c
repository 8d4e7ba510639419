/*
 * imatrix.c — `quantd imatrix -m MODEL -f TEXT -o OUT.imatrix [--chunks N]
 * [--ctx N] [-t N]`: the importance matrix of a model over a calibration
 * text, in llama-imatrix's GGUF format (see qd_imatrix_compute), for
 * `quantd quantize --imatrix` and llama-quantize alike.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "quantd/common.h"
#include "quantd/gguf.h"
#include "quantd/convert.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: quantd imatrix -m MODEL -f TEXT -o OUT.imatrix [options]\n"
            "\n"
            "  -m, --model FILE    model (F32/F16 recommended)\n"
            "  -f, --file FILE     calibration text (UTF-8)\n"
            "  -o, --output FILE   importance matrix to write (GGUF)\n"
            "  --chunks N          use only the first N windows\n"
            "  -c, --ctx N         window length in tokens (default 512)\n"
            "  -t, --threads N     threads (default: physical cores)\n");
}

int qd_cmd_imatrix(int argc, char **argv)
{
    qd_gguf_set_load(QD_GGUF_READ); /* the model runs: huge pages (quantd/gguf.h) */
    const char *model = NULL, *text = NULL, *out = NULL;
    qd_calib_params_t p;
    qd_calib_params_default(&p);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int32_t *num = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) {
            model = v;
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && v) {
            text = v;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
            out = v;
        } else if (!strcmp(a, "--chunks") && v) {
            num = &p.n_chunks;
        } else if ((!strcmp(a, "-c") || !strcmp(a, "--ctx")) && v) {
            num = &p.n_ctx;
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) {
            num = &p.n_threads;
        } else {
            fprintf(stderr, "quantd imatrix: unknown or incomplete argument "
                            "'%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (num && qd__parse_i32(v, num == &p.n_ctx ? 4 : 1,
                                 num == &p.n_threads ? 1024 : 1 << 24, num)) {
            fprintf(stderr, "quantd imatrix: bad value '%s' for %s\n", v, a);
            return 2;
        }
        i++;
    }
    if (!model || !text || !out) {
        usage(stderr);
        return 2;
    }
    int32_t n_chunks = 0;
    uint64_t t0 = qd_now_ns();
    int rc = qd_imatrix_compute(model, text, &p, out, &n_chunks);
    if (rc) {
        fprintf(stderr, "quantd imatrix: %s: %s\n", qd_strerror(rc),
                qd_errmsg());
        return 1;
    }
    fprintf(stderr, "quantd imatrix: %s: %d windows of %d tokens, %.1fs\n",
            out, (int)n_chunks, (int)p.n_ctx,
            (double)(qd_now_ns() - t0) * 1e-9);
    return 0;
}
