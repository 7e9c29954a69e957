// Compiled CPU tile rasterizer for 3D Gaussians: binning, front-to-back compositing and its backward.
//
// The C-ABI twin of recon3d/core/gaussians/rasterize_torch.py (same 2D Gaussians, same alpha rules,
// same outputs); projection, SH and the public outputs stay in PyTorch (common.prepare / finish).
// Built by recon3d/core/native.py with the system C++ compiler and OpenMP, loaded with
// ctypes (plain pointers, no PyTorch headers: builds in seconds and does not depend on the torch ABI).
//
// Data layout (all row-major, contiguous):
//   pairs  (M, 10): per depth-sorted (camera, Gaussian) pair [mx, my, A, B, C, opacity, r, g, b, z]
//                   (center in pixels, conic, effective opacity, RGB, camera z)
//   box    (M, 4) int32: pixel box [x0, x1) x [y0, y1) outside which the pair's alpha is < 1/255
//   cam    (M,) int32: camera index of each pair
//   tiles: C * nty * ntx screen tiles of tile x tile pixels in raster order, camera-major;
//          tile_start (ntiles + 1) int64 and entries (L,) int32 list each tile's pairs front to back;
//          pair_start (M + 1) int64 and entry_pos (L,) int64 map each pair to its list entries.
//   out    (C, H, W, 5): per pixel sum_k w_k [r, g, b, z, 1], w_k = alpha_k T_k
//   tfinal (C, H, W): transmittance after the last contributing pair; last (C, H, W) int32: its
//          entry index (-1: none). Both are kept for the backward pass.
//
// Rules (gsplat's, as in the PyTorch path): alpha = min(opacity * exp(-sigma), 0.999) with
// sigma = 0.5 (A dx^2 + C dy^2) + B dx dy, d = pixel center - mean; entries with alpha <= 1/255 are
// skipped; a pixel stops before the entry that would bring its transmittance to <= 1e-4.
//
// Threads: tiles are distributed over OpenMP threads (dynamic schedule); inside a tile each pair is
// evaluated on the rows of its box, one SIMD loop over the pixels of a row. Each thread writes only
// its own tiles' pixels and list entries, so the results do not depend on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include <omp.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace {

constexpr int NC = 10;
constexpr int MAX_TILE = 32;  // tile sizes: multiples of V (8) up to this
constexpr int MAX_PIX = MAX_TILE * MAX_TILE;
constexpr double ALPHA_MIN = 1.0 / 255.0;
constexpr double ALPHA_MAX = 0.999;
constexpr double T_MIN = 1e-4;

struct TileGeom {
  int c, px0, py0, px1, py1;
};

static inline TileGeom tile_geom(int64_t t, int W, int H, int tile, int ntx, int nty) {
  const int64_t per = static_cast<int64_t>(ntx) * nty;
  const int c = static_cast<int>(t / per);
  const int ti = static_cast<int>(t % per);
  TileGeom g;
  g.c = c;
  g.px0 = (ti % ntx) * tile;
  g.py0 = (ti / ntx) * tile;
  g.px1 = std::min(g.px0 + tile, W);
  g.py1 = std::min(g.py0 + tile, H);
  return g;
}

// Tiles are processed in rows of V-pixel chunks written with GCC/Clang vector extensions, so every
// per-pixel statement is one SIMD instruction (AVX2: 8 floats) whatever the auto-vectorizer decides.
// Lanes outside a pair's box simply get alpha < 1/255 (the box bounds the support exactly), so
// evaluating whole chunks changes nothing.
constexpr int V = 8;
constexpr int MAX_CHUNKS = MAX_PIX / V;
constexpr int PREFETCH = 8;  // list entries ahead

