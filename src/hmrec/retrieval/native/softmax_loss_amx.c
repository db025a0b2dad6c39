/* In-batch sampled softmax with the three matrix products on AMX tiles (bf16 in, fp32 out).
 *
 * Why: in softmax_loss.c (fp32 AVX-512) the products L = Q I^T, dQ = G I and dI = G^T Q
 * take 2.8 of the kernel's 4.3 ms per 2048 batch: with K = 16 they run at the FMA units'
 * peak and cannot go faster. An AMX tile multiply (tdpbf16ps) does 16 x 16 x 32 bf16
 * multiply-adds into fp32 in about 16 cycles, 16 times the fp32 FMA rate, so here the
 * products cost a fraction of a millisecond and the exp pass dominates.
 *
 * Precision (why this is not "bf16 training"):
 *   logits   Q and I are split into bf16 high and low parts, L = Qh.Ih + Ql.Ih + Qh.Il
 *            (two tile multiplies, K = 32): relative error ~2^-16, close to fp32, because
 *            softmax turns logit errors into probability errors exponentially.
 *   gradients E = exp(L - max) in [0, 1] is rounded to bf16 (relative 2^-9 per entry,
 *            unbiased: round to nearest even; the largest entry, 1, is exact); the other
 *            operand (I, or Q scaled by 1/z) is split hi + lo. The positive's -1 is applied
 *            in fp32 to the same hi + lo values, so a row or column whose probability is 1
 *            gets a gradient of exactly 0.
 *   exp, max, row sums and the loss stay fp32 (the loss sums in double).
 *
 * Same contract as softmax_loss.c for a range of rows, RB = 32 rows per block, DIM = 16.
 * Layouts (bf16 = uint16 bit patterns; BP = B rounded up to 32), built by hmrec_amx_operands:
 *   q, item     [BP][16] fp32 (padding rows 0)
 *   q_hl        [BP][32] bf16: row r = (hi(q_r) | lo(q_r))
 *   it_logit    [BP/16][2][16][32] bf16: per 16-item tile, the two B tiles of the logits,
 *               B1 row p < 8 = dims (2p, 2p+1) of hi(I) interleaved over the 16 items, rows
 *               8..15 the same again (they meet lo(q)); B2 rows < 8 likewise of lo(I), rows 8..15 zero
 *   it_pair     [2][BP/2][16][2] bf16: hi(I) then lo(I), consecutive item pairs interleaved
 *   bias        [BP] as in softmax_loss.c
 *   row_group   [BP] int32 or NULL (no hit removal): for a row whose article is in other
 *               columns too, its article's group g, else -1; the group's columns are
 *               members[group_start[g] .. group_start[g + 1]) (so a hit costs O(1), not a
 *               scan of every column's key)
 * Outputs for rows [row_start, row_stop) (multiples of 32):
 *   dq          [BP][16]  rows of the range: scale * (sum_j p_rj i_j - i_r)
 *   di_t        [BP/16][16][16] this range's part of d_item: scale * sum_r p_rj q_r, and
 *               -scale * q_j for its rows j; tile jt holds dims x items (transposed)
 *   return      sum over the range's rows r < B of (log z_r + max_r - logit_rr)
 * Scratch: work [33][BP] fp32, er [32][BP + 32] bf16, ev [BP/16][16][32] bf16.
 *
 * hmrec_amx_init() asks Linux for the tile state (once per process); nonzero: no AMX.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__) && defined(__AVX512BW__) && DIM == 16
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RB 32
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

int hmrec_amx_init(void)
{
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 ? 0 : -1;
}

static void configure_tiles(void)
{
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) { c.rows[t] = 16; c.colsb[t] = 64; }
    _tile_loadconfig(&c);
}

/* exp(x + bias - m) as 2^t, t = x log2(e) + (bias - m) log2(e) in one FMA (the caller
 * passes (bias - m) log2(e)), then 2^(t - n) by a degree-4 polynomial (relative error
 * 3e-6, fitted on [-1/2, 1/2]; E is rounded to bf16, 2^-9, right after) and 2^n by
 * vscalefps: 9 operations per 16 values. Masked entries hold -1e30 rather than -inf, so
 * t needs no clamp: 2^(-1.4e30) is 0. */
static inline __m512 exp_shifted(__m512 x, __m512 shift_log2e)
{
    __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), shift_log2e);
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(9.582852013e-03f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.590642616e-02f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402409911e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931241751e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* bf16 (round to nearest even) of two 16-float vectors: a in the low half, b in the high */
static inline __m512i bf16_pair(__m512 a, __m512 b) { return (__m512i)_mm512_cvtne2ps_pbh(b, a); }

/* bf16 of a finite float, rounded to nearest even, and back */
static inline uint16_t bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static inline float bf16_value(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* 16 floats rounded to bf16 (to nearest even) and back: the high part of the hi + lo split */
static inline __m512 bf16_high(__m512 x)
{
    return (__m512)_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x)), 16);
}

