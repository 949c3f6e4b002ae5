/*
 * jointly's native CPU kernels for the TensorFlow.js wasm backend: the shared N-API glue (reading
 * arguments, checking that ranges lie inside the wasm heap), the BLAS thread switch, and the
 * module's export table. The kernels live one family a file (gemm.c, activation.c, optimizers.c,
 * copies.c, losses.c, conv.c, pool.c, elementwise.c), declared in jointly_native.h.
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

int read_call(napi_env env, napi_callback_info info, size_t want, call_args *c) { return read_args(env, info, want, &c->heap, &c->heap_len, c->a); }

int spans_in_heap(napi_env env, const call_args *c, const char *kernel, size_t n, const heap_span *spans) {
  for (size_t i = 0; i < n; i++) {
    char what[96];
    snprintf(what, sizeof what, "%s %s", kernel, spans[i].role);
    if (!in_heap(env, c->heap_len, spans[i].off, spans[i].count, what)) return 0;
  }
  return 1;
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
      {"maxPool", NULL, MaxPool, NULL, NULL, NULL, napi_default, NULL},
      {"maxPoolGrad", NULL, MaxPoolGrad, NULL, NULL, NULL, napi_default, NULL},
      {"binary", NULL, Binary, NULL, NULL, NULL, napi_default, NULL},
      {"batchNorm", NULL, BatchNorm, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, SetThreads, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, Info, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
