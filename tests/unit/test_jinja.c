/*
 * test_jinja.c — the chat-template Jinja interpreter (src/api/jinja*.c).
 *
 *  - conformance: the real chat templates of $QD_SHARED rendered for every
 *    conversation of tests/data/chat/conv, byte for byte against the output
 *    of Python's jinja2 (tests/data/chat/expected, made by
 *    scripts/gen_chat_expected.py);
 *  - one case per language feature, expected strings produced by jinja2
 *    with the same environment (trim_blocks, lstrip_blocks, loopcontrols);
 *  - errors and limits: syntax errors with line:col, unknown filters,
 *    raise_exception, step / output / memory / depth limits;
 *  - robustness: mutated templates and failing allocations never crash.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/jinja.h"
#include "quantd/common.h"

#define CHAT_DIR "tests/data/chat"
#define PINNED_NOW 1795867200 /* 2026-11-28 12:00:00 UTC, as the generator */

static int render_json(const char *tmpl, json_t *vars, const qd_jinja_limits_t *lim,
                       char **out)
{
    size_t n;
    return qd_jinja_render(tmpl, strlen(tmpl), vars, lim, out, &n);
}

static int render(const char *tmpl, const char *vars_json, char **out)
{
    json_t *vars = NULL;
    if (vars_json) {
        json_error_t e;
        vars = json_loads(vars_json, 0, &e);
        cr_assert_not_null(vars, "bad test JSON: %s", e.text);
    }
    qd_jinja_limits_t lim = {.now = PINNED_NOW};
    int rc = render_json(tmpl, vars, &lim, out);
    json_decref(vars);
    return rc;
}

static void expect_render(const char *tmpl, const char *vars, const char *expected)
{
    char *out = NULL;
    int rc = render(tmpl, vars, &out);
    cr_assert_eq(rc, 0, "render failed (%s): %s\ntemplate: %s", qd_strerror(rc), qd_errmsg(),
                 tmpl);
    cr_expect_str_eq(out, expected, "template: %s", tmpl);
    qd_free(out);
}

static int expect_fail(const char *tmpl, const char *vars, int code, const char *msg_part)
{
    char *out = (char *)1;
    int rc = render(tmpl, vars, &out);
    cr_expect_eq(rc, code, "template %s: got %d (%s), want %s", tmpl, rc, qd_errmsg(),
                 qd_errname(code));
    cr_expect_null(out);
    if (msg_part)
        cr_expect(strstr(qd_errmsg(), msg_part) != NULL, "message '%s' lacks '%s'",
                  qd_errmsg(), msg_part);
    return rc;
}

/* ---- features (expected strings from Python jinja2) ------------------- */
/* generated with Python jinja2 3.1.6 by the environment of scripts/gen_chat_expected.py */
static const char *const feature_vars =
    "{\"msgs\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \"hi 'q' \\\"d\\\" é\\n\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": null}, \"n\": 5, \"s\": \"  Hello World  \", \"l\": [3, 1, 2], \"e\": [], \"u\": \"ünï\"}";
