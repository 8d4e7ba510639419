/*
 * config.c — the option table and its three readers (file, environment,
 * command line).
 *
 * Adding an option means adding one row to `options[]` and a field to
 * qd_config_t: the file parser, QUANTD_* variables, --flags and the --help
 * text all come from the row. Values are checked against the row's bounds
 * and rejected (never clamped) with a message naming the option and its
 * source.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "quantd/common.h"
#include "quantd/config.h"

typedef enum { OPT_INT, OPT_STR, OPT_ENUM } opt_type_t;

typedef struct {
    const char *name;   /* file key; flag --name (with '-'); env QUANTD_NAME */
    char short_flag;    /* 0 if none */
    opt_type_t type;
    size_t offset;      /* into qd_config_t */
    int64_t def_int;
    const char *def_str;
    int64_t min, max;   /* OPT_INT bounds, inclusive */
    const char *choices; /* OPT_ENUM: '|'-separated */
    const char *help;
} opt_t;

#define OFF(f) offsetof(qd_config_t, f)
#define I64MAX INT64_MAX

static const opt_t options[] = {
    {"host", 0, OPT_STR, OFF(host), 0, "127.0.0.1", 0, 0, NULL,
     "address to listen on (IPv4 or IPv6 literal)"},
    {"port", 0, OPT_INT, OFF(port), 8080, NULL, 0, 65535, NULL,
     "TCP port (0: pick a free one and log it)"},
    {"max_connections", 0, OPT_INT, OFF(max_connections), 256, NULL, 1,
     65536, NULL, "open connections in total"},
    {"max_connections_per_ip", 0, OPT_INT, OFF(max_connections_per_ip), 64,
     NULL, 0, 65536, NULL, "open connections per client address (0: no limit)"},
    {"idle_timeout_s", 0, OPT_INT, OFF(idle_timeout_s), 60, NULL, 1, 86400,
     NULL, "close a connection silent for this long"},
    {"request_timeout_s", 0, OPT_INT, OFF(request_timeout_s), 30, NULL, 1,
     86400, NULL,
     "a request must arrive in full (headers + body) within this time of "
     "the connection (or its previous request); slow clients are dropped"},
    {"max_body_bytes", 0, OPT_INT, OFF(max_body_bytes), 8 << 20, NULL, 64,
     1 << 30, NULL, "largest request body (413 above)"},
    {"max_header_bytes", 0, OPT_INT, OFF(max_header_bytes), 16384, NULL, 1024,
     1 << 20, NULL, "largest request line + headers (431 above)"},
    {"max_json_depth", 0, OPT_INT, OFF(max_json_depth), 32, NULL, 2, 1000,
     NULL, "deepest JSON nesting accepted in a body"},
    {"cors_origins", 0, OPT_STR, OFF(cors_origins), 0, "", 0, 0, NULL,
     "comma-separated allowed CORS origins, '*' for any, empty: CORS off"},
    {"api_key", 0, OPT_STR, OFF(api_keys), 0, "", 0, 0, NULL,
     "API key(s), comma-separated (repeatable flag); empty: no auth"},
    {"api_key_file", 0, OPT_STR, OFF(api_key_file), 0, "", 0, 0, NULL,
     "file with one API key per line (re-read on SIGHUP)"},
    {"threads", 't', OPT_INT, OFF(threads), 0, NULL, 0, 1024, NULL,
     "compute threads per model (0: physical cores)"},
    {"n_batch", 0, OPT_INT, OFF(n_batch), 256, NULL, 1, 65536, NULL,
     "tokens per forward step (decode tokens + prefill chunks)"},
    {"n_seq_max", 0, OPT_INT, OFF(n_seq_max), 16, NULL, 1, 256, NULL,
     "sequences decoded together (n > 1 choices use one each)"},
    {"queue_max", 0, OPT_INT, OFF(queue_max), 64, NULL, 0, 100000, NULL,
     "requests waiting for a slot before 503"},
    {"ctx", 'c', OPT_INT, OFF(ctx), 0, NULL, 0, 1 << 24, NULL,
     "context length per sequence (0: the model's)"},
    {"kv_mib", 0, OPT_INT, OFF(kv_mib), 0, NULL, 0, 1 << 24, NULL,
     "KV cache budget per model in MiB (0: ctx * n_seq_max, at most a quarter of RAM)"},
    {"mem_budget_mib", 0, OPT_INT, OFF(mem_budget_mib), 0, NULL, 0, 1 << 30,
     NULL,
     "memory for all loaded models in MiB, by their estimates (0: no "
     "limit); idle models are unloaded to make room"},
    {"idle_unload_s", 0, OPT_INT, OFF(idle_unload_s), 0, NULL, 0, 31536000,
     NULL, "unload an unpinned model unused for this long (0: never)"},
    {"kv_type", 0, OPT_ENUM, OFF(kv_type), 0, "f16", 0, 0, "f32|f16|q8_0",
     "KV cache element type"},
    {"model_load", 0, OPT_ENUM, OFF(model_load), 0, "read", 0, 0, "read|mmap",
     "model files read into (huge-page) memory, or mapped (shared page cache)"},
    {"max_n", 0, OPT_INT, OFF(max_n), 8, NULL, 1, 128, NULL,
     "largest n (choices per request)"},
    {"max_stop", 0, OPT_INT, OFF(max_stop), 4, NULL, 0, 64, NULL,
     "most stop strings per request"},
    {"max_tokens_default", 0, OPT_INT, OFF(max_tokens_default), 0, NULL, 0,
     1 << 24, NULL, "max_tokens when a request gives none (0: rest of ctx)"},
    {"retry_after_s", 0, OPT_INT, OFF(retry_after_s), 1, NULL, 0, 3600, NULL,
     "Retry-After of 503 answers"},
    {"sse_keepalive_s", 0, OPT_INT, OFF(sse_keepalive_s), 15, NULL, 1, 3600,
     NULL, "seconds between ': keep-alive' comments of a waiting stream"},
    {"drain_timeout_s", 0, OPT_INT, OFF(drain_timeout_s), 30, NULL, 0, 86400,
     NULL, "on SIGTERM, wait this long for running requests"},
    {"log_format", 0, OPT_ENUM, OFF(log_format), 0, "text", 0, 0, "text|json",
     "log line format"},
    {"log_level", 0, OPT_ENUM, OFF(log_level), 0, "info", 0, 0,
     "debug|info|warn|error", "least severe level logged"},
    {"default_model_dir", 0, OPT_STR, OFF(default_model_dir), 0, "", 0, 0,
     NULL, "where the default model lives (empty: ~/.cache/quantd)"},
};