/* hi + lo of 16 floats: the value the tile products use for them */
static inline __m512 split_value(__m512 x)
{
    __m512 hi = bf16_high(x);
    return _mm512_add_ps(hi, bf16_high(_mm512_sub_ps(x, hi)));
}

/* Logit (r, j) of the block sits in tile-major scratch: 16-row half, item tile, row, column. */
#define AT(work, nt, r, j) ((work) + (((int64_t)((r) / 16) * (nt) + (j) / 16) * 16 + (r) % 16) * 16 + (j) % 16)

/* E = exp(l + bias - m) of two rows (a dead row gives 0) into er0/er1 (row-major bf16) and
 * ev (this pair's row of every dI tile, the two rows interleaved per item); z = row sums.
 * l0, l1: the rows' first 16 logits (the next 16 are 256 floats on); bl = bias log2(e). */
static void exp_pair(int64_t bp, const float *l0, const float *l1, const float *bl, int live0, int live1,
                     const float m[2], uint16_t *er0, uint16_t *er1, uint16_t *ev, float z[2])
{
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512 s0 = _mm512_set1_ps(-m[0] * 1.44269504088896341f);
    const __m512 s1 = _mm512_set1_ps(-m[1] * 1.44269504088896341f);
    __m512 z0 = _mm512_setzero_ps(), z1 = _mm512_setzero_ps();
    for (int64_t j = 0; j < bp; j += 32) {
        const int64_t o = (j / 16) * 256;
        const __m512 b0 = _mm512_loadu_ps(bl + j), b1 = _mm512_loadu_ps(bl + j + 16);
        __m512 e00 = _mm512_setzero_ps(), e01 = e00, e10 = e00, e11 = e00;
        if (live0) {
            e00 = exp_shifted(_mm512_loadu_ps(l0 + o), _mm512_add_ps(b0, s0));
            e01 = exp_shifted(_mm512_loadu_ps(l0 + o + 256), _mm512_add_ps(b1, s0));
            z0 = _mm512_add_ps(z0, _mm512_add_ps(e00, e01));
        }
        if (live1) {
            e10 = exp_shifted(_mm512_loadu_ps(l1 + o), _mm512_add_ps(b0, s1));
            e11 = exp_shifted(_mm512_loadu_ps(l1 + o + 256), _mm512_add_ps(b1, s1));
            z1 = _mm512_add_ps(z1, _mm512_add_ps(e10, e11));
        }
        _mm512_storeu_si512(er0 + j, bf16_pair(e00, e01));
        _mm512_storeu_si512(er1 + j, bf16_pair(e10, e11));
        uint16_t *t = ev + (j / 16) * 512;
        _mm512_storeu_si512(t, _mm512_permutexvar_epi16(interleave, bf16_pair(e00, e10)));
        _mm512_storeu_si512(t + 512, _mm512_permutexvar_epi16(interleave, bf16_pair(e01, e11)));
    }
    z[0] = _mm512_reduce_add_ps(z0);
    z[1] = _mm512_reduce_add_ps(z1);
}

void hmrec_amx_operands(int64_t bp, const float *q, const float *item, uint16_t *q_hl, uint16_t *it_logit,
                        uint16_t *it_pair)
{
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t r = 0; r < bp; r++) {
        __m512 x = _mm512_loadu_ps(q + r * 16);
        _mm512_storeu_si512(q_hl + r * 32, bf16_pair(x, _mm512_sub_ps(x, bf16_high(x))));
    }
    /* word c * 8 + p of a tile's [16 items][8 dim pairs]: item c's dims (2p, 2p+1) */
    const __m512i by_item = _mm512_set_epi32(120, 112, 104, 96, 88, 80, 72, 64, 56, 48, 40, 32, 24, 16, 8, 0);
    for (int64_t j0 = 0; j0 < bp; j0 += 16) {
        uint16_t hl[2][16 * 16] __attribute__((aligned(64))); /* hi, lo of the tile's 16 items */
        for (int c = 0; c < 16; c += 2) {
            __m512 x0 = _mm512_loadu_ps(item + (j0 + c) * 16), x1 = _mm512_loadu_ps(item + (j0 + c + 1) * 16);
            __m512 l0 = _mm512_sub_ps(x0, bf16_high(x0)), l1 = _mm512_sub_ps(x1, bf16_high(x1));
            __m512i h = bf16_pair(x0, x1), l = bf16_pair(l0, l1);
            _mm512_store_si512(hl[0] + c * 16, h);
            _mm512_store_si512(hl[1] + c * 16, l);
            _mm512_storeu_si512(it_pair + (j0 + c) * 16, _mm512_permutexvar_epi16(interleave, h));
            _mm512_storeu_si512(it_pair + (bp + j0 + c) * 16, _mm512_permutexvar_epi16(interleave, l));
        }
        uint16_t *t = it_logit + (j0 / 16) * 1024;
        for (int p = 0; p < 8; p++) {
            __m512i h = _mm512_i32gather_epi32(_mm512_add_epi32(by_item, _mm512_set1_epi32(p)), hl[0], 4);
            __m512i l = _mm512_i32gather_epi32(_mm512_add_epi32(by_item, _mm512_set1_epi32(p)), hl[1], 4);
            _mm512_storeu_si512(t + p * 32, h);
            _mm512_storeu_si512(t + (p + 8) * 32, h);
            _mm512_storeu_si512(t + 512 + p * 32, l);
            _mm512_storeu_si512(t + 512 + (p + 8) * 32, _mm512_setzero_si512());
        }
    }
}

