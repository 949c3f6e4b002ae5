/*
 * 2-D convolutions on the tfjs-wasm heap, NHWC: Conv2D forward and its two backprops as im2col
 * plus sgemm, and depthwise convolution (any channel multiplier) forward and backprops as loops.
 *
 * Why: tfjs-wasm 4.22 has no Conv2DBackpropFilter nor depthwise backprops, and its
 * Conv2DBackpropInput is a scalar loop; OpenBLAS's sgemm runs the three products of a
 * convolution's training step at several times XNNPACK's speed on wasm SIMD.
 *
 * Layouts (tfjs's): x [batch, in_h, in_w, in_c]; filter [f_h, f_w, in_c, out_c] (depthwise:
 * [f_h, f_w, in_c, mult], out_c = in_c * mult); output [batch, out_h, out_w, out_c]. Output pixel
 * (oy, ox) and filter tap (fy, fx) read input pixel (oy*stride_h - pad_top + fy*dil_h,
 * ox*stride_w - pad_left + fx*dil_w); taps outside the input read zero. The caller (the kernels
 * of src/backend/kernels/) takes every size from tfjs's computeConv2DInfo; here each index is
 * checked against the input's bounds, and each tensor's extent against the heap, so a wrong size
 * cannot read or write outside the heap.
 *
 * The im2col matrix has one row per output pixel (M = batch*out_h*out_w rows) and
 * K = f_h*f_w*in_c columns in the filter's own order, so the filter is the K x out_c right
 * operand as it lies. It is built for a block of rows at a time (COL_FLOATS at most), so the
 * scratch stays small whatever the batch or image size; a 1x1, stride-1, unpadded convolution
 * needs none (the input is the matrix).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jointly_native.h"

/* Floats of im2col scratch per block (8 MB): large enough that sgemm sees thousands of rows, small enough to stay in cache levels. */
#define COL_FLOATS ((size_t)2 << 20)

/* The convolution's geometry, as the 15 numbers after the heap in every call. */
typedef struct {
  size_t batch, in_h, in_w, in_c, out_h, out_w, out_c, f_h, f_w;
  long stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
} geom;

static const char *const GEOM_NAMES[15] = {"batch", "inHeight", "inWidth", "inChannels", "outHeight", "outWidth", "outChannels", "filterHeight",
                                           "filterWidth", "strideHeight", "strideWidth", "dilationHeight", "dilationWidth", "padTop", "padLeft"};