/* Keys allowed inside [model.NAME] sections. */
static const char *const model_keys = "path, ctx, kv_mib, pin";

static const opt_t *find_opt(const char *name)
{
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof norm)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        norm[i] = name[i] == '-' ? '_' : (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < QD_ARRAY_SIZE(options); i++)
        if (!strcmp(options[i].name, norm))
            return &options[i];
    return NULL;
}

static const opt_t *find_short(char f)
{
    for (size_t i = 0; i < QD_ARRAY_SIZE(options); i++)
        if (options[i].short_flag == f)
            return &options[i];
    return NULL;
}

static char **str_field(qd_config_t *c, const opt_t *o)
{
    return (char **)((char *)c + o->offset);
}

static int64_t *int_field(qd_config_t *c, const opt_t *o)
{
    return (int64_t *)((char *)c + o->offset);
}

/* Strict integer parse with an optional K/M/G suffix (powers of 1024). */
static int parse_int(const char *s, int64_t *out)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!*s)
        return QD_EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno == ERANGE)
        return QD_EINVAL;
    int64_t mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1024 * 1024 * 1024, end++;
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return QD_EINVAL;
    if (__builtin_mul_overflow((int64_t)v, mul, out))
        return QD_EINVAL;
    return 0;
}

static int enum_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n))
            return 1;
        if (!bar)
            break;
        p = bar + 1;
    }
    return 0;
}

