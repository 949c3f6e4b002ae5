/*
 * jointly's native CPU kernels for the TensorFlow.js wasm backend.
 *
 * Why: tfjs-wasm's matrix products run on wasm SIMD128 (XNNPACK), about 15 GFLOP/s on one core of
 * the development machine, while a native sgemm reaches 60-100 GFLOP/s on the same core. Where the
 * native TensorFlow backend (tfjs-node) cannot be installed, this small addon keeps the tensors in
 * the wasm heap (no copies) and runs the heavy loops natively: every matrix product through the
 * system's BLAS (OpenBLAS), plus the bias/activation epilogue, and Adam / SGD updates.
 *
 * Every function takes the wasm heap (the WebAssembly.Memory's ArrayBuffer, fetched by the caller on
 * each call because it is replaced when the heap grows) and byte offsets into it. The caller checks
 * shapes and bounds; here only the heap size is checked again, so a wrong offset throws instead of
 * writing outside the heap.
 *
 * Floating point: built with -ffp-contract=off and without -ffast-math, so the Adam and SGD updates
 * round every intermediate to float32 in the same order as tf.train.adam / tf.train.sgd's ops on the
 * wasm backend and give the same bits.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <node_api.h>
#include "jointly_native.h"

/* Reads the heap (argument 0) and numeric arguments 1..n-1 into nums. */
int read_args(napi_env env, napi_callback_info info, size_t want, char **heap, size_t *heap_len, double *nums) {
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "jointly-native: could not read the arguments");
    return 0;
  }
  if (want > MAX_ARGS || argc != want) {
    char msg[128];
    snprintf(msg, sizeof msg, "jointly-native: expected %zu arguments, got %zu", want, argc);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  void *data = NULL;
  bool is_ab = false;
  napi_is_arraybuffer(env, argv[0], &is_ab);
  if (!is_ab || napi_get_arraybuffer_info(env, argv[0], &data, heap_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "jointly-native: argument 0 must be the wasm heap's ArrayBuffer");
    return 0;
  }
  *heap = (char *)data;
  for (size_t i = 1; i < want; i++) {
    if (napi_get_value_double(env, argv[i], &nums[i - 1]) != napi_ok) {
      char msg[96];
      snprintf(msg, sizeof msg, "jointly-native: argument %zu must be a number", i);
      napi_throw_type_error(env, NULL, msg);
      return 0;
    }
  }
  return 1;
}

