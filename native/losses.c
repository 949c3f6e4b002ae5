/* The fused losses: softmax cross-entropy (class ids or label rows), MSE, sigmoid cross-entropy, forward and gradient. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jointly_native.h"

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
napi_value LossForward(napi_env env, napi_callback_info info) {
  call_args call;
  if (!read_call(env, info, 9, &call)) return NULL;
  const double *a = call.a;
  const int kind = (int)a[0];
  const size_t n = (size_t)a[1], cols = (size_t)a[2];
  const int label_float = a[5] != 0, mean = a[7] != 0;
  const double label_count = kind == LOSS_SOFTMAX_CE ? a[1] : a[1] * a[2];
  const heap_span spans[3] = {{a[3], a[1] * a[2], "predictions"}, {a[4], label_count, "labels"}, {a[6], mean ? 1 : a[1], "output"}};
  if (!spans_in_heap(env, &call, "loss", 3, spans)) return NULL;
  const float *p = heap_floats(&call, a[3]);
  const char *labels = call.heap + (size_t)a[4];
  float *out = heap_floats(&call, a[6]);
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
napi_value LossBackward(napi_env env, napi_callback_info info) {
  call_args call;
  if (!read_call(env, info, 11, &call)) return NULL;
  const double *a = call.a;
  const int kind = (int)a[0];
  const size_t n = (size_t)a[1], cols = (size_t)a[2];
  const int label_float = a[5] != 0, dy_scalar = a[7] != 0, wrt_labels = a[9] != 0;
  const double label_count = kind == LOSS_SOFTMAX_CE ? a[1] : a[1] * a[2];
  const heap_span spans[4] = {
      {a[3], a[1] * a[2], "predictions"}, {a[4], label_count, "labels"}, {a[6], dy_scalar ? 1 : a[1], "dy"}, {a[8], a[1] * a[2], "gradient"}};
  if (!spans_in_heap(env, &call, "loss", 4, spans)) return NULL;
  const float *p = heap_floats(&call, a[3]);
  const char *labels = call.heap + (size_t)a[4];
  const float *dy = heap_floats(&call, a[6]);
  float *out = heap_floats(&call, a[8]);
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
