// Kernels of the compresskv CUDA backend, compiled to PTX by `go generate`
// with clang-16 alone (no CUDA toolkit, no headers but clang's own built-in
// variables). The Go side (backend/cuda/launch.go) packs the arguments of
// each kernel in the order written here; keep the two in step.
//
// Conventions: a layer's keys (values) are one buffer [G][cap][d] of
// float32, float16 or bfloat16 (dtype 0, 1, 2); "headStride" is cap*d
// elements. Scores and softmax states are float32.
//
// Numerics. The softmax kernels (decode attention, window sums, the cuBLAS
// path's row softmax) work in base 2: the logits are scaled by log2(e) with
// the 1/sqrt(d) of attention (the host passes scale2 = log2(e)/sqrt(d)),
// exponentials are ex2.approx (2 ulp; subnormal results flush to 0, as the
// CPU backend's exp flushes below the normal range), and dot products use
// fused multiply-adds. The results stay within the tests' bounds of the
// float64 reference (window sums and weights 1e-6 + 1e-4*ref, decode
// attention 1e-5 + 1e-4*|ref|). Pooling, group means and top-k are exact:
// they compute what backend/cpu computes, bit for bit, with no fused
// operation (the module is compiled with -ffp-contract=off; fmaf is asked
// for by name where it is wanted).

#include <__clang_cuda_builtin_vars.h>

#define GLOBAL extern "C" __attribute__((global))
#define BOUNDS(threads, blocks) __attribute__((launch_bounds(threads, blocks)))
#define DEVICE static __attribute__((device, always_inline)) inline
#define SHARED __attribute__((shared))

typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef u32 u32x4 __attribute__((ext_vector_type(4)));
typedef float f32x4 __attribute__((ext_vector_type(4)));

#define FULL 0xffffffffu
#define DMAX 256 // largest head dimension

DEVICE float bits_f(u32 u) { return __builtin_bit_cast(float, u); }
DEVICE u32 f_bits(float f) { return __builtin_bit_cast(u32, f); }
DEVICE float ex2(float x) { return __nvvm_ex2_approx_ftz_f(x); }
DEVICE float fmaf_(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
DEVICE float neg_inf() { return -__builtin_inff(); }

DEVICE float half_to_float(u16 h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}

// halves splits a word into its two float16 halves (one mov.b32).
DEVICE void halves(u32 u, u16 &lo, u16 &hi) { asm("mov.b32 {%0, %1}, %2;" : "=h"(lo), "=h"(hi) : "r"(u)); }

// load returns element i of a float32 (0), float16 (1) or bfloat16 (2) array.
DEVICE float load(const void *base, u64 i, int dtype) {
  if (dtype == 0) return ((const float *)base)[i];
  u16 h = ((const u16 *)base)[i];
  if (dtype == 1) return half_to_float(h);
  return bits_f((u32)h << 16);
}

// elem_size is the bytes of one element of dtype.
DEVICE int elem_size(int dtype) { return dtype == 0 ? 4 : 2; }

// head_base returns the start of KV head g of a layer buffer.
DEVICE const char *head_base(const void *buf, int g, u64 headStride, int dtype) {
  return (const char *)buf + (u64)g * headStride * elem_size(dtype);
}

// chunk8 loads elements [8c, 8c+8) of a row of d elements of type DT into
// v, as float32. With VEC (d a multiple of 8: every row starts on 16 bytes)
// it reads 16-byte words, one for 16-bit types, two for float32; without,
// element by element, zero from d on.
template <int DT, bool VEC>
DEVICE void chunk8(float v[8], const char *row, int c, int d) {
  if (VEC) {
    if (DT == 0) {
      const f32x4 a = ((const f32x4 *)row)[2 * c], b = ((const f32x4 *)row)[2 * c + 1];
      v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
      return;
    }
    const u32x4 w = ((const u32x4 *)row)[c];
    const u32 u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
      if (DT == 1) {
        u16 lo, hi;
        halves(u[i], lo, hi);
        v[2 * i] = half_to_float(lo);
        v[2 * i + 1] = half_to_float(hi);
      } else {
        v[2 * i] = bits_f(u[i] << 16);
        v[2 * i + 1] = bits_f(u[i] & 0xffff0000u);
      }
    }
    return;
  }
#pragma unroll
  for (int e = 0; e < 8; e++) {
    const int x = 8 * c + e;
    v[e] = x < d ? load(row, x, DT) : 0.0f;
  }
}

// with_dtype calls f.template operator()<DT, VEC>() for the storage type
// and the alignment of the rows, so that the loops over a row are compiled
// once per case with no branch inside.
#define WITH_DTYPE(dtype, vec, CALL)                   \
  do {                                                 \
    if (dtype == 0) {                                  \
      if (vec) CALL(0, true); else CALL(0, false);     \
    } else if (dtype == 1) {                           \
      if (vec) CALL(1, true); else CALL(1, false);     \
    } else {                                           \
      if (vec) CALL(2, true); else CALL(2, false);     \
    }                                                  \
  } while (0)

DEVICE float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __nvvm_shfl_sync_bfly_f32(FULL, v, o, 0x1f);
  return v;
}

DEVICE float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = __nvvm_fmax_f(v, __nvvm_shfl_sync_bfly_f32(FULL, v, o, 0x1f));
  return v;
}

