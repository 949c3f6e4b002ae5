/* The fused optimizer updates (tf.train.adam / tf.train.sgd, bit for bit). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jointly_native.h"

/* Adam for one element, in tf.train.adam's op order, each operation rounded to float32. */
static inline void adam_elem(float x, float g, float m, float v, float b1, float c1, float b2, float c2, float oma1, float oma2, float eps,
                             float nlr, float *x_out, float *m_out, float *v_out) {
  const float mNew = m * b1 + g * c1;
  const float g2 = g * g;
  const float vNew = v * b2 + g2 * c2;
  const float mHat = mNew / oma1;
  const float vHat = vNew / oma2;
  const float denom = sqrtf(vHat) + eps;
  const float step = (mHat / denom) * nlr;
  *m_out = mNew;
  *v_out = vNew;
  *x_out = step + x;
}

/*
 * The in-place Adam update (the usual case): four distinct arrays, so `restrict` holds and the loop
 * vectorises (8 floats at a time with AVX); same operations and order as the general loop below.
 */
static void adam_in_place(float *restrict x, const float *restrict g, float *restrict m, float *restrict v, size_t count, float b1, float c1,
                          float b2, float c2, float oma1, float oma2, float eps, float nlr) {
  for (size_t k = 0; k < count; k++) adam_elem(x[k], g[k], m[k], v[k], b1, c1, b2, c2, oma1, oma2, eps, nlr, &x[k], &m[k], &v[k]);
}

/*
 * adam(heap, n, xOff, gOff, mOff, vOff, xDst, mDst, vDst, b1, c1, b2, c2, oma1, oma2, eps, nlr)
 * Reads x, g, m, v and writes the updated m, v, x to the *Dst offsets (which may equal the sources).
 * The arithmetic is tf.train.adam's op sequence, each step rounded to float32:
 *   m' = m*b1 + g*c1;  v' = v*b2 + (g*g)*c2;  x' = ((m'/oma1) / (sqrt(v'/oma2) + eps)) * nlr + x
 */
napi_value Adam(napi_env env, napi_callback_info info) {
  call_args call;
  if (!read_call(env, info, 17, &call)) return NULL;
  const double *a = call.a;
  const double n = a[0];
  const heap_span spans[7] = {{a[1], n, "variable"},        {a[2], n, "gradient"},
                              {a[3], n, "first moment"},    {a[4], n, "second moment"},
                              {a[5], n, "variable output"}, {a[6], n, "first moment output"},
                              {a[7], n, "second moment output"}};
  if (!spans_in_heap(env, &call, "adam", 7, spans)) return NULL;
  const float *x = heap_floats(&call, a[1]);
  const float *g = heap_floats(&call, a[2]);
  const float *m = heap_floats(&call, a[3]);
  const float *v = heap_floats(&call, a[4]);
  float *xo = heap_floats(&call, a[5]);
  float *mo = heap_floats(&call, a[6]);
  float *vo = heap_floats(&call, a[7]);
  const float b1 = (float)a[8], c1 = (float)a[9], b2 = (float)a[10], c2 = (float)a[11];
  const float oma1 = (float)a[12], oma2 = (float)a[13], eps = (float)a[14], nlr = (float)a[15];
  const size_t count = (size_t)n;
  if (xo == x && mo == m && vo == v) {
    adam_in_place((float *)xo, g, (float *)mo, (float *)vo, count, b1, c1, b2, c2, oma1, oma2, eps, nlr);
    return NULL;
  }
  for (size_t k = 0; k < count; k++) adam_elem(x[k], g[k], m[k], v[k], b1, c1, b2, c2, oma1, oma2, eps, nlr, &xo[k], &mo[k], &vo[k]);
  return NULL;
}

/* In place, distinct arrays: vectorises (see adam_in_place). */
static void sgd_in_place(float *restrict x, const float *restrict g, size_t count, float nlr) {
  for (size_t k = 0; k < count; k++) {
    const float step = nlr * g[k];
    x[k] = step + x[k];
  }
}

/* sgd(heap, n, xOff, gOff, xDst, nlr): x' = nlr*g + x, as tf.train.sgd's ops. */
napi_value Sgd(napi_env env, napi_callback_info info) {
  call_args call;
  if (!read_call(env, info, 6, &call)) return NULL;
  const double *a = call.a;
  const double n = a[0];
  const heap_span spans[3] = {{a[1], n, "variable"}, {a[2], n, "gradient"}, {a[3], n, "variable output"}};
  if (!spans_in_heap(env, &call, "sgd", 3, spans)) return NULL;
  const float *x = heap_floats(&call, a[1]);
  const float *g = heap_floats(&call, a[2]);
  float *xo = heap_floats(&call, a[3]);
  const float nlr = (float)a[4];
  const size_t count = (size_t)n;
  if (xo == x) {
    sgd_in_place(xo, g, count, nlr);
    return NULL;
  }
  for (size_t k = 0; k < count; k++) {
    const float step = nlr * g[k];
    xo[k] = step + x[k];
  }
  return NULL;
}