template <typename T>
static inline T vload(const void* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
static inline void vstore(void* p, const T& v) {
  std::memcpy(p, &v, sizeof(T));
}

template <typename S>
struct Vec;
template <>
struct Vec<float> {
  typedef float F __attribute__((vector_size(32)));
  typedef int32_t I __attribute__((vector_size(32)));
  typedef int32_t Idx;
  static inline F exp(F x) {
    x = x < F{} - 50.0f ? F{} - 50.0f : x;
    const F n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    F r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    F p = F{} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const I e = (__builtin_convertvector(n, I) + 127) << 23;
    return p * vload<F>(&e);
  }
};
template <>
struct Vec<double> {
  typedef double F __attribute__((vector_size(64)));
  typedef int64_t I __attribute__((vector_size(64)));
  typedef int64_t Idx;
  static inline F exp(F x) {
    F y;
    for (int l = 0; l < V; ++l) y[l] = std::exp(x[l]);
    return y;
  }
};

// Number of set lanes (-1) of a mask.
template <typename I>
static inline int count_set(const I& m) {
#if defined(__AVX__)
  if constexpr (sizeof(I) == 32 && sizeof(m[0]) == 4) {
    return __builtin_popcount(_mm256_movemask_ps(reinterpret_cast<__m256>(m)));
  }
#endif
  int n = 0;
  for (int l = 0; l < V; ++l) n -= static_cast<int>(m[l]);
  return n;
}

template <typename I>
static inline bool any_set(const I& m) {
#if defined(__AVX__)
  if constexpr (sizeof(I) == 32 && sizeof(m[0]) == 4) {
    return _mm256_movemask_ps(reinterpret_cast<__m256>(m)) != 0;
  }
#endif
  for (int l = 0; l < V; ++l)
    if (m[l]) return true;
  return false;
}

// sigma above which alpha = opacity * exp(-sigma) <= 1/255 for sure: log(255 * opacity) plus a margin that
// covers the rounding of the exp, so skipping such chunks never changes a result.
template <typename S>
static inline S sigma_cut(S op) {
  return std::log(std::max(op, S(1e-30)) / static_cast<S>(ALPHA_MIN)) + S(1e-3);
}

// One list entry's pair as the compositing loops read it: its table row, its box clipped to the tile, and
// a prefetch of the pair PREFETCH entries further along the list.
template <typename S>
struct PairView {
  S mx, my, A, B, Cc, op, cr, cg, cb, cz;
  int x0, x1, y0, y1;
  bool empty() const { return x1 <= x0 || y1 <= y0; }
};

template <typename S>
static inline PairView<S> load_pair(const S* pairs, const int32_t* box, const int32_t* entries, int64_t k,
                                    int64_t ahead, const TileGeom& tg) {
  if (ahead >= 0) {  // pairs are read in tile order, not memory order: fetch ahead
    const int64_t mp = entries[ahead];
    __builtin_prefetch(pairs + mp * NC);
    __builtin_prefetch(box + mp * 4);
  }
  const int64_t m = entries[k];
  const S* g = pairs + m * NC;
  const int32_t* b = box + m * 4;
  PairView<S> p;
  p.mx = g[0]; p.my = g[1]; p.A = g[2]; p.B = g[3]; p.Cc = g[4]; p.op = g[5];
  p.cr = g[6]; p.cg = g[7]; p.cb = g[8]; p.cz = g[9];
  p.x0 = std::max(b[0], tg.px0); p.x1 = std::min(b[1], tg.px1);
  p.y0 = std::max(b[2], tg.py0); p.y1 = std::min(b[3], tg.py1);
  return p;
}

template <typename S>
void forward_impl(int C, int H, int W, int tile, const S* pairs, const int32_t* box, const int64_t* tile_start,
                  const int32_t* entries, S* out, S* tfinal, int32_t* last, int nthreads) {
  using F = typename Vec<S>::F;
  using I = typename Vec<S>::I;
  using Idx = typename Vec<S>::Idx;
  const int ntx = (W + tile - 1) / tile, nty = (H + tile - 1) / tile;
  const int64_t ntiles = static_cast<int64_t>(C) * ntx * nty;
  const int cpr = tile / V;  // chunks per tile row
  const S amin = static_cast<S>(ALPHA_MIN), amax = static_cast<S>(ALPHA_MAX), tmin = static_cast<S>(T_MIN);
  F lane;
  for (int l = 0; l < V; ++l) lane[l] = static_cast<S>(l);
#pragma omp parallel for schedule(dynamic, 4) num_threads(nthreads)
  for (int64_t t = 0; t < ntiles; ++t) {
    const TileGeom tg = tile_geom(t, W, H, tile, ntx, nty);
    alignas(64) S T[MAX_PIX], a0[MAX_PIX], a1[MAX_PIX], a2[MAX_PIX], a3[MAX_PIX], a4[MAX_PIX];
    alignas(64) Idx lst[MAX_PIX], done[MAX_PIX];
    int alive_chunk[MAX_CHUNKS];
    int alive = 0;
    for (int r = 0; r < tile; ++r) {
      for (int ch = 0; ch < cpr; ++ch) {
        int cnt = 0;
        for (int l = 0; l < V; ++l) {
          const int i = r * tile + ch * V + l;
          const bool in = tg.py0 + r < tg.py1 && tg.px0 + ch * V + l < tg.px1;
          T[i] = 1; a0[i] = a1[i] = a2[i] = a3[i] = a4[i] = 0; lst[i] = -1; done[i] = in ? 0 : -1;
          cnt += in;
        }
        alive_chunk[r * cpr + ch] = cnt;
        alive += cnt;
      }
    }
    const int64_t kend = tile_start[t + 1];
    for (int64_t k = tile_start[t]; k < kend && alive > 0; ++k) {
      const PairView<S> pv = load_pair(pairs, box, entries, k, k + PREFETCH < kend ? k + PREFETCH : -1, tg);
      if (pv.empty()) continue;
      const S mx = pv.mx, my = pv.my, A = pv.A, B = pv.B, Cc = pv.Cc, op = pv.op;
      const S cr = pv.cr, cg = pv.cg, cb = pv.cb, cz = pv.cz;
      const int x0 = pv.x0, x1 = pv.x1, y0 = pv.y0, y1 = pv.y1;
      const int ch0 = (x0 - tg.px0) / V, ch1 = (x1 - 1 - tg.px0) / V + 1;
      const I kk = I{} + static_cast<Idx>(k);
      const S cut = sigma_cut(op);
      for (int y = y0; y < y1; ++y) {
        const int r = y - tg.py0;
        const S dy = static_cast<S>(y) + S(0.5) - my;
        const S hcy = S(0.5) * Cc * dy * dy, bdy = B * dy;
        for (int ch = ch0; ch < ch1; ++ch) {
          int* ac = alive_chunk + r * cpr + ch;
          if (*ac == 0) continue;
          const int i = r * tile + ch * V;
          const F dx = lane + (static_cast<S>(tg.px0 + ch * V) + S(0.5) - mx);
          const F sigma = S(0.5) * A * dx * dx + hcy + bdy * dx;
          if (!any_set(sigma < cut)) continue;  // the ellipse misses these 8 pixels
          F a = op * Vec<S>::exp(-sigma);
          a = a < amax ? a : F{} + amax;
          const F Ti = vload<F>(T + i);
          const F nt = Ti * (S(1) - a);
          const I dn = vload<I>(done + i);
          const I live = (a > amin) & (dn == 0);
          const I term = live & (nt <= tmin);
          const I use = live & ~term;
          const F w = use ? a * Ti : F{};
          vstore(a0 + i, vload<F>(a0 + i) + w * cr);
          vstore(a1 + i, vload<F>(a1 + i) + w * cg);
          vstore(a2 + i, vload<F>(a2 + i) + w * cb);
          vstore(a3 + i, vload<F>(a3 + i) + w * cz);
          vstore(a4 + i, vload<F>(a4 + i) + w);
          vstore(T + i, use ? nt : Ti);
          vstore(lst + i, use ? kk : vload<I>(lst + i));
          vstore(done + i, dn | term);
          const int stopped = count_set(term);
          *ac -= stopped;
          alive -= stopped;
        }
      }
    }
    for (int y = tg.py0; y < tg.py1; ++y) {
      for (int x = tg.px0; x < tg.px1; ++x) {
        const int i = (y - tg.py0) * tile + (x - tg.px0);
        const int64_t p = (static_cast<int64_t>(tg.c) * H + y) * W + x;
        S* o = out + p * 5;
        o[0] = a0[i]; o[1] = a1[i]; o[2] = a2[i]; o[3] = a3[i]; o[4] = a4[i];
        tfinal[p] = T[i];
        last[p] = static_cast<int32_t>(lst[i]);
      }
    }
  }
}

template <typename S>
static inline S hsum(const typename Vec<S>::F& v) {
  S s = 0;
  for (int l = 0; l < V; ++l) s += v[l];
  return s;
}

template <typename S>
void backward_impl(int C, int H, int W, int tile, const S* pairs, const int32_t* box, const int64_t* tile_start,
                   const int32_t* entries, const S* tfinal, const int32_t* last, const S* gout, S* gentries,
                   int nthreads) {
  using F = typename Vec<S>::F;
  using I = typename Vec<S>::I;
  using Idx = typename Vec<S>::Idx;
  const int ntx = (W + tile - 1) / tile, nty = (H + tile - 1) / tile;
  const int64_t ntiles = static_cast<int64_t>(C) * ntx * nty;
  const int cpr = tile / V;
  const S amin = static_cast<S>(ALPHA_MIN), amax = static_cast<S>(ALPHA_MAX);
  F lane;
  for (int l = 0; l < V; ++l) lane[l] = static_cast<S>(l);
#pragma omp parallel for schedule(dynamic, 4) num_threads(nthreads)
  for (int64_t t = 0; t < ntiles; ++t) {
    const int64_t k0 = tile_start[t], k1 = tile_start[t + 1];
    if (k1 == k0) continue;
    const TileGeom tg = tile_geom(t, W, H, tile, ntx, nty);
    alignas(64) S T[MAX_PIX], suf[MAX_PIX], g0[MAX_PIX], g1[MAX_PIX], g2[MAX_PIX], g3[MAX_PIX], g4[MAX_PIX];
    alignas(64) Idx lst[MAX_PIX];
    int64_t kmax_chunk[MAX_CHUNKS];
    int64_t kmax = -1;
    for (int i = 0; i < tile * tile; ++i) {
      T[i] = 1; suf[i] = 0; g0[i] = g1[i] = g2[i] = g3[i] = g4[i] = 0; lst[i] = -1;
    }
    for (int y = tg.py0; y < tg.py1; ++y) {
      for (int x = tg.px0; x < tg.px1; ++x) {
        const int i = (y - tg.py0) * tile + (x - tg.px0);
        const int64_t p = (static_cast<int64_t>(tg.c) * H + y) * W + x;
        const S* go = gout + p * 5;
        T[i] = tfinal[p]; lst[i] = last[p];
        g0[i] = go[0]; g1[i] = go[1]; g2[i] = go[2]; g3[i] = go[3]; g4[i] = go[4];
      }
    }
    for (int c = 0; c < tile * cpr; ++c) {
      int64_t mk = -1;
      for (int l = 0; l < V; ++l) mk = std::max<int64_t>(mk, lst[c * V + l]);
      kmax_chunk[c] = mk;
      kmax = std::max(kmax, mk);
    }
    // entries after every pixel's last contribution get zero gradient
    for (int64_t k = std::max<int64_t>(kmax + 1, k0); k < k1; ++k) std::memset(gentries + k * NC, 0, NC * sizeof(S));
    for (int64_t k = kmax; k >= k0; --k) {
      const PairView<S> pv = load_pair(pairs, box, entries, k, k - PREFETCH >= k0 ? k - PREFETCH : -1, tg);
      const S mx = pv.mx, my = pv.my, A = pv.A, B = pv.B, Cc = pv.Cc, op = pv.op;
      const S cr = pv.cr, cg = pv.cg, cb = pv.cb, cz = pv.cz;
      const int x0 = pv.x0, x1 = pv.x1, y0 = pv.y0, y1 = pv.y1;
      S* ge = gentries + k * NC;
      if (pv.empty()) {
        std::memset(ge, 0, NC * sizeof(S));
        continue;
      }
      const int ch0 = (x0 - tg.px0) / V, ch1 = (x1 - 1 - tg.px0) / V + 1;
      const I kk = I{} + static_cast<Idx>(k);
      const S cut = sigma_cut(op);
      F gmx{}, gmy{}, gA{}, gB{}, gC{}, gop{}, gr{}, gg{}, gb{}, gz{};
      for (int y = y0; y < y1; ++y) {
        const int r = y - tg.py0;
        const S dy = static_cast<S>(y) + S(0.5) - my;
        const S hcy = S(0.5) * Cc * dy * dy, bdy = B * dy;
        for (int ch = ch0; ch < ch1; ++ch) {
          if (k > kmax_chunk[r * cpr + ch]) continue;
          const int i = r * tile + ch * V;
          const F dx = lane + (static_cast<S>(tg.px0 + ch * V) + S(0.5) - mx);
          const F sigma = S(0.5) * A * dx * dx + hcy + bdy * dx;
          if (!any_set(sigma < cut)) continue;
          const F e = Vec<S>::exp(-sigma);
          const F araw = op * e;
          const F a = araw < amax ? araw : F{} + amax;
          const I use = (a > amin) & (kk <= vload<I>(lst + i));
          const F om = S(1) - a;
          const F Ti = vload<F>(T + i), si = vload<F>(suf + i);
          const F Tb = Ti / om;  // transmittance before this entry
          const F w = a * Tb;
          const F q0 = vload<F>(g0 + i), q1 = vload<F>(g1 + i), q2 = vload<F>(g2 + i), q3 = vload<F>(g3 + i);
          const F v = q0 * cr + q1 * cg + q2 * cb + q3 * cz + vload<F>(g4 + i);
          const F dla = Tb * v - si / om;  // dL/dalpha
          const I free_ = use & (a < amax);  // d alpha / d (opacity, sigma) = 0 where clamped
          const F dsig = free_ ? -dla * a : F{};  // dL/dsigma
          gop += free_ ? dla * e : F{};
          gA += S(0.5) * dsig * dx * dx;
          gB += dsig * dx * dy;
          gC += S(0.5) * dsig * dy * dy;
          gmx -= dsig * (A * dx + B * dy);
          gmy -= dsig * (B * dx + Cc * dy);
          const F wu = use ? w : F{};
          gr += wu * q0; gg += wu * q1; gb += wu * q2; gz += wu * q3;
          vstore(suf + i, use ? si + w * v : si);
          vstore(T + i, use ? Tb : Ti);
        }
      }
      ge[0] = hsum<S>(gmx); ge[1] = hsum<S>(gmy); ge[2] = hsum<S>(gA); ge[3] = hsum<S>(gB); ge[4] = hsum<S>(gC);
      ge[5] = hsum<S>(gop); ge[6] = hsum<S>(gr); ge[7] = hsum<S>(gg); ge[8] = hsum<S>(gb); ge[9] = hsum<S>(gz);
    }
  }
}

template <typename S>
void reduce_impl(int64_t M, const int64_t* pair_start, const int64_t* entry_pos, const S* gentries, S* gpairs,
                 int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t m = 0; m < M; ++m) {
    S acc[NC] = {0};
    for (int64_t j = pair_start[m]; j < pair_start[m + 1]; ++j) {
      const S* ge = gentries + entry_pos[j] * NC;
      for (int c = 0; c < NC; ++c) acc[c] += ge[c];
    }
    for (int c = 0; c < NC; ++c) gpairs[m * NC + c] = acc[c];
  }
}


