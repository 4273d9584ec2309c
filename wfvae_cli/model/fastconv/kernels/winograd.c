/* Winograd F(2x2, 3x3) transforms for WF-VAE's 3x3 convolutions (float32, channels-last activations).
 *
 * The convolution is  Y = A^T [ (G g G^T) (*) (B^T d B) ] A  per 2x2 output tile; the products (*) summed
 * over input channels and temporal taps are batched matrix products that PyTorch/MKL run at the machine's
 * peak (wfvae_cli/model/winograd.py). These kernels are the parts that PyTorch could only express as many
 * separate passes over memory: each reads its input once and writes its output once.
 *
 * Matrices (Lavin & Gray; interpolation points 0, 1, -1; all entries exact in binary):
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 * A "position" q = 4i + j is one of the 16 entries of a transformed tile.
 *
 * Layouts (float32):
 *   activation frame: (H, W, C) with pixel stride C (input) or `stride` (output, which may be a channel
 *                     slice of a wider tensor): one frame of a channels-last (B, C, T, H, W) tensor
 *   V (transformed input):  [q][f][t][x][c]   f: frame, t: tile row of the band, x: tile column
 *   U (transformed filter): [k][q][o][c]      k: temporal tap; used as U[k][q]^T (C x Co) in the products
 *   M (products):           [q][f][t][x][o]   (each position's plane anywhere: an array of 16 pointers)
 * Threads: OpenMP, sharing the runtime (and thread count) that PyTorch itself uses.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *scratch(size_t floats)
{
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* The 9 taps of filter (o, :, k) tap-major into wt (tap, c): every filter-transform step is then a
 * contiguous vector operation over c. g points at tap 0 of channel 0; channels are kt * 9 floats apart. */
static void taps_major(float *restrict wt, const float *restrict g, int ci, int kt)
{
    for (int c = 0; c < ci; c++)
        for (int tap = 0; tap < 9; tap++) wt[tap * ci + c] = g[(long)c * kt * 9 + tap];
}

/* `rows` row buffers of srow floats, pixel -1 first: the zero padding pixels (left, and right of pixel w-1)
 * are written once, the row itself is overwritten per tile row. */
static float *padded_rows(int rows, long srow, int w, int c)
{
    float *s = scratch(rows * (size_t)srow);
    for (int i = 0; i < rows; i++) {
        memset(s + i * srow, 0, c * sizeof(float));
        memset(s + i * srow + (long)(w + 1) * c, 0, (srow - (long)(w + 1) * c) * sizeof(float));
    }
    return s;
}

/* One filter tap set (o, :, k) through a tiling's G g G^T: wt its taps tap-major (tap, c), gt scratch,
 * d where position 0 of (o, :) goes in u (position q at d + q * plane). */
typedef void (*filter_fn)(float *d, long plane, const float *wt, float *gt, int ci);

/* G g G^T of every (o, c, k) filter with `one` (positions per tile, gt_floats of scratch per channel).
 * w: (co, ci, kt, 3, 3) contiguous; u: [k][positions][co][ci]. Per output channel the taps are first
 * transposed to (tap, c), so every step is a contiguous vector operation over c and every write a
 * contiguous run of ci floats. */
static void filter_transform(const float *w, int co, int ci, int kt, float *u, int positions, int gt_floats,
                             filter_fn one)
{
    const long plane = (long)co * ci;
#pragma omp parallel
    {
        float *wt = scratch(9L * ci); /* the 9 taps of (o, :, k), tap-major */
        float *gt = scratch((long)gt_floats * ci);
#pragma omp for schedule(static)
        for (int o = 0; o < co; o++)
            for (int k = 0; k < kt; k++) {
                taps_major(wt, w + (long)o * ci * kt * 9 + (long)k * 9, ci, kt);
                one(u + (long)k * positions * plane + (long)o * ci, plane, wt, gt, ci);
            }
        free(wt);
        free(gt);
    }
}

