// Kernels of the compresskv CUDA backend, compiled to PTX by `go generate`
// with clang-16 alone (no CUDA toolkit, no headers but clang's own built-in
// variables). The Go side (backend/cuda/launch.go) packs the arguments of
// each kernel in the order written here; keep the two in step.
//
// Conventions: a layer's keys (values) are one buffer [G][cap][d] of
// float32, float16 or bfloat16 (dtype 0, 1, 2); "headStride" is cap*d
// elements. Scores and softmax states are float32. exp is the Cephes
// polynomial of the CPU backend, with contraction off, so that both backends
// compute the same exponential of the same argument.

#include <__clang_cuda_builtin_vars.h>

#define GLOBAL extern "C" __attribute__((global))
#define DEVICE static __attribute__((device)) inline
#define SHARED __attribute__((shared))

typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define FULL 0xffffffffu
#define WARPS 8           // warps per block of the window and attention kernels
#define TILE 256          // key rows per block of the window kernels (= threads)
#define QCH WARPS         // query rows per chunk of the window kernels
#define DMAX 256          // largest head dimension

DEVICE float bits_f(u32 u) { return __builtin_bit_cast(float, u); }
DEVICE u32 f_bits(float f) { return __builtin_bit_cast(u32, f); }

DEVICE float half_to_float(u16 h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}

// load returns element i of a float32 (0), float16 (1) or bfloat16 (2) array.
DEVICE float load(const void *base, u64 i, int dtype) {
  if (dtype == 0) return ((const float *)base)[i];
  u16 h = ((const u16 *)base)[i];
  if (dtype == 1) return half_to_float(h);
  return bits_f((u32)h << 16);
}

// row_base returns the start of KV head g of a layer buffer.
DEVICE const void *head_base(const void *buf, int g, u64 headStride, int dtype) {
  int size = dtype == 0 ? 4 : 2;
  return (const char *)buf + (u64)g * headStride * size;
}

// cexpf is backend/cpu's expf: Cephes' polynomial, flushed to 0 below the
// normal range, +Inf above ln(MaxFloat32).
DEVICE float cexpf(float x) {
#pragma clang fp contract(off)
  if (!(x >= -87.33654475055310898f)) {
    if (x != x) return x;
    return 0.0f;
  }
  if (x > 88.72283905206835f) return __builtin_inff();
  float t = x * 1.44269504088896341f + 12582912.0f;
  float fx = t - 12582912.0f;
  x -= fx * 0.693359375f;
  x -= fx * -2.12194440e-4f;
  float z = x * x;
  float y = ((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x +
              4.1665795894e-2f) * x + 1.6666665459e-1f) * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  int n = (int)fx;
  int h = n / 2;
  y *= bits_f((u32)(h + 127) << 23);
  return y * bits_f((u32)(n - h + 127) << 23);
}

DEVICE float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __nvvm_shfl_sync_bfly_f32(FULL, v, o, 0x1f);
  return v;
}

DEVICE float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = __nvvm_fmax_f(v, __nvvm_shfl_sync_bfly_f32(FULL, v, o, 0x1f));
  return v;
}

// ---------------------------------------------------------------------------
// Window attention sums (backend.Backend.WindowScores), in three kernels that
// never hold more than one tile of logits: window_pass(pass 1) writes, per
// query row and key tile, the (max, sum of exp) of its visible logits;
// window_merge folds the tiles into (max, 1/sum) per row; window_pass(pass 2)
// recomputes the logits and adds the normalised probabilities of each row
// into its output entry.
//
// groups: per group of query rows that read one KV head, 4 ints
//   (g, L, first row, row count); grid.y indexes the groups.
// rows:   per query row, 3 ints (offset of its query in q, vis, out offset):
//   the row sees key rows j < vis; its probabilities go to out[outOff + j].
//   Rows of one output entry are contiguous and share outOff.
// grid.x indexes key tiles of TILE rows; blockDim.x == TILE.

