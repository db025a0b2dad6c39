/* In-batch sampled softmax: loss and gradients in one pass, fp32, for a range of rows.
 *
 * Why C: on a CPU the PyTorch version spends most of a training step streaming the
 * B x B logits through memory and running three small-K matrix products (K = the
 * embedding size, 16) that BLAS does not tile well. Here a block of RB query rows
 * computes its RB x B logits into a buffer that stays in the L1/L2 cache, applies
 * -log q, the accidental hits, max, exp and the row sums on it, and immediately uses
 * it for both gradients (dQ = G @ I and dI += G^T @ Q); nothing B x B ever reaches
 * memory. Vectors are GCC/Clang vector extensions (16 floats), so the same source
 * compiles to AVX-512, AVX2 or NEON.
 *
 * Compiled at first use by hmrec.retrieval.native_loss with -DDIM=<padded embedding
 * size, a multiple of 16>. Layouts (all float32, row-major, zero-padded by the caller):
 *   q       [BP][DIM]   query embeddings (BP = B rounded up to 32; padding rows are 0)
 *   item    [BP][DIM]   item embeddings
 *   item_tiles [BP/16][DIM][16]  item embeddings, transposed in tiles of 16 columns
 *           (contiguous, so the logits pass reads them without cache-set conflicts)
 *   bias    [BP]        added to every logit of column j: -log q_j, 0, or -inf for padding
 *   keys    [BP]        int32 item identity per column, or NULL: column j != r is an
 *                       accidental hit of row r (logit -inf) when keys[j] == keys[r]
 *   has_hit [BP]        uint8, 1 where the row's key occurs in another column (only
 *                       those rows are searched for hits); used only with keys
 * Outputs for rows [row_start, row_stop) (multiples of RB):
 *   dq      [BP][DIM]   rows of this range: scale * (sum_j p_rj i_j - i_r)
 *   di      [BP][DIM]   this range's part of d_item (overwritten): scale * sum_r (p_rj - [j = r]) q_r
 *   return  sum over the range's rows r < B of (log z_r + max_r - logit_rr)
 * work: RB * (BP + 16) floats of scratch.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef DIM
#error "compile with -DDIM=<multiple of 16>"
#endif
#define VW 16
#define DV (DIM / VW)
#define RB 8
#define JB 4 /* divides VW, so BP is a multiple of it */

typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VW * sizeof(int32_t))));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vsplat(float x) { return (vf){0} + x; }

static inline float hsum(vf v) {
    float s = 0.0f;
    for (int k = 0; k < VW; k++) s += v[k];
    return s;
}

static inline float hmax(vf v) {
    float m = v[0];
    for (int k = 1; k < VW; k++) m = v[k] > m ? v[k] : m;
    return m;
}

/* exp(x) for x <= 0: 0 for x = -inf, else a degree-6 polynomial after range reduction,
 * relative error below 2e-7. With AVX-512 the power of two is one vscalefps (which also
 * underflows cleanly); elsewhere it is built in the exponent bits, exact 0 below -87. */
static inline vf vexp_poly(vf r) {
    vf p = vsplat(1.0f / 720.0f);
    p = p * r + vsplat(1.0f / 120.0f);
    p = p * r + vsplat(1.0f / 24.0f);
    p = p * r + vsplat(1.0f / 6.0f);
    p = p * r + vsplat(0.5f);
    p = p * r + vsplat(1.0f);
    return p * r + vsplat(1.0f);
}