// ---------------------------------------------------------------------------------------------------
// Projection (the twin of projection.project_gaussians + common.view_colors + projection.visibility)

constexpr double FOV_CLAMP_MARGIN = 0.3;
const double SH_C0 = 0.28209479177387814;
const double SH_C1 = 0.4886025119029199;
const double SH_C2[5] = {1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
                         0.5462742152960396};
const double SH_C3[7] = {-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
                         -0.4570457994644658, 1.445305721320277, -0.5900435899266435};

template <typename S>
struct Cam {
  S R[9], t[3], fx, fy, cx, cy, lim_xp, lim_xn, lim_yp, lim_yn, pos[3];
};

template <typename S>
Cam<S> load_cam(const S* vm, const S* K, int W, int H) {
  Cam<S> c;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) c.R[i * 3 + j] = vm[i * 4 + j];
    c.t[i] = vm[i * 4 + 3];
  }
  c.fx = K[0]; c.fy = K[4]; c.cx = K[2]; c.cy = K[5];
  const S htx = S(0.5) * W / c.fx, hty = S(0.5) * H / c.fy, mg = static_cast<S>(FOV_CLAMP_MARGIN);
  c.lim_xp = (W - c.cx) / c.fx + mg * htx;
  c.lim_xn = c.cx / c.fx + mg * htx;
  c.lim_yp = (H - c.cy) / c.fy + mg * hty;
  c.lim_yn = c.cy / c.fy + mg * hty;
  for (int j = 0; j < 3; ++j) c.pos[j] = -(c.R[0 * 3 + j] * c.t[0] + c.R[1 * 3 + j] * c.t[1] + c.R[2 * 3 + j] * c.t[2]);
  return c;
}