template <int DL>
DEVICE void window_pass_t(float *qs, float *lg, const void *keys, u64 headStride, int dtype, int d, float scale,
                          const float *q, const int *groups, const int *rows,
                          float *stats, const float *fin, float *out, int ntiles, int pass) {
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int tile = blockIdx.x, gi = blockIdx.y;
  const int g = groups[4 * gi], L = groups[4 * gi + 1];
  const int r0 = groups[4 * gi + 2], nr = groups[4 * gi + 3];
  const int j0 = tile * TILE;
  if (j0 >= L) {
    if (pass == 1)
      for (int r = tid; r < nr; r += TILE) {
        stats[2 * ((u64)(r0 + r) * ntiles + tile)] = -__builtin_inff();
        stats[2 * ((u64)(r0 + r) * ntiles + tile) + 1] = 0.0f;
      }
    return;
  }
  const void *kb = head_base(keys, g, headStride, dtype);
  float acc = 0.0f;
  int cur = -1;
  const int j = j0 + tid;
  for (int c = 0; c < nr; c += QCH) {
    for (int i = tid; i < QCH * d; i += TILE) {
      int qi = i / d, x = i % d, r = c + qi;
      qs[qi * 32 * DL + x] = r < nr ? q[rows[3 * (r0 + r)] + x] : 0.0f;
    }
    __syncthreads();
    for (int jj = warp; jj < TILE; jj += WARPS) {
      int jr = j0 + jj;
      if (jr >= L) break;
      float kv[DL];
#pragma unroll
      for (int t = 0; t < DL; t++) {
        int x = lane + 32 * t;
        kv[t] = x < d ? load(kb, (u64)jr * d + x, dtype) : 0.0f;
      }
#pragma unroll
      for (int qi = 0; qi < QCH; qi++) {
        float p = 0.0f;
#pragma unroll
        for (int t = 0; t < DL; t++) {
          int x = lane + 32 * t;
          if (x < d) p += kv[t] * qs[qi * 32 * DL + x];
        }
        p = warp_sum(p);
        if (lane == 0) lg[qi * TILE + jj] = p * scale;
      }
    }
    __syncthreads();
    if (pass == 1) {
      int r = c + warp;
      if (r < nr) {
        int vis = rows[3 * (r0 + r) + 1];
        int hi = (vis < L ? vis : L) - j0;
        if (hi > TILE) hi = TILE;
        float m = -__builtin_inff();
        for (int jj = lane; jj < hi; jj += 32) m = __nvvm_fmax_f(m, lg[warp * TILE + jj]);
        m = warp_max(m);
        float s = 0.0f;
        if (hi > 0)
          for (int jj = lane; jj < hi; jj += 32) s += cexpf(lg[warp * TILE + jj] - m);
        s = warp_sum(s);
        if (lane == 0) {
          stats[2 * ((u64)(r0 + r) * ntiles + tile)] = m;
          stats[2 * ((u64)(r0 + r) * ntiles + tile) + 1] = s;
        }
      }
    } else if (j < L) {
      for (int qi = 0; qi < QCH; qi++) {
        int r = c + qi;
        if (r >= nr) break;
        int vis = rows[3 * (r0 + r) + 1], e = rows[3 * (r0 + r) + 2];
        if (e != cur) {
          if (cur >= 0) out[(u64)cur + j] += acc;
          acc = 0.0f;
          cur = e;
        }
        if (j < vis) {
#pragma clang fp contract(off)
          acc += cexpf(lg[qi * TILE + tid] - fin[2 * (r0 + r)]) * fin[2 * (r0 + r) + 1];
        }
      }
    }
    __syncthreads();
  }
  if (pass == 2 && j < L && cur >= 0) out[(u64)cur + j] += acc;
}

// window_pass (d <= 256) and its variants for d <= 128 and d <= 64: one
// kernel with per-lane arrays of d/32 values, so that the smaller head
// dimensions hold fewer registers. The host chooses by d.
#define WINDOW_PASS(NAME, DL)                                                                        \
  GLOBAL void NAME(const void *keys, u64 headStride, int dtype, int d, float scale, const float *q,  \
                   const int *groups, const int *rows, float *stats, const float *fin, float *out,  \
                   int ntiles, int pass) {                                                            \
    SHARED static float qs[QCH * 32 * DL];                                                            \
    SHARED static float lg[QCH * TILE];                                                               \
    window_pass_t<DL>(qs, lg, keys, headStride, dtype, d, scale, q, groups, rows, stats, fin, out,  \
                      ntiles, pass);                                                                  \
  }
