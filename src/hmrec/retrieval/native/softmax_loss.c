/* In-batch sampled softmax: loss and gradients in one pass, fp32, for a range of rows.
 *
 * Why C: on a CPU the PyTorch version spends most of a training step streaming the
 * B x B logits through memory and running three small-K matrix products (K = the
 * embedding size, 16) that BLAS does not tile well. Here a block of RB query rows
 * computes its RB x B logits into a buffer that stays in the L1/L2 cache, applies
 * -log q, the accidental hits, max, exp and the row sums on it, and immediately uses
 * it for both gradients (dQ = G @ I and dI += G^T @ Q); nothing B x B ever reaches
 * memory.
 *
 * Vectors are GCC/Clang vector extensions whose width VW is the target's native one:
 * 16 floats with AVX-512, 8 with AVX2, 4 otherwise (SSE, NEON). A vector type wider than
 * the hardware's is split by the compiler into pieces, needs twice the registers (the
 * register blocks below then spill to the stack) and some of its operations (compares,
 * selects) become scalar code, so the register blocks are sized per width too.
 *
 * The result does not depend on VW (an AVX-512 and an AVX2 build give bit-identical
 * loss and gradients, both using FMA): every output element is computed by the same
 * operations in the same order whatever the width: logits accumulate over k = 0..DIM-1,
 * d_query over columns j = 0..BP-1, d_item over the range's rows in order; the row sums
 * of exp are kept in 16 lanes (lane l: columns l, l + 16, l + 32, ...) and the 16 lanes
 * are added in a fixed tree; the exp is the same code for every width.
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
 * Outputs for rows [row_start, row_stop) (multiples of RB = 8):
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
#if DIM % 16 != 0
#error "DIM must be a multiple of 16"
#endif

#define TW 16 /* columns per item tile (the layout), and lanes of the row sums */
#define RB 8  /* rows per block (the caller's row ranges are multiples of it) */

/* Per width: VW floats per vector; R1 rows x NT tiles of logits in registers while
 * the logits are computed; ACC vector registers for the accumulators of the gradient
 * passes (half the register file, leaving room for the operands). */
#if defined(__AVX512F__)
#define VW 16
#define R1 8
#define NT 2
#define ACC 16
#elif defined(__AVX2__)
#define VW 8
#define R1 4
#define NT 1
#define ACC 8
#elif defined(__aarch64__) /* NEON: 32 registers of 4 floats */
#define VW 4
#define R1 4
#define NT 1
#define ACC 16
#else /* SSE and other targets: 16 registers of 4 floats (or whatever the compiler makes) */
#define VW 4
#define R1 2
#define NT 1
#define ACC 8
#endif

#define TV (TW / VW)  /* vectors per tile row */
#define DV (DIM / VW) /* vectors per embedding */
#define CV (NT * TV)  /* vectors of columns per row in the logits pass */
#define HV (32 / VW)  /* vectors per 32 columns (BP is a multiple of 32) */
/* rows of d_query (R3) and columns of d_item (JB) accumulated in registers at a time */
#define FIT(n) ((DV) >= (n) ? 1 : (n) / (DV))
#define R3 (FIT(ACC) < RB ? FIT(ACC) : RB)
#define JB (FIT(ACC) < TW ? FIT(ACC) : TW)

typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VW * sizeof(int32_t))));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vsplat(float x) { return (vf){0} + x; }
static inline vf vsel(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

/* a > b ? a : b per lane, one instruction where the target has one (the compilers do
 * not turn the compare and select into it); no NaN reaches it */
#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE__)
#include <immintrin.h>
#endif
static inline vf vmax(vf a, vf b) {
#if defined(__AVX512F__)
    return (vf)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX__) && VW == 8
    return (vf)_mm256_max_ps((__m256)a, (__m256)b);
#elif defined(__SSE__) && VW == 4
    return (vf)_mm_max_ps((__m128)a, (__m128)b);
#else
    return vsel(a > b, a, b);
#endif
}

static inline float hmax(vf v) {
    float m = v[0];
    for (int k = 1; k < VW; k++) m = v[k] > m ? v[k] : m;
    return m;
}

