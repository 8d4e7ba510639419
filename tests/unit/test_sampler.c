/* test_sampler.c — greedy, seeded draws, top-k/top-p/min-p, penalties,
 * logit bias, log-probabilities and parameter validation. */
#include "quantd/common.h"
#include "quantd/sampler.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#define NV 64

static void make_logits(float *l, unsigned seed)
{
    /* A fixed, irregular row with a unique maximum at id 17. */
    uint32_t x = seed * 2654435761u + 12345u;
    for (int i = 0; i < NV; i++) {
        x = x * 1103515245u + 12345u;
        l[i] = (float)((x >> 8) % 1000) / 250.0f - 2.0f;
    }
    l[17] = 5.0f;
}

static qd_sampler_t *mk(const qd_sampling_params_t *p)
{
    qd_sampler_t *s = NULL;
    cr_assert_eq(qd_sampler_create(p, NV, &s), 0, "%s", qd_errmsg());
    return s;
}

static int32_t sample1(qd_sampler_t *s, const float *l)
{
    qd_sample_t o;
    cr_assert_eq(qd_sampler_sample(s, l, &o), 0);
    return o.tok;
}

Test(sampler, greedy_argmax_lowest_id_on_ties)
{
    float l[NV];
    make_logits(l, 1);
    qd_sampling_params_t p;
    qd_sampling_params_default(&p);
    p.temperature = 0.0f;
    qd_sampler_t *s = mk(&p);
    cr_expect_eq(sample1(s, l), 17);
    l[40] = 5.0f; /* tie with 17: lower id wins */
    l[3] = 5.0f;
    cr_expect_eq(sample1(s, l), 3);
    qd_sampler_destroy(s);
}

Test(sampler, seeded_draws_are_deterministic)
{
    float l[NV];
    make_logits(l, 2);
    for (int i = 0; i < NV; i++)
        l[i] *= 0.3f; /* flatten so draws vary */
    qd_sampling_params_t p;
    qd_sampling_params_default(&p);
    p.temperature = 1.0f;
    p.seed = 1234;
    qd_sampler_t *a = mk(&p), *b = mk(&p);
    p.seed = 1235;
    qd_sampler_t *c = mk(&p);
    int differ = 0, distinct[NV] = {0}, n_distinct = 0;
    for (int i = 0; i < 200; i++) {
        int32_t ta = sample1(a, l), tb = sample1(b, l), tc = sample1(c, l);
        cr_assert_eq(ta, tb, "same seed diverged at draw %d", i);
        differ += ta != tc;
        if (!distinct[ta]++)
            n_distinct++;
    }
    cr_expect_gt(differ, 0, "another seed gave the very same 200 draws");
    cr_expect_gt(n_distinct, 5, "draws do not vary: %d distinct", n_distinct);
    qd_sampler_destroy(a);
    qd_sampler_destroy(b);
    qd_sampler_destroy(c);
}

Test(sampler, draws_follow_the_distribution)
{
    /* Two tokens with logits differing by log(3): p = 0.75 / 0.25. */
    float l[NV];
    for (int i = 0; i < NV; i++)
        l[i] = -INFINITY;
    l[5] = logf(3.0f);
    l[9] = 0.0f;
    qd_sampling_params_t p;
    qd_sampling_params_default(&p);
    p.seed = 7;
    qd_sampler_t *s = mk(&p);
    int n5 = 0, n = 4000;
    for (int i = 0; i < n; i++) {
        int32_t t = sample1(s, l);
        cr_assert(t == 5 || t == 9, "drew impossible token %d", t);
        n5 += t == 5;
    }
    /* 0.75 ± 4 sigma (sigma = sqrt(.75*.25/4000) ≈ 0.0068) */
    cr_expect(fabs((double)n5 / n - 0.75) < 0.03, "frequency %f",
              (double)n5 / n);
    qd_sampler_destroy(s);
}

Test(sampler, top_k_1_and_tiny_top_p_are_greedy)
{
    float l[NV];
    qd_sampling_params_t p;
    qd_sampling_params_default(&p);
    p.temperature = 1.5f;
    p.top_k = 1;
    qd_sampler_t *k1 = mk(&p);
    p.top_k = 0;
    p.top_p = 1e-6f;
    qd_sampler_t *tp = mk(&p);
    for (unsigned r = 0; r < 20; r++) {
        make_logits(l, r);
        l[17] = 0.0f;
        l[r % NV] = 4.0f; /* unique max at r */
        cr_expect_eq(sample1(k1, l), (int32_t)(r % NV));
        cr_expect_eq(sample1(tp, l), (int32_t)(r % NV));
    }
    qd_sampler_destroy(k1);
    qd_sampler_destroy(tp);
}