WINDOW_PASS(window_pass, 8)
WINDOW_PASS(window_pass_d128, 4)
WINDOW_PASS(window_pass_d64, 2)

// window_merge folds the per-tile (max, sum) of each of nrows rows into
// fin = (max, 1/sum). One warp per row; blockDim.x == 32*WARPS.
GLOBAL void window_merge(const float *stats, float *fin, int nrows, int ntiles) {
  const int lane = threadIdx.x % 32;
  const int r = blockIdx.x * WARPS + threadIdx.x / 32;
  if (r >= nrows) return;
  const float *st = stats + 2 * (u64)r * ntiles;
  float m = -__builtin_inff();
  for (int t = lane; t < ntiles; t += 32) m = __nvvm_fmax_f(m, st[2 * t]);
  m = warp_max(m);
  float s = 0.0f;
  for (int t = lane; t < ntiles; t += 32)
    if (st[2 * t + 1] != 0.0f) {
#pragma clang fp contract(off)
      s += st[2 * t + 1] * cexpf(st[2 * t] - m);
    }
  s = warp_sum(s);
  if (lane == 0) {
    fin[2 * r] = m;
    fin[2 * r + 1] = 1.0f / s;
  }
}

// ---------------------------------------------------------------------------
// Window sums for long windows (H2O's all-query scoring), with the logits of
// a chunk of query rows computed by cuBLAS (SGEMM, strided over the query
// heads of one KV head) into lg: nb*C rows of ld floats, row b*C + i
// holding query i of the chunk for batch entry b, against the L keys. Query
// i sees keys j < visBase + i. rows_softmax folds each row into
// fin = (max, 1/sum of exp); colsum_rows adds each key's normalised
// probabilities over the chunk's rows, in row order, into out[b*outStride + j].

// widen_rows converts n elements of a float32/float16/bfloat16 array to
// float32, the operand type of the SGEMM.
GLOBAL void widen_rows(const void *src, float *dst, u64 n, int dtype) {
  for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x)
    dst[i] = load(src, i, dtype);
}

// rows_softmax: one warp per row; blockDim.x == 32*WARPS.
GLOBAL void rows_softmax(const float *lg, int ld, int L, int C, int nrows, int visBase, float *fin) {
  const int lane = threadIdx.x % 32;
  const int r = blockIdx.x * WARPS + threadIdx.x / 32;
  if (r >= nrows) return;
  const float *row = lg + (u64)r * ld;
  int vis = visBase + r % C;
  if (vis > L) vis = L;
  float m = -__builtin_inff();
  for (int j = lane; j < vis; j += 32) m = __nvvm_fmax_f(m, row[j]);
  m = warp_max(m);
  float s = 0.0f;
  for (int j = lane; j < vis; j += 32) s += cexpf(row[j] - m);
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
    acc += cexpf(lg[(u64)r * ld + j] - fin[2 * r]) * fin[2 * r + 1];
  }
  out[(u64)b * outStride + j] += acc;
}

// ---------------------------------------------------------------------------
// pool1d: 1-D pooling of rows of n scores, odd kernel, stride 1, padding
// kernel/2, exactly as backend/cpu's Pool: average pooling sums in float64
// (directly up to kernel 15, else with the CPU's sliding sum restarted every
// kernel positions) and divides by kernel; max pooling ignores the padding.
// grid (ceil(n/256), rows).
GLOBAL void pool1d(const float *src, float *dst, int n, int srcStride, int dstStride, int kernel, int kind) {
#pragma clang fp contract(off)
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float *s = src + (u64)blockIdx.y * srcStride;
  const int r = kernel / 2;
  int lo = i - r < 0 ? 0 : i - r, hi = i + r + 1 > n ? n : i + r + 1;
  float res;
  if (kind == 1) {
    float m = s[lo];
    for (int t = lo + 1; t < hi; t++)
      if (s[t] > m) m = s[t];
    res = m;
  } else {
    double inv = 1.0 / (double)kernel;
    double sum = 0.0;
    if (kernel <= 15) {
      for (int t = lo; t < hi; t++) sum += (double)s[t];
    } else {
      int i0 = i - i % kernel;
      int l0 = i0 - r < 0 ? 0 : i0 - r, h0 = i0 + r + 1 > n ? n : i0 + r + 1;
      for (int t = l0; t < h0; t++) sum += (double)s[t];
      for (int p = i0 + 1; p <= i; p++) {
        if (p + r < n) sum += (double)s[p + r];
        if (p - r - 1 >= 0) sum -= (double)s[p - r - 1];
      }
    }
    res = (float)(sum * inv);
  }
  dst[(u64)blockIdx.y * dstStride + i] = res;
}

