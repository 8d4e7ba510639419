/*
 * test_config.c — the option table: defaults, file, environment, flags,
 * precedence, and errors that name the option and its source.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/config.h"

Test(config, defaults)
{
    qd_config_t c;
    cr_assert_eq(qd_config_init(&c), 0);
    cr_assert_str_eq(c.host, "127.0.0.1");
    cr_assert_eq(c.port, 8080);
    cr_assert_eq(c.max_stop, 4);
    cr_assert_eq(c.max_n, 8);
    cr_assert_str_eq(c.log_format, "text");
    qd_config_close(&c);
    qd_config_close(NULL);
}

Test(config, file_sections_and_comments)
{
    qd_config_t c;
    qd_config_init(&c);
    const char *text = "# comment\n[server]\nport = 9001   # inline\n"
                       "max_body_bytes = 2M\ncors_origins =  # none\n"
                       "host = \"::1\"\n\n[model.tiny]\npath = /m/t.gguf\n"
                       "ctx = 512\npin = yes\n";
    cr_assert_eq(qd_config_load_string(&c, text, "t.conf"), 0, "%s",
                 qd_errmsg());
    cr_assert_eq(c.port, 9001);
    cr_assert_eq(c.max_body_bytes, 2 << 20);
    cr_assert_str_eq(c.cors_origins, "");
    cr_assert_str_eq(c.host, "::1");
    cr_assert_eq(c.n_models, 1);
    cr_assert_str_eq(c.models[0].name, "tiny");
    cr_assert_str_eq(c.models[0].path, "/m/t.gguf");
    cr_assert_eq(c.models[0].ctx, 512);
    cr_assert_eq(c.models[0].pin, 1);
    qd_config_close(&c);
}

Test(config, errors_name_option_and_line)
{
    qd_config_t c;
    qd_config_init(&c);
    cr_assert_eq(qd_config_load_string(&c, "\n\nport = 70000\n", "a.conf"),
                 QD_ERANGE);
    cr_assert(strstr(qd_errmsg(), "a.conf:3"), "%s", qd_errmsg());
    cr_assert(strstr(qd_errmsg(), "port"), "%s", qd_errmsg());
    cr_assert_eq(qd_config_load_string(&c, "bogus = 1\n", "a.conf"),
                 QD_ENOENT);
    cr_assert(strstr(qd_errmsg(), "bogus"));
    cr_assert_eq(qd_config_load_string(&c, "port = 12x\n", "a.conf"),
                 QD_EINVAL);
    cr_assert_eq(qd_config_load_string(&c, "log_format = xml\n", "a.conf"),
                 QD_EINVAL);
    cr_assert(strstr(qd_errmsg(), "text|json"));
    cr_assert_eq(qd_config_load_string(&c, "[model.x]\nctx = 5\n", "b.conf"),
                 QD_EINVAL); /* no path */
    cr_assert_eq(qd_config_load_string(&c, "[weird]\n", "b.conf"), QD_EINVAL);
    cr_assert_eq(qd_config_load_string(&c, "just words\n", "b.conf"),
                 QD_EINVAL);
    qd_config_close(&c);
}

Test(config, precedence_file_env_flags)
{
    const char *dir = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/test_config_%d.conf", dir, (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "port = 1111\nthreads = 3\nqueue_max = 7\n[model.a]\npath=/a\n");
    fclose(f);
    char cfgflag[600];
    snprintf(cfgflag, sizeof cfgflag, "--config=%s", path);
    char *env[] = {"QUANTD_PORT=2222", "QUANTD_THREADS=5", "OTHER=1", NULL};
    char *argv[] = {"serve", cfgflag, "--port", "3333", "--api-key", "k1",
                    "--api-key", "k2", "-m", "/x/y/model.gguf", NULL};
    qd_config_t c;
    qd_config_init(&c);
    int help;
    cr_assert_eq(qd_config_from_args(&c, 10, argv, env, &help), 0, "%s",
                 qd_errmsg());
    cr_assert_eq(help, 0);
    cr_assert_eq(c.port, 3333);     /* flag beats env beats file */
    cr_assert_eq(c.threads, 5);     /* env beats file */
    cr_assert_eq(c.queue_max, 7);   /* file beats default */
    cr_assert_str_eq(c.api_keys, "k1,k2");
    cr_assert_eq(c.n_models, 1);    /* -m replaces the file's models */
    cr_assert_str_eq(c.models[0].name, "model");
    char **keys;
    int n;
    cr_assert_eq(qd_config_read_keys(&c, &keys, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(keys[1], "k2");
    qd_config_free_keys(keys);
    qd_config_close(&c);
    remove(path);

    qd_config_init(&c);
    char *bad[] = {"serve", "--port", "-1", NULL};
    cr_assert_eq(qd_config_from_args(&c, 3, bad, NULL, &help), QD_ERANGE);
    cr_assert(strstr(qd_errmsg(), "flag --port"), "%s", qd_errmsg());
    char *unk[] = {"serve", "--frobnicate", "1", NULL};
    cr_assert_neq(qd_config_from_args(&c, 3, unk, NULL, &help), 0);
    char *envbad[] = {"QUANTD_MAX_N=0", NULL};
    char *none[] = {"serve", NULL};
    cr_assert_eq(qd_config_from_args(&c, 1, none, envbad, &help), QD_ERANGE);
    cr_assert(strstr(qd_errmsg(), "QUANTD_MAX_N"), "%s", qd_errmsg());
    char *h[] = {"serve", "--help", NULL};
    cr_assert_eq(qd_config_from_args(&c, 2, h, NULL, &help), 0);
    cr_assert_eq(help, 1);
    qd_config_close(&c);
}