/* True when [off, off + count floats) lies inside the heap. */
int in_heap(napi_env env, size_t heap_len, double off, double count, const char *what) {
  if (off < 0 || count < 0 || off + count * 4.0 > (double)heap_len || fmod(off, 4.0) != 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "jointly-native: %s at byte %.0f (+%.0f floats) is outside the wasm heap of %zu bytes", what, off, count, heap_len);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

void activate(float *c, size_t n, int act, float alpha) {
  switch (act) {
    case ACT_RELU:
      for (size_t i = 0; i < n; i++) c[i] = c[i] > 0.0f ? c[i] : 0.0f;
      break;
    case ACT_RELU6:
      for (size_t i = 0; i < n; i++) c[i] = c[i] < 0.0f ? 0.0f : (c[i] > 6.0f ? 6.0f : c[i]);
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

/* Widths up to which narrow_gemm's loops beat sgemm (a head's 1 or 2 outputs; measured, see below). */
#define NARROW 4

/* The loops of narrow_gemm; `scratch` holds the narrow operand rearranged (n*k floats, n*m for transA). */
static void narrow_gemm_into(float *scratch, int transA, int transB, size_t m, size_t n, size_t k, const float *A, const float *B, float beta, float *C) {
  const int N = (int)n;
  if (N <= NARROW && !transA) {
    /* Rows of op(B) columns made contiguous, then one dot product per output. */
    float *bt = scratch;
    for (size_t c = 0; c < n; c++)
      for (size_t r = 0; r < k; r++) bt[c * k + r] = transB ? B[c * k + r] : B[r * n + c];
    for (size_t i = 0; i < m; i++) {
      const float *a = A + i * k;
      for (size_t c = 0; c < n; c++) {
        const float *b = bt + c * k;
        /* Eight running sums, so the loop vectorises without reassociating a single sum. */
        float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t r = 0;
        for (; r + 8 <= k; r += 8)
          for (int l = 0; l < 8; l++) part[l] += a[r + l] * b[r + l];
        float acc = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
        for (; r < k; r++) acc += a[r] * b[r];
        C[i * n + c] = beta == 0.0f ? acc : C[i * n + c] + acc;
      }
    }
    return;
  }
  if (N <= NARROW && transA) {
    /* A is [K, M]: accumulate each column of C as a sum of rows of A scaled by B's entries. */
    float *ct = scratch;
    memset(ct, 0, sizeof(float) * n * m);
    for (size_t r = 0; r < k; r++) {
      const float *a = A + r * m;
      for (size_t c = 0; c < n; c++) {
        const float b = transB ? B[c * k + r] : B[r * n + c];
        float *col = ct + c * m;
        for (size_t i = 0; i < m; i++) col[i] += b * a[i];
      }
    }
    for (size_t i = 0; i < m; i++)
      for (size_t c = 0; c < n; c++) C[i * n + c] = beta == 0.0f ? ct[c * m + i] : C[i * n + c] + ct[c * m + i];
    return;
  }
  /* K narrow, outer-product-like: each row of C is a combination of K rows of op(B). */
  float *bk = scratch;
  for (size_t r = 0; r < k; r++)
    for (size_t j = 0; j < n; j++) bk[r * n + j] = transB ? B[j * k + r] : B[r * n + j];
  for (size_t i = 0; i < m; i++) {
    float *c = C + i * n;
    if (beta == 0.0f) memset(c, 0, sizeof(float) * n);
    for (size_t r = 0; r < k; r++) {
      const float a = transA ? A[r * m + i] : A[i * k + r];
      const float *b = bk + r * n;
      for (size_t j = 0; j < n; j++) c[j] += a * b[j];
    }
  }
}

/*
 * Products with one side only a few wide: a head's forward pass (N <= 4), its weight gradient
 * (transA, N <= 4) and the gradient into its input (K <= 4). sgemm packs and blocks for large
 * products and runs these at 3-5 GFLOP/s (0.4 ms for a 1024x512x1 product in bench W2); these are
 * memory-bound loops that read each big operand once, 4-10x faster. The order of additions
 * differs from sgemm's, so results differ from it by rounding only. C = op(A) op(B) + beta C.
 * Returns 0 (nothing done) when the shape is not one of these cases, or the scratch copy of the
 * narrow operand cannot be allocated (then sgemm runs).
 */
static int narrow_gemm(int transA, int transB, int M, int N, int K, const float *A, const float *B, float beta, float *C) {
  const size_t m = (size_t)M, n = (size_t)N, k = (size_t)K;
  const int narrow_out = N <= NARROW, narrow_inner = K <= NARROW;
  if (!narrow_out && !narrow_inner) return 0;
  /* Allocated per call, not static: worker threads of one process share this library. */
  float *scratch = (float *)malloc(sizeof(float) * n * (narrow_out && transA ? m : k) + sizeof(float));
  if (scratch == NULL) return 0;
  narrow_gemm_into(scratch, transA, transB, m, n, k, A, B, beta, C);
  free(scratch);
  return 1;
}

void sgemm_rows(int transA, int transB, int M, int N, int K, const float *A, const float *B, float beta, float *C) {
  if (!narrow_gemm(transA, transB, M, N, K, A, B, beta, C))
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                transA ? M : K, B, transB ? K : N, beta, C, N);
}


/*
 * gemm(heap, batch, M, N, K, transA, transB, aOff, aStride, bOff, bStride, cOff, biasOff, biasSize, act, alpha)
 * For each b < batch: C_b[M,N] = act(op(A_b) op(B_b) + bias), row-major, where A_b starts at
 * aOff + b*aStride*4 (aStride in floats; 0 broadcasts one A to every batch), likewise B_b, and C_b at
 * cOff + b*M*N*4. op(A) is A[K,M] transposed when transA, else A[M,K]; op(B) likewise with B[N,K] /
 * B[K,N]. biasOff < 0: no bias; biasSize is N (one per column) or 1 (one for all).
 */
static napi_value Gemm(napi_env env, napi_callback_info info) {
  char *heap;
  size_t heap_len;
  double a[15];
  if (!read_args(env, info, 16, &heap, &heap_len, a)) return NULL;
  const int batch = (int)a[0], M = (int)a[1], N = (int)a[2], K = (int)a[3];
  const int transA = a[4] != 0, transB = a[5] != 0;
  const double aOff = a[6], aStride = a[7], bOff = a[8], bStride = a[9], cOff = a[10];
  const double biasOff = a[11];
  const int biasSize = (int)a[12], act = (int)a[13];
  const float alpha = (float)a[14];
  if (batch < 0 || M < 0 || N < 0 || K < 0) {
    napi_throw_range_error(env, NULL, "jointly-native: gemm dimensions must be >= 0");
    return NULL;
  }
  if (batch == 0 || M == 0 || N == 0) return NULL;
  const double mk = (double)M * K, kn = (double)K * N, mn = (double)M * N;
  if (!in_heap(env, heap_len, aOff, aStride * (batch - 1) + mk, "gemm operand a")) return NULL;
  if (!in_heap(env, heap_len, bOff, bStride * (batch - 1) + kn, "gemm operand b")) return NULL;
  if (!in_heap(env, heap_len, cOff, mn * batch, "gemm output")) return NULL;
  const float *bias = NULL;
  if (biasOff >= 0) {
    if (biasSize != N && biasSize != 1) {
      napi_throw_range_error(env, NULL, "jointly-native: gemm bias size must be N or 1");
      return NULL;
    }
    if (!in_heap(env, heap_len, biasOff, biasSize, "gemm bias")) return NULL;
    bias = (const float *)(heap + (size_t)biasOff);
  }
  for (int b = 0; b < batch; b++) {
    const float *A = (const float *)(heap + (size_t)(aOff + 4.0 * aStride * b));
    const float *B = (const float *)(heap + (size_t)(bOff + 4.0 * bStride * b));
    float *C = (float *)(heap + (size_t)(cOff + 4.0 * mn * b));
    float beta = 0.0f;
    if (bias != NULL) {
      /* C starts as the bias rows; sgemm then adds the product (beta = 1). */
      for (int i = 0; i < M; i++) {
        float *row = C + (size_t)i * N;
        if (biasSize == N) memcpy(row, bias, sizeof(float) * (size_t)N);
        else for (int j = 0; j < N; j++) row[j] = bias[0];
      }
      beta = 1.0f;
    }
    if (K == 0) {
      if (bias == NULL) memset(C, 0, sizeof(float) * (size_t)M * N);
    } else {
      sgemm_rows(transA, transB, M, N, K, A, B, beta, C);
    }
    activate(C, (size_t)M * N, act, alpha);
  }
  return NULL;
}

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
static napi_value Adam(napi_env env, napi_callback_info info) {
  char *heap;
  size_t heap_len;
  double a[16];
  if (!read_args(env, info, 17, &heap, &heap_len, a)) return NULL;
  const double n = a[0];
  const char *names[7] = {"adam variable", "adam gradient", "adam first moment", "adam second moment", "adam variable output", "adam first moment output", "adam second moment output"};
  for (int i = 0; i < 7; i++)
    if (!in_heap(env, heap_len, a[1 + i], n, names[i])) return NULL;
  const float *x = (const float *)(heap + (size_t)a[1]);
  const float *g = (const float *)(heap + (size_t)a[2]);
  const float *m = (const float *)(heap + (size_t)a[3]);
  const float *v = (const float *)(heap + (size_t)a[4]);
  float *xo = (float *)(heap + (size_t)a[5]);
  float *mo = (float *)(heap + (size_t)a[6]);
  float *vo = (float *)(heap + (size_t)a[7]);
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
static napi_value Sgd(napi_env env, napi_callback_info info) {
  char *heap;
  size_t heap_len;
  double a[5];
  if (!read_args(env, info, 6, &heap, &heap_len, a)) return NULL;
  const double n = a[0];
  if (!in_heap(env, heap_len, a[1], n, "sgd variable") || !in_heap(env, heap_len, a[2], n, "sgd gradient") ||
      !in_heap(env, heap_len, a[3], n, "sgd variable output"))
    return NULL;
  const float *x = (const float *)(heap + (size_t)a[1]);
  const float *g = (const float *)(heap + (size_t)a[2]);
  float *xo = (float *)(heap + (size_t)a[3]);
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

/*
 * sumRows(heap, rows, cols, xOff, outOff): out[j] = sum over i of x[i, j], in row order in float32,
 * which is the order (and so the result) of tfjs-wasm's Sum after its transpose, without the transpose.
 */
static napi_value SumRows(napi_env env, napi_callback_info info) {
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
static napi_value GatherRows(napi_env env, napi_callback_info info) {
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
static napi_value Copy2d(napi_env env, napi_callback_info info) {
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

/*
 * actGrad(heap, n, act, dyOff, yOff, outOff): the gradient through an activation from its output y:
 * relu dy·[y > 0]; relu6 dy·[0 < y < 6]; sigmoid dy·y·(1 - y); elu dy where y > 0, else dy·(y + 1).
 * (Dense layers keep their output, so the derivative is taken from it, as tfjs's fused matMul does.)
 */
static napi_value ActGrad(napi_env env, napi_callback_info info) {
  char *heap;
  size_t heap_len;
  double a[5];
  if (!read_args(env, info, 6, &heap, &heap_len, a)) return NULL;
  const double n = a[0];
  const int act = (int)a[1];
  if (!in_heap(env, heap_len, a[2], n, "actGrad dy") || !in_heap(env, heap_len, a[3], n, "actGrad y") || !in_heap(env, heap_len, a[4], n, "actGrad output"))
    return NULL;
  const float *dy = (const float *)(heap + (size_t)a[2]);
  const float *y = (const float *)(heap + (size_t)a[3]);
  float *out = (float *)(heap + (size_t)a[4]);
  const size_t count = (size_t)n;
  switch (act) {
    case ACT_RELU:
      for (size_t i = 0; i < count; i++) out[i] = y[i] > 0.0f ? dy[i] : 0.0f;
      break;
    case ACT_RELU6:
      for (size_t i = 0; i < count; i++) out[i] = (y[i] > 0.0f && y[i] < 6.0f) ? dy[i] : 0.0f;
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

/* A row's maximum and its sum of exp(z - max): softmax(z)_j = exp(z_j - max) / sum, logsumexp = log(sum) + max. */
static double exp_sum(const float *row, size_t cols, float *mx_out) {
  float mx = row[0];
  for (size_t j = 1; j < cols; j++) mx = row[j] > mx ? row[j] : mx;
  double se = 0;
  for (size_t j = 0; j < cols; j++) se += exp((double)row[j] - mx);
  *mx_out = mx;
  return se;
}

/* Reads label i as a class id; -1 when it is not an integer in [0, classes). */
static long class_id(const char *labels, int is_float, size_t i, int classes) {
  double v = is_float ? (double)((const float *)labels)[i] : (double)((const int32_t *)labels)[i];
  if (!(v >= 0 && v < classes) || v != floor(v)) return -1;
  return (long)v;
}

/* Loss kinds of lossForward / lossBackward. */
enum { LOSS_SOFTMAX_CE = 0, LOSS_MSE = 1, LOSS_SIGMOID_CE = 2, LOSS_SOFTMAX_CE_ROWS = 3 };

/*
 * lossForward(heap, kind, n, cols, predOff, labelOff, labelIsFloat, outOff, mean): per-row losses
 * (outOff holds n floats), or their mean over rows (one float) when mean != 0.
 *   softmax CE: predictions are [n, cols] logits, labels n class ids (int32, or integral float32);
 *               row loss = logsumexp(z) - z[label].
 *   MSE:        row loss = mean_j (p - y)^2 over [n, cols].
 *   sigmoid CE: row loss = mean_j max(x,0) - x z + log1p(exp(-|x|)) over [n, cols] logits x, labels z.
 *   softmax CE on label rows (one-hot or probabilities t, [n, cols]): row loss = sum_j t_j (logsumexp(z) - z_j).
 * Sums run in double, so a long row or batch loses nothing to float32 accumulation.
 * Returns -1, or the row of the first class id that is not an integer in [0, cols) (softmax CE).
 */
static napi_value LossForward(napi_env env, napi_callback_info info) {
  char *heap;
  size_t heap_len;
  double a[8];
  if (!read_args(env, info, 9, &heap, &heap_len, a)) return NULL;
  const int kind = (int)a[0];
  const size_t n = (size_t)a[1], cols = (size_t)a[2];
  const int label_float = a[5] != 0, mean = a[7] != 0;
  const double label_count = kind == LOSS_SOFTMAX_CE ? a[1] : a[1] * a[2];
  if (!in_heap(env, heap_len, a[3], a[1] * a[2], "loss predictions") || !in_heap(env, heap_len, a[4], label_count, "loss labels") ||
      !in_heap(env, heap_len, a[6], mean ? 1 : a[1], "loss output"))
    return NULL;
  const float *p = (const float *)(heap + (size_t)a[3]);
  const char *labels = heap + (size_t)a[4];
  float *out = (float *)(heap + (size_t)a[6]);
  napi_value result;
  double total = 0;
  for (size_t i = 0; i < n; i++) {
    const float *row = p + i * cols;
    double loss = 0;
    if (kind == LOSS_SOFTMAX_CE) {
      const long c = class_id(labels, label_float, i, (int)cols);
      if (c < 0) {
        CHECK(napi_create_double(env, (double)i, &result));
        return result;
      }
      float mx;
      const double se = exp_sum(row, cols, &mx);
      loss = log(se) + mx - row[c];
    } else if (kind == LOSS_SOFTMAX_CE_ROWS) {
      const float *t = (const float *)labels + i * cols;
      float mx;
      const double se = exp_sum(row, cols, &mx);
      const double lse = log(se) + mx;
      for (size_t j = 0; j < cols; j++) loss += (double)t[j] * (lse - row[j]);
    } else if (kind == LOSS_MSE) {
      const float *y = (const float *)labels + i * cols;
      for (size_t j = 0; j < cols; j++) {
        const double d = (double)row[j] - y[j];
        loss += d * d;
      }
      loss /= (double)cols;
    } else {
      const float *z = (const float *)labels + i * cols;
      for (size_t j = 0; j < cols; j++) {
        const double x = row[j];
        loss += (x > 0 ? x : 0) - x * z[j] + log1p(exp(-fabs(x)));
      }
      loss /= (double)cols;
    }
    if (mean) total += loss;
    else out[i] = (float)loss;
  }
  if (mean) out[0] = n > 0 ? (float)(total / (double)n) : 0.0f;
  CHECK(napi_create_double(env, -1, &result));
  return result;
}

/*
 * lossBackward(heap, kind, n, cols, predOff, labelOff, labelIsFloat, dyOff, dyIsScalar, outOff, wrtLabels):
 * the gradient of lossForward with respect to the predictions (or, for MSE and sigmoid CE, the labels
 * when wrtLabels != 0), given dy per row (or one dy for the mean, dyIsScalar != 0, already divided
 * by nothing: the 1/n of the mean is applied here).
 *   softmax CE: dy_i (softmax(z_i) - onehot_i);  on label rows: dy_i (softmax(z_i) sum(t_i) - t_i)
 *   (labels: dy_i (logsumexp(z_i) - z_i));  MSE: dy_i 2 (p - y) / cols (labels: the negative);
 *   sigmoid CE: dy_i (sigmoid(x) - z) / cols (labels: -dy_i x / cols).
 */
static napi_value LossBackward(napi_env env, napi_callback_info info) {
  char *heap;
  size_t heap_len;
  double a[10];
  if (!read_args(env, info, 11, &heap, &heap_len, a)) return NULL;
  const int kind = (int)a[0];
  const size_t n = (size_t)a[1], cols = (size_t)a[2];
  const int label_float = a[5] != 0, dy_scalar = a[7] != 0, wrt_labels = a[9] != 0;
  const double label_count = kind == LOSS_SOFTMAX_CE ? a[1] : a[1] * a[2];
  if (!in_heap(env, heap_len, a[3], a[1] * a[2], "loss predictions") || !in_heap(env, heap_len, a[4], label_count, "loss labels") ||
      !in_heap(env, heap_len, a[6], dy_scalar ? 1 : a[1], "loss dy") || !in_heap(env, heap_len, a[8], a[1] * a[2], "loss gradient"))
    return NULL;
  const float *p = (const float *)(heap + (size_t)a[3]);
  const char *labels = heap + (size_t)a[4];
  const float *dy = (const float *)(heap + (size_t)a[6]);
  float *out = (float *)(heap + (size_t)a[8]);
  const double inv_n = n > 0 ? 1.0 / (double)n : 0.0;
  for (size_t i = 0; i < n; i++) {
    const float *row = p + i * cols;
    float *g = out + i * cols;
    const double d = dy_scalar ? dy[0] * inv_n : dy[i];
    if (kind == LOSS_SOFTMAX_CE) {
      const long c = class_id(labels, label_float, i, (int)cols);
      float mx;
      const double se = exp_sum(row, cols, &mx);
      for (size_t j = 0; j < cols; j++) g[j] = (float)(d * (exp((double)row[j] - mx) / se - ((long)j == c ? 1.0 : 0.0)));
    } else if (kind == LOSS_SOFTMAX_CE_ROWS) {
      const float *t = (const float *)labels + i * cols;
      float mx;
      const double se = exp_sum(row, cols, &mx);
      double tsum = 0;
      for (size_t j = 0; j < cols; j++) tsum += t[j];
      const double lse = log(se) + mx;
      for (size_t j = 0; j < cols; j++)
        g[j] = (float)(wrt_labels ? d * (lse - row[j]) : d * (exp((double)row[j] - mx) / se * tsum - t[j]));
    } else if (kind == LOSS_MSE) {
      const float *y = (const float *)labels + i * cols;
      const double s = (wrt_labels ? -2.0 : 2.0) * d / (double)cols;
      for (size_t j = 0; j < cols; j++) g[j] = (float)(s * ((double)row[j] - y[j]));
    } else {
      const float *z = (const float *)labels + i * cols;
      const double s = d / (double)cols;
      for (size_t j = 0; j < cols; j++) {
        const double x = row[j];
        g[j] = (float)(wrt_labels ? -s * x : s * (1.0 / (1.0 + exp(-x)) - z[j]));
      }
    }
  }
  return NULL;
}

/* setThreads(n): BLAS threads for later products. */
static napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t n = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1 || napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1) {
    napi_throw_range_error(env, NULL, "jointly-native: setThreads needs an integer >= 1");
    return NULL;
  }
  openblas_set_num_threads(n);
  return NULL;
}

/* info(): { threads, blasConfig } */
static napi_value Info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, threads, cfg;
  CHECK(napi_create_object(env, &obj));
  CHECK(napi_create_int32(env, openblas_get_num_threads(), &threads));
  CHECK(napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &cfg));
  CHECK(napi_set_named_property(env, obj, "threads", threads));
  CHECK(napi_set_named_property(env, obj, "blasConfig", cfg));
  return obj;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"gemm", NULL, Gemm, NULL, NULL, NULL, napi_default, NULL},
      {"adam", NULL, Adam, NULL, NULL, NULL, napi_default, NULL},
      {"sgd", NULL, Sgd, NULL, NULL, NULL, napi_default, NULL},
      {"sumRows", NULL, SumRows, NULL, NULL, NULL, napi_default, NULL},
      {"gatherRows", NULL, GatherRows, NULL, NULL, NULL, napi_default, NULL},
      {"copy2d", NULL, Copy2d, NULL, NULL, NULL, napi_default, NULL},
      {"actGrad", NULL, ActGrad, NULL, NULL, NULL, napi_default, NULL},
      {"lossForward", NULL, LossForward, NULL, NULL, NULL, napi_default, NULL},
      {"lossBackward", NULL, LossBackward, NULL, NULL, NULL, napi_default, NULL},
      {"conv2d", NULL, Conv2d, NULL, NULL, NULL, napi_default, NULL},
      {"conv2dBackpropInput", NULL, Conv2dBackpropInput, NULL, NULL, NULL, napi_default, NULL},
      {"conv2dBackpropFilter", NULL, Conv2dBackpropFilter, NULL, NULL, NULL, napi_default, NULL},
      {"depthwiseConv2d", NULL, DepthwiseConv2d, NULL, NULL, NULL, napi_default, NULL},
      {"depthwiseConv2dBackpropInput", NULL, DepthwiseConv2dBackpropInput, NULL, NULL, NULL, napi_default, NULL},
      {"depthwiseConv2dBackpropFilter", NULL, DepthwiseConv2dBackpropFilter, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, SetThreads, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, Info, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
