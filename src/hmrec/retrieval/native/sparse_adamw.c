/* Lazy row AdamW (hmrec.retrieval.sparse_adam) for the distinct rows of one batch.
 *
 * Why C: in PyTorch the step is a gather of the rows' weights and optimiser state, a
 * dozen small element-wise ops and two index_copy_ scatters back into tables of
 * millions of rows; the scatters alone cost more than the arithmetic. Here each row is
 * read, updated and written in one visit while its cache lines are loaded.
 *
 * The batch's rows are grouped by table row: batch rows order[starts[u] .. starts[u + 1])
 * all hold table row ids[u]; their gradients are summed here, in that order.
 * Per distinct row r = ids[u] (DIM = the embedding size, given at compile time):
 *   weight [N][DIM], state [N][2 * DIM + 1] = [exp_avg | exp_avg_sq | last_step]
 *   w = (src_rows ? src_rows[order[starts[u]]] : weight[r]) * decay ^ (t - last_step)
 *   m = beta1 m + (1 - beta1) g ;  v = beta2 v + (1 - beta2) g^2
 *   w -= step_size * m / (sqrt(v / bias2) + eps) ;  last_step = t
 * with g = the summed gradient rows, step_size = lr / bias1. Same operation order as the PyTorch path.
 */
#include <math.h>
#include <stdint.h>

#ifndef DIM
#error "compile with -DDIM=<embedding size>"
#endif
#define PREFETCH 8

void hmrec_lazy_adamw_rows(
    int64_t n, const int64_t *ids, const int64_t *order, const int64_t *starts, const float *grad_rows,
    const float *src_rows, float *weight, float *state, float t, float decay, float beta1, float beta2, float eps, float bias2,
    float step_size)
{
    const int64_t sw = 2 * DIM + 1;
    for (int64_t u = 0; u < n; u++) {
        if (u + PREFETCH < n) { /* rows are random in tables of millions: ask for them early */
            const int64_t p = ids[u + PREFETCH];
            __builtin_prefetch(weight + p * DIM, 1);
            for (int64_t b = 0; b < sw * (int64_t)sizeof(float); b += 64) __builtin_prefetch((const char *)(state + p * sw) + b, 1);
        }
        const int64_t r = ids[u];
        float *w = weight + r * DIM;
        float *st = state + r * sw;
        const float *src = src_rows ? src_rows + order[starts[u]] * DIM : w;
        float g[DIM];
        for (int k = 0; k < DIM; k++) g[k] = grad_rows[order[starts[u]] * DIM + k];
        for (int64_t e = starts[u] + 1; e < starts[u + 1]; e++)
            for (int k = 0; k < DIM; k++) g[k] += grad_rows[order[e] * DIM + k];
        float f = decay == 1.0f ? 1.0f : powf(decay, t - st[2 * DIM]);
        float *m = st, *v = st + DIM;
        for (int k = 0; k < DIM; k++) {
            float wk = src[k] * f;
            float mk = m[k] * beta1 + g[k] * (1.0f - beta1);
            float vk = v[k] * beta2 + (g[k] * g[k]) * (1.0f - beta2);
            float denom = sqrtf(vk / bias2) + eps;
            m[k] = mk;
            v[k] = vk;
            w[k] = wk - step_size * (mk / denom);
        }
        st[2 * DIM] = t;
    }
}