/* The sum of 16 lanes held in TV vectors, in a fixed tree (lane l + lane l + 8, then
 * + 4, + 2, + 1): the same additions for every VW. */
static inline float sum16(const vf *z) {
    float s[TW];
    memcpy(s, z, sizeof s);
    for (int w = TW / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++) s[k] += s[k + w];
    return s[0];
}

/* exp(x) for x <= 0: 0 for x = -inf or x < -87, else a degree-6 polynomial after range
 * reduction (relative error below 2e-7) times a power of two built in the exponent
 * bits. One code for every width, so every build rounds alike. */
static inline vf vexp_nonpos(vf x0) {
    const vf lo = vsplat(-87.0f);
    vf x = vmax(x0, lo);
    const vf magic = vsplat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    vf n = (x * vsplat(1.44269504088896341f) + magic) - magic;
    vf r = x - n * vsplat(0.693359375f) - n * vsplat(-2.12194440e-4f);
    vf p = vsplat(1.0f / 720.0f);
    p = p * r + vsplat(1.0f / 120.0f);
    p = p * r + vsplat(1.0f / 24.0f);
    p = p * r + vsplat(1.0f / 6.0f);
    p = p * r + vsplat(0.5f);
    p = p * r + vsplat(1.0f);
    p = p * r + vsplat(1.0f);
#if defined(__AVX512F__) && VW == 16
    /* p * 2^n is exact for n >= -126: vscalefps gives the same bits in one instruction
     * (and the zeroing in the same one) */
    return (vf)_mm512_maskz_scalef_ps(_mm512_cmp_ps_mask((__m512)x0, (__m512)lo, _CMP_GE_OQ), (__m512)p, (__m512)n);
#else
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return (vf)((vi)(p * (vf)e) & (x0 >= lo));
#endif
}

/* 1. Logits of the block's RB rows, L[r][j] = bias_j + q_r . i_j, into work, and each
 * row's running max (per lane) into mv. */
static inline void block_logits(int64_t bp, const float *q, const float *item_tiles, const float *bias, int64_t r0,
                                float *work, int64_t ws, vf *mv)
{
    for (int r = 0; r < RB; r++) mv[r] = vsplat(-INFINITY);
    for (int64_t jt = 0; jt < bp / TW; jt += NT) {
        const float *t = item_tiles + jt * DIM * TW;
        for (int r1 = 0; r1 < RB; r1 += R1) {
            vf a[R1][CV];
            for (int c = 0; c < CV; c++) {
                vf bv = vload(bias + jt * TW + c * VW);
                for (int r = 0; r < R1; r++) a[r][c] = bv;
            }
            for (int k = 0; k < DIM; k++) {
                vf col[CV];
                for (int c = 0; c < CV; c++) col[c] = vload(t + (c / TV) * DIM * TW + k * TW + (c % TV) * VW);
                for (int r = 0; r < R1; r++) {
                    float x = q[(r0 + r1 + r) * DIM + k];
                    for (int c = 0; c < CV; c++) a[r][c] += x * col[c];
                }
            }
            for (int r = 0; r < R1; r++) {
                vf hi = a[r][0];
                for (int c = 0; c < CV; c++) {
                    vstore(work + (r1 + r) * ws + jt * TW + c * VW, a[r][c]);
                    hi = vmax(hi, a[r][c]);
                }
                mv[r1 + r] = vmax(mv[r1 + r], hi);
            }
        }
    }
}

/* 2. Per row of the block: accidental hits -> -inf, max, E = exp(L - max) in place
 * (padding rows: E = 0), the row sums z; qv[r] = q_r * scale / z_r and zs[r] = scale / z_r
 * (the 1/z of P = E / z goes there). Returns the block's sum of log z + max - positive. */
