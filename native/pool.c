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
 * How: per output pixel, the offsets of its window's valid taps once, then its channels 16 at a
 * time in vector registers while the taps are visited in order (see pool_lanes).
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
 * Sixteen channels at a time in GCC vector types (one AVX-512 register, or two or four narrower
 * ones where the machine has no AVX-512): the maxima and their indices stay in registers while the
 * window's taps are visited. A loop over a run-time channel count measured 3-5x slower for C = 8
 * to 16 (vector set-up per tap and a branchy scalar remainder).
 */
#define LANES 16
typedef float vf16 __attribute__((vector_size(4 * LANES)));
typedef int32_t vi16 __attribute__((vector_size(4 * LANES)));

/*
 * One output pixel, channels c0 .. c0+15 of which lanes [lo, hi) are written: the window's taps
 * (offsets of its valid input pixels in x, in window order) are visited in order, each lane keeping
 * the first value strictly greater than its running maximum (from -Infinity; NaN compares false and
 * never wins) and its index in x relative to the batch item (-1 while nothing won). Then y
 * (forward, dxb == NULL) gets the maxima, or dxb gets dy added at their indices (gradient); y and
 * dy point at channel c0. Lanes outside [lo, hi) read x but are never written: the caller
 * guarantees those reads lie inside the heap.
 */
static inline void pool_lanes(const float *xb, const int32_t *taps, size_t ntaps, int32_t c0, int lo, int hi, float *y, const float *dy,
                              float *dxb) {
  const vi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  vf16 best = (vf16){0} - INFINITY;
  vi16 at = (vi16){0} - 1;
  for (size_t t = 0; t < ntaps; t++) {
    const int32_t base = taps[t] + c0;
    vf16 v;
    memcpy(&v, xb + base, sizeof v);
    const vi16 m = (vi16)(v > best);
    best = (vf16)(((vi16)v & m) | ((vi16)best & ~m));
    at = ((lane + base) & m) | (at & ~m);
  }
  float bs[LANES];
  int32_t as[LANES];
  memcpy(bs, &best, sizeof bs);
  memcpy(as, &at, sizeof as);
  if (dxb == NULL) {
    for (int l = lo; l < hi; l++) y[l] = bs[l];
  } else {
    for (int l = lo; l < hi; l++)
      if (as[l] >= 0) dxb[as[l]] += dy[l];
  }
}

/* The same for one channel, in scalar code: for a pixel whose 16-lane reads would leave the heap. */
static void pool_one(const float *xb, const int32_t *taps, size_t ntaps, int32_t c, float *y, const float *dy, float *dxb) {
  float best = -INFINITY;
  int32_t at = -1;
  for (size_t t = 0; t < ntaps; t++) {
    const float v = xb[taps[t] + c];
    if (v > best) {
      best = v;
      at = taps[t] + c;
    }
  }
  if (dxb == NULL) y[c] = best;
  else if (at >= 0) dxb[at] += dy[c];
}

/*
 * All C channels of one output pixel: whole groups of 16, then the rest as the last 16 channels
 * with only the new lanes written (C >= 16), or as one group reading past the pixel's channels
 * (C < 16; when `overread` allows it, else one channel at a time).
 */
static void pool_pixel(const float *xb, const int32_t *taps, size_t ntaps, size_t C, int overread, float *y, const float *dy, float *dxb) {
  if (C >= LANES) {
    size_t c0 = 0;
    for (; c0 + LANES <= C; c0 += LANES) pool_lanes(xb, taps, ntaps, (int32_t)c0, 0, LANES, y == NULL ? NULL : y + c0, dy == NULL ? NULL : dy + c0, dxb);
    if (c0 < C) {
      const size_t last = C - LANES;
      pool_lanes(xb, taps, ntaps, (int32_t)last, (int)(c0 - last), LANES, y == NULL ? NULL : y + last, dy == NULL ? NULL : dy + last, dxb);
    }
  } else if (overread) {
    pool_lanes(xb, taps, ntaps, 0, 0, (int)C, y, dy, dxb);
  } else {
    for (size_t c = 0; c < C; c++) pool_one(xb, taps, ntaps, (int32_t)c, y, dy, dxb);
  }
}

/*
 * The one loop of both kernels: for every output pixel, the offsets of its window's valid input
 * pixels (taps, in window order; at most f_d*f_h*f_w of them), then all its channels at once
 * (pool_pixel). Forward: dx == NULL, y written. Gradient: y == NULL, dy added into dx.
 * heap_floats_after_x: floats of the heap from x on (how far a read may reach).
 * A batch item of the wasm heap holds fewer than 2^31 floats, so int32 offsets suffice.
 */
