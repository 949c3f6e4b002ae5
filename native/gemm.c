/*
 * Matrix products: sgemm through OpenBLAS, and memory-bound loops for the narrow products sgemm
 * runs slowly (a head's 1-4 outputs, its weight gradient, the gradient into its input).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jointly_native.h"

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
napi_value Gemm(napi_env env, napi_callback_info info) {
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
