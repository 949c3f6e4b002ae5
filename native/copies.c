/* Reductions and copies over rows: column sums, row gathers, 2-D block copies. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jointly_native.h"

/*
 * sumRows(heap, rows, cols, xOff, outOff): out[j] = sum over i of x[i, j], in row order in float32,
 * which is the order (and so the result) of tfjs-wasm's Sum after its transpose, without the transpose.
 */
napi_value SumRows(napi_env env, napi_callback_info info) {
  call_args call;
  if (!read_call(env, info, 5, &call)) return NULL;
  const double *a = call.a;
  const size_t rows = (size_t)a[0], cols = (size_t)a[1];
  const heap_span spans[2] = {{a[2], a[0] * a[1], "input"}, {a[3], a[1], "output"}};
  if (!spans_in_heap(env, &call, "sumRows", 2, spans)) return NULL;
  const float *x = heap_floats(&call, a[2]);
  float *out = heap_floats(&call, a[3]);
  if (rows == 0) {
    memset(out, 0, sizeof(float) * cols);
    return NULL;
  }
  memmove(out, x, sizeof(float) * cols);
  for (size_t i = 1; i < rows; i++) {
    const float *row = x + i * cols;
    for (size_t j = 0; j < cols; j++) out[j] += row[j];
  }
  return NULL;
}

/*
 * gatherRows(heap, n, rowElems, tableRows, tableOff, idxOff, outOff): out[i, :] = table[idx[i], :] for
 * 4-byte elements (float32 or int32). Returns -1, or the position of the first index outside
 * [0, tableRows) (nothing is copied then), for the caller to report.
 */
napi_value GatherRows(napi_env env, napi_callback_info info) {
  call_args call;
  if (!read_call(env, info, 7, &call)) return NULL;
  const double *a = call.a;
  const double n = a[0], row = a[1], rows = a[2];
  const heap_span spans[3] = {{a[3], rows * row, "table"}, {a[4], n, "indices"}, {a[5], n * row, "output"}};
  if (!spans_in_heap(env, &call, "gather", 3, spans)) return NULL;
  const char *table = call.heap + (size_t)a[3];
  const int32_t *idx = (const int32_t *)(call.heap + (size_t)a[4]);
  char *out = call.heap + (size_t)a[5];
  const size_t count = (size_t)n, bytes = (size_t)row * 4;
  napi_value result;
  for (size_t i = 0; i < count; i++) {
    if (idx[i] < 0 || (double)idx[i] >= rows) {
      CHECK(napi_create_double(env, (double)i, &result));
      return result;
    }
  }
  for (size_t i = 0; i < count; i++) memcpy(out + i * bytes, table + (size_t)idx[i] * bytes, bytes);
  CHECK(napi_create_double(env, -1, &result));
  return result;
}

/*
 * copy2d(heap, rows, width, srcOff, srcStride, dstOff, dstStride): copies a rows x width block of
 * 4-byte elements between row strides (in elements): one part of a Concat or a SplitV on the last axes.
 */
napi_value Copy2d(napi_env env, napi_callback_info info) {
  call_args call;
  if (!read_call(env, info, 7, &call)) return NULL;
  const double *a = call.a;
  const double rows = a[0], width = a[1], ss = a[3], ds = a[5];
  if (rows == 0 || width == 0) return NULL;
  const heap_span spans[2] = {{a[2], (rows - 1) * ss + width, "source"}, {a[4], (rows - 1) * ds + width, "destination"}};
  if (!spans_in_heap(env, &call, "copy", 2, spans)) return NULL;
  const char *src = call.heap + (size_t)a[2];
  char *dst = call.heap + (size_t)a[4];
  const size_t r = (size_t)rows, bytes = (size_t)width * 4, sstep = (size_t)ss * 4, dstep = (size_t)ds * 4;
  for (size_t i = 0; i < r; i++) memcpy(dst + i * dstep, src + i * sstep, bytes);
  return NULL;
}
