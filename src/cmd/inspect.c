/*
 * inspect.c — `quantd inspect MODEL`: print a GGUF file's header, every
 * metadata kv, every tensor, and totals (bytes, parameters, bits per
 * weight, tensors per type). Reads only the header; nothing is computed
 * from the weights.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "loader/gguf_int.h"
#include "quantd/common.h"
#include "quantd/gguf.h"
#include "quantd/hf_import.h"

#define INSPECT_MAX_ELEMS 8   /* array elements shown per kv */
#define INSPECT_VALUE_CAP 512 /* bytes of a value shown */

static void usage(FILE *f)
{
    fprintf(f, "usage: quantd inspect MODEL.gguf\n\n"
               "Print the GGUF header, every metadata key/value, every "
               "tensor (name, type,\nshape, bytes, offset in the data "
               "section) and totals: tensor bytes,\nparameter count, bits "
               "per weight and the number of tensors of each type.\n");
}

static void print_kvs(const qd_gguf_t *g)
{
    char val[INSPECT_VALUE_CAP];
    printf("\nmetadata:\n");
    for (int64_t i = 0; i < qd_gguf_n_kv(g); i++) {
        qd_gguf_vtype_t t = qd_gguf_kv_type(g, i);
        int n = qd_gguf_kv_format(g, i, val, sizeof val, INSPECT_MAX_ELEMS);
        printf("  %-40s %-6s = %s%s\n", qd_gguf_kv_key(g, i),
               qd__gguf_vtype_name(t), val,
               n >= (int)sizeof val ? " ... (truncated)" : "");
    }
}

static void print_tensors(const qd_gguf_t *g)
{
    int64_t n_params = 0, per_type[QD_TYPE_COUNT] = {0}, n_internal = 0;
    size_t n_bytes = 0;
    printf("\ntensors:\n  %-5s %-32s %-7s %-28s %12s %12s\n", "#", "name",
           "type", "shape", "bytes", "offset");
    for (int64_t i = 0; i < qd_gguf_n_tensors(g); i++) {
        const qd_gguf_tensor_t *t = qd_gguf_tensor(g, i);
        char shape[96];
        int len = 0;
        int64_t n_elems = 1;
        for (int d = 0; d < t->n_dims; d++) {
            len += snprintf(shape + len, sizeof shape - (size_t)len,
                            d ? " × %" PRId64 : "%" PRId64, t->ne[d]);
            n_elems *= t->ne[d]; /* cannot overflow: the reader checked */
        }
        /* "×" is two bytes but one column: pad by columns. */
        int cols = len - (t->n_dims - 1);
        printf("  %-5" PRId64 " %-32s %-7s %s%*s %12zu %12" PRIu64 "\n", i,
               t->name, qd_type_name(t->type), shape,
               cols < 28 ? 28 - cols : 0, "", t->n_bytes, t->offset);
        n_params += n_elems;
        n_bytes += t->n_bytes;
        if (qd_type_internal((int)t->type))
            n_internal++; /* only Q4_G128 so far */
        else
            per_type[t->type]++;
    }
    printf("\ntotals:\n  tensor bytes     %zu (%.2f MiB)\n", n_bytes,
           (double)n_bytes / (1024.0 * 1024.0));
    printf("  parameters       %" PRId64 "\n", n_params);
    if (n_params)
        printf("  bits per weight  %.4f\n",
               8.0 * (double)n_bytes / (double)n_params);
    for (int t = 0; t < QD_TYPE_COUNT; t++)
        if (per_type[t])
            printf("  %-16s %" PRId64 " tensors\n", qd_type_name((qd_type_t)t),
                   per_type[t]);
    if (n_internal)
        printf("  %-16s %" PRId64 " tensors\n", qd_type_name(QD_TYPE_Q4_G128),
               n_internal);
}

int qd_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "quantd inspect: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (path) {
            fprintf(stderr, "quantd inspect: one model at a time\n");
            usage(stderr);
            return 2;
        }
        path = argv[i];
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    /* A checkpoint directory (HF / AWQ / GPTQ): show what it imports to —
     * the cached GGUF the engine maps — after a line about the import. */
    qd_hf_import_result_t imp;
    memset(&imp, 0, sizeof imp);
    const char *dir = NULL;
    if (qd_hf_is_model_dir(path)) {
        int irc = qd_hf_import(path, NULL, &imp);
        if (irc) {
            fprintf(stderr, "quantd inspect: %s (%s)\n", qd_errmsg(),
                    qd_strerror(irc));
            return 1;
        }
        printf("checkpoint: %s (%s; %d Q4_0, %d Q4_G128, %d Q4_1, %d Q8_0, "
               "%d float tensors; tokenizer %s)\n",
               path, imp.from_cache ? "cached import" : "imported now",
               imp.n_q4_0, imp.n_q4_g128, imp.n_q4_1, imp.n_q8_0, imp.n_float,
               imp.tokenizer_json ? imp.tokenizer_json : "none");
        dir = path;
        path = imp.gguf_path;
    }
    qd_gguf_t *g;
    int rc = qd_gguf_open(path, &g);
    if (rc) {
        fprintf(stderr, "quantd inspect: %s (%s)\n", qd_errmsg(),
                qd_strerror(rc));
        qd_hf_import_result_free(&imp);
        return 1;
    }
    printf("file:       %s%s\n", path, dir ? " (imported weights)" : "");
    printf("size:       %zu bytes\n", qd_gguf_file_size(g));
    printf("version:    GGUF v%" PRIu32 "\n", qd_gguf_version(g));
    printf("alignment:  %" PRIu32 "\n", qd_gguf_alignment(g));
    printf("data at:    %zu\n", qd_gguf_data_offset(g));
    printf("tensors:    %" PRId64 "\n", qd_gguf_n_tensors(g));
    printf("kv pairs:   %" PRId64 "\n", qd_gguf_n_kv(g));
    print_kvs(g);
    print_tensors(g);
    qd_gguf_close(g);
    qd_hf_import_result_free(&imp);
    return 0;
}