static const struct { const char *name, *tmpl, *expected; } feature_cases[] = {
    {"literals",
     "{{ 1 }} {{ 1.5 }} {{ none }} {{ true }} {{ False }} {{ 'a' ~ 1 ~ none }} {{ [1, 'a', none, 2.0] }} {{ {'k': 'it\\'s'} }}",
     "1 1.5 None True False a1None [1, 'a', None, 2.0] {'k': \"it's\"}"},
    {"floats",
     "{{ 1e16 }} {{ 1e15 }} {{ 0.00001 }} {{ 1/3 }} {{ 10/2 }} {{ 0.1 + 0.2 }} {{ 1e100 }} {{ -0.0 }}",
     "1e+16 1000000000000000.0 1e-05 0.3333333333333333 5.0 0.30000000000000004 1e+100 -0.0"},
    {"arith",
     "{{ -7//2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2**10 }} {{ 2 ** -1 }} {{ 3 * 'ab' }} {{ [0] * 3 }} {{ [1] + [2] }} {{ true + 1 }} {{ 7 // 2.0 }}",
     "-4 2 -2 1024 0.5 ababab [0, 0, 0] [1, 2] 2 3.0"},
    {"loop_vars",
     "{% for m in msgs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}:{{ m.role }};{% endfor %}",
     "1021TrueFalse2:system;2110FalseTrue2:user;"},
    {"loop_prev_next_cycle",
     "{% for x in l %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}{{ loop.cycle('a','b') }} {% endfor %}",
     "<3>1a 3<1>2b 1<2>a "},
    {"for_items",
     "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for k, v in d|items %}{{ v }}{% endfor %}",
     "b=2;a=1;c=None;|bac|21None"},
    {"for_filter_else",
     "{% for x in l if x > 1 %}{{ x }}{{ loop.index }}/{{ loop.length }} {% else %}none{% endfor %}|{% for x in e %}X{% else %}empty{% endfor %}",
     "31/2 22/2 |empty"},
    {"for_scope",
     "{% set r = 'out' %}{% for m in msgs %}{% set r = m.role %}{% endfor %}[{{ r }}]",
     "[out]"},
    {"loopcontrols",
     "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
     "0134"},
    {"nested_loops",
     "{% for a in [[1,2],[3,4]] %}{% for b in a %}{{ loop.index }}{{ b }}{% endfor %}{{ loop.index }};{% endfor %}",
     "11221;13242;"},
    {"namespace",
     "{% set ns = namespace(x=0, found=false) %}{% for i in range(5) %}{% set ns.x = ns.x + i %}{% if i == 3 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.x }} {{ ns.found }}",
     "10 True"},
    {"macro",
     "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Bob') }} {{ greet('Al', greeting='Hi') }} {{ greet('X', 'Yo') }}",
     "Hello, Bob! Hi, Al! Yo, X!"},
    {"subscript_slice",
     "{{ msgs[0]['content'] }} {{ msgs[-1].role }} {{ msgs[1:]|length }} {{ msgs[::-1][0].role }} {{ s[2:7] }} {{ u[::-1] }} {{ u[1] }} {{ 'abcdef'[1:5:2] }} {{ [1,2,3][::-1] }} {{ l[-10:2] }}",
     "sys user 1 user Hello ïnü n bd [3, 2, 1] [3, 1]"},
    {"undefined",
     "[{{ nope }}|{{ nope is defined }}|{{ nope is undefined }}|{{ none.foo }}|{{ msgs[9] }}|{{ d.zz is defined }}|{{ nope|length }}|{{ nope|default('dv') }}]",
     "[|False|True|||False|0|dv]"},
    {"tests",
     "{{ n is number }}{{ s is string }}{{ d is mapping }}{{ l is iterable }}{{ n is even }}{{ n is odd }}{{ none is none }}{{ l is sequence }}{{ true is true }}{{ 0 is false }}{{ 6 is divisibleby 3 }}{{ 'a' is equalto 'a' }}{{ n is not none }}{{ 1 is integer }}{{ 1.0 is float }}{{ 'ab' is lower }}",
     "TrueTrueTrueTrueFalseTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrue"},
    {"conditions",
     "{{ 'a' if n else 'b' }} {{ 'a' if not n else 'b' }} [{{ 'x' if false }}] {{ 1 < 2 < 3 }} {{ 3 > 2 > 5 }} {{ 'a' in 'cat' }} {{ 'z' not in 'cat' }} {{ 2 in l }} {{ 'a' in d }} {{ n and 'yes' }} {{ 0 or 'no' }} {{ not none }}",
     "a b [] True False True True True True yes no True"},
    {"str_filters",
     "{{ s|trim }}|{{ s|upper }}|{{ s|lower }}|{{ s|title }}|{{ 'hELLO wORLD'|capitalize }}|{{ 'xxhixx'|trim('x') }}|{{ 'a-b c'|title }}|{{ 'aXbX'|replace('X', '-') }}|{{ u|upper }}|{{ u|length }}",
     "Hello World|  HELLO WORLD  |  hello world  |  Hello World  |Hello world|hi|A-B C|a-b-|ÜNÏ|3"},
    {"str_methods",
     "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'Hello {}'.format('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x','c')) }}|{{ 'hello'.replace('l', 'L') }}|{{ 'a-b'.title() }}|{{ '\\n\\nx\\n'.strip('\\n') }}|{{ 'a</think>b'.split('</think>')[-1] }}",
     "Hello World|Hello World  |  Hello World|Hello x|['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']|True|True|heLLo|A-B|x|b"},
    {"dict_methods",
     "{{ d.get('a') }} {{ d.get('zz', 'dflt') }} {{ d.keys()|list }} {{ d.values()|list }} {{ d|length }} {{ d|items|list }} {{ d|dictsort }} {{ d.items()|list }}",
     "1 dflt ['b', 'a', 'c'] [2, 1, None] 3 [('b', 2), ('a', 1), ('c', None)] [('a', 1), ('b', 2), ('c', None)] [('b', 2), ('a', 1), ('c', None)]"},
    {"conversions",
     "{{ 3.7|int }} {{ '42'|int }} {{ '4.5'|float }} {{ -3|abs }} {{ 'x'|int }} {{ 5|string ~ '!' }} {{ ''|default('dv', true) }} {{ none|default('dv') }} {{ 'abc'|list }}",
     "3 42 4.5 3 0 5! dv None ['a', 'b', 'c']"},
    {"list_filters",
     "{{ l|sort }} {{ l|sort(reverse=true) }} {{ l|reverse|list }} {{ l|first }} {{ l|last }} {{ l|join(', ') }} {{ l|max }} {{ l|min }} {{ l|sum }} {{ [1,2,2,3,1]|unique|list }} {{ ['b','A','a']|sort }} {{ ['b','A','a']|unique|list }} {{ range(5)|select('odd')|list }} {{ range(5)|reject('even')|list }}",
     "[1, 2, 3] [3, 2, 1] [2, 1, 3] 3 2 3, 1, 2 3 1 6 [1, 2, 3] ['A', 'a', 'b'] ['b', 'A'] [1, 3] [1, 3]"},
    {"selectattr_map",
     "{{ msgs|selectattr('role', 'equalto', 'user')|list|length }} {{ msgs|map(attribute='role')|join(',') }} {{ msgs|rejectattr('role', 'equalto', 'system')|map(attribute='role')|list }} {{ ['a','b']|map('upper')|list }}",
     "1 system,user ['user'] ['A', 'B']"},
    {"tojson",
     "{{ msgs|tojson }} {{ d|tojson(indent=2) }} {{ 'é\\n\\t\"\\\\'|tojson }} {{ e|tojson }} {{ {}|tojson(indent=2) }} {{ [1,[2.5,none,true]]|tojson(indent=1) }} {{ d|tojson(sort_keys=true) }}",
     "[{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \"hi 'q' \\\"d\\\" é\\n\"}] {\n  \"b\": 2,\n  \"a\": 1,\n  \"c\": null\n} \"é\\n\\t\\\"\\\\\" [] {} [\n 1,\n [\n  2.5,\n  null,\n  true\n ]\n] {\"a\": 1, \"b\": 2, \"c\": null}"},
    {"set_forms",
     "{% set a, b = [1, 2] %}{{ a }}{{ b }} {% set t = (1, 2) %}{{ t }} {{ (1,) }} {{ () }} {% set blk %}inner {{ n }}{% endset %}[{{ blk }}] {% filter upper %}shout {{ n }}{% endfilter %}",
     "12 (1, 2) (1,) () [inner 5] SHOUT 5"},
    {"raw_comment",
     "{% raw %}{{ not processed }}{% endraw %}{# a comment #}x",
     "{{ not processed }}x"},
    {"ws_trim_lstrip",
     "a\n  {% if true %}\n  x\n  {% endif %}\n  b  {# c #}\n  {{ 1 }}\n",
     "a\n  x\n  b    1"},
    {"ws_dash",
     "  {%- if true -%}  X  {%- endif -%}  \nY {{- ' z ' -}} W\n{{ 1 }}\n\n",
     "XY z W\n1\n"},
    {"ws_plus",
     "a\n  {%+ if true +%}\nb\n  {% endif %}\nc",
     "a\n  \nb\nc"},
    {"escapes",
     "{{ 'It\\'s' }} {{ \"multi\" 'part' }} {{ 'tab\\there' }} {{ '\\351\\x41\\101' }} {{ '<a>&'|escape }}",
     "It's multipart tab\there éAA &lt;a&gt;&amp;"},
    {"indent",
     "{{ 'a\\nb\\n'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent }}",
     "a\n  b\n|  a\n  b|a\n\n    b"},
    {"strftime",
     "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M') }}",
     "28 Nov 2026 2026-11-28 12:00"},
    {"repr",
     "{{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'nl\\n', '\\x01'] }} {{ d.items()|list }}",
     "[\"it's\", 'say \"hi\"', 'both \\' \"', 'nl\\n', '\\x01'] [('b', 2), ('a', 1), ('c', None)]"},
};