static int set_opt(qd_config_t *c, const opt_t *o, const char *value,
                   const char *source, int append)
{
    if (o->type == OPT_INT) {
        int64_t v;
        if (parse_int(value, &v)) {
            qd_set_errmsg("%s: %s: '%s' is not an integer", source, o->name,
                          value);
            return QD_EINVAL;
        }
        if (v < o->min || v > o->max) {
            qd_set_errmsg("%s: %s: %lld is outside [%lld, %lld]", source,
                          o->name, (long long)v, (long long)o->min,
                          (long long)o->max);
            return QD_ERANGE;
        }
        *int_field(c, o) = v;
        return 0;
    }
    if (o->type == OPT_ENUM && !enum_ok(o->choices, value)) {
        qd_set_errmsg("%s: %s: '%s' is not one of %s", source, o->name, value,
                      o->choices);
        return QD_EINVAL;
    }
    char **f = str_field(c, o);
    char *nv;
    if (append && *f && **f) {
        size_t a = strlen(*f), b = strlen(value);
        nv = qd_malloc(a + b + 2);
        if (nv) {
            memcpy(nv, *f, a);
            nv[a] = ',';
            memcpy(nv + a + 1, value, b + 1);
        }
    } else {
        nv = qd_strdup(value);
    }
    if (!nv)
        return QD_ENOMEM;
    qd_free(*f);
    *f = nv;
    return 0;
}

int qd_config_init(qd_config_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < QD_ARRAY_SIZE(options); i++) {
        const opt_t *o = &options[i];
        if (o->type == OPT_INT) {
            *int_field(c, o) = o->def_int;
        } else {
            *str_field(c, o) = qd_strdup(o->def_str);
            if (!*str_field(c, o)) {
                qd_config_close(c);
                return QD_ENOMEM;
            }
        }
    }
    return 0;
}

void qd_config_close(qd_config_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < QD_ARRAY_SIZE(options); i++)
        if (options[i].type != OPT_INT)
            qd_free(*str_field(c, &options[i]));
    for (int i = 0; i < c->n_models; i++) {
        qd_free(c->models[i].name);
        qd_free(c->models[i].path);
    }
    qd_free(c->config_path);
    memset(c, 0, sizeof *c);
}

int qd_config_set(qd_config_t *c, const char *name, const char *value,
                  const char *source)
{
    const opt_t *o = find_opt(name);
    if (!o) {
        qd_set_errmsg("%s: unknown option '%s'", source, name);
        return QD_ENOENT;
    }
    return set_opt(c, o, value, source, 0);
}

static qd_model_conf_t *model_named(qd_config_t *c, const char *name,
                                    const char *where)
{
    for (int i = 0; i < c->n_models; i++)
        if (!strcmp(c->models[i].name, name))
            return &c->models[i];
    if (c->n_models == QD_CONFIG_MAX_MODELS) {
        qd_set_errmsg("%s: more than %d models", where, QD_CONFIG_MAX_MODELS);
        return NULL;
    }
    qd_model_conf_t *m = &c->models[c->n_models];
    memset(m, 0, sizeof *m);
    m->name = qd_strdup(name);
    if (!m->name) {
        qd_set_errmsg("%s: out of memory", where);
        return NULL;
    }
    c->n_models++;
    return m;
}

int qd_config_add_model_path(qd_config_t *c, const char *path)
{
    /* The model's name is the last path component, without trailing
     * slashes (a checkpoint directory) or a .gguf suffix. */
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    const char *base = path;
    for (size_t i = 0; i < len; i++)
        if (path[i] == '/')
            base = path + i + 1;
    size_t n = (size_t)(path + len - base);
    if (n > 5 && !memcmp(base + n - 5, ".gguf", 5))
        n -= 5;
    if (n == 0) {
        qd_set_errmsg("-m: '%s' names no file", path);
        return QD_EINVAL;
    }
    char *name = qd_strndup(base, n);
    if (!name)
        return QD_ENOMEM;
    qd_model_conf_t *m = model_named(c, name, "-m");
    qd_free(name);
    if (!m)
        return QD_EINVAL;
    qd_free(m->path);
    m->path = qd_strdup(path);
    m->preload = 1;
    return m->path ? 0 : QD_ENOMEM;
}