// Rotation matrix of the unit quaternion n = (w, x, y, z), row-major.
template <typename S>
void quat_rot(const S n[4], S R[9]) {
  const S w = n[0], x = n[1], y = n[2], z = n[3];
  R[0] = 1 - 2 * (y * y + z * z); R[1] = 2 * (x * y - w * z); R[2] = 2 * (x * z + w * y);
  R[3] = 2 * (x * y + w * z); R[4] = 1 - 2 * (x * x + z * z); R[5] = 2 * (y * z - w * x);
  R[6] = 2 * (x * z - w * y); R[7] = 2 * (y * z + w * x); R[8] = 1 - 2 * (x * x + y * y);
}

// Real SH basis (3DGS ordering and signs) of a unit direction; nb = (degree + 1)^2 values.
template <typename S>
void sh_basis(int nb, S x, S y, S z, S* b) {
  b[0] = static_cast<S>(SH_C0);
  if (nb <= 1) return;
  const S c1 = static_cast<S>(SH_C1);
  b[1] = -c1 * y; b[2] = c1 * z; b[3] = -c1 * x;
  if (nb <= 4) return;
  const S xx = x * x, yy = y * y, zz = z * z;
  b[4] = S(SH_C2[0]) * x * y; b[5] = S(SH_C2[1]) * y * z; b[6] = S(SH_C2[2]) * (2 * zz - xx - yy);
  b[7] = S(SH_C2[3]) * x * z; b[8] = S(SH_C2[4]) * (xx - yy);
  if (nb <= 9) return;
  b[9] = S(SH_C3[0]) * y * (3 * xx - yy); b[10] = S(SH_C3[1]) * x * y * z;
  b[11] = S(SH_C3[2]) * y * (4 * zz - xx - yy); b[12] = S(SH_C3[3]) * z * (2 * zz - 3 * xx - 3 * yy);
  b[13] = S(SH_C3[4]) * x * (4 * zz - xx - yy); b[14] = S(SH_C3[5]) * z * (xx - yy);
  b[15] = S(SH_C3[6]) * x * (xx - 3 * yy);
}

// Gradient of sum_k gb[k] * basis_k(x, y, z) with respect to the unit direction (x, y, z).
template <typename S>
void sh_basis_grad(int nb, S x, S y, S z, const S* gb, S g[3]) {
  g[0] = g[1] = g[2] = 0;
  if (nb <= 1) return;
  const S c1 = static_cast<S>(SH_C1);
  g[1] += -c1 * gb[1]; g[2] += c1 * gb[2]; g[0] += -c1 * gb[3];
  if (nb <= 4) return;
  const S xx = x * x, yy = y * y, zz = z * z;
  const S c20 = S(SH_C2[0]), c21 = S(SH_C2[1]), c22 = S(SH_C2[2]), c23 = S(SH_C2[3]), c24 = S(SH_C2[4]);
  g[0] += c20 * y * gb[4]; g[1] += c20 * x * gb[4];
  g[1] += c21 * z * gb[5]; g[2] += c21 * y * gb[5];
  g[0] += -2 * c22 * x * gb[6]; g[1] += -2 * c22 * y * gb[6]; g[2] += 4 * c22 * z * gb[6];
  g[0] += c23 * z * gb[7]; g[2] += c23 * x * gb[7];
  g[0] += 2 * c24 * x * gb[8]; g[1] += -2 * c24 * y * gb[8];
  if (nb <= 9) return;
  const S c30 = S(SH_C3[0]), c31 = S(SH_C3[1]), c32 = S(SH_C3[2]), c33 = S(SH_C3[3]), c34 = S(SH_C3[4]),
          c35 = S(SH_C3[5]), c36 = S(SH_C3[6]);
  g[0] += 6 * c30 * x * y * gb[9]; g[1] += c30 * (3 * xx - 3 * yy) * gb[9];
  g[0] += c31 * y * z * gb[10]; g[1] += c31 * x * z * gb[10]; g[2] += c31 * x * y * gb[10];
  g[0] += -2 * c32 * x * y * gb[11]; g[1] += c32 * (4 * zz - xx - 3 * yy) * gb[11]; g[2] += 8 * c32 * y * z * gb[11];
  g[0] += -6 * c33 * x * z * gb[12]; g[1] += -6 * c33 * y * z * gb[12]; g[2] += c33 * (6 * zz - 3 * xx - 3 * yy) * gb[12];
  g[0] += c34 * (4 * zz - 3 * xx - yy) * gb[13]; g[1] += -2 * c34 * x * y * gb[13]; g[2] += 8 * c34 * x * z * gb[13];
  g[0] += 2 * c35 * x * z * gb[14]; g[1] += -2 * c35 * y * z * gb[14]; g[2] += c35 * (xx - yy) * gb[14];
  g[0] += c36 * (3 * xx - 3 * yy) * gb[15]; g[1] += -6 * c36 * x * y * gb[15];
}

// Everything the projection computes for one (camera, Gaussian), kept for the backward pass.
template <typename S>
struct Proj {
  bool zvalid, valid;
  S x, y, z, rz, xz, yz, xzc, yzc;
  bool xin, yin;  // x/z, y/z inside the FOV clamp (gradient passes)
  S T0[3], T1[3], U0[3], U1[3];
  S a0, b, c0, a, c, det, inv_det, comp;
};