Test(jinja, features_match_jinja2)
{
    for (size_t i = 0; i < sizeof feature_cases / sizeof feature_cases[0]; i++) {
        char *out = NULL;
        int rc = render(feature_cases[i].tmpl, feature_vars, &out);
        cr_expect_eq(rc, 0, "%s: %s", feature_cases[i].name, qd_errmsg());
        if (!rc)
            cr_expect_str_eq(out, feature_cases[i].expected, "case %s", feature_cases[i].name);
        qd_free(out);
    }
}

Test(jinja, trailing_newline_and_crlf)
{
    expect_render("a\r\nb\n", NULL, "a\nb");
    expect_render("{% if true %}\r\nx\r\n{% endif %}\r\n", NULL, "x\n");
    expect_render("", NULL, "");
}

Test(jinja, compile_once_render_many)
{
    const char *tmpl = "{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}"
                       "{% if add_generation_prompt %}>{% endif %}";
    qd_jinja_t *t = NULL;
    cr_assert_eq(qd_jinja_compile(tmpl, strlen(tmpl), &t), 0, "%s", qd_errmsg());
    for (int i = 0; i < 3; i++) {
        json_t *vars = json_pack("{s:[{s:s,s:i}],s:b}", "messages", "role", "user", "content",
                                 i, "add_generation_prompt", i & 1);
        char *out;
        size_t n;
        cr_assert_eq(qd_jinja_exec(t, vars, NULL, &out, &n), 0, "%s", qd_errmsg());
        char want[64];
        snprintf(want, sizeof want, "[user:%d]%s", i, i & 1 ? ">" : "");
        cr_expect_str_eq(out, want);
        cr_expect_eq(n, strlen(want));
        qd_free(out);
        json_decref(vars);
    }
    qd_jinja_free(t);
    qd_jinja_free(NULL);
}