static int set_model_key(qd_model_conf_t *m, const char *key,
                         const char *value, const char *where)
{
    int64_t v;
    if (!strcmp(key, "path")) {
        char *p = qd_strdup(value);
        if (!p)
            return QD_ENOMEM;
        qd_free(m->path);
        m->path = p;
        return 0;
    }
    int64_t *dst = !strcmp(key, "ctx")      ? &m->ctx
                   : !strcmp(key, "kv_mib") ? &m->kv_mib
                                            : NULL;
    if (dst || !strcmp(key, "pin")) {
        if (!strcmp(key, "pin") &&
            (!strcmp(value, "yes") || !strcmp(value, "true"))) {
            m->pin = 1;
            return 0;
        }
        if (!strcmp(key, "pin") &&
            (!strcmp(value, "no") || !strcmp(value, "false"))) {
            m->pin = 0;
            return 0;
        }
        if (parse_int(value, &v) || v < 0 || v > (1 << 24)) {
            qd_set_errmsg("%s: model.%s.%s: '%s' is not an integer in [0, %d]",
                          where, m->name, key, value, 1 << 24);
            return QD_EINVAL;
        }
        if (dst)
            *dst = v;
        else
            m->pin = v != 0;
        return 0;
    }
    qd_set_errmsg("%s: unknown key '%s' in [model.%s] (allowed: %s)", where,
                  key, m->name, model_keys);
    return QD_ENOENT;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int qd_config_load_string(qd_config_t *c, const char *text, const char *origin)
{
    char *buf = qd_strdup(text);
    if (!buf)
        return QD_ENOMEM;
    int err = 0, lineno = 0;
    qd_model_conf_t *section = NULL;
    char where[512];
    char *save = NULL;
    /* strtok_r would skip empty lines and break the line count. */
    for (char *line = buf; line; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        lineno++;
        snprintf(where, sizeof where, "%s:%d", origin, lineno);
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *close = strchr(s, ']');
            if (!close || close[1] != '\0') {
                qd_set_errmsg("%s: malformed section header '%s'", where, s);
                err = QD_EINVAL;
                goto out;
            }
            *close = '\0';
            char *name = trim(s + 1);
            if (!strcmp(name, "server") || !*name) {
                section = NULL;
            } else if (!strncmp(name, "model.", 6) && name[6]) {
                section = model_named(c, name + 6, where);
                if (!section) {
                    err = QD_EINVAL;
                    goto out;
                }
            } else {
                qd_set_errmsg("%s: unknown section [%s] (expected [server] "
                              "or [model.NAME])",
                              where, name);
                err = QD_EINVAL;
                goto out;
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            qd_set_errmsg("%s: expected 'key = value', got '%s'", where, s);
            err = QD_EINVAL;
            goto out;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        /* An unquoted value ends at " #" (inline comment). */
        if (*value == '#') {
            *value = '\0';
        } else if (*value != '"') {
            for (char *h = value + 1; *h; h++) {
                if (*h == '#' && isspace((unsigned char)h[-1])) {
                    *h = '\0';
                    value = trim(value);
                    break;
                }
            }
        }
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = '\0';
            value++;
        }
        if (section)
            err = set_model_key(section, key, value, where);
        else
            err = qd_config_set(c, key, value, where);
        if (err)
            goto out;
    }
    for (int i = 0; i < c->n_models; i++) {
        if (!c->models[i].path) {
            qd_set_errmsg("%s: [model.%s] has no path", origin,
                          c->models[i].name);
            err = QD_EINVAL;
            goto out;
        }
    }
out:
    qd_free(buf);
    return err;
}

int qd_config_load_file(qd_config_t *c, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        qd_set_errmsg("config file '%s': %s", path, strerror(errno));
        return QD_EIO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int err = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) {
                qd_set_errmsg("config file '%s': larger than 16 MiB", path);
                err = QD_ETOOBIG;
                goto out;
            }
            char *nb = qd_realloc(buf, cap);
            if (!nb) {
                err = QD_ENOMEM;
                goto out;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096)
            break;
    }
    if (ferror(f)) {
        qd_set_errmsg("config file '%s': read error", path);
        err = QD_EIO;
        goto out;
    }
    buf[len] = '\0';
    if (strlen(buf) != len) {
        qd_set_errmsg("config file '%s': contains a NUL byte", path);
        err = QD_EFORMAT;
        goto out;
    }
    err = qd_config_load_string(c, buf, path);