// ---------------------------------------------------------------------------
// Decode attention of one token (backend.Backend.Attend), split along the
// rows: attend_partial gives each block (split, KV head g, chunk of up to HC
// query heads of g's group) the rows [split*splitRows, +splitRows) and
// writes an online-softmax state (max, sum, acc[d]) per query head and split
// into part[(h*nsplit + split)*(d+2)], max in log2 units; attend_merge
// combines the splits.
//
// A block is AW warps; warp w takes the tiles of 32 keys w, w+AW, ... of the
// split. Keys: one lane per key computes the HC dot products over its whole
// row, reading the row in 16-byte words (the 32 rows of a tile in flight at
// once), the queries broadcast from shared memory. Values: NC lanes per row
// (8 elements, 16 bytes each), 32/NC rows per step, each lane accumulating
// its 8 elements for the HC heads with the tile's probabilities read from
// shared memory. The online softmax is per warp; the warps merge at the end.

#define AW 4 // warps per attend_partial block

// attend_qk adds to dot[h] the products of the key row kr (type DT) with
// the HC queries in qs (rows of 8*NC floats), over the nch chunks of 8.
template <int NC, int HC, int DT, bool VEC>
DEVICE void attend_qk(float dot[HC], const char *kr, const float *qs, int nch, int d) {
  constexpr int DP = 8 * NC;
  auto step = [&](int c) {
    float kv[8];
    chunk8<DT, VEC>(kv, kr, c, d);
#pragma unroll
    for (int h = 0; h < HC; h++) {
      const f32x4 qa = ((const f32x4 *)(qs + h * DP + 8 * c))[0], qb = ((const f32x4 *)(qs + h * DP + 8 * c))[1];
      dot[h] = fmaf_(kv[0], qa.x, dot[h]);
      dot[h] = fmaf_(kv[1], qa.y, dot[h]);
      dot[h] = fmaf_(kv[2], qa.z, dot[h]);
      dot[h] = fmaf_(kv[3], qa.w, dot[h]);
      dot[h] = fmaf_(kv[4], qb.x, dot[h]);
      dot[h] = fmaf_(kv[5], qb.y, dot[h]);
      dot[h] = fmaf_(kv[6], qb.z, dot[h]);
      dot[h] = fmaf_(kv[7], qb.w, dot[h]);
    }
  };
  if (VEC) { // two chunks a turn: their loads go out together
    int c = 0;
    for (; c + 2 <= nch; c += 2) {
      step(c);
      step(c + 1);
    }
    if (c < nch) step(c);
  } else {
#pragma unroll 1
    for (int c = 0; c < nch; c++) step(c);
  }
}

// attend_pv adds to the lane's accumulators (chunk vc of its value rows
// t0 + it*32/NC + vk, before s1) the rows weighted by the tile's
// probabilities pw[key*HC + h].
template <int NC, int HC, int DT, bool VEC>
DEVICE void attend_pv(float acc[HC][8], const char *vb, const float *pw, int t0, int s1, int vk, int vc, int rowBytes,
                      int d) {
  constexpr int KPS = 32 / NC; // value rows per step
  const char *vr = vb + (u64)(t0 + vk) * rowBytes;
  const u64 step = (u64)KPS * rowBytes;
#pragma unroll 2
  for (int it = 0; it < NC; it++, vr += step) {
    const int kk = it * KPS + vk, jj = t0 + kk;
    if (jj < s1) {
      float vv[8];
      chunk8<DT, VEC>(vv, vr, vc, d);
      float p[HC];
#pragma unroll
      for (int h = 0; h < HC; h += 4) {
        const f32x4 pp = ((const f32x4 *)(pw + kk * HC + h))[0];
        p[h] = pp.x;
        if (h + 1 < HC) p[h + 1] = pp.y;
        if (h + 2 < HC) p[h + 2] = pp.z;
        if (h + 3 < HC) p[h + 3] = pp.w;
      }
#pragma unroll
      for (int h = 0; h < HC; h++)
#pragma unroll
        for (int e = 0; e < 8; e++) acc[h][e] = fmaf_(p[h], vv[e], acc[h][e]);
    }
  }
}

template <int NC, int HC>
DEVICE void attend_partial_t(float *qs, float *ps, float *wacc, float *wms, const void *keys, const void *vals,
                             u64 headStride, int dtype, int d, float scale2, const float *q, const int *lens, int group,
                             int splitRows, int nsplit, float *part) {
  constexpr int DP = 8 * NC; // padded head dimension
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int split = blockIdx.x, g = blockIdx.y, hc0 = blockIdx.z * HC;
  const int nh = group - hc0 < HC ? group - hc0 : HC;
  const int L = lens[g];
  const int s0 = split * splitRows, s1 = s0 + splitRows < L ? s0 + splitRows : L;
  const int h0 = g * group + hc0;
  const int nch = (d + 7) >> 3;
  const bool vec = (d & 7) == 0;
  const int rowBytes = d * elem_size(dtype);
  for (int i = tid; i < HC * DP; i += 32 * AW) {
    const int h = i / DP, x = i % DP;
    qs[i] = h < nh && x < d ? q[(u64)(h0 + h) * d + x] * scale2 : 0.0f;
  }
  __syncthreads();
  const char *kb = head_base(keys, g, headStride, dtype);
  const char *vb = head_base(vals, g, headStride, dtype);
  const int vc = lane % NC, vk = lane / NC; // the value chunk and row of this lane
  float m[HC], s[HC], acc[HC][8];
#pragma unroll
  for (int h = 0; h < HC; h++) {
    m[h] = neg_inf();
    s[h] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; e++) acc[h][e] = 0.0f;
  }
  float *pw = ps + warp * 32 * HC;
  for (int t0 = s0 + 32 * warp; t0 < s1; t0 += 32 * AW) {
    const int j = t0 + lane;
    float dot[HC];
#pragma unroll
    for (int h = 0; h < HC; h++) dot[h] = 0.0f;
    if (j < s1) {
      const char *kr = kb + (u64)j * rowBytes;
#define QK(DT, VEC) attend_qk<NC, HC, DT, VEC>(dot, kr, qs, nch, d)
      WITH_DTYPE(dtype, vec, QK);
#undef QK
    }
#pragma unroll
    for (int h = 0; h < HC; h++) {
      const float l = j < s1 ? dot[h] : neg_inf();
      const float mn = __nvvm_fmax_f(m[h], warp_max(l));
      const float p = ex2(l - mn);
      if (mn != m[h]) { // uniform over the warp
        const float f = ex2(m[h] - mn);
        s[h] *= f;
#pragma unroll
        for (int e = 0; e < 8; e++) acc[h][e] *= f;
        m[h] = mn;
      }
      s[h] += p;
      pw[lane * HC + h] = p;
    }
    __nvvm_bar_warp_sync(FULL);
    if (vc < nch) {
#define PV(DT, VEC) attend_pv<NC, HC, DT, VEC>(acc, vb, pw, t0, s1, vk, vc, rowBytes, d)
      WITH_DTYPE(dtype, vec, PV);
#undef PV
    }
    __nvvm_bar_warp_sync(FULL);
  }
  // The warp's sums, and its accumulators gathered from the lanes that
  // share a value chunk.
