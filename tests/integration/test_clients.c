/*
 * test_clients.c — outside checkers run against the daemon:
 *   - tests/integration/validate_openapi.py (python3 + jsonschema + pyyaml):
 *     the OpenAPI document and real responses validated against it;
 *   - tests/integration/openai_client.mjs: the official `openai` npm client
 *     (installed at test time into tests/integration/node_modules).
 * Each skips with a message when its tools are missing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http_client.h"

#define DIR "tests/integration"

static tc_daemon_t D;

static void stop_daemon(void)
{
    if (D.pid > 0)
        tc_daemon_stop(&D);
}

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void need_repo(void)
{
    if (!getenv("QD_BIN"))
        cr_skip_test("QD_BIN not set (run through make check-integration)");
    if (access(DIR "/validate_openapi.py", R_OK))
        cr_skip_test("not run from the repository root");
}

Test(clients, openapi_document_and_responses)
{
    need_repo();
    if (run("python3 -c 'import jsonschema, yaml' >/dev/null 2>&1"))
        cr_skip_test("python3 with jsonschema and pyyaml not installed");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 " DIR "/validate_openapi.py > %s/openapi.log 2>&1",
             getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp");
    int rc = run(cmd);
    if (rc == 77)
        cr_skip_test("validate_openapi.py skipped (see openapi.log)");
    cr_assert_eq(rc, 0, "validate_openapi.py failed: see %s/openapi.log",
                 getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp");
}

Test(clients, official_openai_node_client, .fini = stop_daemon)
{
    need_repo();
    if (run("node --version >/dev/null 2>&1"))
        cr_skip_test("node not installed");
    if (access(DIR "/node_modules/openai/package.json", R_OK)) {
        if (run("npm --version >/dev/null 2>&1"))
            cr_skip_test("npm not installed");
        if (run("timeout 180 npm install --no-save --no-audit --no-fund "
                "--loglevel=error --prefix " DIR " openai@4 >/dev/null 2>&1") ||
            access(DIR "/node_modules/openai/package.json", R_OK))
            cr_skip_test("npm could not install the openai package (offline?)");
    }
    /* The default model (generated tiny model, ChatML template). */
    char cache[512];
    snprintf(cache, sizeof cache, "%s/node-cache-%d",
             getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp", (int)getpid());
    setenv("QUANTD_CACHE", cache, 1);
    cr_assert_eq(tc_daemon_start_model(&D, NULL, NULL), 0,
                 "daemon did not start");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "node " DIR "/openai_client.mjs http://127.0.0.1:%d/v1 default "
             ">%s/node-client.log 2>&1",
             D.port, getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp");
    int rc = run(cmd);
    cr_assert_eq(rc, 0, "openai_client.mjs failed: see %s/node-client.log",
                 getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp");
    tc_daemon_stop(&D);
    char model[600];
    snprintf(model, sizeof model, "%s/default.gguf", cache);
    unlink(model);
    rmdir(cache);
}