/* F(2x2, 3x3)'s G g G^T; gt: G g, row i of column b at (3i + b), 12 rows. */
static void filter_tile2(float *u, long plane, const float *wt, float *gt, int ci)
{
    for (int b = 0; b < 3; b++) {
        const float *restrict g0 = wt + b * ci, *restrict g1 = wt + (3 + b) * ci;
        const float *restrict g2 = wt + (6 + b) * ci;
        float *restrict t0 = gt + (0 + b) * ci, *restrict t1 = gt + (3 + b) * ci;
        float *restrict t2 = gt + (6 + b) * ci, *restrict t3 = gt + (9 + b) * ci;
        for (int c = 0; c < ci; c++) {
            float s = g0[c] + g2[c];
            t0[c] = g0[c];
            t1[c] = 0.5f * (s + g1[c]);
            t2[c] = 0.5f * (s - g1[c]);
            t3[c] = g2[c];
        }
    }
    for (int i = 0; i < 4; i++) {
        const float *restrict a0 = gt + (3 * i) * ci, *restrict a1 = a0 + ci, *restrict a2 = a0 + 2 * ci;
        float *restrict d = u + (4L * i) * plane;
        memcpy(d, a0, ci * sizeof(float));
        d += plane;
        for (int c = 0; c < ci; c++) d[c] = 0.5f * ((a0[c] + a2[c]) + a1[c]);
        d += plane;
        for (int c = 0; c < ci; c++) d[c] = 0.5f * ((a0[c] + a2[c]) - a1[c]);
        d += plane;
        memcpy(d, a2, ci * sizeof(float));
    }
}

/* G g G^T of every (o, c, k) filter. w: (co, ci, kt, 3, 3) contiguous; u: [k][16][co][ci]. */
void wf_filter_transform(const float *w, int co, int ci, int kt, float *u)
{
    filter_transform(w, co, ci, kt, u, 16, 12, filter_tile2);
}

/* exp(x) for |x| <= 88, vectorisable: 2^n * p(r) with x = n ln2 + r (Cody-Waite), |r| <= ln2/2,
 * p a degree-6 Taylor polynomial (relative error below 2e-7, about one ulp). */
static inline float exp_approx(float x)
{
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x); /* (not fminf: that blocks vectorisation) */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { float f; int32_t i; } scale = {.i = ((int32_t)n + 127) * (1 << 23)}; /* 2^n */
    return p * scale.f;
}

/* dst = silu(layer_norm(src)) for each of n pixels of c channels (per-pixel statistics, affine). */
static void norm_silu_row(float *restrict dst, const float *restrict src, int n, int c, const float *restrict gamma,
                          const float *restrict beta, float eps)
{
    for (int p = 0; p < n; p++, src += c, dst += c) {
        float sum = 0, sq = 0;
#pragma omp simd reduction(+ : sum)
        for (int k = 0; k < c; k++) sum += src[k];
        const float mean = sum / c;
#pragma omp simd reduction(+ : sq)
        for (int k = 0; k < c; k++) sq += (src[k] - mean) * (src[k] - mean);
        const float rstd = 1.0f / sqrtf(sq / c + eps);
#pragma omp simd
        for (int k = 0; k < c; k++) {
            float y = (src[k] - mean) * rstd * gamma[k] + beta[k];
            dst[k] = y / (1.0f + exp_approx(-y));
        }
    }
}

/* Image row y of a frame as the convolution reads it: NULL outside the image (zero padding), the row
 * itself, or with gamma its silu(layer_norm) in slot (y & mask) of nrm, computed only if that slot does not
 * hold it already (tag[slot]: the frame's first row index `base` plus y), so that consecutive tile rows of
 * a thread, which share two image rows, normalise each row once. */
static const float *input_row(const float *frame, long base, int y, int h, int w, int c, const float *gamma,
                              const float *beta, float eps, float *nrm, long *tag, int mask)
{
    if (y < 0 || y >= h)
        return NULL;
    const long row = (long)w * c;
    if (!gamma)
        return frame + (long)y * row;
    float *slot = nrm + (y & mask) * row;
    if (tag[y & mask] != base + y) {
        norm_silu_row(slot, frame + (long)y * row, w, c, gamma, beta, eps);
        tag[y & mask] = base + y;
    }
    return slot;
}