#pragma unroll
  for (int h = 0; h < HC; h++) {
    s[h] = warp_sum(s[h]);
#pragma unroll
    for (int o = NC; o < 32; o <<= 1)
#pragma unroll
      for (int e = 0; e < 8; e++) acc[h][e] += __nvvm_shfl_sync_bfly_f32(FULL, acc[h][e], o, 0x1f);
  }
  if (lane < NC) {
#pragma unroll
    for (int h = 0; h < HC; h++)
#pragma unroll
      for (int e = 0; e < 8; e++) wacc[(warp * HC + h) * DP + 8 * lane + e] = acc[h][e];
  }
  if (lane == 0) {
#pragma unroll
    for (int h = 0; h < HC; h++) {
      wms[2 * (warp * HC + h)] = m[h];
      wms[2 * (warp * HC + h) + 1] = s[h];
    }
  }
  __syncthreads();
  for (int i = tid; i < nh * (d + 2); i += 32 * AW) {
    const int h = i / (d + 2), x = i % (d + 2);
    float M = neg_inf();
    for (int w = 0; w < AW; w++)
      if (wms[2 * (w * HC + h) + 1] != 0.0f) M = __nvvm_fmax_f(M, wms[2 * (w * HC + h)]);
    float a = M; // x == 0: the max; x == 1: the sum; then the accumulators
    if (x > 0) {
      a = 0.0f;
      for (int w = 0; w < AW; w++) {
        const float sw = wms[2 * (w * HC + h) + 1];
        if (sw == 0.0f) continue;
        const float f = ex2(wms[2 * (w * HC + h)] - M);
        a = fmaf_(x == 1 ? sw : wacc[(w * HC + h) * DP + x - 2], f, a);
      }
    }
    part[((u64)(h0 + h) * nsplit + split) * (d + 2) + x] = a;
  }
}

// attend_partial (d <= 256, 4 query heads a block) and its variants for
// d <= 128 (4 or 8 heads) and d <= 64 (8 heads): the per-lane registers
// grow with the heads, so each is its own kernel, with the same parameters;
// the host chooses by d and the group. The launch bounds cap the registers
// so that MINB blocks fit on an SM: 3 (12 warps) with 4 heads, 2 with 8.
#define ATTEND_PARTIAL(NAME, NC, HC, MINB)                                                                        \
  GLOBAL BOUNDS(32 * AW, MINB) void NAME(const void *keys, const void *vals, u64 headStride, int dtype, int d,   \
                                         float scale2, const float *q, const int *lens, int group, int splitRows, \
                                         int nsplit, float *part) {                                               \
    SHARED static __attribute__((aligned(16))) float qs[HC * 8 * NC];                                            \
    SHARED static __attribute__((aligned(16))) float ps[AW * 32 * HC];                                           \
    SHARED static float wacc[AW * HC * 8 * NC];                                                                   \
    SHARED static float wms[2 * AW * HC];                                                                         \
    attend_partial_t<NC, HC>(qs, ps, wacc, wms, keys, vals, headStride, dtype, d, scale2, q, lens, group,         \
                             splitRows, nsplit, part);                                                            \
  }
ATTEND_PARTIAL(attend_partial, 32, 4, 3)
ATTEND_PARTIAL(attend_partial_d128, 16, 4, 3)
ATTEND_PARTIAL(attend_partial_d128_h8, 16, 8, 2)
ATTEND_PARTIAL(attend_partial_d64, 8, 8, 2)

// attend_merge combines the nsplit states of query head blockIdx.x into
// out[h*d : (h+1)*d].
GLOBAL void attend_merge(const float *part, int nsplit, int d, float *out) {
  const int h = blockIdx.x;
  const float *ph = part + (u64)h * nsplit * (d + 2);
  float M = neg_inf();
  for (int s = 0; s < nsplit; s++)
    if (ph[s * (d + 2) + 1] != 0.0f) M = __nvvm_fmax_f(M, ph[s * (d + 2)]);
  for (int x = threadIdx.x; x < d; x += blockDim.x) {
    float S = 0.0f, a = 0.0f;
    for (int s = 0; s < nsplit; s++) {
      const float *p = ph + s * (d + 2);
      if (p[1] == 0.0f) continue;
      const float f = ex2(p[0] - M);
      S = fmaf_(p[1], f, S);
      a = fmaf_(p[2 + x], f, a);
    }
    out[(u64)h * d + x] = a / S;
  }
}