Test(jinja, non_object_vars_rejected)
{
    json_t *arr = json_array();
    char *out;
    cr_expect_eq(render_json("x", arr, NULL, &out), QD_EINVAL);
    json_decref(arr);
}

/* ---- errors ------------------------------------------------------------ */
Test(jinja, syntax_errors_have_position)
{
    expect_fail("ab\n{{ x ", NULL, QD_EINVAL, "2:1");
    expect_fail("{% if x %}no end", NULL, QD_EINVAL, "endif");
    expect_fail("{% for x in y %}{% endif %}", NULL, QD_EINVAL, NULL);
    expect_fail("{{ 'unterminated }}", NULL, QD_EINVAL, "unterminated string");
    expect_fail("{# never closed", NULL, QD_EINVAL, "comment");
    expect_fail("{% raw %} never closed", NULL, QD_EINVAL, "raw");
    expect_fail("{% frobnicate %}", NULL, QD_EINVAL, "unknown tag 'frobnicate'");
    expect_fail("{% break %}", NULL, QD_EINVAL, "outside of a loop");
    expect_fail("{{ (1 }}", NULL, QD_EINVAL, NULL);
    expect_fail("{{ 1 + }}", NULL, QD_EINVAL, "1:8");
    expect_fail("{{ a b }}", NULL, QD_EINVAL, NULL);
    expect_fail("{{ x is }}", NULL, QD_EINVAL, NULL);
    expect_fail("{{ 99999999999999999999 }}", NULL, QD_EINVAL, "integer");
    expect_fail("{% include 'x' %}", NULL, QD_EINVAL, "unknown tag");
}