static void pool_loop(const pool_geom *g, const float *x, size_t heap_floats_after_x, float *y, const float *dy, float *dx, int32_t *taps) {
  const size_t C = g->c;
  const size_t row = g->in_w * C, plane = g->in_h * row, item = g->in_d * plane;
  const size_t out_item = g->out_d * g->out_h * g->out_w * C;
  for (size_t b = 0; b < g->batch; b++) {
    const float *xb = x + b * item;
    /* Floats of the heap from this batch item on: a 16-lane read at pixel offset p is inside it if p + 16 <= that. */
    const size_t room = heap_floats_after_x - b * item;
    float *dxb = dx == NULL ? NULL : dx + b * item;
    size_t o = b * out_item;
    for (size_t od = 0; od < g->out_d; od++) {
      const long d0 = (long)od * g->stride_d - g->pad_front;
      for (size_t oh = 0; oh < g->out_h; oh++) {
        const long h0 = (long)oh * g->stride_h - g->pad_top;
        for (size_t ow = 0; ow < g->out_w; ow++, o += C) {
          const long w0 = (long)ow * g->stride_w - g->pad_left;
          size_t ntaps = 0;
          for (long fd = 0; fd < g->f_d; fd++) {
            const long d = d0 + fd * g->dil_d;
            if (d < 0 || d >= (long)g->in_d) continue;
            for (long fh = 0; fh < g->f_h; fh++) {
              const long h = h0 + fh * g->dil_h;
              if (h < 0 || h >= (long)g->in_h) continue;
              for (long fw = 0; fw < g->f_w; fw++) {
                const long w = w0 + fw * g->dil_w;
                if (w < 0 || w >= (long)g->in_w) continue;
                taps[ntaps++] = (int32_t)((size_t)d * plane + (size_t)h * row + (size_t)w * C);
              }
            }
          }
          /* Taps are in increasing offset order: the last one reads furthest. */
          const int overread = ntaps == 0 || (size_t)taps[ntaps - 1] + LANES <= room;
          pool_pixel(xb, taps, ntaps, C, overread, y == NULL ? NULL : y + o, dy == NULL ? NULL : dy + o, dxb);
        }
      }
    }
  }
}

static double pool_x_count(const pool_geom *g) { return (double)g->batch * g->in_d * g->in_h * g->in_w * g->c; }
static double pool_y_count(const pool_geom *g) { return (double)g->batch * g->out_d * g->out_h * g->out_w * g->c; }

/* Scratch for one window's tap offsets; NULL with an Error thrown when out of memory. */
static int32_t *pool_scratch(napi_env env, const pool_geom *g) {
  int32_t *taps = malloc((size_t)(g->f_d * g->f_h * g->f_w) * sizeof(int32_t));
  if (taps == NULL) napi_throw_error(env, NULL, "jointly-native maxPool: out of memory for the scratch");
  return taps;
}

/*
 * maxPool(heap, ...geometry[20], xOff, yOff): y = the window maxima of x.
 * maxPoolGrad(heap, ...geometry[20], xOff, dyOff, dxOff): dx (x's shape) = dy routed to each window's maximum.
 */
static napi_value pool_entry(napi_env env, napi_callback_info info, int grad) {
  const char *kernel = grad ? "maxPoolGrad" : "maxPool";
  call_args c;
  pool_geom g;
  if (!read_call(env, info, grad ? 24 : 23, &c) || !read_pool_geom(env, c.a, kernel, &g)) return NULL;
  const double nx = pool_x_count(&g);
  const heap_span spans[3] = {{c.a[20], nx, "x"}, {c.a[21], pool_y_count(&g), grad ? "dy" : "output"}, {grad ? c.a[22] : 0, nx, "dx"}};
  if (!spans_in_heap(env, &c, kernel, grad ? 3 : 2, spans)) return NULL;
  int32_t *taps = pool_scratch(env, &g);
  if (taps == NULL) return NULL;
  const float *x = heap_floats(&c, c.a[20]);
  const size_t room = (c.heap_len - (size_t)c.a[20]) / 4;
  if (grad) {
    float *dx = heap_floats(&c, c.a[22]);
    memset(dx, 0, (size_t)nx * sizeof(float));
    pool_loop(&g, x, room, NULL, heap_floats(&c, c.a[21]), dx, taps);
  } else {
    pool_loop(&g, x, room, heap_floats(&c, c.a[21]), NULL, NULL, taps);
  }
  free(taps);
  return NULL;
}

napi_value MaxPool(napi_env env, napi_callback_info info) { return pool_entry(env, info, 0); }
napi_value MaxPoolGrad(napi_env env, napi_callback_info info) { return pool_entry(env, info, 1); }