// ---------------------------------------------------------------------------
// Window attention sums (backend.Backend.WindowScores). Blocks own (tile of
// WT keys, group of query rows reading one KV head); a thread owns a key and
// computes its logits against the group's rows, WR at a time, reading its
// key row once per WR rows in 16-byte words (from L1 after the first).
//
// window_pass, mode 1: per query row and tile, the (max, sum of 2^(l-max))
// of its visible logits into stats; with lg, the logits themselves into
// lg[row*lgStride + key] as well. window_merge folds the tiles into fin =
// (max, 1/sum) per row. window_pass, mode 2: the sums: each key adds the
// normalised probabilities of the rows of an output entry and stores the
// sum at out[outOff + key]; the logits come from lg (written by mode 1: the
// keys are read once), or are computed again when lg is 0 (the logits of a
// long window would not fit); fin is read, or with mode 2|4 folded by the
// block itself from stats (few rows: one launch fewer).
//
// groups: per group, 4 ints (g, L, first row, row count); grid.y indexes
// the groups. rows: per query row, 3 ints (offset of its query in q, vis,
// out offset): the row sees keys j < vis; rows of one output entry are
// contiguous and share outOff. grid.x indexes tiles; blockDim.x == WT.

#define WT 128 // keys per window block (4 warps)
#define WR 8   // query rows per step
#define FOLDMAX 64 // rows a mode-2|4 block folds itself

// window_qk sets dot[r] to the products of the key row kr (type DT) with the
// WR queries in qs (rows of 8*NC floats), over the nch chunks of 8.
template <int NC, int DT, bool VEC>
DEVICE void window_qk(float dot[WR], const char *kr, const float *qs, int nch, int d) {
  constexpr int DP = 8 * NC;
  auto step = [&](int c) {
    float kv[8];
    chunk8<DT, VEC>(kv, kr, c, d);
#pragma unroll
    for (int r = 0; r < WR; r++) {
      const f32x4 qa = ((const f32x4 *)(qs + r * DP + 8 * c))[0], qb = ((const f32x4 *)(qs + r * DP + 8 * c))[1];
      dot[r] = fmaf_(kv[0], qa.x, dot[r]);
      dot[r] = fmaf_(kv[1], qa.y, dot[r]);
      dot[r] = fmaf_(kv[2], qa.z, dot[r]);
      dot[r] = fmaf_(kv[3], qa.w, dot[r]);
      dot[r] = fmaf_(kv[4], qb.x, dot[r]);
      dot[r] = fmaf_(kv[5], qb.y, dot[r]);
      dot[r] = fmaf_(kv[6], qb.z, dot[r]);
      dot[r] = fmaf_(kv[7], qb.w, dot[r]);
    }
  };
  if (VEC) { // two chunks a turn: their loads go out together
    int c = 0;
    for (; c + 2 <= nch; c += 2) {
      step(c);
      step(c + 1);
    }
    if (c < nch) step(c);
  } else {
#pragma unroll 1
    for (int c = 0; c < nch; c++) step(c);
  }
}

template <int NC>
DEVICE void window_pass_t(float *qs, float *ls, float *fs, const void *keys, u64 headStride, int dtype, int d,
                          float scale2, const float *q, const int *groups, const int *rows, float *stats,
                          const float *fin, float *out, float *lg, u64 lgStride, int ntiles, int mode) {
  constexpr int DP = 8 * NC;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int tile = blockIdx.x, gi = blockIdx.y;
  const int g = groups[4 * gi], L = groups[4 * gi + 1];
  const int r0 = groups[4 * gi + 2], nr = groups[4 * gi + 3];
  const int j0 = tile * WT, j = j0 + tid;
  const int pass = mode & 3;
  if (j0 >= L) { // a tile past this head's keys: neutral statistics
    if (pass == 1)
      for (int r = tid; r < nr; r += WT) {
        stats[2 * ((u64)(r0 + r) * ntiles + tile)] = neg_inf();
        stats[2 * ((u64)(r0 + r) * ntiles + tile) + 1] = 0.0f;
      }
    return;
  }
  const bool valid = j < L;
  const int nch = (d + 7) >> 3;
  const bool vec = (d & 7) == 0;
  const char *kr = head_base(keys, g, headStride, dtype) + (u64)j * d * elem_size(dtype);
  (void)lane;
  const bool compute = pass == 1 || lg == 0;
  if (pass == 2 && (mode & 4)) { // fold the rows' tile statistics: one warp a row
    for (int r = warp; r < nr; r += WT / 32) {
      const float *st = stats + 2 * (u64)(r0 + r) * ntiles;
      float M = neg_inf();
      for (int t = lane; t < ntiles; t += 32) M = __nvvm_fmax_f(M, st[2 * t]);
      M = warp_max(M);
      float S = 0.0f;
      for (int t = lane; t < ntiles; t += 32)
        if (st[2 * t + 1] != 0.0f) S = fmaf_(st[2 * t + 1], ex2(st[2 * t] - M), S);
      S = warp_sum(S);
      if (lane == 0) {
        fs[2 * r] = M;
        fs[2 * r + 1] = 1.0f / S;
      }
    }
    __syncthreads();
  }
  float acc = 0.0f;
  int cur = -1;
  for (int c0 = 0; c0 < nr; c0 += WR) {
    float dot[WR];
#pragma unroll
    for (int r = 0; r < WR; r++) dot[r] = 0.0f;
    if (compute) {
      for (int i = tid; i < WR * DP; i += WT) {
        const int r = i / DP, x = i % DP;
        qs[i] = c0 + r < nr && x < d ? q[rows[3 * (r0 + c0 + r)] + x] * scale2 : 0.0f;
      }
      __syncthreads();
      if (valid) {
#define QK(DT, VEC) window_qk<NC, DT, VEC>(dot, kr, qs, nch, d)
        WITH_DTYPE(dtype, vec, QK);
#undef QK
      }
    }
    if (pass == 1) {
#pragma unroll
      for (int r = 0; r < WR; r++) {
        const int row = r0 + c0 + r;
        if (c0 + r < nr) {
          const int vis = rows[3 * row + 1];
          ls[r * WT + tid] = valid && j < vis ? dot[r] : neg_inf();
          if (lg != 0 && valid) lg[(u64)row * lgStride + j] = dot[r];
        }
      }
      __syncthreads();
      for (int r = warp; r < WR && c0 + r < nr; r += WT / 32) {
        float M = neg_inf();
        for (int k = lane; k < WT; k += 32) M = __nvvm_fmax_f(M, ls[r * WT + k]);
        M = warp_max(M);
        float S = 0.0f;
        if (M != neg_inf())
          for (int k = lane; k < WT; k += 32) S += ex2(ls[r * WT + k] - M);
        S = warp_sum(S);
        if (lane == 0) {
          stats[2 * ((u64)(r0 + c0 + r) * ntiles + tile)] = M;
          stats[2 * ((u64)(r0 + c0 + r) * ntiles + tile) + 1] = S;
        }
      }
    } else if (valid) {
#pragma unroll
      for (int r = 0; r < WR; r++) {
        const int row = r0 + c0 + r;
        if (c0 + r < nr) {
          const int vis = rows[3 * row + 1], e = rows[3 * row + 2];
          if (e != cur) {
            if (cur >= 0) out[(u64)cur + j] = acc;
            acc = 0.0f;
            cur = e;
          }
          if (j < vis) {
            const float l = lg != 0 ? lg[(u64)row * lgStride + j] : dot[r];
            const float M = mode & 4 ? fs[2 * (c0 + r)] : fin[2 * row];
            const float inv = mode & 4 ? fs[2 * (c0 + r) + 1] : fin[2 * row + 1];
            acc = fmaf_(ex2(l - M), inv, acc);
          }
        }
      }
    }
    if (compute) __syncthreads(); // before the next step's queries (and tile logits) overwrite these
  }
  if (pass == 2 && valid && cur >= 0) out[(u64)cur + j] = acc;
}

