/* test_cli_awq.c — `quantd quantize --to awq|gptq` and `quantd inspect DIR`
 * through the real binary, on a tiny model quantd generates itself. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Run a shell command, capture stdout+stderr into out; return exit code. */
static int run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "%s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void export_and_inspect(const char *fmt, const char *want_type)
{
    const char *bin = getenv("QD_BIN");
    if (!bin)
        cr_skip_test("QD_BIN not set (run through make check-integration)");
    const char *tmp = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    char model[512], dir[512], cmd[2048];
    static char out[1 << 20];
    snprintf(model, sizeof model, "%s/cli-%s-%d.gguf", tmp, fmt, (int)getpid());
    snprintf(dir, sizeof dir, "%s/cli-%s-%d.dir", tmp, fmt, (int)getpid());
    snprintf(cmd, sizeof cmd, "'%s' gen-model --preset tiny --type F16 -o '%s' 2>&1",
             bin, model);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'; '%s' quantize --to %s '%s' '%s' 2>&1",
             dir, bin, fmt, model, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "test -f '%s/config.json' && test -f '%s/model.safetensors'",
             dir, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "no config/safetensors in %s", dir);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s' 2>/dev/null", bin, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "checkpoint:"), "%s", out);
    cr_assert(strstr(out, want_type), "no %s tensors in: %.2000s", want_type, out);
    /* Bad input: the output may not be an existing file's directory. */
    snprintf(cmd, sizeof cmd, "'%s' quantize --to %s '%s' '%s/x' 2>&1", bin, fmt,
             dir, model);
    cr_assert_neq(run(cmd, out, sizeof out), 0, "exporting a directory worked");
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, model);
    run(cmd, out, sizeof out);
}

Test(cli_awq, quantize_to_awq_then_inspect_dir)
{
    export_and_inspect("awq", "Q4_1");
}

Test(cli_awq, quantize_to_gptq_then_inspect_dir)
{
    export_and_inspect("gptq", "Q4_1");
}
