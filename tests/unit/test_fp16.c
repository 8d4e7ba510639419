/* test_fp16.c — half/bfloat16 conversions against the hardware (F16C). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "quantd/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("f16c"))) static uint16_t hw_to_half(float f)
{
    return (uint16_t)_cvtss_sh(f, 0);
}
__attribute__((target("f16c"))) static float hw_from_half(uint16_t h)
{
    return _cvtsh_ss(h);
}
#endif

Test(fp16, every_half_round_trips)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = qd_fp16_to_fp32((qd_fp16_t)h);
        if (isnan(f))
            continue;
        cr_assert_eq(qd_fp32_to_fp16(f), h, "half 0x%04x", h);
#if defined(__x86_64__)
        if (__builtin_cpu_supports("f16c")) {
            float g = hw_from_half((uint16_t)h);
            cr_assert(memcmp(&f, &g, 4) == 0, "decode 0x%04x", h);
        }
#endif
    }
}

Test(fp16, rounding_matches_hardware)
{
#if defined(__x86_64__)
    if (!__builtin_cpu_supports("f16c"))
        cr_skip_test("no F16C on this CPU");
    uint32_t x = 12345;
    for (int i = 0; i < 2000000; i++) {
        x = x * 1664525u + 1013904223u;
        uint32_t bits = x;
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f))
            continue;
        cr_assert_eq(qd_fp32_to_fp16(f), hw_to_half(f), "bits 0x%08x", bits);
    }
#else
    cr_skip_test("not x86-64");
#endif
}

Test(fp16, bf16)
{
    cr_expect_eq(qd_fp32_to_bf16(1.0f), 0x3f80);
    cr_expect_float_eq(qd_bf16_to_fp32(0x3f80), 1.0f, 0);
    /* 1 + 2^-8 is a tie: rounds to even (1.0); 1 + 3*2^-9 rounds up. */
    cr_expect_eq(qd_fp32_to_bf16(1.00390625f), 0x3f80);
    cr_expect_eq(qd_fp32_to_bf16(1.005859375f), 0x3f81);
}