/* dst = ca*a + cb*b over n floats; a NULL row is zero (the convolution's zero padding). */
static void combine_rows(float *restrict dst, const float *restrict a, float ca, const float *restrict b, float cb,
                         long n)
{
    if (a && b)
        for (long x = 0; x < n; x++) dst[x] = ca * a[x] + cb * b[x];
    else if (a)
        for (long x = 0; x < n; x++) dst[x] = ca * a[x];
    else if (b)
        for (long x = 0; x < n; x++) dst[x] = cb * b[x];
    else
        memset(dst, 0, n * sizeof(float));
}

/* B^T d B of the tiles of tile rows [ty0, ty1) of n frames (h, w, c), into v ([q][f][t][x][c], `plane`
 * floats from one position to the next: at least n*(ty1-ty0)*nw*c, more when v is part of a larger
 * buffer). Tile (t, x) covers image rows 2t-1 .. 2t+2 and columns 2x-1 .. 2x+2; outside the image is
 * zero. With gamma (and beta) the convolution's input is silu(layer_norm(frame)) instead, computed here
 * for the rows a tile row reads, so the normalised activation never exists in memory.
 * Per tile row: B^T along H into a row buffer with a zero pixel on each side, then B^T along W. */
void wf_input_transform(const float *const *frames, int n, int h, int w, int c, int ty0, int ty1,
                        const float *gamma, const float *beta, float eps, float *v, long plane)
{
    static const int first[4] = {0, 1, 1, 1}, second[4] = {2, 2, 2, 3};
    static const float cfirst[4] = {1, 1, -1, 1}, csecond[4] = {-1, 1, 1, -1};
    const int nw = (w + 1) / 2, nty = ty1 - ty0;
    const long row = (long)w * c;
    const long srow = (2L * nw + 2) * c; /* pixels -1 .. 2nw: the row plus zero padding */
    const int items = n * nty;
#pragma omp parallel
    {
        float *s = padded_rows(4, srow, w, c);
        /* normalised rows, image row y in slot y & 3 (tag: frame and row), so that consecutive tile rows
           of a thread, which share two image rows, normalise each row once */
        float *nrm = gamma ? scratch(4 * (size_t)row) : NULL;
        long tag[4] = {-1, -1, -1, -1};
#pragma omp for schedule(static)
        for (int it = 0; it < items; it++) {
            const int f = it / nty, t = it % nty, ty = ty0 + t;
            const float *d[4];
            for (int r = 0; r < 4; r++)
                d[r] = input_row(frames[f], (long)f * h, 2 * ty - 1 + r, h, w, c, gamma, beta, eps, nrm, tag, 3);
            for (int i = 0; i < 4; i++) /* every row of B^T has exactly two non-zero entries */
                combine_rows(s + i * srow + c, d[first[i]], cfirst[i], d[second[i]], csecond[i], row);
            for (int i = 0; i < 4; i++) {
                const float *si = s + i * srow;
                float *restrict o0 = v + (4L * i) * plane + ((long)(f * nty + t) * nw) * c;
                float *restrict o1 = o0 + plane, *restrict o2 = o1 + plane, *restrict o3 = o2 + plane;
                for (int x = 0; x < nw; x++, o0 += c, o1 += c, o2 += c, o3 += c) {
                    const float *restrict e0 = si + (2L * x) * c, *restrict e1 = e0 + c;
                    const float *restrict e2 = e0 + 2L * c, *restrict e3 = e0 + 3L * c;
                    for (int k = 0; k < c; k++) {
                        o0[k] = e0[k] - e2[k];
                        o1[k] = e1[k] + e2[k];
                        o2[k] = e2[k] - e1[k];
                        o3[k] = e1[k] - e3[k];
                    }
                }
            }
        }
        free(s);
        free(nrm);
    }
}

/* One output pixel's co channels: y (+ bias) written into dst, or added to it (a residual). */
static inline void store_pixel(float *restrict dst, float *restrict y, const float *restrict bias, int co,
                               int accumulate)
{
    if (bias)
        for (int k = 0; k < co; k++) y[k] += bias[k];
    if (accumulate)
        for (int k = 0; k < co; k++) dst[k] += y[k];
    else
        memcpy(dst, y, co * sizeof(float));
}

