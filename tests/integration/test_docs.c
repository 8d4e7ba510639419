/*
 * test_docs.c — the documentation keeps up with the binary: every option
 * that `quantd serve --help` lists (the option table of core/config.c) is
 * set in etc/quantd.conf and documented in docs/configuration.md, and every
 * endpoint of the OpenAPI document is described in docs/api.md.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void need_repo(void)
{
    if (!getenv("QD_BIN"))
        cr_skip_test("QD_BIN not set (run through make check-integration)");
    if (access("etc/quantd.conf", R_OK) || access("docs/configuration.md", R_OK))
        cr_skip_test("not run from the repository root");
}

/* A line of etc/quantd.conf setting `name` (possibly commented out). */
static int conf_has(const char *conf, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = conf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        const char *q = p;
        if (*q == '#')
            q++;
        while (*q == ' ')
            q++;
        if (!strncmp(q, name, n) && (q[n] == ' ' || q[n] == '='))
            return 1;
    }
    return 0;
}

Test(docs, every_option_in_conf_and_configuration_md)
{
    need_repo();
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' serve --help", getenv("QD_BIN"));
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    char *conf = slurp("etc/quantd.conf");
    char *md = slurp("docs/configuration.md");
    cr_assert(conf && md);
    char line[1024];
    int in_table = 0, n_opts = 0;
    while (fgets(line, sizeof line, p)) {
        if (!strncmp(line, "Options", 7)) {
            in_table = 1;
            continue;
        }
        if (!in_table)
            continue;
        char *dd = strstr(line, "--");
        if (!dd || line[0] != ' ')
            continue;
        char name[64];
        size_t k = 0;
        for (const char *s = dd + 2; *s && *s != ' ' && k + 1 < sizeof name; s++)
            name[k++] = *s == '-' ? '_' : *s;
        name[k] = '\0';
        n_opts++;
        cr_expect(conf_has(conf, name), "option '%s' missing from etc/quantd.conf", name);
        char tick[80];
        snprintf(tick, sizeof tick, "`%s`", name);
        cr_expect(strstr(md, tick), "option '%s' missing from docs/configuration.md", name);
    }
    cr_assert_eq(pclose(p), 0);
    cr_assert_gt(n_opts, 20, "parsed only %d options from --help", n_opts);
    free(conf);
    free(md);
}

Test(docs, every_endpoint_in_api_md)
{
    need_repo();
    char *yaml = slurp("openapi/openapi.yaml");
    char *md = slurp("docs/api.md");
    cr_assert(yaml && md);
    const char *paths = strstr(yaml, "\npaths:\n");
    const char *end = strstr(yaml, "\ncomponents:\n");
    cr_assert(paths && end);
    int n = 0;
    for (const char *s = paths + 8; s < end; s = strchr(s, '\n') + 1) {
        if (!strncmp(s, "  /", 3)) {
            const char *colon = strchr(s, ':');
            char path[128];
            snprintf(path, sizeof path, "`%.*s`", (int)(colon - s - 2), s + 2);
            cr_expect(strstr(md, path), "%s missing from docs/api.md", path);
            n++;
        }
    }
    cr_assert_geq(n, 9);
    free(yaml);
    free(md);
}