template <typename S>
void project_one(const Cam<S>& cm, const S* mu, const S M[9], S near, S far, S eps2d, bool antialiased,
                 Proj<S>& p) {
  const S* R = cm.R;
  p.x = R[0] * mu[0] + R[1] * mu[1] + R[2] * mu[2] + cm.t[0];
  p.y = R[3] * mu[0] + R[4] * mu[1] + R[5] * mu[2] + cm.t[1];
  p.z = R[6] * mu[0] + R[7] * mu[1] + R[8] * mu[2] + cm.t[2];
  p.zvalid = p.z > near && p.z < far;
  p.valid = false;
  if (!p.zvalid) return;
  p.rz = S(1) / p.z;
  p.xz = p.x * p.rz;
  p.yz = p.y * p.rz;
  p.xzc = std::min(std::max(p.xz, -cm.lim_xn), cm.lim_xp);
  p.yzc = std::min(std::max(p.yz, -cm.lim_yn), cm.lim_yp);
  p.xin = p.xz > -cm.lim_xn && p.xz < cm.lim_xp;
  p.yin = p.yz > -cm.lim_yn && p.yz < cm.lim_yp;
  const S j0 = cm.fx * p.rz, j2x = -cm.fx * p.xzc * p.rz, j1 = cm.fy * p.rz, j2y = -cm.fy * p.yzc * p.rz;
  for (int j = 0; j < 3; ++j) {
    p.T0[j] = j0 * R[0 * 3 + j] + j2x * R[2 * 3 + j];
    p.T1[j] = j1 * R[1 * 3 + j] + j2y * R[2 * 3 + j];
  }
  for (int k = 0; k < 3; ++k) {
    p.U0[k] = p.T0[0] * M[0 * 3 + k] + p.T0[1] * M[1 * 3 + k] + p.T0[2] * M[2 * 3 + k];
    p.U1[k] = p.T1[0] * M[0 * 3 + k] + p.T1[1] * M[1 * 3 + k] + p.T1[2] * M[2 * 3 + k];
  }
  p.a0 = p.U0[0] * p.U0[0] + p.U0[1] * p.U0[1] + p.U0[2] * p.U0[2];
  p.b = p.U0[0] * p.U1[0] + p.U0[1] * p.U1[1] + p.U0[2] * p.U1[2];
  p.c0 = p.U1[0] * p.U1[0] + p.U1[1] * p.U1[1] + p.U1[2] * p.U1[2];
  p.a = p.a0 + eps2d;
  p.c = p.c0 + eps2d;
  p.det = p.a * p.c - p.b * p.b;
  p.valid = p.det > 0;
  p.inv_det = p.valid ? S(1) / p.det : S(1);
  p.comp = S(1);
  if (antialiased && p.valid) p.comp = std::sqrt(std::max((p.a0 * p.c0 - p.b * p.b) * p.inv_det, S(1e-12)));
}

template <typename S>
void gaussian_factor(const S* q, const S* s, S n[4], S& norm, S Rq[9], S M[9]) {
  norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  norm = std::max(norm, S(1e-12));
  for (int i = 0; i < 4; ++i) n[i] = q[i] / norm;
  quat_rot(n, Rq);
  for (int j = 0; j < 3; ++j)
    for (int k = 0; k < 3; ++k) M[j * 3 + k] = Rq[j * 3 + k] * s[k];
}

// Outputs per (c, n), camera-major: means2d (C,N,2), conics (C,N,3), opac (C,N) effective opacity,
// rgb (C,N,3), depths (C,N), radii (C,N) int32, visible (C,N) uint8, boxes (C,N,4) int32.
// colors: (N,3) plain RGB when nb == 0, else (N,K,3) SH coefficients of which the first nb are used.
template <typename S>
void project_fwd_impl(int64_t N, int C, const S* means, const S* quats, const S* scales, const S* opacities,
                      const S* colors, int K, int nb, const S* viewmats, const S* Ks, int W, int H, S near, S far,
                      S eps2d, int antialiased, S* means2d, S* conics, S* opac, S* rgb, S* depths, int32_t* radii,
                      uint8_t* visible, int32_t* boxes, int nthreads) {
  Cam<S> cams[64];
  const int CB = 64;
#pragma omp parallel num_threads(nthreads)
  for (int cb = 0; cb < C; cb += CB) {
    const int nc = std::min(CB, C - cb);
#pragma omp single
    for (int c = 0; c < nc; ++c) cams[c] = load_cam(viewmats + (cb + c) * 16, Ks + (cb + c) * 9, W, H);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      S qn[4], norm, Rq[9], M[9];
      gaussian_factor(quats + 4 * n, scales + 3 * n, qn, norm, Rq, M);
      const S* mu = means + 3 * n;
      for (int ci = 0; ci < nc; ++ci) {
        const Cam<S>& cm = cams[ci];
        const int64_t e = static_cast<int64_t>(cb + ci) * N + n;
        Proj<S> p;
        project_one(cm, mu, M, near, far, eps2d, antialiased != 0, p);
        depths[e] = p.z;
        means2d[2 * e] = p.zvalid ? cm.fx * p.xz + cm.cx : S(0);
        means2d[2 * e + 1] = p.zvalid ? cm.fy * p.yz + cm.cy : S(0);
        S* cn = conics + 3 * e;
        int32_t* bx = boxes + 4 * e;
        if (!p.valid) {
          cn[0] = cn[1] = cn[2] = 0;
          opac[e] = 0;
          radii[e] = 0;
          visible[e] = 0;
          bx[0] = bx[1] = bx[2] = bx[3] = 0;
        } else {
          cn[0] = p.c * p.inv_det; cn[1] = -p.b * p.inv_det; cn[2] = p.a * p.inv_det;
          const S op = opacities[n] * p.comp;
          opac[e] = op;
          const S mid = S(0.5) * (p.a + p.c);
          const S lam = mid + std::sqrt(std::max(mid * mid - p.det, S(0.01)));
          radii[e] = static_cast<int32_t>(std::ceil(S(3) * std::sqrt(lam)));
          S q = S(2) * std::log(std::max(op, S(1e-30)) / static_cast<S>(ALPHA_MIN));
          q = std::max(q, S(0));
          const S ex = std::sqrt(q * p.a), ey = std::sqrt(q * p.c);
          const S mx = means2d[2 * e], my = means2d[2 * e + 1], mg = S(0.01);
          auto clampi = [](S v, int hi) { return static_cast<int32_t>(std::min(std::max(v, S(0)), S(hi))); };
          bx[0] = clampi(std::floor(mx - ex - S(0.5) - mg) + 1, W);
          bx[1] = clampi(std::floor(mx + ex - S(0.5) + mg) + 1, W);
          bx[2] = clampi(std::floor(my - ey - S(0.5) - mg) + 1, H);
          bx[3] = clampi(std::floor(my + ey - S(0.5) + mg) + 1, H);
          visible[e] = (bx[1] > bx[0] && bx[3] > bx[2] && ex > 0) ? 1 : 0;
        }
        S* col = rgb + 3 * e;
        if (nb == 0) {
          for (int j = 0; j < 3; ++j) col[j] = colors[3 * n + j];
        } else {
          S d[3] = {mu[0] - cm.pos[0], mu[1] - cm.pos[1], mu[2] - cm.pos[2]};
          const S dn = std::max(std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), S(1e-12));
          S basis[16];
          sh_basis(nb, d[0] / dn, d[1] / dn, d[2] / dn, basis);
          const S* co = colors + static_cast<int64_t>(n) * K * 3;
          for (int j = 0; j < 3; ++j) {
            S v = 0;
            for (int k = 0; k < nb; ++k) v += basis[k] * co[k * 3 + j];
            col[j] = std::max(v + S(0.5), S(0));
          }
        }
      }
    }
  }
}

