/* Learned depthwise kernels at the active cells, gathered and multiplied in one pass (ncacli.engine.native).

   rows    (R, C)  the state, one row per cell (a zero row may follow the grid's cells)
   flat    (N, T)  each active cell's neighbour at each tap, as a row of `rows`
   kernels (T, K, C)  K kernels per channel, per tap
   out     (N, C*K)   out[n, c*K + k] = sum_t kernels[t, k, c] * rows[flat[n, t], c]

   The backward pass adds each cell's gradient into the rows of its neighbours. `bounds` splits the cells into
   parts whose neighbours' rows are disjoint (one per sample: a sample's taps stay in its own grid or point at
   the zero row, whose gradient is not written): each part belongs to one thread, so no two threads add into the
   same row. The kernels' gradient is summed per thread, then over threads in their order: the same result for
   the same thread count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_CK 1024

int taps_limit(void) { return MAX_CK; }

void taps_forward(const float *rows, const int64_t *flat, const float *kernels, float *out, int64_t n, int T,
                  int C, int K, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float acc[MAX_CK];
        memset(acc, 0, sizeof(float) * K * C);
        for (int t = 0; t < T; t++) {
            const float *r = rows + flat[i * T + t] * C;
            const float *kt = kernels + (int64_t)t * K * C;
            for (int k = 0; k < K; k++) {
                float *a = acc + k * C;
                const float *kk = kt + k * C;
#pragma omp simd
                for (int c = 0; c < C; c++) a[c] += kk[c] * r[c];
            }
        }
        float *o = out + i * C * K;
        for (int c = 0; c < C; c++)
            for (int k = 0; k < K; k++) o[c * K + k] = acc[k * C + c];
    }
}

/* grad_rows[flat[n, t], c] += sum_k kernels[t, k, c] * grad[n, c*K + k]   (when grad_rows is not NULL)
   grad_kernels[t, k, c]    += sum_n rows[flat[n, t], c] * grad[n, c*K + k] (when grad_kernels is not NULL)
   skip: a row never written (the zero row), or -1. */
int taps_backward(const float *rows, const int64_t *flat, const float *kernels, const float *grad, float *grad_rows,
                  float *grad_kernels, const int64_t *bounds, int parts, int T, int C, int K, int64_t skip,
                  int threads) {
    int64_t size = (int64_t)T * K * C;
    float *partial = NULL;
    if (grad_kernels) {
        partial = calloc((size_t)size * threads, sizeof(float));
        if (!partial) return 1;
    }
#pragma omp parallel num_threads(threads)
    {
        int me = 0;
#ifdef _OPENMP
        me = omp_get_thread_num();
#endif
        float *gk_all = partial ? partial + (int64_t)me * size : NULL;
        float g[MAX_CK];
#pragma omp for schedule(static)
        for (int p = 0; p < parts; p++) {
            for (int64_t i = bounds[p]; i < bounds[p + 1]; i++) {
                const float *gi = grad + i * C * K;
                for (int c = 0; c < C; c++)
                    for (int k = 0; k < K; k++) g[k * C + c] = gi[c * K + k];
                for (int t = 0; t < T; t++) {
                    int64_t f = flat[i * T + t];
                    const float *r = rows + f * C;
                    const float *kt = kernels + (int64_t)t * K * C;
                    if (gk_all) {
                        float *gkt = gk_all + (int64_t)t * K * C;
                        for (int k = 0; k < K; k++) {
                            const float *gk = g + k * C;
                            float *out = gkt + k * C;
#pragma omp simd
                            for (int c = 0; c < C; c++) out[c] += r[c] * gk[c];
                        }
                    }
                    if (grad_rows && f != skip) {
                        float *gr = grad_rows + f * C;
                        for (int k = 0; k < K; k++) {
                            const float *gk = g + k * C;
                            const float *kk = kt + k * C;
#pragma omp simd
                            for (int c = 0; c < C; c++) gr[c] += kk[c] * gk[c];
                        }
                    }
                }
            }
        }
    }
    if (partial) {
        for (int th = 0; th < threads; th++)
            for (int64_t j = 0; j < size; j++) grad_kernels[j] += partial[(int64_t)th * size + j];
        free(partial);
    }
    return 0;
}
