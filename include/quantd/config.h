/*
 * config.h — the daemon's configuration, driven by one table of options.
 *
 * Every option is one row of a declarative table (name, type, default,
 * bounds, offset into qd_config_t, help). The same table parses the config
 * file (INI-like `key = value`, `[model.NAME]` sections), QUANTD_<NAME>
 * environment variables and `--name value` command-line flags, and prints
 * `quantd serve --help`. Precedence: defaults < file < environment < flags.
 * Errors name the option and where it came from ("quantd.conf:12: port:
 * 70000 is above the maximum 65535").
 */
#ifndef QUANTD_CONFIG_H
#define QUANTD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define QD_CONFIG_MAX_MODELS 16

/* One [model.NAME] section or one -m PATH flag. */
typedef struct {
    char *name;        /* id served in /v1/models ("model" of requests) */
    char *path;        /* GGUF file */
    int64_t ctx;       /* positions per sequence; 0: the model's */
    int64_t kv_mib;    /* KV cache budget in MiB; 0: server default */
    int pin;           /* 1: load at start-up, never unload */
    int preload;       /* 1: load at start-up (-m models) */
} qd_model_conf_t;

typedef struct {
    /* network */
    char *host;
    int64_t port;
    int64_t max_connections;
    int64_t max_connections_per_ip;
    int64_t idle_timeout_s;
    int64_t request_timeout_s;
    int64_t max_body_bytes;
    int64_t max_header_bytes;
    int64_t max_json_depth;
    char *cors_origins;  /* comma-separated, "*" for any; "" off */
    /* auth */
    char *api_keys;      /* comma-separated */
    char *api_key_file;  /* one key per line */
    /* engine and scheduler */
    int64_t threads;     /* 0: physical cores */
    int64_t n_batch;
    int64_t n_seq_max;
    int64_t queue_max;
    int64_t ctx;
    int64_t kv_mib;
    char *kv_type;       /* f32 | f16 | q8_0 */
    char *model_load;    /* read | mmap (quantd/gguf.h qd_gguf_set_load) */
    int64_t mem_budget_mib; /* model pool budget; 0: no limit */
    int64_t idle_unload_s;  /* unload idle models after; 0: never */
    /* API limits */
    int64_t max_n;
    int64_t max_stop;
    int64_t max_tokens_default; /* 0: up to the context */
    int64_t retry_after_s;
    int64_t sse_keepalive_s;
    /* operations */
    int64_t drain_timeout_s;
    char *log_format;    /* text | json */
    char *log_level;     /* debug | info | warn | error */
    char *default_model_dir;
    /* models */
    int n_models;
    qd_model_conf_t models[QD_CONFIG_MAX_MODELS];
    /* where --config pointed (owned) */
    char *config_path;
} qd_config_t;

/* Fill *c with the table's defaults (strings duplicated). */
int qd_config_init(qd_config_t *c);
/* Free every owned string; *c is zeroed. NULL is a no-op. */
void qd_config_close(qd_config_t *c);

/* Apply one option by its name (with '-' or '_'). `source` names where the
 * value came from for error messages. QD_ENOENT unknown option, QD_EINVAL /
 * QD_ERANGE bad value (qd_errmsg says which and where). */
int qd_config_set(qd_config_t *c, const char *name, const char *value,
                  const char *source);
/* Parse a config file. */
int qd_config_load_file(qd_config_t *c, const char *path);
/* Parse config text (the file's contents); `origin` names it in errors. */
int qd_config_load_string(qd_config_t *c, const char *text,
                          const char *origin);
/* Apply QUANTD_* variables from envp (NULL-terminated "K=V" strings). */
int qd_config_load_env(qd_config_t *c, char **envp);
/*
 * The whole precedence chain for `quantd serve`: defaults, then the file
 * named by --config (or QUANTD_CONFIG), then envp, then the flags in argv
 * (argv[0] is the subcommand). *help is set to 1 if --help was given.
 */
int qd_config_from_args(qd_config_t *c, int argc, char **argv, char **envp,
                        int *help);
/* Add a model given by -m PATH (name = file name without .gguf). */
int qd_config_add_model_path(qd_config_t *c, const char *path);
/* Print the option list (generated from the table). */
void qd_config_print_help(FILE *f);
/* Split c->api_keys and the key file into a NULL-terminated array of
 * qd_malloc'd strings; free with qd_config_free_keys. */
int qd_config_read_keys(const qd_config_t *c, char ***keys, int *n_keys);
void qd_config_free_keys(char **keys);

#endif /* QUANTD_CONFIG_H */