// Backward of project_fwd_impl: from the gradients of means2d, conics, opac, rgb and depths (C,N,...)
// to those of means (N,3), quats (N,4), scales (N,3), opacities (N) and colors (N,3) or (N,K,3)
// (every output is written; SH coefficients beyond nb get zero).
template <typename S>
void project_bwd_impl(int64_t N, int C, const S* means, const S* quats, const S* scales, const S* opacities,
                      const S* colors, int K, int nb, const S* viewmats, const S* Ks, int W, int H, S near, S far,
                      S eps2d, int antialiased, const S* g_means2d, const S* g_conics, const S* g_opac,
                      const S* g_rgb, const S* g_depths, S* g_means, S* g_quats, S* g_scales, S* g_opacities,
                      S* g_colors, int nthreads) {
  Cam<S> cams[64];
  const int CB = 64;
  const int64_t ncol = nb == 0 ? 3 : static_cast<int64_t>(K) * 3;
#pragma omp parallel num_threads(nthreads)
  {
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      for (int j = 0; j < 3; ++j) g_means[3 * n + j] = g_scales[3 * n + j] = 0;
      for (int j = 0; j < 4; ++j) g_quats[4 * n + j] = 0;
      g_opacities[n] = 0;
      for (int64_t j = 0; j < ncol; ++j) g_colors[n * ncol + j] = 0;
    }
    for (int cb = 0; cb < C; cb += CB) {
      const int nc = std::min(CB, C - cb);
#pragma omp single
      for (int c = 0; c < nc; ++c) cams[c] = load_cam(viewmats + (cb + c) * 16, Ks + (cb + c) * 9, W, H);
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        S qn[4], norm, Rq[9], M[9];
        gaussian_factor(quats + 4 * n, scales + 3 * n, qn, norm, Rq, M);
        const S* mu = means + 3 * n;
        S gmu[3] = {0, 0, 0}, dM[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0}, gop = 0;
        S* gcol = g_colors + n * ncol;
        for (int ci = 0; ci < nc; ++ci) {
          const Cam<S>& cm = cams[ci];
          const int64_t e = static_cast<int64_t>(cb + ci) * N + n;
          {  // most (camera, Gaussian) entries of a training view get no gradient at all: skip them
            const S* q = g_conics + 3 * e;
            const S* r = g_rgb + 3 * e;
            if (g_means2d[2 * e] == 0 && g_means2d[2 * e + 1] == 0 && q[0] == 0 && q[1] == 0 && q[2] == 0 &&
                g_opac[e] == 0 && r[0] == 0 && r[1] == 0 && r[2] == 0 && g_depths[e] == 0)
              continue;
          }
          Proj<S> p;
          project_one(cm, mu, M, near, far, eps2d, antialiased != 0, p);
          S gx = 0, gy = 0, gz = g_depths[e];
          if (p.zvalid) {
            S gxz = cm.fx * g_means2d[2 * e], gyz = cm.fy * g_means2d[2 * e + 1], grz = 0;
            if (p.valid) {
              gop += g_opac[e] * p.comp;
              const S* gq = g_conics + 3 * e;
              const S a = p.a, b = p.b, c = p.c, id2 = p.inv_det * p.inv_det;
              S ga = (-c * c * gq[0] + b * c * gq[1] - b * b * gq[2]) * id2;
              S gb = (2 * b * c * gq[0] + (-p.det - 2 * b * b) * gq[1] + 2 * a * b * gq[2]) * id2;
              S gc = (-b * b * gq[0] + a * b * gq[1] - a * a * gq[2]) * id2;
              if (antialiased) {
                const S r = (p.a0 * p.c0 - b * b) * p.inv_det;
                if (r >= S(1e-12)) {
                  const S gr = g_opac[e] * opacities[n] * S(0.5) / p.comp;
                  ga += gr * (p.c0 - r * c) * p.inv_det;
                  gc += gr * (p.a0 - r * a) * p.inv_det;
                  gb += gr * (-2 * b * (1 - r)) * p.inv_det;
                }
              }
              S dU0[3], dU1[3], dT0[3], dT1[3];
              for (int k = 0; k < 3; ++k) {
                dU0[k] = 2 * ga * p.U0[k] + gb * p.U1[k];
                dU1[k] = gb * p.U0[k] + 2 * gc * p.U1[k];
              }
              for (int j = 0; j < 3; ++j) {
                dT0[j] = dU0[0] * M[j * 3 + 0] + dU0[1] * M[j * 3 + 1] + dU0[2] * M[j * 3 + 2];
                dT1[j] = dU1[0] * M[j * 3 + 0] + dU1[1] * M[j * 3 + 1] + dU1[2] * M[j * 3 + 2];
                for (int k = 0; k < 3; ++k) dM[j * 3 + k] += dU0[k] * p.T0[j] + dU1[k] * p.T1[j];
              }
              const S* R = cm.R;
              const S gj0 = dT0[0] * R[0] + dT0[1] * R[1] + dT0[2] * R[2];
              const S gj2x = dT0[0] * R[6] + dT0[1] * R[7] + dT0[2] * R[8];
              const S gj1 = dT1[0] * R[3] + dT1[1] * R[4] + dT1[2] * R[5];
              const S gj2y = dT1[0] * R[6] + dT1[1] * R[7] + dT1[2] * R[8];
              grz += cm.fx * gj0 + cm.fy * gj1 - cm.fx * p.xzc * gj2x - cm.fy * p.yzc * gj2y;
              if (p.xin) gxz += -cm.fx * p.rz * gj2x;
              if (p.yin) gyz += -cm.fy * p.rz * gj2y;
            }
            gx = p.rz * gxz;
            gy = p.rz * gyz;
            grz += p.x * gxz + p.y * gyz;
            gz += -p.rz * p.rz * grz;
          }
          const S* R = cm.R;
          for (int j = 0; j < 3; ++j) gmu[j] += R[0 * 3 + j] * gx + R[1 * 3 + j] * gy + R[2 * 3 + j] * gz;
          const S* gcl = g_rgb + 3 * e;
          if (nb == 0) {
            for (int j = 0; j < 3; ++j) gcol[j] += gcl[j];
          } else if (gcl[0] != 0 || gcl[1] != 0 || gcl[2] != 0) {
            S d[3] = {mu[0] - cm.pos[0], mu[1] - cm.pos[1], mu[2] - cm.pos[2]};
            const S dlen = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
            const S dn = std::max(dlen, S(1e-12));
            const S u[3] = {d[0] / dn, d[1] / dn, d[2] / dn};
            S basis[16], gbasis[16];
            sh_basis(nb, u[0], u[1], u[2], basis);
            const S* co = colors + n * ncol;
            S graw[3];
            for (int j = 0; j < 3; ++j) {
              S v = 0;
              for (int k = 0; k < nb; ++k) v += basis[k] * co[k * 3 + j];
              graw[j] = (v + S(0.5)) >= 0 ? gcl[j] : S(0);
            }
            for (int k = 0; k < nb; ++k) {
              gbasis[k] = co[k * 3 + 0] * graw[0] + co[k * 3 + 1] * graw[1] + co[k * 3 + 2] * graw[2];
              for (int j = 0; j < 3; ++j) gcol[k * 3 + j] += basis[k] * graw[j];
            }
            S gu[3];
            sh_basis_grad(nb, u[0], u[1], u[2], gbasis, gu);
            if (dlen > S(1e-12)) {
              const S dot = u[0] * gu[0] + u[1] * gu[1] + u[2] * gu[2];
              for (int j = 0; j < 3; ++j) gmu[j] += (gu[j] - u[j] * dot) / dn;
            } else {
              for (int j = 0; j < 3; ++j) gmu[j] += gu[j] / dn;
            }
          }
        }
        for (int j = 0; j < 3; ++j) g_means[3 * n + j] += gmu[j];
        g_opacities[n] += gop;
        // through M = R(q) diag(s)
        const S* s = scales + 3 * n;
        for (int k = 0; k < 3; ++k) g_scales[3 * n + k] += dM[0 * 3 + k] * Rq[0 * 3 + k] + dM[1 * 3 + k] * Rq[1 * 3 + k] + dM[2 * 3 + k] * Rq[2 * 3 + k];
        S d[9];
        for (int j = 0; j < 3; ++j)
          for (int k = 0; k < 3; ++k) d[j * 3 + k] = dM[j * 3 + k] * s[k];
        const S w = qn[0], x = qn[1], y = qn[2], z = qn[3];
        S dn4[4];
        dn4[0] = 2 * (-z * d[1] + y * d[2] + z * d[3] - x * d[5] - y * d[6] + x * d[7]);
        dn4[1] = 2 * (y * d[1] + z * d[2] + y * d[3] - 2 * x * d[4] - w * d[5] + z * d[6] + w * d[7] - 2 * x * d[8]);
        dn4[2] = 2 * (-2 * y * d[0] + x * d[1] + w * d[2] + x * d[3] + z * d[5] - w * d[6] + z * d[7] - 2 * y * d[8]);
        dn4[3] = 2 * (-2 * z * d[0] - w * d[1] + x * d[2] + w * d[3] - 2 * z * d[4] + y * d[5] + x * d[6] + y * d[7]);
        const S dot = qn[0] * dn4[0] + qn[1] * dn4[1] + qn[2] * dn4[2] + qn[3] * dn4[3];
        for (int i = 0; i < 4; ++i) g_quats[4 * n + i] += (dn4[i] - qn[i] * dot) / norm;
      }
    }
  }
}

