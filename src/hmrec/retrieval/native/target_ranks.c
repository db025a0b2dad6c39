/* Exact rank of each target item in its query's full catalogue ranking (retrieval metrics).
 *
 * rank(t) = #{j : s_j > s_t} + #{j < target_t : s_j == s_t}, s_j = q . i_j, over every
 * catalogue item (the brute-force definition metrics.ranks_of_targets uses), without
 * ever writing a score matrix to memory. The NumPy path scores a chunk of queries against
 * all items (a 4-byte write and several reads per score); here a block of RB queries
 * scores one 16-item tile at a time in registers and compares the scores with the
 * block's target scores at once, so the item tiles are read once per block of queries
 * and nothing else leaves the cache.
 *
 * Vectors are GCC/Clang vector extensions of the target's native width VW (16 floats
 * with AVX-512, 8 with AVX2, 4 otherwise); the scores of a tile are computed R rows at a
 * time so that the R x 16 / VW accumulators fit in the registers. Every score is the same
 * sum in the same order (k = 0..DIM-1) whatever VW, so the ranks do not depend on it.
 *
 * DIM = embedding size (compile time). Layouts (float32, zero-padded by the caller):
 *   tiles  [NP/16][DIM][16]  item embeddings transposed in tiles of 16 items (NP = items
 *                            rounded up to 16); bias [NP]: 0 for items, -inf for padding
 *   q      [NQ][DIM]         query embeddings (NQ = queries rounded up to RB; padding 0)
 *   block b covers queries [b*RB, b*RB + RB); its targets are
 *   t in [tstart[b], tstart[b+1]): owner[t] (query row), target[t] (item position)
 * Computes ranks for blocks [b0, b1) into rank[t].
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef DIM
#error "compile with -DDIM=<embedding size>"
#endif
#define TW 16 /* items per tile (the layout) */
#define RB 16 /* queries per block (the caller's blocks) */
#if defined(__AVX512F__)
#define VW 16
#define R 16
#elif defined(__AVX2__)
#define VW 8
#define R 4
#elif defined(__aarch64__)
#define VW 4
#define R 4
#else
#define VW 4
#define R 2
#endif
#define TV (TW / VW)

typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VW * sizeof(int32_t))));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* scores of the RB queries q[0..RB) against one tile into out[RB][TW]: the same
 * arithmetic for every caller */
static inline void tile_scores(const float *q, const float *tile, const float *bias, float *out) {
    for (int r0 = 0; r0 < RB; r0 += R) {
        vf acc[R][TV];
        for (int v = 0; v < TV; v++) {
            vf b = vload(bias + v * VW);
            for (int r = 0; r < R; r++) acc[r][v] = b;
        }
        for (int k = 0; k < DIM; k++) {
            vf col[TV];
            for (int v = 0; v < TV; v++) col[v] = vload(tile + k * TW + v * VW);
            for (int r = 0; r < R; r++) {
                float x = q[(r0 + r) * DIM + k];
                for (int v = 0; v < TV; v++) acc[r][v] += x * col[v];
            }
        }
        for (int r = 0; r < R; r++)
            for (int v = 0; v < TV; v++) vstore(out + (r0 + r) * TW + v * VW, acc[r][v]);
    }
}

void hmrec_target_ranks(
    int64_t np, const float *tiles, const float *bias, const float *q,
    const int64_t *tstart, const int64_t *owner, const int64_t *target, int64_t b0, int64_t b1, int64_t *rank)
{
    const int64_t nv = np / TW;
    float sc[RB * TW];
    for (int64_t b = b0; b < b1; b++) {
        int64_t q0 = b * RB;
        int64_t t0 = tstart[b], nt = tstart[b + 1] - t0;
        if (nt == 0) continue;
        const float *qb = q + q0 * DIM;
        float *own = malloc(sizeof(float) * (size_t)nt);
        int64_t *tile_of = malloc(sizeof(int64_t) * (size_t)nt);
        int *row = malloc(sizeof(int) * (size_t)nt);
        vi *count = aligned_alloc(sizeof(vi), sizeof(vi) * TV * (size_t)nt); /* vector types need their alignment */
        int64_t *exact = calloc((size_t)nt, sizeof(int64_t));
        /* each target's own score comes from the very tile computation the counts use;
         * in the target's own tile the count is taken lane by lane (ties before it count) */
        for (int64_t t = 0; t < nt; t++) {
            int64_t j = target[t0 + t];
            row[t] = (int)(owner[t0 + t] - q0);
            tile_of[t] = j / TW;
            tile_scores(qb, tiles + tile_of[t] * DIM * TW, bias + tile_of[t] * TW, sc);
            const float *s = sc + row[t] * TW;
            own[t] = s[j % TW];
            for (int l = 0; l < TW; l++) exact[t] += s[l] > own[t] || (s[l] == own[t] && l < j % TW);
            for (int v = 0; v < TV; v++) count[t * TV + v] = (vi){0};
        }
        /* every other tile: items before the target's tile count on >= (a tie there is
         * ranked first), items after it on > */
        for (int64_t jv = 0; jv < nv; jv++) {
            tile_scores(qb, tiles + jv * DIM * TW, bias + jv * TW, sc);
            for (int64_t t = 0; t < nt; t++) {
                if (jv == tile_of[t]) continue;
                const vf o = (vf){0} + own[t];
                const float *s = sc + row[t] * TW;
                if (jv < tile_of[t])
                    for (int v = 0; v < TV; v++) count[t * TV + v] -= (vi)(vload(s + v * VW) >= o);
                else
                    for (int v = 0; v < TV; v++) count[t * TV + v] -= (vi)(vload(s + v * VW) > o);
            }
        }
        for (int64_t t = 0; t < nt; t++) {
            int64_t c = exact[t];
            for (int v = 0; v < TV; v++)
                for (int l = 0; l < VW; l++) c += count[t * TV + v][l];
            rank[t0 + t] = c;
        }
        free(own);
        free(tile_of);
        free(row);
        free(count);
        free(exact);
    }
}