// window_pass (d <= 256) and its variants for d <= 128 and d <= 64: the
// per-thread chunk loop is unrolled to the largest d, so that the smaller
// head dimensions run shorter code. The host chooses by d.
#define WINDOW_PASS(NAME, NC)                                                                                   \
  GLOBAL BOUNDS(WT, 4) void NAME(const void *keys, u64 headStride, int dtype, int d, float scale2, const float *q, \
                                 const int *groups, const int *rows, float *stats, const float *fin, float *out,   \
                                 float *lg, u64 lgStride, int ntiles, int mode) {                                  \
    SHARED static __attribute__((aligned(16))) float qs[WR * 8 * NC];                                             \
    SHARED static float ls[WR * WT];                                                                               \
    SHARED static float fs[2 * FOLDMAX];                                                                           \
    window_pass_t<NC>(qs, ls, fs, keys, headStride, dtype, d, scale2, q, groups, rows, stats, fin, out, lg,      \
                      lgStride, ntiles, mode);                                                                     \
  }
WINDOW_PASS(window_pass, 32)
WINDOW_PASS(window_pass_d128, 16)
WINDOW_PASS(window_pass_d64, 8)

// window_merge folds the per-tile (max, sum) of each of nrows rows into
// fin = (max, 1/sum), in log2 units. One warp per row; blockDim.x == 256.
GLOBAL void window_merge(const float *stats, float *fin, int nrows, int ntiles) {
  const int lane = threadIdx.x % 32;
  const int r = blockIdx.x * 8 + threadIdx.x / 32;
  if (r >= nrows) return;
  const float *st = stats + 2 * (u64)r * ntiles;
  float m = neg_inf();
  for (int t = lane; t < ntiles; t += 32) m = __nvvm_fmax_f(m, st[2 * t]);
  m = warp_max(m);
  float s = 0.0f;
  for (int t = lane; t < ntiles; t += 32)
    if (st[2 * t + 1] != 0.0f) s = fmaf_(st[2 * t + 1], ex2(st[2 * t] - m), s);
  s = warp_sum(s);
  if (lane == 0) {
    fin[2 * r] = m;
    fin[2 * r + 1] = 1.0f / s;
  }
}

// ---------------------------------------------------------------------------
// Window sums for long windows (H2O's all-query scoring), with the logits of
// a chunk of query rows computed by cuBLAS (SGEMM, strided over the query
// heads of one KV head, scaled to log2 units) into lg: nb*C rows of ld
// floats, row b*C + i holding query i of the chunk for batch entry b,
// against the L keys. Query i sees keys j < visBase + i. rows_softmax folds
// each row into fin = (max, 1/sum of 2^(l-max)); colsum_rows adds each key's
// normalised probabilities over the chunk's rows, in row order, into
// out[b*outStride + j].

// widen_rows converts n elements of a float32/float16/bfloat16 array to
// float32, the operand type of the SGEMM.
GLOBAL void widen_rows(const void *src, float *dst, u64 n, int dtype) {
  for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x)
    dst[i] = load(src, i, dtype);
}