Test(sampler, top_k_and_min_p_restrict_the_candidates)
{
    float l[NV];
    for (int i = 0; i < NV; i++)
        l[i] = (float)i * 0.05f; /* best ids are the highest */
    qd_sampling_params_t p;
    qd_sampling_params_default(&p);
    p.top_k = 3;
    p.seed = 3;
    qd_sampler_t *s = mk(&p);
    for (int i = 0; i < 300; i++)
        cr_expect_geq(sample1(s, l), NV - 3);
    qd_sampler_destroy(s);
    /* min_p 0.9: only tokens with p >= 0.9 * p_max, i.e. logit within
     * log(1/0.9) ≈ 0.105 of the max: ids 63, 62, 61. */
    qd_sampling_params_default(&p);
    p.min_p = 0.9f;
    s = mk(&p);
    for (int i = 0; i < 300; i++)
        cr_expect_geq(sample1(s, l), NV - 3);
    qd_sampler_destroy(s);
}

Test(sampler, logit_bias_minus_inf_bans_a_token)
{
    float l[NV];
    make_logits(l, 3);
    qd_logit_bias_t bias[] = {{17, -INFINITY}, {20, 2.0f}};
    qd_sampling_params_t p;
    qd_sampling_params_default(&p);
    p.temperature = 0.0f;
    p.logit_bias = bias;
    p.n_logit_bias = 1;
    qd_sampler_t *s = mk(&p);
    int32_t t = sample1(s, l);
    cr_expect_neq(t, 17);
    qd_sampler_destroy(s);
    /* Sampling with temperature never picks the banned id either. */
    p.temperature = 5.0f;
    s = mk(&p);
    for (int i = 0; i < 500; i++)
        cr_expect_neq(sample1(s, l), 17);
    qd_sampler_destroy(s);
    /* A positive bias moves the argmax. */
    p.temperature = 0.0f;
    p.logit_bias = bias + 1;
    l[20] = 4.0f; /* 4 + 2 > 5 */
    s = mk(&p);
    cr_expect_eq(sample1(s, l), 20);
    qd_sampler_destroy(s);
}

Test(sampler, penalties_as_defined)
{
    /* Greedy picks the top logit unless penalties push it below the
     * runner-up; values chosen so each penalty's definition decides. */
    float l[NV];
    for (int i = 0; i < NV; i++)
        l[i] = -10.0f;
    l[1] = 2.0f;
    l[2] = 1.5f;
    l[3] = -1.0f;
    l[4] = -1.2f;
    qd_sampling_params_t p;
    qd_sampling_params_default(&p);
    p.temperature = 0.0f;
    p.repeat_last_n = 4;

    /* repeat_penalty 1.5: 2.0 / 1.5 = 1.33 < 1.5 → token 2. */
    p.repeat_penalty = 1.5f;
    qd_sampler_t *s = mk(&p);
    cr_expect_eq(sample1(s, l), 1);
    qd_sampler_accept(s, 1);
    cr_expect_eq(sample1(s, l), 2);
    qd_sampler_destroy(s);

    /* Negative logits are multiplied: -1.0 * 1.5 = -1.5 < -1.2. */
    float l2[NV];
    memcpy(l2, l, sizeof l2);
    l2[1] = l2[2] = -10.0f;
    s = mk(&p);
    cr_expect_eq(sample1(s, l2), 3);
    qd_sampler_accept(s, 3);
    cr_expect_eq(sample1(s, l2), 4);
    qd_sampler_destroy(s);

    /* frequency: 2.0 - c*0.2 drops below 1.5 after 3 occurrences;
     * presence alone 0.4 is not enough, 0.6 is. */
    p.repeat_penalty = 1.0f;
    p.frequency_penalty = 0.2f;
    s = mk(&p);
    qd_sampler_accept(s, 1);
    qd_sampler_accept(s, 1);
    cr_expect_eq(sample1(s, l), 1); /* 1.6 */
    qd_sampler_accept(s, 1);
    cr_expect_eq(sample1(s, l), 2); /* 1.4 */
    /* The window is 4: after 4 other tokens, token 1 is forgiven. */
    for (int i = 0; i < 4; i++)
        qd_sampler_accept(s, 9);
    cr_expect_eq(sample1(s, l), 1);
    qd_sampler_destroy(s);

    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.4f;
    s = mk(&p);
    qd_sampler_accept(s, 1);
    qd_sampler_accept(s, 1);
    cr_expect_eq(sample1(s, l), 1); /* 1.6: presence counts once */
    qd_sampler_destroy(s);
    p.presence_penalty = 0.6f;
    s = mk(&p);
    qd_sampler_accept(s, 1);
    cr_expect_eq(sample1(s, l), 2); /* 1.4 */
    qd_sampler_destroy(s);

    /* repeat_last_n = 0 disables the penalties. */
    p.repeat_last_n = 0;
    s = mk(&p);
    qd_sampler_accept(s, 1);
    cr_expect_eq(sample1(s, l), 1);
    qd_sampler_destroy(s);
}