Test(jinja, invalid_utf8_template)
{
    expect_fail("ok \xff\xfe", NULL, QD_EINVAL, "UTF-8");
}

Test(jinja, runtime_errors)
{
    expect_fail("{{ x|nosuchfilter }}", NULL, QD_EINVAL, "no filter named 'nosuchfilter'");
    expect_fail("{{ x is nosuchtest }}", NULL, QD_EINVAL, "no test named");
    expect_fail("line1\n  {{ raise_exception('Roles must alternate!') }}", NULL, QD_EINVAL,
                "2:6: Roles must alternate!");
    expect_fail("{{ x.y }}", NULL, QD_EINVAL, "'x' is undefined");
    expect_fail("{{ 1 // 0 }}", NULL, QD_EINVAL, "by zero");
    expect_fail("{{ 'a' + 1 }}", NULL, QD_EINVAL, "unsupported operand");
    expect_fail("{{ 'a' + x }}", NULL, QD_EINVAL, "undefined");
    expect_fail("{{ none|length }}", NULL, QD_EINVAL, "len()");
    expect_fail("{% for x in 5 %}{% endfor %}", NULL, QD_EINVAL, "not iterable");
    expect_fail("{{ x|tojson }}", NULL, QD_EINVAL, "not JSON serializable");
    expect_fail("{% set x = 1 %}{% set x.y = 2 %}", NULL, QD_EINVAL, "non-namespace");
    expect_fail("{{ 9223372036854775807 + 1 }}", NULL, QD_EINVAL, "overflow");
    expect_fail("{{ [1] < 'a' }}", NULL, QD_EINVAL, "not supported");
    expect_fail("{{ 'abc'.encode() }}", NULL, QD_EINVAL, NULL);
    expect_fail("{{ {}.update({}) }}", NULL, QD_EINVAL, NULL);
}

Test(jinja, sandbox_hides_python_internals)
{
    expect_render("[{{ ''.__class__ }}][{{ messages.__len__ }}][{{ range.__globals__ }}]"
                  "[{{ d.pop }}]", "{\"messages\":[], \"d\":{\"pop\":1}}", "[][][][]");
}

Test(jinja, step_limit_stops_long_loops)
{
    qd_jinja_limits_t lim = {.max_steps = 100000};
    char *out = NULL;
    int rc = render_json("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}"
                         "{% endfor %}", NULL, &lim, &out);
    cr_expect_eq(rc, QD_ETOOBIG);
    cr_expect(strstr(qd_errmsg(), "step limit") != NULL, "%s", qd_errmsg());
    cr_expect_null(out);
    /* default limits also stop it: 1e12 iterations */
    rc = render_json("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}"
                     "{% endfor %}", NULL, NULL, &out);
    cr_expect_eq(rc, QD_ETOOBIG);
}