// rows_softmax: one warp per row; blockDim.x == 256.
GLOBAL void rows_softmax(const float *lg, int ld, int L, int C, int nrows, int visBase, float *fin) {
  const int lane = threadIdx.x % 32;
  const int r = blockIdx.x * 8 + threadIdx.x / 32;
  if (r >= nrows) return;
  const float *row = lg + (u64)r * ld;
  int vis = visBase + r % C;
  if (vis > L) vis = L;
  float m = neg_inf();
  for (int j = lane; j < vis; j += 32) m = __nvvm_fmax_f(m, row[j]);
  m = warp_max(m);
  float s = 0.0f;
  for (int j = lane; j < vis; j += 32) s += ex2(row[j] - m);
  s = warp_sum(s);
  if (lane == 0) {
    fin[2 * r] = m;
    fin[2 * r + 1] = 1.0f / s;
  }
}

// colsum_rows: grid (ceil(L/256), nb), one thread per key.
GLOBAL void colsum_rows(const float *lg, int ld, int L, int C, int visBase, const float *fin, float *out,
                        int outStride) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y;
  if (j >= L) return;
  float acc = 0.0f;
  for (int i = 0; i < C; i++) {
    if (j >= visBase + i) continue;
    const int r = b * C + i;
    acc = fmaf_(ex2(lg[(u64)r * ld + j] - fin[2 * r]), fin[2 * r + 1], acc);
  }
  out[(u64)b * outStride + j] += acc;
}

// ---------------------------------------------------------------------------
// pool_mean: the score rows of a selection, pooled and averaged exactly as
// backend/cpu's Pool and the policies' meanRows: output row o (grid.y) is
// the mean of src rows [o*per, (o+1)*per), summed in float32 in row order
// and multiplied by 1/per, pooled before (meanFirst == 0) or after
// (meanFirst == 1) the mean. Pooling: odd kernel, stride 1, padding
// kernel/2; average pooling sums in float64 (directly up to kernel 15, else
// with the CPU's sliding sum restarted every kernel positions) and divides
// by kernel; max pooling ignores the padding; kernel 1 is the identity.
// grid (ceil(n/256), output rows).

// mean_at is the mean of the per rows of base at position t.
DEVICE float mean_at(const float *base, int srcStride, int per, int t) {
#pragma clang fp contract(off)
  float acc = 0.0f;
  for (int r = 0; r < per; r++) acc += base[(u64)r * srcStride + t];
  return acc * (1.0f / (float)per);
}

// pool_at pools position i of a row of n values that get(t) returns.
template <class F>
DEVICE float pool_at(F get, int i, int n, int kernel, int kind) {
#pragma clang fp contract(off)
  if (kernel == 1) return get(i);
  const int r = kernel / 2;
  const int lo = i - r < 0 ? 0 : i - r, hi = i + r + 1 > n ? n : i + r + 1;
  if (kind == 1) {
    float m = get(lo);
#pragma unroll 1
    for (int t = lo + 1; t < hi; t++) {
      const float v = get(t);
      if (v > m) m = v;
    }
    return m;
  }
  const double inv = 1.0 / (double)kernel;
  double sum = 0.0;
  // (the loops stay rolled: a kernel of at most 15 would never take the
  // second turn of an unrolled one)
  if (kernel <= 15) {
#pragma unroll 1
    for (int t = lo; t < hi; t++) sum += (double)get(t);
  } else {
    const int i0 = i - i % kernel;
    const int l0 = i0 - r < 0 ? 0 : i0 - r, h0 = i0 + r + 1 > n ? n : i0 + r + 1;
#pragma unroll 1
    for (int t = l0; t < h0; t++) sum += (double)get(t);
#pragma unroll 1
    for (int p = i0 + 1; p <= i; p++) {
      if (p + r < n) sum += (double)get(p + r);
      if (p - r - 1 >= 0) sum -= (double)get(p - r - 1);
    }
  }
  return (float)(sum * inv);
}

GLOBAL void pool_mean(const float *src, float *dst, int n, int srcStride, int dstStride, int kernel, int kind, int per,
                      int meanFirst) {
#pragma clang fp contract(off)
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int o = blockIdx.y;
  const float *base = src + (u64)o * per * srcStride;
  float res;
  if (meanFirst) {
    res = pool_at([&](int t) { return mean_at(base, srcStride, per, t); }, i, n, kernel, kind);
  } else {
    float acc = 0.0f;
    for (int r = 0; r < per; r++) {
      const float *row = base + (u64)r * srcStride;
      acc += pool_at([&](int t) { return row[t]; }, i, n, kernel, kind);
    }
    res = acc * (1.0f / (float)per);
  }
  dst[(u64)o * dstStride + i] = res;
}

// ---------------------------------------------------------------------------
// Top-k of rows of n scores (grid.y indexes the rows): the indices of the k
// largest, ascending, ties to the lower index: the same set as backend/cpu's
// TopK. 0 < k < n. Scores map to 32-bit keys whose ascending order is the
// scores' descending order (-0 == +0); a radix select over three digits (11,
// 11 and 10 bits, from the top) finds the key S of the k-th smallest and how
// many keys equal to S to take; topk_write then writes, in index order,
// every index with a key below S and the first `need` with key S.
//
// A row is cut into nb chunks of `chunk` scores, one block (TK threads)
// each. topk_hist(pass p) counts, per block, the keys of its chunk that
// match the digits found so far, by their digit p, into
// hist[((p*rows + row)*nb + b)*BINS + bin]: a shared histogram with
// warp-aggregated atomics (the lanes of a warp holding the same digit add
// once). Every block then finds the digits of the earlier passes itself:
// it adds the blocks' histograms and scans the bins in parallel. topk_write
// counts, from the histograms, the keys below S and equal to S in the
// chunks before its own, and scans its chunk. Pass 0 records in
// nanb[row*nb + b] the first index of a NaN in the chunk (or INT_MAX);
// topk_write sets nan[row] to 1 + the first NaN's index, or 0, and writes
// nothing else for a row with a NaN.