Test(sampler, logprobs_are_of_the_raw_distribution)
{
    float l[NV];
    make_logits(l, 4);
    qd_logit_bias_t bias = {17, -100.0f};
    qd_sampling_params_t p;
    qd_sampling_params_default(&p);
    p.temperature = 0.0f;
    p.n_top_logprobs = 20;
    p.logit_bias = &bias;
    p.n_logit_bias = 1;
    qd_sampler_t *s = mk(&p);
    qd_sample_t o;
    cr_assert_eq(qd_sampler_sample(s, l, &o), 0);
    cr_expect_neq(o.tok, 17);
    cr_assert_eq(o.n_top, 20);
    /* Raw distribution: 17 (banned for sampling) is still the top entry. */
    cr_expect_eq(o.top_toks[0], 17);
    double sum_all = 0.0;
    for (int i = 0; i < NV; i++)
        sum_all += exp((double)l[i]);
    for (int j = 0; j < o.n_top; j++) {
        double ref = (double)l[o.top_toks[j]] - log(sum_all);
        cr_expect(fabs(o.top_logprobs[j] - ref) < 1e-5, "top %d: %f vs %f", j,
                  (double)o.top_logprobs[j], ref);
        if (j > 0)
            cr_expect_geq(o.top_logprobs[j - 1], o.top_logprobs[j]);
    }
    double ref_tok = (double)l[o.tok] - log(sum_all);
    cr_expect(fabs(o.logprob - ref_tok) < 1e-5);
    /* Probabilities of the whole vocabulary sum to 1: the top 20 plus the
     * rest computed the same way. */
    double total = 0.0;
    for (int i = 0; i < NV; i++)
        total += exp((double)l[i] - log(sum_all));
    cr_expect(fabs(total - 1.0) < 1e-6);
    double top_mass = 0.0;
    for (int j = 0; j < o.n_top; j++)
        top_mass += exp(o.top_logprobs[j]);
    cr_expect(top_mass <= 1.0 + 1e-6 && top_mass > 0.5, "top mass %f",
              top_mass);
    qd_sampler_destroy(s);
}

Test(sampler, invalid_parameters)
{
    qd_sampling_params_t p;
    qd_sampler_t *s = NULL;
    static const char *const cases[] = {
        "top_p 0",  "top_p 1.5", "min_p -1", "repeat 0",  "top_k -1",
        "temp nan", "n_top 21",  "bias tok", "last_n -2",
    };
    for (size_t i = 0; i < QD_ARRAY_SIZE(cases); i++) {
        qd_sampling_params_default(&p);
        qd_logit_bias_t bad = {NV, 1.0f};
        switch (i) {
        case 0:
            p.top_p = 0.0f;
            break;
        case 1:
            p.top_p = 1.5f;
            break;
        case 2:
            p.min_p = -1.0f;
            break;
        case 3:
            p.repeat_penalty = 0.0f;
            break;
        case 4:
            p.top_k = -1;
            break;
        case 5:
            p.temperature = NAN;
            break;
        case 6:
            p.n_top_logprobs = 21;
            break;
        case 7:
            p.logit_bias = &bad;
            p.n_logit_bias = 1;
            break;
        case 8:
            p.repeat_last_n = -2;
            break;
        }
        cr_expect_eq(qd_sampler_create(&p, NV, &s), QD_EINVAL, "%s", cases[i]);
        cr_expect_null(s);
        cr_expect_gt(strlen(qd_errmsg()), 0);
    }
    qd_sampler_destroy(NULL);
}

Test(sampler, all_banned_is_an_error)
{
    float l[NV];
    for (int i = 0; i < NV; i++)
        l[i] = -INFINITY;
    qd_sampling_params_t p;
    qd_sampling_params_default(&p);
    qd_sampler_t *s = mk(&p);
    qd_sample_t o;
    cr_expect_eq(qd_sampler_sample(s, l, &o), QD_EINVAL);
    qd_sampler_destroy(s);
}