Test(jinja, output_limit)
{
    qd_jinja_limits_t lim = {.max_output_bytes = 1000};
    char *out = NULL;
    int rc = render_json("{% for i in range(200) %}0123456789{% endfor %}", NULL, &lim, &out);
    cr_expect_eq(rc, QD_ETOOBIG);
    cr_expect(strstr(qd_errmsg(), "output size") != NULL, "%s", qd_errmsg());
    rc = render_json("{{ 'x' * 100000 }}", NULL, &lim, &out);
    cr_expect_eq(rc, QD_ETOOBIG);
    rc = render_json("{% for i in range(90) %}0123456789{% endfor %}", NULL, &lim, &out);
    cr_expect_eq(rc, 0);
    qd_free(out);
}

Test(jinja, memory_limit)
{
    /* doubling a string in a namespace: output stays empty, memory grows */
    qd_jinja_limits_t lim = {.max_memory_bytes = 4 << 20};
    char *out = NULL;
    int rc = render_json("{% set ns = namespace(s='x' * 1000) %}{% for i in range(4000) %}"
                         "{% set ns.s = ns.s ~ 'y' %}{% endfor %}", NULL, &lim, &out);
    cr_expect_eq(rc, QD_ETOOBIG, "%s", qd_errmsg());
    cr_expect(strstr(qd_errmsg(), "memory limit") != NULL, "%s", qd_errmsg());
}

Test(jinja, recursion_and_nesting_limits)
{
    /* a macro calling itself forever */
    expect_fail("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, QD_ETOOBIG,
                "recursion depth");
    /* bounded recursion works */
    expect_render("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
                  "{{ f(5) }}", NULL, "54321");
    /* deeply nested parentheses and blocks: a syntax error, not a stack overflow */
    char *deep = malloc(400000);
    size_t n = 0;
    n += (size_t)sprintf(deep + n, "{{ ");
    for (int i = 0; i < 50000; i++)
        deep[n++] = '(';
    deep[n] = 0;
    expect_fail(deep, NULL, QD_EINVAL, NULL);
    n = 0;
    for (int i = 0; i < 20000; i++)
        n += (size_t)sprintf(deep + n, "{%% if 1 %%}");
    expect_fail(deep, NULL, QD_EINVAL, "nested too deeply");
    /* long left-deep chains parse iteratively and hit the depth limit at run time */
    n = (size_t)sprintf(deep, "{{ 1");
    for (int i = 0; i < 20000; i++)
        n += (size_t)sprintf(deep + n, " + 1");
    sprintf(deep + n, " }}");
    expect_fail(deep, NULL, QD_ETOOBIG, "recursion depth");
    n = (size_t)sprintf(deep, "{{ x");
    for (int i = 0; i < 20000; i++)
        n += (size_t)sprintf(deep + n, "|trim");
    sprintf(deep + n, " }}");
    expect_fail(deep, NULL, QD_ETOOBIG, "recursion depth");
    free(deep);
    /* a namespace that contains itself */
    expect_fail("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", NULL, QD_EINVAL,
                "nested too deeply");
}

/* ---- robustness ---------------------------------------------------------- */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static const char *const fuzz_seed =
    "{%- set ns = namespace(i=0) -%}{% for m in messages if m.role != 'x' %}"
    "{{- '<|' ~ m['role'] ~ '|>' + m.content|trim }}{% if loop.last and add_generation_prompt %}"
    "{{ m.content.split(' ')[::-1]|join(',') }}{% elif m is mapping %}{% set ns.i = ns.i + 1 %}"
    "{% else %}{{ raise_exception('bad') }}{% endif %}{# c #}{% endfor %}{% raw %}{{x}}{% endraw %}"
    "{% macro f(a, b=2) %}{{ a * b }}{{ (a, b)|tojson(indent=2) }}{% endmacro %}{{ f(3) }}"
    "{{ {'k': [1, 2.5, none, true]}|tojson }}{{ range(3)|map('string')|select|list }}";