#define TK 1024
#define BINS 2048
#define NPASS 3
#define NOBIN 0xffffffffu
#define INTMAX 0x7fffffff

DEVICE u32 order_key(float v) {
  if (v == 0.0f) v = 0.0f;
  u32 u = f_bits(v);
  if (u & 0x80000000u) u = ~u;
  else u |= 0x80000000u;
  return ~u;
}

DEVICE int digit_shift(int p) { return p == 0 ? 21 : p == 1 ? 10 : 0; }
DEVICE u32 digit_mask(int p) { return p == 2 ? 1023u : 2047u; }

// block_sum returns the sum of v over the block (every thread gets it);
// red holds 33 words.
DEVICE u32 block_sum(u32 v, u32 *red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __nvvm_shfl_sync_bfly_i32(FULL, v, o, 0x1f);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    u32 w = lane < (int)(blockDim.x >> 5) ? red[lane] : 0;
    for (int o = 16; o > 0; o >>= 1) w += __nvvm_shfl_sync_bfly_i32(FULL, w, o, 0x1f);
    if (lane == 0) red[32] = w;
  }
  __syncthreads();
  const u32 r = red[32];
  __syncthreads();
  return r;
}

// find_digits sets sh[0] to the key prefix of the first `passes` digits of
// the k-th smallest key of the row and sh[1] to its rank among the keys
// with that prefix, from the blocks' histograms. Each pass adds the nb
// histograms (thread t owns bins 2t and 2t+1), scans the bins' counts over
// the block, and the thread whose bins hold the rank writes the digit.
DEVICE void find_digits(const u32 *hist, int rows, int row, int nb, int passes, u32 k, u32 *sh, u32 *wex) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (tid == 0) {
    sh[0] = 0;
    sh[1] = k;
  }
  __syncthreads();
  for (int p = 0; p < passes; p++) {
    const u32 prefix = sh[0], rem = sh[1];
    const u32 *hp = hist + ((u64)p * rows + row) * nb * BINS;
    u32 a = 0, b = 0;
    for (int bb = 0; bb < nb; bb++) {
      a += hp[(u64)bb * BINS + 2 * tid];
      b += hp[(u64)bb * BINS + 2 * tid + 1];
    }
    const u32 own = a + b;
    u32 incl = own;
    for (int o = 1; o < 32; o <<= 1) {
      const u32 x = __nvvm_shfl_sync_up_i32(FULL, incl, o, 0);
      if (lane >= o) incl += x;
    }
    if (lane == 31) wex[warp] = incl;
    __syncthreads();
    if (warp == 0) {
      const u32 w = wex[lane];
      u32 wi = w;
      for (int o = 1; o < 32; o <<= 1) {
        const u32 x = __nvvm_shfl_sync_up_i32(FULL, wi, o, 0);
        if (lane >= o) wi += x;
      }
      wex[32 + lane] = wi - w;
    }
    __syncthreads();
    const u32 excl = wex[32 + warp] + incl - own;
    if (excl < rem && rem <= excl + own) {
      const u32 bin = rem <= excl + a ? 2 * tid : 2 * tid + 1;
      sh[0] = prefix | (bin << digit_shift(p));
      sh[1] = rem - excl - (bin == 2 * (u32)tid ? 0 : a);
    }
    __syncthreads();
  }
}

GLOBAL BOUNDS(TK, 1) void topk_hist(const float *scores, int n, int stride, int k, int nb, int chunk, u32 *hist,
                                    int *nanb, int pass) {
  SHARED static u32 h[BINS];
  SHARED static u32 sh[2];
  SHARED static u32 wex[64];
  SHARED static int nanMin;
  const int tid = threadIdx.x, lane = tid & 31;
  const int b = blockIdx.x, row = blockIdx.y, rows = gridDim.y;
  const float *s = scores + (u64)row * stride;
  find_digits(hist, rows, row, nb, pass, (u32)k, sh, wex);
  const u32 prefix = sh[0];
  const u32 mask = pass == 0 ? 0u : ~0u << (digit_shift(pass - 1));
  const int shift = digit_shift(pass);
  const u32 dm = digit_mask(pass);
  for (int i = tid; i < BINS; i += TK) h[i] = 0;
  if (tid == 0) nanMin = INTMAX;
  __syncthreads();
  const int start = b * chunk, end = start + chunk < n ? start + chunk : n;
  int firstNaN = INTMAX;
  for (int i0 = start; i0 < end; i0 += TK) {
    const int i = i0 + tid;
    u32 bin = NOBIN;
    if (i < end) {
      const float v = s[i];
      if (v != v) {
        if (i < firstNaN) firstNaN = i;
      } else {
        const u32 key = order_key(v);
        if ((key & mask) == prefix) bin = (key >> shift) & dm;
      }
    }
    const u32 peers = __nvvm_match_any_sync_i32(FULL, bin);
    if (bin != NOBIN && lane == __builtin_ctz(peers)) __nvvm_atom_add_gen_i((int *)&h[bin], __builtin_popcount(peers));
  }
  if (pass == 0 && firstNaN != INTMAX) __nvvm_atom_min_gen_i(&nanMin, firstNaN);
  __syncthreads();
  u32 *out = hist + (((u64)pass * rows + row) * nb + b) * BINS;
  for (int i = tid; i < BINS; i += TK) out[i] = h[i];
  if (pass == 0 && tid == 0) nanb[row * nb + b] = nanMin;
}