static inline double rows_softmax(int64_t b, int64_t bp, const float *q, const int32_t *keys, const uint8_t *has_hit,
                                  int64_t r0, float scale, const vf *mv, float *work, int64_t ws, float *qv, float *zs)
{
    double loss = 0.0;
    for (int r = 0; r < RB; r++) {
        int64_t row = r0 + r;
        float *l = work + r * ws;
        if (row >= b) { /* padding row: no loss, no gradient */
            memset(l, 0, sizeof(float) * (size_t)bp);
            memset(qv + r * DIM, 0, sizeof(float) * DIM);
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
            vf hv[HV]; /* independent maxima: one chain would wait on each max's latency */
            for (int h = 0; h < HV; h++) hv[h] = ninf;
            for (int64_t j = 0; j < bp; j += HV * VW)
                for (int h = 0; h < HV; h++) {
                    vi kj;
                    memcpy(&kj, keys + j + h * VW, sizeof kj);
                    vf v = vsel(kj == key, ninf, vload(l + j + h * VW));
                    vstore(l + j + h * VW, v);
                    hv[h] = vmax(v, hv[h]);
                }
            for (int h = 1; h < HV; h++) hv[0] = vmax(hv[0], hv[h]);
            l[row] = positive; /* its own key: restore it */
            m = hmax(hv[0]);
            m = positive > m ? positive : m;
        }
        vf zv[TV];
        for (int v = 0; v < TV; v++) zv[v] = vsplat(0.0f);
        const vf mm = vsplat(m);
        for (int64_t j = 0; j < bp; j += TW)
            for (int v = 0; v < TV; v++) {
                vf e = vexp_nonpos(vload(l + j + v * VW) - mm);
                vstore(l + j + v * VW, e);
                zv[v] += e;
            }
        float z = sum16(zv);
        loss += (double)logf(z) + (double)m - (double)positive;
        float w = scale / z;
        zs[r] = w;
        for (int d = 0; d < DV; d++) vstore(qv + r * DIM + d * VW, vload(q + row * DIM + d * VW) * w);
    }
    return loss;
}

/* 3a. dq_r = scale/z_r * sum_j E[r][j] i_j - scale i_r for the block's rows, R3 rows at a
 * time (R3 * DV accumulators in registers; each one adds the columns in order). */
static inline void block_dq(int64_t b, int64_t bp, const float *q, const float *item, int64_t r0, float scale,
                            const float *work, int64_t ws, const float *zs, float *dq)
{
    (void)q;
    for (int r3 = 0; r3 < RB; r3 += R3) {
        vf acc[R3][DV];
        for (int r = 0; r < R3; r++)
            for (int d = 0; d < DV; d++) acc[r][d] = vsplat(0.0f);
        const float *e = work + r3 * ws;
        for (int64_t j = 0; j < bp; j++) {
            vf iv[DV];
            for (int d = 0; d < DV; d++) iv[d] = vload(item + j * DIM + d * VW);
            for (int r = 0; r < R3; r++) {
                float x = e[r * ws + j];
                for (int d = 0; d < DV; d++) acc[r][d] += x * iv[d];
            }
        }
        for (int r = 0; r < R3; r++) {
            int64_t row = r0 + r3 + r;
            for (int d = 0; d < DV; d++) {
                vf out = row < b ? acc[r][d] * zs[r3 + r] - vload(item + row * DIM + d * VW) * scale : vsplat(0.0f);
                vstore(dq + row * DIM + d * VW, out);
            }
        }
    }
}

/* 3b. di_j += sum_r E[r][j] qv_r over the block's rows in order, JB columns at a time
 * (JB * DV independent accumulators, so the RB-long chain of additions into each one
 * does not stall the FMA units); then the onehot part, di_r -= scale q_r. */