/* Reads and checks the geometry from a[0..14]; 0 with a RangeError thrown when a value is not valid. */
static int read_geom(napi_env env, const double *a, int depthwise, const char *kernel, geom *g) {
  for (int i = 0; i < 15; i++) {
    /* Sizes and pads are >= 0; filter sizes, strides and dilations >= 1. */
    const double lo = (i >= 7 && i <= 12) ? 1 : 0;
    if (!(a[i] >= lo) || a[i] != floor(a[i]) || a[i] > 2147483647.0) {
      char msg[160];
      snprintf(msg, sizeof msg, "jointly-native %s: %s must be an integer >= %.0f, but got %g", kernel, GEOM_NAMES[i], lo, a[i]);
      napi_throw_range_error(env, NULL, msg);
      return 0;
    }
  }
  g->batch = (size_t)a[0], g->in_h = (size_t)a[1], g->in_w = (size_t)a[2], g->in_c = (size_t)a[3];
  g->out_h = (size_t)a[4], g->out_w = (size_t)a[5], g->out_c = (size_t)a[6], g->f_h = (size_t)a[7], g->f_w = (size_t)a[8];
  g->stride_h = (long)a[9], g->stride_w = (long)a[10], g->dil_h = (long)a[11], g->dil_w = (long)a[12];
  g->pad_top = (long)a[13], g->pad_left = (long)a[14];
  if (depthwise && (g->in_c == 0 || g->out_c % g->in_c != 0)) {
    char msg[160];
    snprintf(msg, sizeof msg, "jointly-native %s: outChannels (%zu) must be a multiple of inChannels (%zu)", kernel, g->out_c, g->in_c);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

static double x_count(const geom *g) { return (double)g->batch * g->in_h * g->in_w * g->in_c; }
static double y_count(const geom *g) { return (double)g->batch * g->out_h * g->out_w * g->out_c; }
static double w_count(const geom *g, int depthwise) { return (double)g->f_h * g->f_w * (depthwise ? g->out_c : g->in_c * g->out_c); }

/* A 1x1 convolution that reads pixel m for output pixel m: the input itself is the im2col matrix. */
static int is_pointwise(const geom *g) {
  return g->f_h == 1 && g->f_w == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_top == 0 && g->pad_left == 0 && g->out_h == g->in_h &&
         g->out_w == g->in_w;
}

/* Rows per im2col block: COL_FLOATS / K, at least 1, at most M. */
static size_t block_rows(size_t M, size_t K) {
  size_t r = COL_FLOATS / (K > 0 ? K : 1);
  if (r < 1) r = 1;
  return r < M ? r : M;
}

/*
 * Rows [m0, m0 + rows) of the im2col matrix into col (rows x K): row m = (b, oy, ox) holds, for each
 * tap (fy, fx), the in_c input values under it, zeros where the tap falls in the padding.
 */
static void im2col(const geom *g, const float *x, size_t m0, size_t rows, float *col) {
  const size_t C = g->in_c, K = g->f_h * g->f_w * C, hw = g->out_h * g->out_w, run = g->f_w * C;
  for (size_t r = 0; r < rows; r++) {
    const size_t m = m0 + r, b = m / hw, p = m % hw;
    const long oy = (long)(p / g->out_w), ox = (long)(p % g->out_w);
    const float *xb = x + b * g->in_h * g->in_w * C;
    const long ix0 = ox * g->stride_w - g->pad_left;
    /* All f_w taps of a row inside the input and adjacent: one copy of f_w*C floats per filter row. */
    const int contiguous = g->dil_w == 1 && ix0 >= 0 && ix0 + (long)g->f_w <= (long)g->in_w;
    float *dst = col + r * K;
    for (size_t fy = 0; fy < g->f_h; fy++, dst += run) {
      const long iy = oy * g->stride_h - g->pad_top + (long)fy * g->dil_h;
      if (iy < 0 || iy >= (long)g->in_h) {
        memset(dst, 0, sizeof(float) * run);
        continue;
      }
      const float *xrow = xb + (size_t)iy * g->in_w * C;
      if (contiguous) {
        memcpy(dst, xrow + (size_t)ix0 * C, sizeof(float) * run);
        continue;
      }
      for (size_t fx = 0; fx < g->f_w; fx++) {
        const long ix = ix0 + (long)fx * g->dil_w;
        if (ix < 0 || ix >= (long)g->in_w) memset(dst + fx * C, 0, sizeof(float) * C);
        else memcpy(dst + fx * C, xrow + (size_t)ix * C, sizeof(float) * C);
      }
    }
  }
}

/* The adjoint of im2col: adds each row's values back onto the input pixels they were read from (padding taps dropped). */
static void col2im_add(const geom *g, const float *col, size_t m0, size_t rows, float *dx) {
  const size_t C = g->in_c, K = g->f_h * g->f_w * C, hw = g->out_h * g->out_w, run = g->f_w * C;
  for (size_t r = 0; r < rows; r++) {
    const size_t m = m0 + r, b = m / hw, p = m % hw;
    const long oy = (long)(p / g->out_w), ox = (long)(p % g->out_w);
    float *db = dx + b * g->in_h * g->in_w * C;
    const long ix0 = ox * g->stride_w - g->pad_left;
    const int contiguous = g->dil_w == 1 && ix0 >= 0 && ix0 + (long)g->f_w <= (long)g->in_w;
    const float *src = col + r * K;
    for (size_t fy = 0; fy < g->f_h; fy++, src += run) {
      const long iy = oy * g->stride_h - g->pad_top + (long)fy * g->dil_h;
      if (iy < 0 || iy >= (long)g->in_h) continue;
      float *drow = db + (size_t)iy * g->in_w * C;
      if (contiguous) {
        float *d = drow + (size_t)ix0 * C;
        for (size_t k = 0; k < run; k++) d[k] += src[k];
        continue;
      }
      for (size_t fx = 0; fx < g->f_w; fx++) {
        const long ix = ix0 + (long)fx * g->dil_w;
        if (ix < 0 || ix >= (long)g->in_w) continue;
        float *d = drow + (size_t)ix * C;
        const float *s = src + fx * C;
        for (size_t c = 0; c < C; c++) d[c] += s[c];
      }
    }
  }
}

/* Scratch for one im2col block; NULL with an Error thrown when it cannot be allocated. */
static float *col_scratch(napi_env env, size_t rows, size_t K, const char *kernel) {
  float *p = (float *)malloc(sizeof(float) * rows * K + sizeof(float));
  if (p == NULL) {
    char msg[160];
    snprintf(msg, sizeof msg, "jointly-native %s: could not allocate %zu floats of im2col scratch", kernel, rows * K);
    napi_throw_error(env, NULL, msg);
  }
  return p;
}

/*
 * conv2d: out = act(conv(x, w) + bias); biasOff (a[18]) < 0 means no bias (else out_c floats), act
 * and alpha are a[19], a[20].
 */
static void conv2d_loop(napi_env env, const geom *g, const call_args *c, const float *x, const float *w, float *out) {
  const float *bias = c->a[18] >= 0 ? heap_floats(c, c->a[18]) : NULL;
  const int act = (int)c->a[19];
  const float alpha = (float)c->a[20];
  const size_t M = g->batch * g->out_h * g->out_w, N = g->out_c, K = g->f_h * g->f_w * g->in_c;
  const int direct = is_pointwise(g);
  const size_t rows_per = direct ? M : block_rows(M, K);
  float *col = (direct || K == 0) ? NULL : col_scratch(env, rows_per, K, "conv2d");
  if (!direct && K > 0 && col == NULL) return;
  for (size_t m0 = 0; m0 < M; m0 += rows_per) {
    const size_t rows = M - m0 < rows_per ? M - m0 : rows_per;
    float *o = out + m0 * N;
    float beta = 0.0f;
    if (bias != NULL) {
      /* The rows start as the bias; sgemm adds the product (beta = 1). */
      for (size_t i = 0; i < rows; i++) memcpy(o + i * N, bias, sizeof(float) * N);
      beta = 1.0f;
    } else if (K == 0) {
      memset(o, 0, sizeof(float) * rows * N);
    }
    if (K > 0) {
      const float *A = direct ? x + m0 * K : col;
      if (!direct) im2col(g, x, m0, rows, col);
      sgemm_rows(0, 0, (int)rows, (int)N, (int)K, A, w, beta, o);
    }
    activate(o, rows * N, act, alpha);
  }
  free(col);
}

/* conv2dBackpropInput: dx = the gradient of conv(x, w) for x given dy, i.e. per block dcol = dy w^T (sgemm), then col2im adds dcol onto dx. */
static void conv2d_backprop_input_loop(napi_env env, const geom *g, const call_args *c, const float *dy, const float *w, float *dx) {
  const size_t M = g->batch * g->out_h * g->out_w, N = g->out_c, K = g->f_h * g->f_w * g->in_c;
  if (is_pointwise(g)) {
    /* dx [M, C] = dy [M, N] w^T, w being [C, N]. */
    sgemm_rows(0, 1, (int)M, (int)K, (int)N, dy, w, 0.0f, dx);
    return;
  }
  const size_t rows_per = block_rows(M, K);
  float *col = col_scratch(env, rows_per, K, "conv2dBackpropInput");
  if (col == NULL) return;
  memset(dx, 0, sizeof(float) * (size_t)x_count(g));
  for (size_t m0 = 0; m0 < M; m0 += rows_per) {
    const size_t rows = M - m0 < rows_per ? M - m0 : rows_per;
    sgemm_rows(0, 1, (int)rows, (int)K, (int)N, dy + m0 * N, w, 0.0f, col);
    col2im_add(g, col, m0, rows, dx);
  }
  free(col);
}

/* conv2dBackpropFilter: dw = the gradient of conv(x, w) for w given dy, i.e. the sum over blocks of im2col(x)^T dy (sgemm, accumulating into dw). */
static void conv2d_backprop_filter_loop(napi_env env, const geom *g, const call_args *c, const float *x, const float *dy, float *dw) {
  const size_t M = g->batch * g->out_h * g->out_w, N = g->out_c, K = g->f_h * g->f_w * g->in_c;
  if (is_pointwise(g)) {
    /* dw [C, N] = x^T dy over all M pixels. */
    sgemm_rows(1, 0, (int)K, (int)N, (int)M, x, dy, 0.0f, dw);
    return;
  }
  const size_t rows_per = block_rows(M, K);
  float *col = col_scratch(env, rows_per, K, "conv2dBackpropFilter");
  if (col == NULL) return;
  for (size_t m0 = 0; m0 < M; m0 += rows_per) {
    const size_t rows = M - m0 < rows_per ? M - m0 : rows_per;
    im2col(g, x, m0, rows, col);
    sgemm_rows(1, 0, (int)K, (int)N, (int)rows, col, dy + m0 * N, m0 == 0 ? 0.0f : 1.0f, dw);
  }
  free(col);
}

/*
 * The depthwise loops. Output channel k = c*mult + q reads input channel c. The forward and
 * input-gradient loops gather, per output (input) pixel, the rows of its taps and sum over them
 * in registers, 16 channels at a time; the filter gradient adds each output pixel's products into
 * float64 accumulators. With mult > 1 the forward and the filter gradient work per multiplier q
 * on rows of in_c contiguous values (the filter, a dy row, the accumulators rearranged q-major),
 * so the inner loops stay contiguous.
 */
#define DW_BLOCK 16

/* Scratch of the depthwise loops: the rows and taps of one pixel, the rearranged filter, two rows of out_c floats. */
typedef struct {
  const float **a, **b;
  size_t *tap;
  /* mult > 1: the filter as [tap][q][c] (forward), a dy row as [q][c] (filter gradient), one out_c row. */
  float *wt, *row, *sums;
  /* The filter gradient's float64 accumulators (taps * out_c), NULL for the other loops. */
  double *acc;
} dw_scratch;

static int dw_scratch_alloc(napi_env env, const geom *g, dw_scratch *s, const char *kernel, int with_acc) {
  const size_t taps = g->f_h * g->f_w;
  char msg[128];
  s->acc = NULL;
  if (with_acc && (s->acc = (double *)malloc(sizeof(double) * (taps * g->out_c) + sizeof(double))) == NULL) {
    snprintf(msg, sizeof msg, "jointly-native %s: could not allocate the accumulator", kernel);
    napi_throw_error(env, NULL, msg);
    return 0;
  }
  s->a = (const float **)malloc(sizeof(float *) * taps);
  s->b = (const float **)malloc(sizeof(float *) * taps);
  s->tap = (size_t *)malloc(sizeof(size_t) * taps);
  s->wt = (float *)malloc(sizeof(float) * (taps * g->out_c + 1));
  s->row = (float *)malloc(sizeof(float) * (g->out_c + 1));
  s->sums = (float *)malloc(sizeof(float) * (g->out_c + 1));
  if (s->a == NULL || s->b == NULL || s->tap == NULL || s->wt == NULL || s->row == NULL || s->sums == NULL) {
    free(s->a), free(s->b), free(s->tap), free(s->wt), free(s->row), free(s->sums), free(s->acc);
    snprintf(msg, sizeof msg, "jointly-native %s: could not allocate the tap scratch", kernel);
    napi_throw_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

static void dw_scratch_free(dw_scratch *s) { free(s->a), free(s->b), free(s->tap), free(s->wt), free(s->row), free(s->sums), free(s->acc); }

/* Sixteen floats as one value (GCC / Clang vector extension): one AVX-512 register, or two AVX ones. */
typedef float vf16 __attribute__((vector_size(DW_BLOCK * sizeof(float))));

static inline vf16 load16(const float *p) {
  vf16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

/*
 * o[k] = Σ_t a[t][k]·b[t][k] for k < n, over n_taps rows: DW_BLOCK channels at a time, summed in a
 * register across the taps (in tap order) and stored once.
 */
static void sum_tap_products(const float *const *a, const float *const *b, size_t n_taps, size_t n, float *o) {
  size_t k0 = 0;
  for (; k0 + DW_BLOCK <= n; k0 += DW_BLOCK) {
    vf16 acc = {0};
    for (size_t t = 0; t < n_taps; t++) acc += load16(a[t] + k0) * load16(b[t] + k0);
    memcpy(o + k0, &acc, sizeof acc);
  }
  if (k0 < n) {
    float acc[DW_BLOCK] = {0};
    const size_t len = n - k0;
    for (size_t t = 0; t < n_taps; t++)
      for (size_t j = 0; j < len; j++) acc[j] += a[t][k0 + j] * b[t][k0 + j];
    memcpy(o + k0, acc, sizeof(float) * len);
  }
}

static void depthwise_forward(const geom *g, const float *x, const float *w, float *out, dw_scratch *s) {
  const size_t C = g->in_c, CM = g->out_c, mult = CM / C, taps = g->f_h * g->f_w;
  if (mult > 1)
    for (size_t t = 0; t < taps; t++)
      for (size_t c = 0; c < C; c++)
        for (size_t q = 0; q < mult; q++) s->wt[(t * mult + q) * C + c] = w[(t * C + c) * mult + q];
  for (size_t b = 0; b < g->batch; b++)
    for (size_t oy = 0; oy < g->out_h; oy++)
      for (size_t ox = 0; ox < g->out_w; ox++) {
        size_t n = 0;
        for (size_t fy = 0; fy < g->f_h; fy++) {
          const long iy = (long)oy * g->stride_h - g->pad_top + (long)fy * g->dil_h;
          if (iy < 0 || iy >= (long)g->in_h) continue;
          for (size_t fx = 0; fx < g->f_w; fx++) {
            const long ix = (long)ox * g->stride_w - g->pad_left + (long)fx * g->dil_w;
            if (ix < 0 || ix >= (long)g->in_w) continue;
            s->a[n] = x + ((b * g->in_h + (size_t)iy) * g->in_w + (size_t)ix) * C;
            s->tap[n] = fy * g->f_w + fx;
            n++;
          }
        }
        float *o = out + ((b * g->out_h + oy) * g->out_w + ox) * CM;
        if (mult == 1) {
          for (size_t t = 0; t < n; t++) s->b[t] = w + s->tap[t] * CM;
          sum_tap_products(s->a, s->b, n, CM, o);
          continue;
        }
        for (size_t q = 0; q < mult; q++) {
          for (size_t t = 0; t < n; t++) s->b[t] = s->wt + (s->tap[t] * mult + q) * C;
          sum_tap_products(s->a, s->b, n, C, s->sums);
          for (size_t c = 0; c < C; c++) o[c * mult + q] = s->sums[c];
        }
      }
}

/* Gathers, for each input pixel, the output pixels and taps that read it (oy·stride = iy + pad − fy·dil). */
static void depthwise_backprop_input(const geom *g, const float *dy, const float *w, float *dx, dw_scratch *s) {
  const size_t C = g->in_c, CM = g->out_c, mult = CM / C;
  for (size_t b = 0; b < g->batch; b++)
    for (size_t iy = 0; iy < g->in_h; iy++)
      for (size_t ix = 0; ix < g->in_w; ix++) {
        size_t n = 0;
        for (size_t fy = 0; fy < g->f_h; fy++) {
          const long ty = (long)iy + g->pad_top - (long)fy * g->dil_h;
          if (ty < 0 || ty % g->stride_h != 0 || ty / g->stride_h >= (long)g->out_h) continue;
          for (size_t fx = 0; fx < g->f_w; fx++) {
            const long tx = (long)ix + g->pad_left - (long)fx * g->dil_w;
            if (tx < 0 || tx % g->stride_w != 0 || tx / g->stride_w >= (long)g->out_w) continue;
            s->a[n] = dy + ((b * g->out_h + (size_t)(ty / g->stride_h)) * g->out_w + (size_t)(tx / g->stride_w)) * CM;
            s->b[n] = w + (fy * g->f_w + fx) * CM;
            n++;
          }
        }
        float *d = dx + ((b * g->in_h + iy) * g->in_w + ix) * C;
        if (mult == 1) {
          sum_tap_products(s->a, s->b, n, CM, d);
        } else {
          /* Per output channel first, then each input channel's mult of them. */
          sum_tap_products(s->a, s->b, n, CM, s->sums);
          for (size_t c = 0; c < C; c++) {
            float v = 0.0f;
            for (size_t q = 0; q < mult; q++) v += s->sums[c * mult + q];
            d[c] = v;
          }
        }
      }
}

/*
 * Sums over every output pixel of the batch, accumulated in double and rounded once to float32.
 * With mult > 1 the accumulators are [tap][q][c] and each dy row is rearranged to [q][c] first.
 */
static void depthwise_backprop_filter(const geom *g, const float *x, const float *dy, float *restrict dw, dw_scratch *s) {
  const size_t C = g->in_c, CM = g->out_c, mult = CM / C, taps = g->f_h * g->f_w, n = taps * CM;
  double *restrict acc = s->acc;
  memset(acc, 0, sizeof(double) * n);
  for (size_t b = 0; b < g->batch; b++)
    for (size_t oy = 0; oy < g->out_h; oy++)
      for (size_t ox = 0; ox < g->out_w; ox++) {
        const float *d = dy + ((b * g->out_h + oy) * g->out_w + ox) * CM;
        if (mult > 1) {
          for (size_t c = 0; c < C; c++)
            for (size_t q = 0; q < mult; q++) s->row[q * C + c] = d[c * mult + q];
          d = s->row;
        }
        for (size_t fy = 0; fy < g->f_h; fy++) {
          const long iy = (long)oy * g->stride_h - g->pad_top + (long)fy * g->dil_h;
          if (iy < 0 || iy >= (long)g->in_h) continue;
          for (size_t fx = 0; fx < g->f_w; fx++) {
            const long ix = (long)ox * g->stride_w - g->pad_left + (long)fx * g->dil_w;
            if (ix < 0 || ix >= (long)g->in_w) continue;
            const float *restrict xp = x + ((b * g->in_h + (size_t)iy) * g->in_w + (size_t)ix) * C;
            double *restrict ap = acc + (fy * g->f_w + fx) * CM;
            for (size_t q = 0; q < mult; q++) {
              const float *restrict dq = d + q * C;
              double *restrict aq = ap + q * C;
              for (size_t c = 0; c < C; c++) aq[c] += (double)xp[c] * (double)dq[c];
            }
          }
        }
      }
  for (size_t t = 0; t < taps; t++)
    for (size_t c = 0; c < C; c++)
      for (size_t q = 0; q < mult; q++) dw[(t * C + c) * mult + q] = (float)acc[(t * mult + q) * C + c];
}

/* What the six entry points differ in; conv_entry does the rest. */
typedef struct {
  const char *name;
  int depthwise;
  /* The three tensors after the geometry (a[15..17]), the last one written: their extents and their roles in errors. */
  char ext[3];
  const char *role[3];
  /* The tensor (0 or 1) whose emptiness leaves the output all zeros, or -1. (An empty output is always done.) */
  int zero_if_empty;
  /* conv2d only: a bias offset, activation and alpha follow (a[18..20]). */
  int fused;
  /* The loop: gemm for Conv2D (the im2col kernels), dw for the depthwise ones (with the scratch allocated). */
  void (*gemm)(napi_env env, const geom *g, const call_args *c, const float *in0, const float *in1, float *out);
  void (*dw)(const geom *g, const float *in0, const float *in1, float *out, dw_scratch *s);
} conv_kernel;

static double extent(const geom *g, int depthwise, char which) {
  return which == 'x' ? x_count(g) : which == 'y' ? y_count(g) : w_count(g, depthwise);
}

/*
 * An entry point: name(heap, ...geometry, in0Off, in1Off, outOff[, biasOff, act, alpha]). Reads and
 * checks the geometry and the tensors' ranges, handles empty tensors, then runs the kernel's loop.
 */
static napi_value conv_entry(napi_env env, napi_callback_info info, const conv_kernel *k) {
  call_args c;
  geom g;
  if (!read_call(env, info, k->fused ? 22 : 19, &c) || !read_geom(env, c.a, k->depthwise, k->name, &g)) return NULL;
  heap_span spans[4];
  size_t n = 0;
  for (int i = 0; i < 3; i++) spans[n++] = (heap_span){c.a[15 + i], extent(&g, k->depthwise, k->ext[i]), k->role[i]};
  if (k->fused && c.a[18] >= 0) spans[n++] = (heap_span){c.a[18], (double)g.out_c, "bias"};
  if (!spans_in_heap(env, &c, k->name, n, spans)) return NULL;
  const float *in0 = heap_floats(&c, c.a[15]), *in1 = heap_floats(&c, c.a[16]);
  float *out = heap_floats(&c, c.a[17]);
  if (spans[2].count == 0) return NULL;
  if (k->zero_if_empty >= 0 && spans[k->zero_if_empty].count == 0) {
    memset(out, 0, sizeof(float) * (size_t)spans[2].count);
    return NULL;
  }
  if (k->gemm != NULL) {
    k->gemm(env, &g, &c, in0, in1, out);
    return NULL;
  }
  dw_scratch s;
  if (!dw_scratch_alloc(env, &g, &s, k->name, k->dw == depthwise_backprop_filter)) return NULL;
  k->dw(&g, in0, in1, out, &s);
  dw_scratch_free(&s);
  return NULL;
}

static const conv_kernel CONV2D = {"conv2d", 0, {'x', 'w', 'y'}, {"input", "filter", "output"}, -1, 1, conv2d_loop, NULL};
static const conv_kernel CONV2D_BACKPROP_INPUT = {
    "conv2dBackpropInput", 0, {'y', 'w', 'x'}, {"dy", "filter", "dx"}, 0, 0, conv2d_backprop_input_loop, NULL};
static const conv_kernel CONV2D_BACKPROP_FILTER = {
    "conv2dBackpropFilter", 0, {'x', 'y', 'w'}, {"x", "dy", "dw"}, 1, 0, conv2d_backprop_filter_loop, NULL};
/* out_c = in_c * multiplier, filter [f_h, f_w, in_c, mult]. */
static const conv_kernel DEPTHWISE = {"depthwiseConv2d", 1, {'x', 'w', 'y'}, {"input", "filter", "output"}, 0, 0, NULL, depthwise_forward};
static const conv_kernel DEPTHWISE_BACKPROP_INPUT = {
    "depthwiseConv2dBackpropInput", 1, {'y', 'w', 'x'}, {"dy", "filter", "dx"}, 0, 0, NULL, depthwise_backprop_input};
static const conv_kernel DEPTHWISE_BACKPROP_FILTER = {
    "depthwiseConv2dBackpropFilter", 1, {'x', 'y', 'w'}, {"x", "dy", "dw"}, -1, 0, NULL, depthwise_backprop_filter};

/* conv2d(heap, ...geometry, xOff, wOff, outOff, biasOff, act, alpha). */
napi_value Conv2d(napi_env env, napi_callback_info info) { return conv_entry(env, info, &CONV2D); }
/* conv2dBackpropInput(heap, ...geometry, dyOff, wOff, dxOff). */
napi_value Conv2dBackpropInput(napi_env env, napi_callback_info info) { return conv_entry(env, info, &CONV2D_BACKPROP_INPUT); }
/* conv2dBackpropFilter(heap, ...geometry, xOff, dyOff, dwOff). */
napi_value Conv2dBackpropFilter(napi_env env, napi_callback_info info) { return conv_entry(env, info, &CONV2D_BACKPROP_FILTER); }
/* depthwiseConv2d(heap, ...geometry, xOff, wOff, outOff). */
napi_value DepthwiseConv2d(napi_env env, napi_callback_info info) { return conv_entry(env, info, &DEPTHWISE); }
/* depthwiseConv2dBackpropInput(heap, ...geometry, dyOff, wOff, dxOff). */
napi_value DepthwiseConv2dBackpropInput(napi_env env, napi_callback_info info) { return conv_entry(env, info, &DEPTHWISE_BACKPROP_INPUT); }
/* depthwiseConv2dBackpropFilter(heap, ...geometry, xOff, dyOff, dwOff). */
napi_value DepthwiseConv2dBackpropFilter(napi_env env, napi_callback_info info) { return conv_entry(env, info, &DEPTHWISE_BACKPROP_FILTER); }
