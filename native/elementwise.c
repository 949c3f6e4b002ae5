/*
 * Element-wise kernels on the tfjs-wasm heap: the broadcasting binary ops (Add, Sub, Multiply,
 * RealDiv in float32) and batch normalisation's forward pass (FusedBatchNorm).
 *
 * Why: tfjs-wasm 4.22's binary ops with broadcasting (a per-channel vector against an NHWC
 * activation, as in batch norm's gradient) run an index computation per element, 2-3 ns an element
 * here against 0.5 for the same op without broadcasting; in the W8 bench they took about 80 ms of an
 * 830 ms step. Its FusedBatchNorm is a scalar loop with a square root per element (35 ms on a
 * [64, 64, 64, 32] activation).
 *
 * Results: every binary op is one float32 operation per element (-ffp-contract=off), so the result
 * is exactly the stock kernel's and the cpu backend's. The batch norm evaluates the cpu backend's
 * formula in its order and in double precision, as its JavaScript does, rounding once to float32:
 * offset + (x - mean) * scale / sqrt(variance + epsilon), with the square root once per channel.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jointly_native.h"

/* Operation codes of binary(): the order of src/backend/native.ts's BINARY_OPS. */
enum { OP_ADD = 0, OP_SUB = 1, OP_MUL = 2, OP_DIV = 3 };

/*
 * out[i0, i1, i2, j] = a[i0*as0 + i1*as1 + i2*as2 + j*as3] OP b[...bs...] over the output's four
 * (collapsed) axes d0..d3, the output contiguous. The innermost strides are 0 or 1 in practice
 * (one operand's row, or one of its values, against the other's row); each such pair has a loop of
 * its own, with the broadcast value held in a register, so that it vectorises.
 */
#define BINARY_LOOPS(OP)                                                                                 \
  for (size_t i0 = 0; i0 < d[0]; i0++)                                                                   \
    for (size_t i1 = 0; i1 < d[1]; i1++)                                                                 \
      for (size_t i2 = 0; i2 < d[2]; i2++) {                                                             \
        const float *ap = A + i0 * as[0] + i1 * as[1] + i2 * as[2];                                      \
        const float *bp = B + i0 * bs[0] + i1 * bs[1] + i2 * bs[2];                                      \
        float *op = out + ((i0 * d[1] + i1) * d[2] + i2) * n;                                            \
        if (as[3] == 1 && bs[3] == 1) {                                                                  \
          for (size_t j = 0; j < n; j++) op[j] = ap[j] OP bp[j];                                         \
        } else if (as[3] == 0 && bs[3] == 1) {                                                           \
          const float av = ap[0];                                                                        \
          for (size_t j = 0; j < n; j++) op[j] = av OP bp[j];                                            \
        } else if (as[3] == 1 && bs[3] == 0) {                                                           \
          const float bv = bp[0];                                                                        \
          for (size_t j = 0; j < n; j++) op[j] = ap[j] OP bv;                                            \
        } else {                                                                                         \
          for (size_t j = 0; j < n; j++) op[j] = ap[j * as[3]] OP bp[j * bs[3]];                         \
        }                                                                                                \
      }

/*
 * binary(heap, op, d0, d1, d2, d3, as0..as3, bs0..bs3, aOff, bOff, outOff): a float32 binary op with
 * broadcasting, described by the caller as four output axes and each operand's strides (in floats,
 * 0 along an axis it is broadcast over). op: 0 add, 1 sub, 2 mul, 3 div.
 */
