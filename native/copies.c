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
  char *heap;
  size_t heap_len;
  double a[4];
  if (!read_args(env, info, 5, &heap, &heap_len, a)) return NULL;
  const size_t rows = (size_t)a[0], cols = (size_t)a[1];
  if (!in_heap(env, heap_len, a[2], a[0] * a[1], "sumRows input") || !in_heap(env, heap_len, a[3], a[1], "sumRows output")) return NULL;
  const float *x = (const float *)(heap + (size_t)a[2]);
  float *out = (float *)(heap + (size_t)a[3]);
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
  char *heap;
  size_t heap_len;
  double a[6];
  if (!read_args(env, info, 7, &heap, &heap_len, a)) return NULL;
  const double n = a[0], row = a[1], rows = a[2];
  if (!in_heap(env, heap_len, a[3], rows * row, "gather table") || !in_heap(env, heap_len, a[4], n, "gather indices") ||
      !in_heap(env, heap_len, a[5], n * row, "gather output"))
    return NULL;
  const char *table = heap + (size_t)a[3];
  const int32_t *idx = (const int32_t *)(heap + (size_t)a[4]);
  char *out = heap + (size_t)a[5];
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
  char *heap;
  size_t heap_len;
  double a[6];
  if (!read_args(env, info, 7, &heap, &heap_len, a)) return NULL;
  const double rows = a[0], width = a[1], ss = a[3], ds = a[5];
  if (rows == 0 || width == 0) return NULL;
  if (!in_heap(env, heap_len, a[2], (rows - 1) * ss + width, "copy source") || !in_heap(env, heap_len, a[4], (rows - 1) * ds + width, "copy destination"))
    return NULL;
  const char *src = heap + (size_t)a[2];
  char *dst = heap + (size_t)a[4];
  const size_t r = (size_t)rows, bytes = (size_t)width * 4, sstep = (size_t)ss * 4, dstep = (size_t)ds * 4;
  for (size_t i = 0; i < r; i++) memcpy(dst + i * dstep, src + i * sstep, bytes);
  return NULL;
}
