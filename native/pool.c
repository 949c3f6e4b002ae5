/*
 * Max pooling and its gradient on the tfjs-wasm heap, NHWC / NDHWC (a 2-D pooling is a 3-D one of
 * depth 1): the loops behind jointly's MaxPool3D, MaxPoolGrad and MaxPool3DGrad kernels.
 *
 * Why: the stock wasm MaxPoolGrad / MaxPool3D(Grad) are wrong on windows of only negative values,
 * and the JavaScript loop that replaced them (src/backend/kernels/max-pool-loops.ts) took 77 + 39 ms
 * of an 830 ms W8 step.
 *
 * Semantics, exactly the JavaScript loop's (and the cpu backend's): a window's maximum is the first
 * position in window order (depth, row, column) strictly greater than everything before it, starting
 * from -Infinity, so the first of ties wins, padding never does and NaN never compares greater (a
 * window of only NaN gives -Infinity and passes no gradient). The gradient adds dy of each output, in
 * output order, to dx at its window's maximum, so overlapping windows sum in the loop's order too.
 *
 * How: per output pixel, all channels at once: the window's taps are visited in order and each
 * compares a contiguous row of channels against the running maxima (a vectorisable select), then the
 * pixel's maxima (forward) or its dy (gradient) are written.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jointly_native.h"

/* The pooling's geometry, as the 20 numbers after the heap in every call. */
typedef struct {
  size_t batch, c, in_d, in_h, in_w, out_d, out_h, out_w;
  long stride_d, stride_h, stride_w, dil_d, dil_h, dil_w, f_d, f_h, f_w, pad_front, pad_top, pad_left;
} pool_geom;

static const char *const POOL_NAMES[20] = {"batch",         "channels",      "inDepth",      "inHeight",       "inWidth",
                                           "outDepth",      "outHeight",     "outWidth",     "strideDepth",    "strideHeight",
                                           "strideWidth",   "dilationDepth", "dilationHeight", "dilationWidth", "filterDepth",
                                           "filterHeight",  "filterWidth",   "padFront",     "padTop",         "padLeft"};

/* Reads and checks the geometry from a[0..19]; 0 with a RangeError thrown when a value is not valid. */
static int read_pool_geom(napi_env env, const double *a, const char *kernel, pool_geom *g) {
  for (int i = 0; i < 20; i++) {
    /*
     * Sizes are >= 0; strides, dilations and filter sizes >= 1. Pads may be negative: tfjs's "same"
     * padding with a stride larger than the filter gives e.g. padTop -1 (the window starts inside).
     */
    const double lo = i >= 17 ? -2147483648.0 : (i >= 8 ? 1 : 0);
    if (!(a[i] >= lo) || a[i] != floor(a[i]) || a[i] > 2147483647.0) {
      char msg[160];
      snprintf(msg, sizeof msg, "jointly-native %s: %s must be an integer >= %.0f, but got %g", kernel, POOL_NAMES[i], lo, a[i]);
      napi_throw_range_error(env, NULL, msg);
      return 0;
    }
  }
  g->batch = (size_t)a[0], g->c = (size_t)a[1], g->in_d = (size_t)a[2], g->in_h = (size_t)a[3], g->in_w = (size_t)a[4];
  g->out_d = (size_t)a[5], g->out_h = (size_t)a[6], g->out_w = (size_t)a[7];
  g->stride_d = (long)a[8], g->stride_h = (long)a[9], g->stride_w = (long)a[10];
  g->dil_d = (long)a[11], g->dil_h = (long)a[12], g->dil_w = (long)a[13];
  g->f_d = (long)a[14], g->f_h = (long)a[15], g->f_w = (long)a[16];
  g->pad_front = (long)a[17], g->pad_top = (long)a[18], g->pad_left = (long)a[19];
  return 1;
}

/*
 * The one loop of both kernels. For every output pixel, best[c] / at[c] become each channel's
 * window maximum and its index in x (relative to the batch item; -1 when nothing won); then
 * y (forward, dx == NULL) gets the maxima, or dx gets dy added at those indices (gradient).
 * A batch item of the wasm heap holds fewer than 2^31 floats, so int32 indices suffice.
 */