out:
    qd_free(buf);
    fclose(f);
    return err;
}

int qd_config_load_env(qd_config_t *c, char **envp)
{
    if (!envp)
        return 0;
    for (size_t i = 0; i < QD_ARRAY_SIZE(options); i++) {
        char var[80] = "QUANTD_";
        size_t n = strlen(var);
        for (const char *p = options[i].name; *p && n + 1 < sizeof var; p++)
            var[n++] = (char)toupper((unsigned char)*p);
        var[n] = '\0';
        for (char **e = envp; *e; e++) {
            if (strncmp(*e, var, n) || (*e)[n] != '=')
                continue;
            char where[96];
            snprintf(where, sizeof where, "environment %s", var);
            int err = set_opt(c, &options[i], *e + n + 1, where, 0);
            if (err)
                return err;
        }
    }
    return 0;
}

int qd_config_from_args(qd_config_t *c, int argc, char **argv, char **envp,
                        int *help)
{
    *help = 0;
    /* Pass 1: --config / --help, so the file is applied before flags. */
    const char *file = NULL;
    for (char **e = envp; e && *e; e++)
        if (!strncmp(*e, "QUANTD_CONFIG=", 14))
            file = *e + 14;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            *help = 1;
            return 0;
        }
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            file = argv[++i];
        else if (!strncmp(argv[i], "--config=", 9))
            file = argv[i] + 9;
    }
    int err;
    if (file && *file) {
        if ((err = qd_config_load_file(c, file)))
            return err;
        qd_free(c->config_path);
        if (!(c->config_path = qd_strdup(file)))
            return QD_ENOMEM;
    }
    if ((err = qd_config_load_env(c, envp)))
        return err;
    /* Pass 2: flags. -m models given on the command line replace the
     * file's model list. */
    int cli_models = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *name = NULL, *value = NULL;
        const opt_t *o = NULL;
        char flag[96];
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9))
            continue;
        if (!strcmp(a, "-m") || !strcmp(a, "--model") ||
            !strncmp(a, "--model=", 8)) {
            const char *path = a[1] == 'm' ? (i + 1 < argc ? argv[++i] : NULL)
                               : a[7] == '=' ? a + 8
                                             : (i + 1 < argc ? argv[++i] : NULL);
            if (!path) {
                qd_set_errmsg("%s needs a model path", a);
                return QD_EINVAL;
            }
            if (!cli_models) {
                for (int k = 0; k < c->n_models; k++) {
                    qd_free(c->models[k].name);
                    qd_free(c->models[k].path);
                }
                c->n_models = 0;
                cli_models = 1;
            }
            if ((err = qd_config_add_model_path(c, path)))
                return err;
            continue;
        }
        if (a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            if (n >= sizeof flag) {
                qd_set_errmsg("unknown flag '%s'", a);
                return QD_EINVAL;
            }
            memcpy(flag, a + 2, n);
            flag[n] = '\0';
            name = flag;
            o = find_opt(name);
            if (eq)
                value = eq + 1;
        } else if (a[0] == '-' && a[1] && !a[2]) {
            o = find_short(a[1]);
            name = a;
        }
        if (!o) {
            qd_set_errmsg("unknown flag '%s' (see quantd serve --help)", a);
            return QD_EINVAL;
        }
        if (!value) {
            if (i + 1 >= argc) {
                qd_set_errmsg("flag '%s' needs a value", a);
                return QD_EINVAL;
            }
            value = argv[++i];
        }
        char where[128];
        snprintf(where, sizeof where, "flag %s", a);
        /* --api-key may be repeated: keys accumulate. */
        if ((err = set_opt(c, o, value, where, o->offset == OFF(api_keys))))
            return err;
    }
    return 0;
}