/* A^T m A of the products into the output frames, tile rows from ty0. planes[q] points at the products
 * of position q, laid out [f][t][x][o] (co channels). frames[f] points at channel 0 of this block in
 * pixel (0, 0) of output frame f; pixels are `stride` floats apart (the full channel count when this
 * block is a slice of the channels). accumulate != 0 adds into the output (a residual already there),
 * else writes it. bias (co values) may be NULL. */
void wf_output_transform(const float *const *planes, int n, int nty, int nw, int co, float *const *frames, int h,
                         int w, long stride, int ty0, const float *bias, int accumulate)
{
    const int items = n * nty;
#pragma omp parallel
    {
        float *s = scratch(8L * co); /* A^T along W: s[2i + v] for tile row i, output column v */
        float *y = scratch((size_t)co);
#pragma omp for schedule(static)
        for (int it = 0; it < items; it++) {
            const int f = it / nty, t = it % nty, ty = ty0 + t;
            for (int x = 0; x < nw; x++) {
                const long off = ((long)(f * nty + t) * nw + x) * co;
                for (int i = 0; i < 4; i++) {
                    const float *restrict m0 = planes[4 * i] + off, *restrict m1 = planes[4 * i + 1] + off;
                    const float *restrict m2 = planes[4 * i + 2] + off, *restrict m3 = planes[4 * i + 3] + off;
                    float *restrict s0 = s + (2L * i) * co, *restrict s1 = s0 + co;
                    for (int k = 0; k < co; k++) {
                        s0[k] = m0[k] + m1[k] + m2[k];
                        s1[k] = m1[k] - m2[k] - m3[k];
                    }
                }
                for (int u = 0; u < 2; u++) {
                    const int yy = 2 * ty + u;
                    if (yy >= h) continue;
                    for (int vv = 0; vv < 2; vv++) {
                        const int xx = 2 * x + vv;
                        if (xx >= w) continue;
                        const float *restrict a = s + (long)vv * co, *restrict b = a + 2L * co;
                        const float *restrict c2 = a + 4L * co, *restrict c3 = a + 6L * co;
                        float *restrict dst = frames[f] + ((long)yy * w + xx) * stride;
                        if (u == 0)
                            for (int k = 0; k < co; k++) y[k] = a[k] + b[k] + c2[k];
                        else
                            for (int k = 0; k < co; k++) y[k] = b[k] - c2[k] - c3[k];
                        store_pixel(dst, y, bias, co, accumulate);
                    }
                }
            }
        }
        free(s);
        free(y);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Winograd F(4x4, 3x3): each 4x4 output tile from a 6x6 input tile, 36 multiplications per (input,
 * output) channel pair instead of 144 (4x fewer; F(2x2, 3x3) saves 2.25x). Same layouts as above with
 * 36 positions q = 6i + j and tiles of 4x4 output pixels. Interpolation points 0, 1, -1, 1/2, -2 (and
 * infinity): among the most accurate for F(4, 3) (Barabasz et al., 2020); simulated in float32 over 384
 * channels, max error 2.3e-5 and rms 2.6e-6 against float64, where the usual 0, 1, -1, 2, -2 give 5.5e-5
 * and 4.0e-6. B^T and A^T entries are exact in binary (halves, quarters, eighths); G has thirds and
 * fifteenths (rounded once per filter):
 *   B^T = [1 -3/2 -2 3/2 1 0; 0 -1 1/2 5/2 1 0; 0 1 -5/2 1/2 1 0; 0 -2 -1 2 1 0; 0 1/2 -1 -1/2 1 0;
 *          0 1 -3/2 -2 3/2 1]
 *   G   = [1 0 0; 1/3 1/3 1/3; -1/3 1/3 -1/3; -16/15 -8/15 -4/15; 1/15 -2/15 4/15; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 1/2 -2 0; 0 1 1 1/4 4 0; 0 1 -1 1/8 -8 1]
 * ------------------------------------------------------------------------------------------------- */

/* G applied to the three values a, b, c (one column or row of a 3x3 filter) of n channels each, into
 * o0 .. o5 (explicit restrict arguments, not arrays of pointers: GCC vectorises only this form). */
static inline void g6(float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3,
                      float *restrict o4, float *restrict o5, const float *restrict a, const float *restrict b,
                      const float *restrict c, int n)
{
#pragma omp simd
    for (int k = 0; k < n; k++) {
        const float ac = a[k] + c[k];
        o0[k] = a[k];
        o1[k] = (ac + b[k]) * (1.0f / 3);
        o2[k] = (b[k] - ac) * (1.0f / 3);
        o3[k] = (16.0f * a[k] + 8.0f * b[k] + 4.0f * c[k]) * (-1.0f / 15);
        o4[k] = (a[k] - 2.0f * b[k] + 4.0f * c[k]) * (1.0f / 15);
        o5[k] = c[k];
    }
}

/* F(4x4, 3x3)'s G g G^T; gt: G g, row i of column b at (3i + b), 18 rows. */
static void filter_tile4(float *u, long plane, const float *wt, float *gt, int ci)
{
    const long st = 3L * ci;
    for (int b = 0; b < 3; b++) { /* along the filter's rows: column b */
        float *r = gt + (long)b * ci;
        g6(r, r + st, r + 2 * st, r + 3 * st, r + 4 * st, r + 5 * st, wt + b * ci, wt + (3 + b) * ci, wt + (6 + b) * ci,
           ci);
    }
    for (int i = 0; i < 6; i++) { /* along the columns of row i: positions 6i .. 6i + 5 */
        float *d = u + (6L * i) * plane;
        const float *a = gt + (3L * i) * ci;
        g6(d, d + plane, d + 2 * plane, d + 3 * plane, d + 4 * plane, d + 5 * plane, a, a + ci, a + 2 * ci, ci);
    }
}

/* G g G^T of every (o, c, k) filter. w: (co, ci, kt, 3, 3) contiguous; u: [k][36][co][ci]. */
void wf4_filter_transform(const float *w, int co, int ci, int kt, float *u)
{
    filter_transform(w, co, ci, kt, u, 36, 18, filter_tile4);
}

/* B^T applied to six values d0 .. d5 (n floats each: rows, or the pixels of a tile row) into o0 .. o5. */
static inline void bt6(float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3,
                       float *restrict o4, float *restrict o5, const float *restrict d0, const float *restrict d1,
                       const float *restrict d2, const float *restrict d3, const float *restrict d4,
                       const float *restrict d5, long n)
{
#pragma omp simd
    for (long x = 0; x < n; x++) {
        o0[x] = d0[x] - 1.5f * d1[x] - 2.0f * d2[x] + 1.5f * d3[x] + d4[x];
        o1[x] = 0.5f * d2[x] - d1[x] + 2.5f * d3[x] + d4[x];
        o2[x] = d1[x] - 2.5f * d2[x] + 0.5f * d3[x] + d4[x];
        o3[x] = 2.0f * (d3[x] - d1[x]) - d2[x] + d4[x];
        o4[x] = 0.5f * (d1[x] - d3[x]) - d2[x] + d4[x];
        o5[x] = d1[x] - 1.5f * d2[x] - 2.0f * d3[x] + 1.5f * d4[x] + d5[x];
    }
}

/* B^T d B of the 6x6 tiles of tile rows [ty0, ty1) of n frames (see wf_input_transform, whose arguments
 * these are). Tile (t, x) covers image rows 4t-1 .. 4t+4 and columns 4x-1 .. 4x+4; outside is zero.
 * With gamma, normalised rows are kept in 8 slots (image row y in slot y & 7): consecutive tile rows
 * share two image rows, which are normalised once. */
void wf4_input_transform(const float *const *frames, int n, int h, int w, int c, int ty0, int ty1,
                         const float *gamma, const float *beta, float eps, float *v, long plane)
{
    const int nw = (w + 3) / 4, nty = ty1 - ty0;
    const long row = (long)w * c;
    const long srow = (4L * nw + 2) * c; /* pixels -1 .. 4nw: the row plus zero padding */
    const int items = n * nty;
#pragma omp parallel
    {
        float *s = padded_rows(6, srow, w, c);
        float *zero = scratch((size_t)row);
        float *nrm = gamma ? scratch(8 * (size_t)row) : NULL;
        long tag[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
        memset(zero, 0, row * sizeof(float));
#pragma omp for schedule(static)
        for (int it = 0; it < items; it++) {
            const int f = it / nty, t = it % nty, ty = ty0 + t;
            const float *d[6];
            for (int r = 0; r < 6; r++) {
                d[r] = input_row(frames[f], (long)f * h, 4 * ty - 1 + r, h, w, c, gamma, beta, eps, nrm, tag, 7);
                d[r] = d[r] ? d[r] : zero;
            }
            float *r = s + c; /* along H, whole rows, into the row buffers (after their left padding pixel) */
            bt6(r, r + srow, r + 2 * srow, r + 3 * srow, r + 4 * srow, r + 5 * srow, d[0], d[1], d[2], d[3], d[4],
                d[5], row);
            for (int i = 0; i < 6; i++) { /* along W, tile by tile: positions 6i .. 6i + 5 */
                for (int x = 0; x < nw; x++) {
                    const float *e = s + i * srow + (4L * x) * c;
                    float *o = v + (6L * i) * plane + ((long)(f * nty + t) * nw + x) * c;
                    bt6(o, o + plane, o + 2 * plane, o + 3 * plane, o + 4 * plane, o + 5 * plane, e, e + c, e + 2 * c,
                        e + 3 * c, e + 4 * c, e + 5 * c, c);
                }
            }
        }
        free(s);
        free(zero);
        free(nrm);
    }
}

/* A^T applied to six values m0 .. m5 (n floats each), into o0 + v * ov. */
static inline void at6(float *restrict o0, long ov, const float *restrict m0, const float *restrict m1,
                       const float *restrict m2, const float *restrict m3, const float *restrict m4,
                       const float *restrict m5, int n)
{
    float *restrict o1 = o0 + ov, *restrict o2 = o1 + ov, *restrict o3 = o2 + ov;
#pragma omp simd
    for (int k = 0; k < n; k++) {
        const float p = m1[k] + m2[k], q = m1[k] - m2[k];
        o0[k] = m0[k] + p + m3[k] + m4[k];
        o1[k] = q + 0.5f * m3[k] - 2.0f * m4[k];
        o2[k] = p + 0.25f * m3[k] + 4.0f * m4[k];
        o3[k] = q + 0.125f * m3[k] - 8.0f * m4[k] + m5[k];
    }
}

/* A^T m A of the products into 4x4 output tiles (see wf_output_transform, whose arguments these are). */
void wf4_output_transform(const float *const *planes, int n, int nty, int nw, int co, float *const *frames, int h,
                          int w, long stride, int ty0, const float *bias, int accumulate)
{
    const int items = n * nty;
#pragma omp parallel
    {
        float *s = scratch(24L * co); /* A^T along W: s[4i + v] for tile row i, output column v */
        float *y = scratch(16L * co); /* the 4x4 output pixels y[4u + v] */
#pragma omp for schedule(static)
        for (int it = 0; it < items; it++) {
            const int f = it / nty, t = it % nty, ty = ty0 + t;
            for (int x = 0; x < nw; x++) {
                const long off = ((long)(f * nty + t) * nw + x) * co;
                for (int i = 0; i < 6; i++) {
                    const float *const *m = planes + 6 * i;
                    at6(s + (4L * i) * co, co, m[0] + off, m[1] + off, m[2] + off, m[3] + off, m[4] + off, m[5] + off,
                        co);
                }
                for (int vv = 0; vv < 4; vv++) { /* along H, output column vv */
                    const float *m = s + (long)vv * co;
                    const long st = 4L * co;
                    at6(y + (long)vv * co, 4L * co, m, m + st, m + 2 * st, m + 3 * st, m + 4 * st, m + 5 * st, co);
                }
                for (int u = 0; u < 4; u++) {
                    const int yy = 4 * ty + u;
                    if (yy >= h) break;
                    for (int vv = 0; vv < 4; vv++) {
                        const int xx = 4 * x + vv;
                        if (xx >= w) break;
                        store_pixel(frames[f] + ((long)yy * w + xx) * stride, y + (4L * u + vv) * co, bias, co,
                                    accumulate);
                    }
                }
            }
        }
        free(s);
        free(y);
    }
}