double hmrec_softmax_loss_amx_rows(
    int64_t b, int64_t bp, const float *q, const float *item, const uint16_t *q_hl, const uint16_t *it_logit,
    const uint16_t *it_pair, const float *bias, const int32_t *row_group, const int32_t *group_start,
    const int32_t *members, int64_t row_start, int64_t row_stop, float scale, float *dq, float *di_t, float *work, uint16_t *er,
    uint16_t *ev)
{
    const int64_t es = bp + 32; /* er's row stride: 16 rows of a tile load in different cache sets */
    const int64_t nt = bp / 16; /* item tiles */
    float *bl = work + RB * bp; /* bias log2(e), masked columns -1e30 (see exp_shifted) */
    for (int64_t j = 0; j < bp; j++) bl[j] = isinf(bias[j]) ? -1e30f : bias[j] * 1.44269504088896341f;
    double loss = 0.0;
    memset(di_t, 0, sizeof(float) * (size_t)bp * 16);
    configure_tiles();
    for (int64_t r0 = row_start; r0 < row_stop; r0 += RB) {
        /* 1. logits (bias comes in step 3) of the 32 rows (two A tiles) against each
         * 16-item tile (two B tiles, loaded once), stored tile by tile */
        _tile_loadd(4, q_hl + r0 * 32, 64);
        _tile_loadd(7, q_hl + (r0 + 16) * 32, 64);
        for (int64_t jt = 0; jt < nt; jt++) {
            const uint16_t *t = it_logit + jt * 1024;
            _tile_zero(0);
            _tile_zero(1);
            _tile_loadd(5, t, 64);
            _tile_loadd(6, t + 512, 64);
            _tile_dpbf16ps(0, 4, 5);
            _tile_dpbf16ps(1, 7, 5);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 7, 6);
            _tile_stored(0, work + jt * 256, 64);
            _tile_stored(1, work + (nt + jt) * 256, 64);
        }
        /* 2. accidental hits -> -1e30: the other columns of the row's article */
        if (row_group)
            for (int r = 0; r < RB; r++) {
                int64_t row = r0 + r;
                if (row >= b || row_group[row] < 0) continue;
                for (int32_t u = group_start[row_group[row]]; u < group_start[row_group[row] + 1]; u++)
                    if (members[u] != row) *AT(work, nt, r, members[u]) = -1e30f;
            }
        /* 3. each row's max (16 rows at a time, one vector of running maxima per row, over
         * the tile-major scratch), then E = exp(L + bias - max) of row pairs, written as bf16
         * twice: row-major (er, for dQ) and as the dI tiles' B operand (ev: the pair
         * interleaved per item). The max, not the positive's logit, is the shift because
         * then the largest E is exactly 1 in bf16 (half the gradient error) and 1/z cannot
         * underflow. */
        float m[RB];
        for (int s = 0; s < RB; s += 16) {
            __m512 mv[16];
            for (int r = 0; r < 16; r++) mv[r] = _mm512_set1_ps(-INFINITY);
            for (int64_t jt = 0; jt < nt; jt++) {
                const float *t = AT(work, nt, s, jt * 16);
                const __m512 bv = _mm512_loadu_ps(bias + jt * 16);
                for (int r = 0; r < 16; r++) mv[r] = _mm512_max_ps(mv[r], _mm512_add_ps(_mm512_loadu_ps(t + r * 16), bv));
            }
            for (int r = 0; r < 16; r++) m[s + r] = _mm512_reduce_max_ps(mv[r]);
        }
        float zs[RB], zrow[RB];
        for (int r = 0; r < RB; r += 2) {
            const int live[2] = {r0 + r < b, r0 + r + 1 < b};
            float z[2];
            exp_pair(bp, AT(work, nt, r, 0), AT(work, nt, r + 1, 0), bl, live[0], live[1], m + r, er + r * es,
                     er + (r + 1) * es, ev + (r / 2) * 32, z);
            for (int u = 0; u < 2; u++) {
                int64_t row = r0 + r + u;
                zrow[r + u] = z[u];
                if (live[u]) {
                    loss += (double)logf(z[u]) + (double)m[r + u] - (double)(*AT(work, nt, r + u, row) + bias[row]);
                    zs[r + u] = scale / z[u];
                } else {
                    zs[r + u] = 0.0f;
                }
            }
        }
        /* 4. dQ: [32 rows x 16 dims] = E (bf16, two A tiles) . I (hi + lo), K = 32 items */
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t j = 0; j < bp; j += 32) {
            _tile_loadd(4, er + j, es * 2);
            _tile_loadd(7, er + 16 * es + j, es * 2);
            _tile_loadd(5, it_pair + j * 16, 64);
            _tile_loadd(6, it_pair + (bp + j) * 16, 64);
            _tile_dpbf16ps(0, 4, 5);
            _tile_dpbf16ps(1, 4, 6);
            _tile_dpbf16ps(2, 7, 5);
            _tile_dpbf16ps(3, 7, 6);
        }
        float acc[4][16 * 16] __attribute__((aligned(64)));
        _tile_stored(0, acc[0], 64);
        _tile_stored(1, acc[1], 64);
        _tile_stored(2, acc[2], 64);
        _tile_stored(3, acc[3], 64);
        for (int r = 0; r < RB; r++) {
            int64_t row = r0 + r;
            const float *hi = acc[r < 16 ? 0 : 2] + (r % 16) * 16, *lo = acc[r < 16 ? 1 : 3] + (r % 16) * 16;
            __m512 g = _mm512_add_ps(_mm512_load_ps(hi), _mm512_load_ps(lo));
            __m512 v = row < b ? _mm512_fmsub_ps(g, _mm512_set1_ps(zs[r]),
                                                 _mm512_mul_ps(split_value(_mm512_loadu_ps(item + row * 16)),
                                                               _mm512_set1_ps(scale)))
                               : _mm512_setzero_ps();
            _mm512_storeu_ps(dq + row * 16, v);
        }
        /* 5. dI^T: [16 dims x 16 items] += (Q scaled by scale/z)^T (hi, then lo; K = the 32
         * rows) . E, and the positives' -scale q_j as z_j times the same split of q_j scale/z_j
         * (so a column whose probability is 1 gets exactly 0, as dQ does with the split I) */
        uint16_t qt[2][16 * 32] __attribute__((aligned(64)));
        for (int r = 0; r < RB; r++) {
            int64_t row = r0 + r;
            float *diag = di_t + (row / 16) * 256 + row % 16;
            for (int d = 0; d < 16; d++) {
                float x = q[row * 16 + d] * zs[r];
                uint16_t h = bf16_round(x), l = bf16_round(x - bf16_value(h));
                qt[0][d * 32 + r] = h;
                qt[1][d * 32 + r] = l;
                if (row < b) diag[d * 16] -= (bf16_value(h) + bf16_value(l)) * zrow[r];
            }
        }
        _tile_loadd(4, qt[0], 64);
        _tile_loadd(7, qt[1], 64);
        for (int64_t jt = 0; jt < nt; jt += 2) {
            _tile_loadd(0, di_t + jt * 256, 64);
            _tile_loadd(1, di_t + jt * 256 + 256, 64);
            _tile_loadd(5, ev + jt * 512, 64);
            _tile_loadd(6, ev + jt * 512 + 512, 64);
            _tile_dpbf16ps(0, 4, 5);
            _tile_dpbf16ps(1, 4, 6);
            _tile_dpbf16ps(0, 7, 5);
            _tile_dpbf16ps(1, 7, 6);
            _tile_stored(0, di_t + jt * 256, 64);
            _tile_stored(1, di_t + jt * 256 + 256, 64);
        }
    }
    _tile_release();
    return loss;
}
#else
int hmrec_amx_init(void) { return -1; }

void hmrec_amx_operands(int64_t bp, const float *q, const float *item, uint16_t *q_hl, uint16_t *it_logit,
                        uint16_t *it_pair)
{
}

double hmrec_softmax_loss_amx_rows(
    int64_t b, int64_t bp, const float *q, const float *item, const uint16_t *q_hl, const uint16_t *it_logit,
    const uint16_t *it_pair, const float *bias, const int32_t *row_group, const int32_t *group_start,
    const int32_t *members, int64_t row_start, int64_t row_stop, float scale, float *dq, float *di_t, float *work, uint16_t *er,
    uint16_t *ev)
{
    return NAN; /* never called: hmrec_amx_init() said no */
}
#endif