void qd_config_print_help(FILE *f)
{
    fprintf(f,
            "usage: quantd serve [--config FILE] [-m MODEL ...] [--host H] "
            "[--port P] [-t THREADS] [options]\n\n"
            "  --config FILE            config file (also QUANTD_CONFIG)\n"
            "  -m, --model PATH         serve this GGUF model (repeatable)\n"
            "\nOptions (file key = name, environment QUANTD_NAME, flag "
            "--name):\n");
    for (size_t i = 0; i < QD_ARRAY_SIZE(options); i++) {
        const opt_t *o = &options[i];
        char flag[80], def[96];
        char dashed[64];
        size_t n = 0;
        for (const char *p = o->name; *p && n + 1 < sizeof dashed; p++)
            dashed[n++] = *p == '_' ? '-' : *p;
        dashed[n] = '\0';
        if (o->short_flag)
            snprintf(flag, sizeof flag, "-%c, --%s", o->short_flag, dashed);
        else
            snprintf(flag, sizeof flag, "    --%s", dashed);
        if (o->type == OPT_INT)
            snprintf(def, sizeof def, "default %lld, %lld..%lld",
                     (long long)o->def_int, (long long)o->min,
                     (long long)o->max);
        else if (o->type == OPT_ENUM)
            snprintf(def, sizeof def, "default %s, one of %s", o->def_str,
                     o->choices);
        else
            snprintf(def, sizeof def, "default '%s'", o->def_str);
        fprintf(f, "  %-28s %s (%s)\n", flag, o->help, def);
    }
    fprintf(f, "\nModel sections in the file: [model.NAME] with keys %s.\n"
               "Precedence: defaults < file < environment < flags.\n",
            model_keys);
}

static int push_key(char ***keys, int *n, int *cap, const char *s, size_t len)
{
    while (len && isspace((unsigned char)*s))
        s++, len--;
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (!len || *s == '#')
        return 0;
    if (*n + 2 > *cap) {
        int nc = *cap ? *cap * 2 : 8;
        char **nk = qd_realloc(*keys, (size_t)nc * sizeof *nk);
        if (!nk)
            return QD_ENOMEM;
        *keys = nk;
        *cap = nc;
    }
    char *k = qd_strndup(s, len);
    if (!k)
        return QD_ENOMEM;
    (*keys)[(*n)++] = k;
    (*keys)[*n] = NULL;
    return 0;
}

int qd_config_read_keys(const qd_config_t *c, char ***keys_out, int *n_out)
{
    char **keys = NULL;
    int n = 0, cap = 0, err = 0;
    FILE *f = NULL;
    for (const char *p = c->api_keys ? c->api_keys : ""; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if ((err = push_key(&keys, &n, &cap, p, len)))
            goto fail;
        p += len + (comma ? 1 : 0);
    }
    if (c->api_key_file && *c->api_key_file) {
        f = fopen(c->api_key_file, "r");
        if (!f) {
            qd_set_errmsg("api_key_file '%s': %s", c->api_key_file,
                          strerror(errno));
            err = QD_EIO;
            goto fail;
        }
        char line[4096];
        while (fgets(line, sizeof line, f))
            if ((err = push_key(&keys, &n, &cap, line, strlen(line))))
                goto fail;
        fclose(f);
        f = NULL;
    }
    if (!keys && !(keys = qd_calloc(1, sizeof *keys)))
        return QD_ENOMEM;
    *keys_out = keys;
    *n_out = n;
    return 0;
fail:
    if (f)
        fclose(f);
    qd_config_free_keys(keys);
    return err;
}

void qd_config_free_keys(char **keys)
{
    if (!keys)
        return;
    for (char **k = keys; *k; k++)
        qd_free(*k);
    qd_free(keys);
}
