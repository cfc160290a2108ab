/* Branch-free scalar math that GCC vectorises inside `#pragma omp simd` loops
 * (glibc's vector expf/tanhf are only declared under -ffast-math, which loom avoids:
 * it would break the NaN/inf handling the error paths rely on). */
#ifndef LOOM_CPU_SIMD_H
#define LOOM_CPU_SIMD_H

#include <stdint.h>

typedef union loom_f32_bits { float f; int32_t i; } loom_f32_bits; /* unions, not memcpy: GCC vectorises these */

#pragma omp declare simd notinbranch
static inline float loom_expf(float x) {
    /* Cephes expf: exp(x) = 2^n * exp(r), |r| <= ln2/2; max rel. error ~2 ulp. n is
     * rounded by adding 1.5*2^23 (floorf would block vectorisation under the default
     * -ftrapping-math), and 2^n is built from the same sum's low mantissa bits. */
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    loom_f32_bits y, scale;
    y.f = x * 1.44269504088896341f + 12582912.0f;
    float n = y.f - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    scale.i = (y.i - 0x4B400000 + 127) << 23;
    return p * scale.f;
}

#pragma omp declare simd notinbranch
static inline float loom_tanhf(float x) {
    /* tanh(|x|) = 1 - 2 / (exp(2|x|) + 1), sign restored: evaluating on |x| avoids the
     * cancellation near tanh = -1. The clamp in loom_expf saturates it to 1. */
    float t = 1.0f - 2.0f / (loom_expf(2.0f * __builtin_fabsf(x)) + 1.0f);
    return __builtin_copysignf(t, x);
}

#define LOOM_GELU_S 0.7978845608028654f /* sqrt(2/pi) */
#define LOOM_GELU_C 0.044715f

#endif