// Gather the visible pairs flat[m] = c * N + n (depth order) into the (M, 10) table, and its backward.
template <typename S>
void gather_impl(int64_t M, const int64_t* flat, const S* means2d, const S* conics, const S* opac, const S* rgb,
                 const S* depths, S* packed, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t m = 0; m < M; ++m) {
    const int64_t e = flat[m];
    S* o = packed + m * NC;
    o[0] = means2d[2 * e]; o[1] = means2d[2 * e + 1];
    o[2] = conics[3 * e]; o[3] = conics[3 * e + 1]; o[4] = conics[3 * e + 2];
    o[5] = opac[e];
    o[6] = rgb[3 * e]; o[7] = rgb[3 * e + 1]; o[8] = rgb[3 * e + 2];
    o[9] = depths[e];
  }
}

template <typename S>
void scatter_impl(int64_t M, const int64_t* flat, const S* gpacked, S* g_means2d, S* g_conics, S* g_opac, S* g_rgb,
                  S* g_depths, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t m = 0; m < M; ++m) {
    const int64_t e = flat[m];
    const S* g = gpacked + m * NC;
    g_means2d[2 * e] = g[0]; g_means2d[2 * e + 1] = g[1];
    g_conics[3 * e] = g[2]; g_conics[3 * e + 1] = g[3]; g_conics[3 * e + 2] = g[4];
    g_opac[e] = g[5];
    g_rgb[3 * e] = g[6]; g_rgb[3 * e + 1] = g[7]; g_rgb[3 * e + 2] = g[8];
    g_depths[e] = g[9];
  }
}

}  // namespace