#if defined(__AVX512F__) && VW == 16
#include <immintrin.h>
static inline vf vexp_nonpos(vf x) {
    __m512 xx = _mm512_max_ps((__m512)x, _mm512_set1_ps(-104.0f)); /* -inf -> 2^-150: 0 */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xx, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vf r = (vf)_mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xx);
    r = (vf)_mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), (__m512)r);
    return (vf)_mm512_scalef_ps((__m512)vexp_poly(r), n);
}
#else
static inline vf vexp_nonpos(vf x) {
    const vf lo = vsplat(-87.0f);
    vi keep = x >= lo;
    x = (vf)(((vi)x & keep) | ((vi)lo & ~keep));
    const vf magic = vsplat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    vf n = (x * vsplat(1.44269504088896341f) + magic) - magic;
    vf r = x - n * vsplat(0.693359375f) - n * vsplat(-2.12194440e-4f);
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return (vf)((vi)(vexp_poly(r) * (vf)e) & keep);
}
#endif

/* Step 2 for a block of RB rows: accidental hits -> -inf, max, E = exp(L - max) in place
 * (padding rows: E = 0), the row sums z; qv[r] = q_r * scale / z_r and zs[r] = scale / z_r
 * (the 1/z of P = E / z goes there). Returns the block's sum of log z + max - positive. */
static double rows_softmax(int64_t b, int64_t bp, const float *q, const int32_t *keys, const uint8_t *has_hit,
                           int64_t r0, float scale, const vf *mv, float *work, vf qv[RB][DV], float *zs)
{
    const int64_t nv = bp / VW;
    const int64_t ws = bp + VW;
    double loss = 0.0;
    for (int r = 0; r < RB; r++) {
        int64_t row = r0 + r;
        float *l = work + r * ws;
        if (row >= b) { /* padding row: no loss, no gradient */
            memset(l, 0, sizeof(float) * (size_t)bp);
            for (int d = 0; d < DV; d++) qv[r][d] = vsplat(0.0f);
            zs[r] = 0.0f;
            continue;
        }
        float positive = l[row];
        float m = hmax(mv[r]);
        if (keys && has_hit[row]) {
            /* accidental hits -> -inf (every other column with this row's key), and the
             * max again without them */
            const vi key = (vi){0} + keys[row];
            const vf ninf = vsplat(-INFINITY);
            vf hv = ninf;
            for (int64_t jv = 0; jv < nv; jv++) {
                vi kj;
                memcpy(&kj, keys + jv * VW, sizeof kj);
                vi hit = kj == key;
                vf v = (vf)(((vi)vload(l + jv * VW) & ~hit) | ((vi)ninf & hit));
                vstore(l + jv * VW, v);
                vi gt = v > hv;
                hv = (vf)(((vi)v & gt) | ((vi)hv & ~gt));
            }
            l[row] = positive; /* its own key: restore it */
            m = hmax(hv);
            m = positive > m ? positive : m;
        }
        vf zv = vsplat(0.0f);
        vf mm = vsplat(m);
        for (int64_t jv = 0; jv < nv; jv++) {
            vf e = vexp_nonpos(vload(l + jv * VW) - mm);
            vstore(l + jv * VW, e);
            zv += e;
        }
        float z = hsum(zv);
        loss += (double)logf(z) + (double)m - (double)positive;
        float w = scale / z;
        zs[r] = w;
        for (int d = 0; d < DV; d++) qv[r][d] = vload(q + row * DIM + d * VW) * w;
    }
    return loss;
}

/* The onehot part of G (row r's positive is column r), and dq_r = scale/z_r * acc_r - scale i_r. */
static void rows_finish(int64_t b, const float *q, const float *item, int64_t r0, float scale,
                        vf acc[RB][DV], const float *zs, float *dq, float *di)
{
    for (int r = 0; r < RB; r++) {
        int64_t row = r0 + r;
        if (row >= b) {
            for (int d = 0; d < DV; d++) vstore(dq + row * DIM + d * VW, vsplat(0.0f));
            continue;
        }
        for (int d = 0; d < DV; d++) {
            vf ir = vload(item + row * DIM + d * VW);
            vf qr = vload(q + row * DIM + d * VW);
            vstore(dq + row * DIM + d * VW, acc[r][d] * zs[r] - ir * scale);
            vstore(di + row * DIM + d * VW, vload(di + row * DIM + d * VW) - qr * scale);
        }
    }
}