// mean_groups writes to row o of dst the float32 mean of src rows
// [o*per, (o+1)*per), summed in order then multiplied by 1/per, as the
// policies' meanRows. grid (ceil(n/256), output rows).
GLOBAL void mean_groups(const float *src, float *dst, int n, int stride, int per) {
#pragma clang fp contract(off)
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const int o = blockIdx.y;
  float acc = 0.0f;
  for (int r = 0; r < per; r++) acc += src[(u64)(o * per + r) * stride + j];
  dst[(u64)o * stride + j] = acc * (1.0f / (float)per);
}

// ---------------------------------------------------------------------------
// topk_rows: for each row (one block of 1024 threads), the indices of the k
// largest of n scores in ascending order, ties to the lower index: the same
// set as backend/cpu's TopK. Scores map to 32-bit keys whose ascending order
// is the scores' descending order (-0 == +0); a radix select over 4 digits
// of 8 bits finds the key S of the k-th smallest and how many keys equal to
// S to take; a block-wide scan then writes, in index order, every index with
// a key below S and the first `need` with key S. 0 < k < n.
// nan[row] is set to 1 + the index of a NaN score, if any.

DEVICE u32 order_key(float v) {
  if (v == 0.0f) v = 0.0f;
  u32 u = f_bits(v);
  if (u & 0x80000000u) u = ~u;
  else u |= 0x80000000u;
  return ~u;
}