Test(jinja, mutated_templates_never_crash)
{
    json_t *vars = json_pack("{s:[{s:s,s:s},{s:s,s:s}],s:b}", "messages", "role", "user",
                             "content", " hi there ", "role", "assistant", "content", "yo",
                             "add_generation_prompt", 1);
    static const char alphabet[] = "{}%#-+()[]|.,:'\"~*/ \nabcxyz019=<>!";
    size_t seed_n = strlen(fuzz_seed);
    char *buf = malloc(seed_n * 2 + 64);
    qd_jinja_limits_t lim = {.max_steps = 20000, .max_output_bytes = 1 << 16,
                             .max_memory_bytes = 8 << 20, .max_depth = 100};
    int n_ok = 0, iters = 3000;
    if (getenv("QD_JINJA_FUZZ_ITERS")) /* longer runs by hand */
        iters = atoi(getenv("QD_JINJA_FUZZ_ITERS"));
    for (int iter = 0; iter < iters; iter++) {
        memcpy(buf, fuzz_seed, seed_n);
        size_t n = seed_n;
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = rnd() % (n + 1);
            switch (rnd() % 3) {
            case 0: /* insert a character */
                if (n < seed_n * 2) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = alphabet[rnd() % (sizeof alphabet - 1)];
                    n++;
                }
                break;
            case 1: /* delete a run */
                if (at < n) {
                    size_t want = 1 + rnd() % 8, k = QD_MIN(n - at, want);
                    memmove(buf + at, buf + at + k, n - at - k);
                    n -= k;
                }
                break;
            default: /* replace a character */
                if (at < n)
                    buf[at] = alphabet[rnd() % (sizeof alphabet - 1)];
            }
        }
        char *out = NULL;
        size_t out_n;
        int rc = qd_jinja_render(buf, n, vars, &lim, &out, &out_n);
        cr_assert(rc == 0 || rc < 0);
        if (rc == 0) {
            cr_assert_not_null(out);
            cr_assert_eq(strlen(out), out_n);
            n_ok++;
        } else {
            cr_assert_null(out);
        }
        qd_free(out);
    }
    cr_expect_gt(n_ok, 100, "mutations should often still render (%d)", n_ok);
    free(buf);
    json_decref(vars);
}

Test(jinja, allocation_failures_are_errors)
{
    json_t *vars = json_pack("{s:[{s:s,s:s}],s:b}", "messages", "role", "user", "content",
                             "hi", "add_generation_prompt", 1);
    char *ref = NULL;
    size_t ref_n;
    cr_assert_eq(qd_jinja_render(fuzz_seed, strlen(fuzz_seed), vars, NULL, &ref, &ref_n), 0,
                 "%s", qd_errmsg());
    for (long k = 0; k < 60; k++) {
        char *out = NULL;
        size_t n;
        qd_fail_alloc_after(k);
        int rc = qd_jinja_render(fuzz_seed, strlen(fuzz_seed), vars, NULL, &out, &n);
        qd_fail_alloc_after(-1);
        if (rc == 0) {
            cr_expect_str_eq(out, ref);
        } else {
            cr_expect(rc == QD_ENOMEM || rc == QD_ETOOBIG, "k=%ld rc=%d %s", k, rc, qd_errmsg());
            cr_expect_null(out);
        }
        qd_free(out);
    }
    qd_free(ref);
    json_decref(vars);
}

/* ---- conformance with the real templates -------------------------------- */
static char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

static const char *shared_dir(void)
{
    const char *s = getenv("QD_SHARED");
    struct stat st;
    char p[4096];
    if (!s)
        return NULL;
    snprintf(p, sizeof p, "%s/chat_templates", s);
    return stat(p, &st) == 0 ? s : NULL;
}