GLOBAL BOUNDS(TK, 1) void topk_write(const float *scores, int n, int stride, int k, int nb, int chunk, const u32 *hist,
                                     const int *nanb, int *out, int outStride, int *nan) {
  SHARED static u32 sh[2];
  SHARED static u32 wex[64];
  SHARED static u32 red[33];
  SHARED static u32 wcount[2 * 32];
  SHARED static u32 wpre[2 * 33];
  SHARED static int nanMin;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int b = blockIdx.x, row = blockIdx.y, rows = gridDim.y;
  const float *s = scores + (u64)row * stride;
  int *o = out + (u64)row * outStride;
  if (tid == 0) nanMin = INTMAX;
  __syncthreads();
  if (tid < nb && nanb[row * nb + tid] != INTMAX) __nvvm_atom_min_gen_i(&nanMin, nanb[row * nb + tid]);
  __syncthreads();
  if (nanMin != INTMAX) {
    if (b == 0 && tid == 0) nan[row] = nanMin + 1;
    return;
  }
  if (b == 0 && tid == 0) nan[row] = 0;
  find_digits(hist, rows, row, nb, NPASS, (u32)k, sh, wex);
  const u32 S = sh[0], need = sh[1];
  // keys below S and equal to S in the chunks before this one
  u32 lt = 0, eq = 0;
  for (int p = 0; p < NPASS; p++) {
    const u32 dig = (S >> digit_shift(p)) & digit_mask(p);
    const u32 *hp = hist + ((u64)p * rows + row) * nb * BINS;
    const u32 b0 = 2 * tid, b1 = b0 + 1;
    for (int bb = 0; bb < b; bb++) {
      const u32 c0 = hp[(u64)bb * BINS + b0], c1 = hp[(u64)bb * BINS + b1];
      lt += (b0 < dig ? c0 : 0) + (b1 < dig ? c1 : 0);
      if (p == NPASS - 1) eq += (b0 == dig ? c0 : 0) + (b1 == dig ? c1 : 0);
    }
  }
  u32 runLt = block_sum(lt, red), runEq = block_sum(eq, red);
  const u32 before = (1u << lane) - 1;
  const int start = b * chunk, end = start + chunk < n ? start + chunk : n;
  for (int i0 = start; i0 < end; i0 += TK) {
    const int i = i0 + tid;
    const u32 key = i < end ? order_key(s[i]) : 0xffffffffu;
    const bool isLt = i < end && key < S, isEq = i < end && key == S;
    const u32 bl = __nvvm_vote_ballot_sync(FULL, isLt), be = __nvvm_vote_ballot_sync(FULL, isEq);
    if (lane == 0) {
      wcount[warp] = __builtin_popcount(bl);
      wcount[32 + warp] = __builtin_popcount(be);
    }
    __syncthreads();
    if (warp == 0) { // exclusive prefixes of the warps' counts, and the totals
      const int nw = TK / 32;
      for (int a = 0; a < 2; a++) {
        const u32 w = lane < nw ? wcount[32 * a + lane] : 0;
        u32 wi = w;
        for (int o2 = 1; o2 < 32; o2 <<= 1) {
          const u32 x = __nvvm_shfl_sync_up_i32(FULL, wi, o2, 0);
          if (lane >= o2) wi += x;
        }
        wpre[33 * a + lane] = wi - w;
        if (lane == 31) wpre[33 * a + 32] = wi;
      }
    }
    __syncthreads();
    const u32 nLt = runLt + wpre[warp] + __builtin_popcount(bl & before);
    const u32 nEq = runEq + wpre[33 + warp] + __builtin_popcount(be & before);
    if (isLt) o[nLt + (nEq < need ? nEq : need)] = i;
    if (isEq && nEq < need) o[nLt + nEq] = i;
    runLt += wpre[32];
    runEq += wpre[33 + 32];
  }
}

// ---------------------------------------------------------------------------
// gather_rows compacts the rows of a layer: for each KV head g (grid.y) and
// buffer (grid.z: keys, values), rows i < count of the head go from row
// src(i) of the old buffer to row i of the new one: src(i) = idx[g*idxStride
// + i] for i < nsel, tail + i - nsel after (the window, which every policy
// keeps). count is counts[g], or cnt where counts is 0. Rows of rowBytes,
// copied in 16-, 4- or 2-byte words; strides in bytes per head. grid.x
// covers the longest head, GR rows per block.

#define GR 8

GLOBAL void gather_rows(const void *srcK, const void *srcV, void *dstK, void *dstV, u64 srcStride, u64 dstStride,
                        int rowBytes, const int *idx, int idxStride, const int *counts, int cnt, int nsel, int tail) {
  const int g = blockIdx.y;
  const int count = counts != 0 ? counts[g] : cnt;
  const char *src = (const char *)(blockIdx.z == 0 ? srcK : srcV) + (u64)g * srcStride;
  char *dst = (char *)(blockIdx.z == 0 ? dstK : dstV) + (u64)g * dstStride;
  const int unit = rowBytes % 16 == 0 ? 16 : rowBytes % 4 == 0 ? 4 : 2;
  const int per = rowBytes / unit;
  for (int u = threadIdx.x; u < GR * per; u += blockDim.x) {
    const int i = blockIdx.x * GR + u / per, part = u % per;
    if (i >= count) break;
    const u64 sr = i < nsel ? (u64)idx[(u64)g * idxStride + i] : (u64)(tail + i - nsel);
    const char *from = src + sr * rowBytes + (u64)part * unit;
    char *to = dst + (u64)i * rowBytes + (u64)part * unit;
    if (unit == 16) *(u32x4 *)to = *(const u32x4 *)from;
    else if (unit == 4) *(u32 *)to = *(const u32 *)from;
    else *(u16 *)to = *(const u16 *)from;
  }
}