GLOBAL void topk_rows(const float *scores, int n, int stride, int k, int *out, int outStride, int *nan) {
  SHARED static u32 hist[256];
  SHARED static u32 sh[4]; // prefix, mask, rem, nan
  SHARED static u32 wcount[2 * 32];
  SHARED static u32 base[2];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, nthreads = blockDim.x;
  const float *s = scores + (u64)blockIdx.x * stride;
  int *o = out + (u64)blockIdx.x * outStride;
  if (tid == 0) {
    sh[0] = 0;
    sh[1] = 0;
    sh[2] = (u32)k;
    sh[3] = 0;
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = tid; b < 256; b += nthreads) hist[b] = 0;
    __syncthreads();
    const u32 prefix = sh[0], mask = sh[1];
    for (int i = tid; i < n; i += nthreads) {
      float v = s[i];
      if (v != v) {
        sh[3] = (u32)i + 1;
        continue;
      }
      u32 key = order_key(v);
      if ((key & mask) == prefix) __nvvm_atom_add_gen_i((int *)&hist[(key >> shift) & 255], 1);
    }
    __syncthreads();
    if (sh[3] != 0) {
      if (tid == 0) nan[blockIdx.x] = (int)sh[3];
      return;
    }
    if (tid == 0) {
      u32 cum = 0, rem = sh[2];
      for (int b = 0; b < 256; b++) {
        if (cum + hist[b] >= rem) {
          sh[0] = prefix | ((u32)b << shift);
          sh[2] = rem - cum;
          break;
        }
        cum += hist[b];
      }
      sh[1] = mask | (255u << shift);
    }
    __syncthreads();
  }
  const u32 S = sh[0], need = sh[2];
  if (tid == 0) {
    base[0] = 0; // taken so far
    base[1] = 0; // keys equal to S so far
  }
  __syncthreads();
  const u32 lt = (1u << lane) - 1;
  const int nwarps = nthreads / 32;
  for (int i0 = 0; i0 < n; i0 += nthreads) {
    const int i = i0 + tid;
    const u32 key = i < n ? order_key(s[i]) : 0xffffffffu;
    const bool eq = i < n && key == S;
    const u32 beq = __nvvm_vote_ballot_sync(FULL, eq);
    if (lane == 0) wcount[warp] = __builtin_popcount(beq);
    __syncthreads();
    u32 before = 0;
    for (int w = 0; w < warp; w++) before += wcount[w];
    const u32 eqRank = base[1] + before + __builtin_popcount(beq & lt);
    const bool take = i < n && (key < S || (eq && eqRank < need));
    const u32 btake = __nvvm_vote_ballot_sync(FULL, take);
    if (lane == 0) wcount[32 + warp] = __builtin_popcount(btake);
    __syncthreads();
    u32 tbefore = 0;
    for (int w = 0; w < warp; w++) tbefore += wcount[32 + w];
    if (take) o[base[0] + tbefore + __builtin_popcount(btake & lt)] = i;
    __syncthreads();
    if (tid == 0) {
      u32 te = 0, tt = 0;
      for (int w = 0; w < nwarps; w++) {
        te += wcount[w];
        tt += wcount[32 + w];
      }
      base[1] += te;
      base[0] += tt;
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------------------
// gather_rows copies, for each KV head g (grid.y), the rows idx[g*idxStride
// + i], i < counts[g], of src to rows i of dst, rows of `units` words of 4
// bytes (wide == 1) or 2 bytes. grid.x covers max(counts) rows, 8 per block.
GLOBAL void gather_rows(const void *src, void *dst, u64 srcStride, u64 dstStride, int units, int wide,
                        const int *idx, int idxStride, const int *counts) {
  const int g = blockIdx.y, cnt = counts[g];
  for (int rr = 0; rr < 8; rr++) {
    const int i = blockIdx.x * 8 + rr;
    if (i >= cnt) return;
    const u64 sr = (u64)idx[(u64)g * idxStride + i];
    const u64 so = (u64)g * srcStride + sr * units, d0 = (u64)g * dstStride + (u64)i * units;
    if (wide)
      for (int u = threadIdx.x; u < units; u += blockDim.x) ((u32 *)dst)[d0 + u] = ((const u32 *)src)[so + u];
    else
      for (int u = threadIdx.x; u < units; u += blockDim.x) ((u16 *)dst)[d0 + u] = ((const u16 *)src)[so + u];
  }
}

// ---------------------------------------------------------------------------
// Decode attention of one token (backend.Backend.Attend), split along the
// rows: attend_partial gives each block (split, KV head g, chunk of up to
// HC query heads of g's group) the rows [split*splitRows, +splitRows) and
// writes an online-softmax state (max, sum, acc[d]) per query head and split
// into part[(h*nsplit + split)*(d+2)]; attend_merge combines the splits.

template <int DL, int HC>
DEVICE void attend_partial_t(float *qs, float *wacc, float *wms, const void *keys, const void *vals, u64 headStride,
                             int dtype, int d, float scale, const float *q, const int *lens, int group,
                             int splitRows, int nsplit, float *part) {
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int split = blockIdx.x, g = blockIdx.y, hc0 = blockIdx.z * HC;
  const int nh = group - hc0 < HC ? group - hc0 : HC;
  const int L = lens[g];
  const int s0 = split * splitRows, s1 = s0 + splitRows < L ? s0 + splitRows : L;
  const int h0 = g * group + hc0;
  for (int i = tid; i < nh * d; i += blockDim.x) qs[(i / d) * 32 * DL + i % d] = q[(u64)(h0 + i / d) * d + i % d];
  __syncthreads();
  const void *kb = head_base(keys, g, headStride, dtype);
  const void *vb = head_base(vals, g, headStride, dtype);
  float m[HC], sum[HC], acc[HC][DL];
#pragma unroll
  for (int hh = 0; hh < HC; hh++) {
    m[hh] = -__builtin_inff();
    sum[hh] = 0.0f;
#pragma unroll
    for (int t = 0; t < DL; t++) acc[hh][t] = 0.0f;
  }
  for (int j = s0 + warp; j < s1; j += WARPS) {
    float kv[DL], vv[DL];
#pragma unroll
    for (int t = 0; t < DL; t++) {
      int x = lane + 32 * t;
      kv[t] = x < d ? load(kb, (u64)j * d + x, dtype) : 0.0f;
      vv[t] = x < d ? load(vb, (u64)j * d + x, dtype) : 0.0f;
    }
#pragma unroll
    for (int hh = 0; hh < HC; hh++) {
      if (hh >= nh) continue;
      float p = 0.0f;
#pragma unroll
      for (int t = 0; t < DL; t++) {
        int x = lane + 32 * t;
        if (x < d) p += kv[t] * qs[hh * 32 * DL + x];
      }
      const float l = warp_sum(p) * scale;
      if (l > m[hh]) {
        const float f = cexpf(m[hh] - l);
        sum[hh] *= f;
#pragma unroll
        for (int t = 0; t < DL; t++) acc[hh][t] *= f;
        m[hh] = l;
      }
      const float e = cexpf(l - m[hh]);
      sum[hh] += e;
#pragma unroll
      for (int t = 0; t < DL; t++) acc[hh][t] += e * vv[t];
    }
  }
#pragma unroll
  for (int hh = 0; hh < HC; hh++) {
    if (hh >= nh) continue; // uniform over the block
#pragma unroll
    for (int t = 0; t < DL; t++) {
      int x = lane + 32 * t;
      if (x < d) wacc[warp * 32 * DL + x] = acc[hh][t];
    }
    if (lane == 0) {
      wms[2 * warp] = m[hh];
      wms[2 * warp + 1] = sum[hh];
    }
    __syncthreads();
    float M = -__builtin_inff();
    for (int w = 0; w < WARPS; w++)
      if (wms[2 * w + 1] != 0.0f) M = __nvvm_fmax_f(M, wms[2 * w]);
    float* pp = part + ((u64)(h0 + hh) * nsplit + split) * (d + 2);
    for (int x = tid; x < d + 2; x += blockDim.x) {
      float a = 0.0f;
      for (int w = 0; w < WARPS; w++) {
        float sw = wms[2 * w + 1];
        if (sw == 0.0f) continue;
        float f = cexpf(wms[2 * w] - M);
        a += (x == 0 ? 0.0f : x == 1 ? sw : wacc[w * 32 * DL + x - 2]) * f;
      }
      pp[x] = x == 0 ? M : a;
    }
    __syncthreads();
  }
}

// attend_partial (d <= 256) and its variants for d <= 128 and d <= 64, as
// window_pass's.
#define ATTEND_PARTIAL(NAME, DL, HC)                                                                     \
  GLOBAL void NAME(const void *keys, const void *vals, u64 headStride, int dtype, int d, float scale,   \
                   const float *q, const int *lens, int group, int splitRows, int nsplit, float *part) { \
    SHARED static float qs[HC * 32 * DL];                                                                 \
    SHARED static float wacc[WARPS * 32 * DL];                                                            \
    SHARED static float wms[2 * WARPS];                                                                   \
    attend_partial_t<DL, HC>(qs, wacc, wms, keys, vals, headStride, dtype, d, scale, q, lens, group,         \
                         splitRows, nsplit, part);                                                        \
  }
ATTEND_PARTIAL(attend_partial, 8, 4)
ATTEND_PARTIAL(attend_partial_d128, 4, 8)
ATTEND_PARTIAL(attend_partial_d64, 2, 8)

// attend_merge combines the nsplit states of query head blockIdx.x into
// out[h*d : (h+1)*d].
GLOBAL void attend_merge(const float *part, int nsplit, int d, float *out) {
  const int h = blockIdx.x;
  const float *ph = part + (u64)h * nsplit * (d + 2);
  float M = -__builtin_inff();
  for (int s = 0; s < nsplit; s++)
    if (ph[s * (d + 2) + 1] != 0.0f) M = __nvvm_fmax_f(M, ph[s * (d + 2)]);
  for (int x = threadIdx.x; x < d; x += blockDim.x) {
    float S = 0.0f, a = 0.0f;
    for (int s = 0; s < nsplit; s++) {
      const float *p = ph + s * (d + 2);
      if (p[1] == 0.0f) continue;
      const float f = cexpf(p[0] - M);
      S += p[1] * f;
      a += p[2 + x] * f;
    }
    out[(u64)h * d + x] = a * (1.0f / S);
  }
}