napi_value Binary(napi_env env, napi_callback_info info) {
  call_args call;
  if (!read_call(env, info, 17, &call)) return NULL;
  const double *a = call.a;
  const int opcode = (int)a[0];
  if (a[0] != opcode || opcode < OP_ADD || opcode > OP_DIV) {
    char msg[96];
    snprintf(msg, sizeof msg, "jointly-native binary: op must be 0..3 (add, sub, mul, div), but got %g", a[0]);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  size_t d[4], as[4], bs[4];
  double count = 1, a_last = 0, b_last = 0;
  for (int k = 0; k < 4; k++) {
    const double dk = a[1 + k], ak = a[5 + k], bk = a[9 + k];
    if (!(dk >= 0) || !(ak >= 0) || !(bk >= 0) || dk != floor(dk) || ak != floor(ak) || bk != floor(bk)) {
      char msg[160];
      snprintf(msg, sizeof msg, "jointly-native binary: axis %d's size and strides must be integers >= 0, but got %g, %g, %g", k, dk, ak, bk);
      napi_throw_range_error(env, NULL, msg);
      return NULL;
    }
    d[k] = (size_t)dk, as[k] = (size_t)ak, bs[k] = (size_t)bk;
    count *= dk;
    /* The last element each operand reads, for the heap check. */
    if (dk > 0) a_last += (dk - 1) * ak, b_last += (dk - 1) * bk;
  }
  if (count == 0) return NULL;
  const heap_span spans[3] = {{a[13], a_last + 1, "a"}, {a[14], b_last + 1, "b"}, {a[15], count, "output"}};
  if (!spans_in_heap(env, &call, "binary", 3, spans)) return NULL;
  const float *A = heap_floats(&call, a[13]);
  const float *B = heap_floats(&call, a[14]);
  float *out = heap_floats(&call, a[15]);
  const size_t n = d[3];
  switch (opcode) {
    case OP_ADD:
      BINARY_LOOPS(+)
      break;
    case OP_SUB:
      BINARY_LOOPS(-)
      break;
    case OP_MUL:
      BINARY_LOOPS(*)
      break;
    default:
      BINARY_LOOPS(/)
      break;
  }
  return NULL;
}

/* The value of a per-channel parameter of length len (1: one for all channels, else one per channel) at channel c. */
static double param_at(const float *p, size_t len, size_t c) { return (double)p[len == 1 ? 0 : c]; }

/*
 * batchNorm(heap, rows, channels, xOff, meanOff, meanLen, varOff, varLen, offsetOff, offsetLen,
 * scaleOff, scaleLen, epsilon, outOff): out[r, c] = offset[c] + (x[r, c] - mean[c]) * scale[c] /
 * sqrt(variance[c] + epsilon) in double, rounded to float32 (the cpu backend's formula and order).
 * Each parameter has length 1 or `channels`; offsetOff / scaleOff < 0: none (0 and 1, as the cpu
 * backend's defaults).
 */
napi_value BatchNorm(napi_env env, napi_callback_info info) {
  call_args call;
  if (!read_call(env, info, 14, &call)) return NULL;
  const double *a = call.a;
  const double rows = a[0], channels = a[1];
  if (!(rows >= 0) || !(channels >= 1) || rows != floor(rows) || channels != floor(channels)) {
    char msg[128];
    snprintf(msg, sizeof msg, "jointly-native batchNorm: rows (%g) and channels (%g) must be integers >= 0 and >= 1", rows, channels);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  const char *names[4] = {"mean", "variance", "offset", "scale"};
  const float *params[4] = {NULL, NULL, NULL, NULL};
  size_t lens[4] = {1, 1, 1, 1};
  for (int k = 0; k < 4; k++) {
    const double off = a[3 + 2 * k], len = a[4 + 2 * k];
    if (k >= 2 && off < 0) continue;
    if (len != 1 && len != channels) {
      char msg[128];
      snprintf(msg, sizeof msg, "jointly-native batchNorm: %s must have 1 or %g values, but has %g", names[k], channels, len);
      napi_throw_range_error(env, NULL, msg);
      return NULL;
    }
    if (!in_heap(env, call.heap_len, off, len, names[k])) return NULL;
    params[k] = heap_floats(&call, off);
    lens[k] = (size_t)len;
  }
  const heap_span spans[2] = {{a[2], rows * channels, "x"}, {a[12], rows * channels, "output"}};
  if (!spans_in_heap(env, &call, "batchNorm", 2, spans)) return NULL;
  const size_t C = (size_t)channels, R = (size_t)rows;
  const double eps = a[11];
  double *pc = malloc(4 * C * sizeof(double));
  if (pc == NULL) {
    napi_throw_error(env, NULL, "jointly-native batchNorm: out of memory for the per-channel terms");
    return NULL;
  }
  double *m = pc, *sq = pc + C, *off = pc + 2 * C, *s = pc + 3 * C;
  for (size_t c = 0; c < C; c++) {
    m[c] = param_at(params[0], lens[0], c);
    sq[c] = sqrt(param_at(params[1], lens[1], c) + eps);
    off[c] = params[2] == NULL ? 0.0 : param_at(params[2], lens[2], c);
    s[c] = params[3] == NULL ? 1.0 : param_at(params[3], lens[3], c);
  }
  const float *x = heap_floats(&call, a[2]);
  float *out = heap_floats(&call, a[12]);
  for (size_t r = 0; r < R; r++) {
    const float *xr = x + r * C;
    float *orow = out + r * C;
    for (size_t c = 0; c < C; c++) orow[c] = (float)(off[c] + ((double)xr[c] - m[c]) * s[c] / sq[c]);
  }
  free(pc);
  return NULL;
}