extern "C" {

int rc_abi_version() { return 1; }
int rc_max_tile() { return MAX_TILE; }
int rc_max_threads() { return omp_get_max_threads(); }

// Tiles touched by each pair: fills pair_start (M + 1, prefix sums) and tile_count (ntiles, zeroed by the
// caller); returns L, the number of list entries.
int64_t rc_bin_count(int64_t M, const int32_t* box, const int32_t* cam, int W, int H, int tile, int64_t* pair_start,
                     int64_t* tile_count) {
  const int ntx = (W + tile - 1) / tile, nty = (H + tile - 1) / tile;
  int64_t total = 0;
  for (int64_t m = 0; m < M; ++m) {
    const int32_t* b = box + m * 4;
    pair_start[m] = total;
    if (b[1] <= b[0] || b[3] <= b[2]) continue;
    const int tx0 = b[0] / tile, tx1 = (b[1] - 1) / tile + 1, ty0 = b[2] / tile, ty1 = (b[3] - 1) / tile + 1;
    const int64_t base = static_cast<int64_t>(cam[m]) * nty;
    for (int ty = ty0; ty < ty1; ++ty)
      for (int tx = tx0; tx < tx1; ++tx) ++tile_count[(base + ty) * ntx + tx];
    total += static_cast<int64_t>(tx1 - tx0) * (ty1 - ty0);
  }
  pair_start[M] = total;
  return total;
}

// Fills the per-tile lists in pair (= depth) order. ``cursor`` (ntiles,) holds each tile's list start
// (exclusive prefix sums of the counts) on entry and is advanced while filling; entries (L,) receives the
// pair index of every list slot and entry_pos (L,) the list slot of each (pair, touched tile) in pair order.
void rc_bin_fill(int64_t M, const int32_t* box, const int32_t* cam, int W, int H, int tile, int64_t* cursor,
                 int32_t* entries, int64_t* entry_pos) {
  const int ntx = (W + tile - 1) / tile, nty = (H + tile - 1) / tile;
  int64_t pos = 0;
  for (int64_t m = 0; m < M; ++m) {
    const int32_t* b = box + m * 4;
    if (b[1] <= b[0] || b[3] <= b[2]) continue;
    const int tx0 = b[0] / tile, tx1 = (b[1] - 1) / tile + 1, ty0 = b[2] / tile, ty1 = (b[3] - 1) / tile + 1;
    const int64_t base = static_cast<int64_t>(cam[m]) * nty;
    for (int ty = ty0; ty < ty1; ++ty)
      for (int tx = tx0; tx < tx1; ++tx) {
        const int64_t k = cursor[(base + ty) * ntx + tx]++;
        entries[k] = static_cast<int32_t>(m);
        entry_pos[pos++] = k;
      }
  }
}

void rc_forward_f32(int C, int H, int W, int tile, const float* pairs, const int32_t* box, const int64_t* tile_start,
                    const int32_t* entries, float* out, float* tfinal, int32_t* last, int nthreads) {
  forward_impl<float>(C, H, W, tile, pairs, box, tile_start, entries, out, tfinal, last, nthreads);
}
void rc_forward_f64(int C, int H, int W, int tile, const double* pairs, const int32_t* box, const int64_t* tile_start,
                    const int32_t* entries, double* out, double* tfinal, int32_t* last, int nthreads) {
  forward_impl<double>(C, H, W, tile, pairs, box, tile_start, entries, out, tfinal, last, nthreads);
}
void rc_backward_f32(int C, int H, int W, int tile, const float* pairs, const int32_t* box,
                     const int64_t* tile_start, const int32_t* entries, const float* tfinal, const int32_t* last,
                     const float* gout, float* gentries, int nthreads) {
  backward_impl<float>(C, H, W, tile, pairs, box, tile_start, entries, tfinal, last, gout, gentries, nthreads);
}
void rc_backward_f64(int C, int H, int W, int tile, const double* pairs, const int32_t* box,
                     const int64_t* tile_start, const int32_t* entries, const double* tfinal, const int32_t* last,
                     const double* gout, double* gentries, int nthreads) {
  backward_impl<double>(C, H, W, tile, pairs, box, tile_start, entries, tfinal, last, gout, gentries, nthreads);
}
void rc_reduce_f32(int64_t M, const int64_t* pair_start, const int64_t* entry_pos, const float* gentries,
                   float* gpairs, int nthreads) {
  reduce_impl<float>(M, pair_start, entry_pos, gentries, gpairs, nthreads);
}
void rc_reduce_f64(int64_t M, const int64_t* pair_start, const int64_t* entry_pos, const double* gentries,
                   double* gpairs, int nthreads) {
  reduce_impl<double>(M, pair_start, entry_pos, gentries, gpairs, nthreads);
}


#define RC_PROJECT(SFX, S)                                                                                         \
  void rc_project_fwd_##SFX(int64_t N, int C, const S* means, const S* quats, const S* scales, const S* opacities, \
                            const S* colors, int K, int nb, const S* viewmats, const S* Ks, int W, int H, double near, \
                            double far, double eps2d, int antialiased, S* means2d, S* conics, S* opac, S* rgb,       \
                            S* depths, int32_t* radii, uint8_t* visible, int32_t* boxes, int nthreads) {             \
    project_fwd_impl<S>(N, C, means, quats, scales, opacities, colors, K, nb, viewmats, Ks, W, H, S(near), S(far),   \
                        S(eps2d), antialiased, means2d, conics, opac, rgb, depths, radii, visible, boxes, nthreads); \
  }                                                                                                                \
  void rc_project_bwd_##SFX(int64_t N, int C, const S* means, const S* quats, const S* scales, const S* opacities, \
                            const S* colors, int K, int nb, const S* viewmats, const S* Ks, int W, int H, double near, \
                            double far, double eps2d, int antialiased, const S* g_means2d, const S* g_conics,        \
                            const S* g_opac, const S* g_rgb, const S* g_depths, S* g_means, S* g_quats,              \
                            S* g_scales, S* g_opacities, S* g_colors, int nthreads) {                                \
    project_bwd_impl<S>(N, C, means, quats, scales, opacities, colors, K, nb, viewmats, Ks, W, H, S(near), S(far),   \
                        S(eps2d), antialiased, g_means2d, g_conics, g_opac, g_rgb, g_depths, g_means, g_quats,       \
                        g_scales, g_opacities, g_colors, nthreads);                                                  \
  }                                                                                                                \
  void rc_gather_##SFX(int64_t M, const int64_t* flat, const S* means2d, const S* conics, const S* opac,          \
                       const S* rgb, const S* depths, S* packed, int nthreads) {                                     \
    gather_impl<S>(M, flat, means2d, conics, opac, rgb, depths, packed, nthreads);                                 \
  }                                                                                                                \
  void rc_scatter_##SFX(int64_t M, const int64_t* flat, const S* gpacked, S* g_means2d, S* g_conics, S* g_opac,   \
                        S* g_rgb, S* g_depths, int nthreads) {                                                       \
    scatter_impl<S>(M, flat, gpacked, g_means2d, g_conics, g_opac, g_rgb, g_depths, nthreads);                     \
  }

RC_PROJECT(f32, float)
RC_PROJECT(f64, double)

}  // extern "C"