static void pool_loop(const pool_geom *g, const float *x, float *y, const float *dy, float *dx, float *best, int32_t *at) {
  const size_t C = g->c;
  const size_t row = g->in_w * C, plane = g->in_h * row, item = g->in_d * plane;
  const size_t out_item = g->out_d * g->out_h * g->out_w * C;
  for (size_t b = 0; b < g->batch; b++) {
    const float *xb = x + b * item;
    size_t o = b * out_item;
    for (size_t od = 0; od < g->out_d; od++) {
      const long d0 = (long)od * g->stride_d - g->pad_front;
      for (size_t oh = 0; oh < g->out_h; oh++) {
        const long h0 = (long)oh * g->stride_h - g->pad_top;
        for (size_t ow = 0; ow < g->out_w; ow++, o += C) {
          const long w0 = (long)ow * g->stride_w - g->pad_left;
          for (size_t c = 0; c < C; c++) {
            best[c] = -INFINITY;
            at[c] = -1;
          }
          for (long fd = 0; fd < g->f_d; fd++) {
            const long d = d0 + fd * g->dil_d;
            if (d < 0 || d >= (long)g->in_d) continue;
            for (long fh = 0; fh < g->f_h; fh++) {
              const long h = h0 + fh * g->dil_h;
              if (h < 0 || h >= (long)g->in_h) continue;
              for (long fw = 0; fw < g->f_w; fw++) {
                const long w = w0 + fw * g->dil_w;
                if (w < 0 || w >= (long)g->in_w) continue;
                const int32_t base = (int32_t)((size_t)d * plane + (size_t)h * row + (size_t)w * C);
                const float *xp = xb + base;
                /* Branch-free so that it vectorises; NaN compares false and never wins. */
                for (size_t c = 0; c < C; c++) {
                  const float v = xp[c];
                  const int gt = v > best[c];
                  best[c] = gt ? v : best[c];
                  at[c] = gt ? base + (int32_t)c : at[c];
                }
              }
            }
          }
          if (dx == NULL) {
            memcpy(y + o, best, C * sizeof(float));
          } else {
            float *dxb = dx + b * item;
            const float *dyp = dy + o;
            for (size_t c = 0; c < C; c++)
              if (at[c] >= 0) dxb[at[c]] += dyp[c];
          }
        }
      }
    }
  }
}

static double pool_x_count(const pool_geom *g) { return (double)g->batch * g->in_d * g->in_h * g->in_w * g->c; }
static double pool_y_count(const pool_geom *g) { return (double)g->batch * g->out_d * g->out_h * g->out_w * g->c; }

/* Scratch for one pixel's maxima and their indices; NULL with an Error thrown when out of memory. */
static void *pool_scratch(napi_env env, size_t C, float **best, int32_t **at) {
  void *mem = malloc((C > 0 ? C : 1) * (sizeof(float) + sizeof(int32_t)));
  if (mem == NULL) {
    napi_throw_error(env, NULL, "jointly-native maxPool: out of memory for the scratch");
    return NULL;
  }
  *best = (float *)mem;
  *at = (int32_t *)((char *)mem + (C > 0 ? C : 1) * sizeof(float));
  return mem;
}

/* maxPool(heap, ...geometry[20], xOff, yOff): y = the window maxima of x. */
napi_value MaxPool(napi_env env, napi_callback_info info) {
  char *heap;
  size_t heap_len;
  double a[22];
  pool_geom g;
  if (!read_args(env, info, 23, &heap, &heap_len, a) || !read_pool_geom(env, a, "maxPool", &g)) return NULL;
  if (!in_heap(env, heap_len, a[20], pool_x_count(&g), "maxPool x") || !in_heap(env, heap_len, a[21], pool_y_count(&g), "maxPool output")) return NULL;
  float *best;
  int32_t *at;
  void *mem = pool_scratch(env, g.c, &best, &at);
  if (mem == NULL) return NULL;
  pool_loop(&g, (const float *)(heap + (size_t)a[20]), (float *)(heap + (size_t)a[21]), NULL, NULL, best, at);
  free(mem);
  return NULL;
}

/* maxPoolGrad(heap, ...geometry[20], xOff, dyOff, dxOff): dx (x's shape) = dy routed to each window's maximum. */
napi_value MaxPoolGrad(napi_env env, napi_callback_info info) {
  char *heap;
  size_t heap_len;
  double a[23];
  pool_geom g;
  if (!read_args(env, info, 24, &heap, &heap_len, a) || !read_pool_geom(env, a, "maxPoolGrad", &g)) return NULL;
  const double nx = pool_x_count(&g);
  if (!in_heap(env, heap_len, a[20], nx, "maxPoolGrad x") || !in_heap(env, heap_len, a[21], pool_y_count(&g), "maxPoolGrad dy") ||
      !in_heap(env, heap_len, a[22], nx, "maxPoolGrad dx"))
    return NULL;
  float *best;
  int32_t *at;
  void *mem = pool_scratch(env, g.c, &best, &at);
  if (mem == NULL) return NULL;
  float *dx = (float *)(heap + (size_t)a[22]);
  memset(dx, 0, (size_t)nx * sizeof(float));
  pool_loop(&g, (const float *)(heap + (size_t)a[20]), NULL, (const float *)(heap + (size_t)a[21]), dx, best, at);
  free(mem);
  return NULL;
}