static inline void block_di(int64_t b, int64_t bp, const float *q, int64_t r0, float scale, const float *work,
                            int64_t ws, const float *qv, float *di)
{
    for (int64_t j = 0; j < bp; j += JB) {
        vf dv[JB][DV];
        for (int c = 0; c < JB; c++)
            for (int d = 0; d < DV; d++) dv[c][d] = vload(di + (j + c) * DIM + d * VW);
        for (int r = 0; r < RB; r++) {
            const float *e = work + r * ws + j;
            vf qr[DV];
            for (int d = 0; d < DV; d++) qr[d] = vload(qv + r * DIM + d * VW);
            for (int c = 0; c < JB; c++)
                for (int d = 0; d < DV; d++) dv[c][d] += e[c] * qr[d];
        }
        for (int c = 0; c < JB; c++)
            for (int d = 0; d < DV; d++) vstore(di + (j + c) * DIM + d * VW, dv[c][d]);
    }
    for (int r = 0; r < RB; r++) {
        int64_t row = r0 + r;
        if (row >= b) continue;
        for (int d = 0; d < DV; d++)
            vstore(di + row * DIM + d * VW, vload(di + row * DIM + d * VW) - vload(q + row * DIM + d * VW) * scale);
    }
}

/* 3a and 3b in one pass over the columns, where all the operands fit in the registers
 * (32 of them with AVX-512, one vector per embedding): each E[r][j] is loaded once for
 * both products. The same operations in the same order as block_dq + block_di. */
#define MERGED (VW == 16 && DV == 1)
#define JM 4 /* columns per step of the merged pass */
static inline void block_grads(int64_t b, int64_t bp, const float *q, const float *item, int64_t r0, float scale,
                               const float *work, int64_t ws, const float *zs, const float *qv, float *dq, float *di)
{
    vf acc[RB][DV], qr[RB][DV];
    for (int r = 0; r < RB; r++)
        for (int d = 0; d < DV; d++) {
            acc[r][d] = vsplat(0.0f);
            qr[r][d] = vload(qv + r * DIM + d * VW);
        }
    for (int64_t j = 0; j < bp; j += JM) {
        vf iv[JM][DV], dv[JM][DV];
        for (int c = 0; c < JM; c++)
            for (int d = 0; d < DV; d++) {
                iv[c][d] = vload(item + (j + c) * DIM + d * VW);
                dv[c][d] = vload(di + (j + c) * DIM + d * VW);
            }
        for (int r = 0; r < RB; r++) {
            const float *e = work + r * ws + j;
            for (int c = 0; c < JM; c++)
                for (int d = 0; d < DV; d++) {
                    acc[r][d] += e[c] * iv[c][d];
                    dv[c][d] += e[c] * qr[r][d];
                }
        }
        for (int c = 0; c < JM; c++)
            for (int d = 0; d < DV; d++) vstore(di + (j + c) * DIM + d * VW, dv[c][d]);
    }
    for (int r = 0; r < RB; r++) {
        int64_t row = r0 + r;
        for (int d = 0; d < DV; d++) {
            vf out = row < b ? acc[r][d] * zs[r] - vload(item + row * DIM + d * VW) * scale : vsplat(0.0f);
            vstore(dq + row * DIM + d * VW, out);
            if (row < b)
                vstore(di + row * DIM + d * VW, vload(di + row * DIM + d * VW) - vload(q + row * DIM + d * VW) * scale);
        }
    }
}

double hmrec_softmax_loss_rows(
    int64_t b, int64_t bp, const float *q, const float *item, const float *item_tiles, const float *bias,
    const int32_t *keys, const uint8_t *has_hit, int64_t row_start, int64_t row_stop, float scale,
    float *dq, float *di, float *work)
{
    const int64_t ws = bp + TW; /* row stride of the scratch: not a multiple of 4 KB */
    double loss = 0.0;
    float qv[RB * DIM], zs[RB];
    vf mv[RB];
    memset(di, 0, sizeof(float) * (size_t)bp * DIM);
    for (int64_t r0 = row_start; r0 < row_stop; r0 += RB) {
        block_logits(bp, q, item_tiles, bias, r0, work, ws, mv);
        loss += rows_softmax(b, bp, q, keys, has_hit, r0, scale, mv, work, ws, qv, zs);
        if (MERGED) {
            block_grads(b, bp, q, item, r0, scale, work, ws, zs, qv, dq, di);
        } else {
            block_dq(b, bp, q, item, r0, scale, work, ws, zs, dq);
            block_di(b, bp, q, r0, scale, work, ws, qv, di);
        }
    }
    return loss;
}
