/*
 * The fused activations: applied to a product's output (the epilogue of gemm and conv), and their
 * gradient from that output (actGrad). NaN stays NaN, as in tfjs's cpu backend (relu is
 * Math.max(0, x) there): a comparison with NaN is false, so `x > 0 ? x : 0` (or fmaxf) would turn
 * a NaN into 0 and hide a bad input from every loss after it.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jointly_native.h"

void activate(float *c, size_t n, int act, float alpha) {
  switch (act) {
    case ACT_RELU:
      /* x != x only for NaN; -0 becomes 0, as Math.max(0, -0) does. */
      for (size_t i = 0; i < n; i++) c[i] = c[i] > 0.0f ? c[i] : (c[i] != c[i] ? c[i] : 0.0f);
      break;
    case ACT_RELU6:
      for (size_t i = 0; i < n; i++) c[i] = c[i] > 0.0f ? (c[i] > 6.0f ? 6.0f : c[i]) : (c[i] != c[i] ? c[i] : 0.0f);
      break;
    case ACT_LEAKYRELU:
      for (size_t i = 0; i < n; i++) c[i] = c[i] < 0.0f ? alpha * c[i] : c[i];
      break;
    case ACT_SIGMOID:
      for (size_t i = 0; i < n; i++) c[i] = 1.0f / (1.0f + expf(-c[i]));
      break;
    case ACT_ELU:
      for (size_t i = 0; i < n; i++) c[i] = c[i] > 0.0f ? c[i] : expm1f(c[i]);
      break;
    default:
      break;
  }
}

/*
 * actGrad(heap, n, act, dyOff, yOff, outOff): the gradient through an activation from its output y:
 * relu dy·[y > 0]; relu6 dy·[0 < y < 6]; sigmoid dy·y·(1 - y); elu dy where y > 0, else dy·(y + 1).
 * (Dense layers keep their output, so the derivative is taken from it, as tfjs's fused matMul does.)
 * relu and relu6 multiply dy by their step, NaN where y is NaN, as tfjs's dy·step(y) does: a NaN in
 * y or dy reaches the gradient (a plain `y > 0 ? dy : 0` dropped both), and the bits equal tfjs's
 * (dy·0 is -0 for a negative dy).
 */
napi_value ActGrad(napi_env env, napi_callback_info info) {
  call_args call;
  if (!read_call(env, info, 6, &call)) return NULL;
  const double *a = call.a;
  const double n = a[0];
  const int act = (int)a[1];
  const heap_span spans[3] = {{a[2], n, "dy"}, {a[3], n, "y"}, {a[4], n, "output"}};
  if (!spans_in_heap(env, &call, "actGrad", 3, spans)) return NULL;
  const float *dy = heap_floats(&call, a[2]);
  const float *y = heap_floats(&call, a[3]);
  float *out = heap_floats(&call, a[4]);
  const size_t count = (size_t)n;
  switch (act) {
    case ACT_RELU:
      for (size_t i = 0; i < count; i++) out[i] = dy[i] * (y[i] > 0.0f ? 1.0f : (y[i] != y[i] ? y[i] : 0.0f));
      break;
    case ACT_RELU6:
      for (size_t i = 0; i < count; i++) out[i] = dy[i] * ((y[i] > 0.0f && y[i] < 6.0f) ? 1.0f : (y[i] != y[i] ? y[i] : 0.0f));
      break;
    case ACT_SIGMOID:
      for (size_t i = 0; i < count; i++) out[i] = dy[i] * (y[i] * (1.0f - y[i]));
      break;
    case ACT_ELU:
      for (size_t i = 0; i < count; i++) out[i] = y[i] > 0.0f ? dy[i] : dy[i] * (y[i] + 1.0f);
      break;
    default:
      memmove(out, dy, sizeof(float) * count);
      break;
  }
  return NULL;
}