double hmrec_softmax_loss_rows(
    int64_t b, int64_t bp, const float *q, const float *item, const float *item_tiles, const float *bias,
    const int32_t *keys, const uint8_t *has_hit, int64_t row_start, int64_t row_stop, float scale,
    float *dq, float *di, float *work)
{
    const int64_t nv = bp / VW;
    const int64_t ws = bp + VW; /* row stride of the scratch: not a multiple of 4 KB */
    double loss = 0.0;
    memset(di, 0, sizeof(float) * (size_t)bp * DIM);
    for (int64_t r0 = row_start; r0 < row_stop; r0 += RB) {
        /* 1. logits of RB rows, L[r][j] = bias_j + q_r . i_j, and each row's max */
        vf mv[RB];
        for (int r = 0; r < RB; r++) mv[r] = vsplat(-INFINITY);
        for (int64_t jv = 0; jv < nv; jv += 2) { /* two column tiles: 2 loads feed 2 * RB FMAs */
            const float *t0 = item_tiles + jv * DIM * VW, *t1 = t0 + DIM * VW;
            vf a0[RB], a1[RB];
            vf b0 = vload(bias + jv * VW), b1 = vload(bias + jv * VW + VW);
            for (int r = 0; r < RB; r++) { a0[r] = b0; a1[r] = b1; }
            for (int k = 0; k < DIM; k++) {
                vf c0 = vload(t0 + k * VW), c1 = vload(t1 + k * VW);
                for (int r = 0; r < RB; r++) {
                    float x = q[(r0 + r) * DIM + k];
                    a0[r] += x * c0;
                    a1[r] += x * c1;
                }
            }
            for (int r = 0; r < RB; r++) {
                vstore(work + r * ws + jv * VW, a0[r]);
                vstore(work + r * ws + jv * VW + VW, a1[r]);
                vi g01 = a0[r] > a1[r];
                vf hi = (vf)(((vi)a0[r] & g01) | ((vi)a1[r] & ~g01));
                vi gt = hi > mv[r];
                mv[r] = (vf)(((vi)hi & gt) | ((vi)mv[r] & ~gt));
            }
        }
        /* 2. per row: hits, max, E = exp(L - max) in place, z = sum E */
        vf qv[RB][DV];
        float zs[RB];
        loss += rows_softmax(b, bp, q, keys, has_hit, r0, scale, mv, work, qv, zs);
        /* 3. dq_r = sum_j G[r][j] i_j ; di_j += sum_r G[r][j] q_r, JB columns at a time
         * (the JB d_item chains are independent, so the RB-long chain of additions into
         * each one does not stall the FMA units) */
        vf acc[RB][DV];
        for (int r = 0; r < RB; r++)
            for (int d = 0; d < DV; d++) acc[r][d] = vsplat(0.0f);
        for (int64_t j = 0; j < bp; j += JB) {
            vf iv[JB][DV], dv[JB][DV];
            for (int c = 0; c < JB; c++)
                for (int d = 0; d < DV; d++) {
                    iv[c][d] = vload(item + (j + c) * DIM + d * VW);
                    dv[c][d] = vload(di + (j + c) * DIM + d * VW);
                }
            for (int r = 0; r < RB; r++) {
                const float *e = work + r * ws + j;
                for (int c = 0; c < JB; c++)
                    for (int d = 0; d < DV; d++) {
                        acc[r][d] += e[c] * iv[c][d];
                        dv[c][d] += e[c] * qv[r][d];
                    }
            }
            for (int c = 0; c < JB; c++)
                for (int d = 0; d < DV; d++) vstore(di + (j + c) * DIM + d * VW, dv[c][d]);
        }
        rows_finish(b, q, item, r0, scale, acc, zs, dq, di);
    }
    return loss;
}
