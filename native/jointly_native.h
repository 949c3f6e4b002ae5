/*
 * What the C files of jointly's native addon share: the BLAS entry points, the N-API argument
 * helpers (jointly_native.c: reading the heap and numbers, checking that a range lies inside the
 * heap), the fused activation codes, one matrix product, and the N-API functions each kernel
 * family's file exports to the module's table (jointly_native.c's Init).
 *
 * Every N-API function takes the wasm heap (the WebAssembly.Memory's ArrayBuffer, fetched by the
 * caller on each call because it is replaced when the heap grows) and byte offsets into it.
 */
#ifndef JOINTLY_NATIVE_H
#define JOINTLY_NATIVE_H

#include <stddef.h>
#include <node_api.h>

/*
 * The BLAS entry points used, declared here rather than through cblas.h, whose location differs
 * between distributions (Debian: /usr/include/x86_64-linux-gnu/cblas.h). Linked with -lopenblas.
 */
enum { CblasRowMajor = 101 };
enum { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc);
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_config(void);

#define CHECK(call)                                                           \
  do {                                                                        \
    if ((call) != napi_ok) {                                                  \
      napi_throw_error(env, NULL, "jointly-native: N-API call failed: " #call); \
      return NULL;                                                            \
    }                                                                         \
  } while (0)

#define MAX_ARGS 24

/* Reads the heap (argument 0) and numeric arguments 1..want-1 into nums; 0 (with a JS error thrown) on failure. */
int read_args(napi_env env, napi_callback_info info, size_t want, char **heap, size_t *heap_len, double *nums);

/* True when [off, off + count floats) lies inside the heap; else throws a RangeError naming `what`. */
int in_heap(napi_env env, size_t heap_len, double off, double count, const char *what);

/* A kernel call's arguments: the wasm heap (argument 0) and the numbers after it (a[i] is argument i + 1). */
typedef struct {
  char *heap;
  size_t heap_len;
  double a[MAX_ARGS - 1];
} call_args;

/* read_args into c; 0 (with a JS error thrown) on failure. */
int read_call(napi_env env, napi_callback_info info, size_t want, call_args *c);

/* One range a kernel reads or writes: its byte offset, its length in floats, and its role in errors ("input", "dy"). */
typedef struct {
  double off, count;
  const char *role;
} heap_span;

/* in_heap for each span in order, named "<kernel> <role>"; 0 at the first one outside the heap (its RangeError thrown). */
int spans_in_heap(napi_env env, const call_args *c, const char *kernel, size_t n, const heap_span *spans);

/* The floats at byte offset `off` of the heap (an offset spans_in_heap or in_heap accepted). */
static inline float *heap_floats(const call_args *c, double off) { return (float *)(c->heap + (size_t)off); }

/* Activation codes: the wasm backend's FusableActivation numbering. */
enum { ACT_LINEAR = 0, ACT_RELU = 1, ACT_RELU6 = 2, ACT_LEAKYRELU = 4, ACT_SIGMOID = 5, ACT_ELU = 6 };

/* activation.c: c[i] = act(c[i]) for i < n (alpha: leakyrelu's slope). */
void activate(float *c, size_t n, int act, float alpha);
napi_value ActGrad(napi_env env, napi_callback_info info);

/*
 * gemm.c: C[M,N] = op(A) op(B) + beta C, row-major with packed rows (lda = K or M, ldb = N or K,
 * ldc = N): the narrow loops for a side of at most 4, else sgemm. K must be > 0.
 */
void sgemm_rows(int transA, int transB, int M, int N, int K, const float *A, const float *B, float beta, float *C);
napi_value Gemm(napi_env env, napi_callback_info info);

/* optimizers.c: Adam and SGD updates. */
napi_value Adam(napi_env env, napi_callback_info info);
napi_value Sgd(napi_env env, napi_callback_info info);

/* copies.c: column sums, row gathers, block copies. */
napi_value SumRows(napi_env env, napi_callback_info info);
napi_value GatherRows(napi_env env, napi_callback_info info);
napi_value Copy2d(napi_env env, napi_callback_info info);

/* losses.c: the fused losses and their gradients. */
napi_value LossForward(napi_env env, napi_callback_info info);
napi_value LossBackward(napi_env env, napi_callback_info info);

/* conv.c: Conv2D forward and both backprops (im2col + sgemm), depthwise forward and backprops (loops). */
napi_value Conv2d(napi_env env, napi_callback_info info);
napi_value Conv2dBackpropInput(napi_env env, napi_callback_info info);
napi_value Conv2dBackpropFilter(napi_env env, napi_callback_info info);
napi_value DepthwiseConv2d(napi_env env, napi_callback_info info);
napi_value DepthwiseConv2dBackpropInput(napi_env env, napi_callback_info info);
napi_value DepthwiseConv2dBackpropFilter(napi_env env, napi_callback_info info);

/* pool.c: max pooling and its gradient, 2-D or 3-D (NHWC / NDHWC). */
napi_value MaxPool(napi_env env, napi_callback_info info);
napi_value MaxPoolGrad(napi_env env, napi_callback_info info);

/* elementwise.c: float32 binary ops with broadcasting, batch normalisation's forward pass. */
napi_value Binary(napi_env env, napi_callback_info info);
napi_value BatchNorm(napi_env env, napi_callback_info info);

#endif