/* Template text: a .jinja file, or the chat_template of a tokenizer_config.json. */
static char *load_template(const char *shared, const char *rel, size_t *n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", shared, rel);
    char *text = read_file(path, n);
    if (!text || !strstr(rel, ".json"))
        return text;
    json_error_t e;
    /* model_max_length is often 1e30 written as an integer: read ints as reals */
    json_t *cfg = json_loadb(text, *n, JSON_DECODE_INT_AS_REAL, &e);
    free(text);
    const char *t = json_string_value(json_object_get(cfg, "chat_template"));
    char *copy = t ? strdup(t) : NULL;
    *n = t ? strlen(t) : 0;
    json_decref(cfg);
    return copy;
}

Test(jinja, real_templates_match_jinja2)
{
    const char *shared = shared_dir();
    if (!shared)
        cr_skip_test("chat templates not found: QD_SHARED");
    json_error_t e;
    json_t *man = json_load_file(CHAT_DIR "/templates.json", 0, &e);
    cr_assert_not_null(man, "%s: %s", CHAT_DIR "/templates.json", e.text);
    json_t *tpls = json_object_get(man, "templates"), *convs = json_object_get(man, "conversations");
    size_t ti, ci;
    json_t *tv, *cv;
    int n_checked = 0, n_errs = 0;
    json_array_foreach(tpls, ti, tv)
    {
        const char *id = json_string_value(json_object_get(tv, "id"));
        size_t tn;
        char *text = load_template(shared, json_string_value(json_object_get(tv, "path")), &tn);
        cr_assert_not_null(text, "template %s missing", id);
        qd_jinja_t *t;
        cr_assert_eq(qd_jinja_compile(text, tn, &t), 0, "%s: %s", id, qd_errmsg());
        json_array_foreach(convs, ci, cv)
        {
            const char *cid = json_string_value(cv);
            char path[512];
            snprintf(path, sizeof path, CHAT_DIR "/conv/%s.json", cid);
            json_t *conv = json_load_file(path, 0, &e);
            cr_assert_not_null(conv, "%s: %s", path, e.text);
            for (int agp = 0; agp < 2; agp++) {
                json_t *vars = json_deep_copy(conv);
                json_object_set_new(vars, "add_generation_prompt", json_boolean(agp));
                json_object_set(vars, "bos_token", json_object_get(tv, "bos_token"));
                json_object_set(vars, "eos_token", json_object_get(tv, "eos_token"));
                qd_jinja_limits_t lim = {.now = PINNED_NOW};
                char *out = NULL;
                size_t out_n = 0, exp_n;
                int rc = qd_jinja_exec(t, vars, &lim, &out, &out_n);
                snprintf(path, sizeof path, CHAT_DIR "/expected/%s__%s__agp%d.txt", id, cid, agp);
                char *exp = read_file(path, &exp_n);
                if (exp) {
                    cr_expect_eq(rc, 0, "%s: %s", path, qd_errmsg());
                    if (!rc) {
                        size_t k = 0;
                        while (k < out_n && k < exp_n && out[k] == exp[k])
                            k++;
                        cr_expect(out_n == exp_n && k == exp_n,
                                  "%s differs at byte %zu:\n got: %.80s\nwant: %.80s", path, k,
                                  out + k, exp + k);
                    }
                } else {
                    snprintf(path, sizeof path, CHAT_DIR "/expected/%s__%s__agp%d.err", id, cid,
                             agp);
                    exp = read_file(path, &exp_n);
                    cr_assert_not_null(exp, "no expected output for %s", path);
                    cr_expect_neq(rc, 0, "%s: jinja2 fails, we rendered", path);
                    if (!strncmp(exp, "raise: ", 7)) { /* raise_exception: same message */
                        exp[strcspn(exp, "\n")] = 0;
                        cr_expect(strstr(qd_errmsg(), exp + 7) != NULL, "%s: message %s", path,
                                  qd_errmsg());
                    }
                    n_errs++;
                }
                n_checked++;
                free(exp);
                qd_free(out);
                json_decref(vars);
            }
            json_decref(conv);
        }
        qd_jinja_free(t);
        free(text);
    }
    cr_expect_gt(n_checked, 100);
    cr_expect_gt(n_errs, 0);
    json_decref(man);
}
