/*
 * gen_model.c — `quantd gen-model`: write a deterministic random-weight
 * Llama model (engine/genmodel.c) for benchmarks and tests, or, with
 * --widen, a real small llama padded with zeros to widths that are
 * multiples of 128 (convert/widen.c), e.g. for AWQ checkpoints.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "convert/convert_int.h"
#include "quantd/common.h"
#include "quantd/genmodel.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: quantd gen-model [--preset 1b|tiny] [--type F16|Q8_0|Q4_0|Q4_K_M|...]\n"
               "                        [--vocab N] [--layers N] [--seed S] -o OUT.gguf\n"
               "       quantd gen-model --widen IN.gguf [--multiple 128] -o OUT.gguf\n"
               "         (IN's llama padded with zeros to widths that are multiples\n"
               "          of 128: the same function, F32)\n");
}

int qd_cmd_gen_model(int argc, char **argv)
{
    const char *preset = "tiny", *type = "F16", *out = NULL, *widen = NULL;
    long vocab = 0, layers = 0, mult = 128;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        if (!strcmp(a, "--preset"))
            preset = v;
        else if (!strcmp(a, "--type"))
            type = v;
        else if (!strcmp(a, "--vocab") || !strcmp(a, "--layers")) {
            if (qd__parse_int(v, 1, 1000000, a[2] == 'v' ? &vocab : &layers)) {
                fprintf(stderr, "quantd gen-model: bad %s '%s'\n", a, v);
                return 2;
            }
        }
        else if (!strcmp(a, "--widen"))
            widen = v;
        else if (!strcmp(a, "--multiple")) {
            if (qd__parse_int(v, 8, 4096, &mult)) {
                fprintf(stderr, "quantd gen-model: bad --multiple '%s'\n", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "-o"))
            out = v;
        else {
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (widen && out) {
        int rc = qd__model_widen(widen, out, (int)mult);
        if (rc) {
            fprintf(stderr, "quantd gen-model: %s (%s)\n", qd_errmsg(),
                    qd_strerror(rc));
            return 1;
        }
        return 0;
    }
    qd_genmodel_params_t p;
    if (!out || qd_genmodel_preset(preset, &p) || qd_genmodel_set_type(&p, type)) {
        if (out)
            fprintf(stderr, "quantd gen-model: %s\n", qd_errmsg());
        usage(stderr);
        return 2;
    }
    if (vocab) {
        if (vocab < 260 || vocab > 1000000) {
            fprintf(stderr, "quantd gen-model: --vocab %ld out of range 260..1000000\n", vocab);
            return 2;
        }
        p.n_vocab = (int32_t)vocab;
    }
    if (layers) {
        if (layers < 1 || layers > 1000) {
            fprintf(stderr, "quantd gen-model: --layers %ld out of range\n", layers);
            return 2;
        }
        p.n_layer = (int32_t)layers;
    }
    p.seed = seed;
    int rc = qd_genmodel_write(&p, out);
    if (rc) {
        fprintf(stderr, "quantd gen-model: %s (%s)\n", qd_errmsg(), qd_strerror(rc));
        return 1;
    }
    return 0;
}
