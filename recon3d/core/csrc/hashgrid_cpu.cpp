// Multiresolution hash-grid encoding (Instant-NGP), forward and backward w.r.t. the feature table, on CPU.
//
// The C-ABI twin of recon3d/core/encodings.py::HashGridEncoding (same vertex indexing, same trilinear
// weights; see that module's docstring). Per level l: resolution res[l] (cells per axis, float), hashed[l]
// (xor of coordinate * prime, masked) or dense (sum of coordinate * stride), strides[l] (3 int64), offset[l]
// (first table row of the level).
//   x     (N, 3) points in [0, 1] (clamped)
//   table (rows, F) features
//   out   (N, L * F) level-major per point
//   gout  (L, N, F) gradient of the output, level-major (transposed by the caller)
//   gtab  (rows, F) gradient of the table, zeroed by the caller
// The backward pass distributes levels over threads: each level owns a disjoint block of table rows, so
// there are no write conflicts and the sums do not depend on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <omp.h>

namespace {

template <typename S>
struct Corners {
  int64_t idx[8];
  S w[8];
};

template <typename S>
inline void corners(const S* xp, S res, bool hashed, const int64_t* st, int64_t mask, Corners<S>& c) {
  int64_t b[3][2];
  S wt[3][2];
  for (int a = 0; a < 3; ++a) {
    S x = xp[a];
    x = x < S(0) ? S(0) : (x > S(1) ? S(1) : x);
    const S pos = x * res;
    const S p0 = std::min(std::floor(pos), res - S(1));
    const S frac = pos - p0;
    const int64_t base = static_cast<int64_t>(p0);
    b[a][0] = base * st[a];
    b[a][1] = (base + 1) * st[a];
    wt[a][0] = S(1) - frac;
    wt[a][1] = frac;
  }
  for (int bz = 0; bz < 2; ++bz)
    for (int by = 0; by < 2; ++by)
      for (int bx = 0; bx < 2; ++bx) {
        const int k = 4 * bz + 2 * by + bx;
        c.idx[k] = hashed ? ((b[2][bz] ^ b[1][by] ^ b[0][bx]) & mask) : (b[2][bz] + b[1][by] + b[0][bx]);
        c.w[k] = wt[2][bz] * wt[1][by] * wt[0][bx];
      }
}

template <typename S>
void forward_impl(int64_t N, const S* x, int L, int F, const S* table, const S* res, const int32_t* hashed,
                  const int64_t* strides, const int64_t* offsets, int64_t mask, S* out, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t n = 0; n < N; ++n) {
    for (int l = 0; l < L; ++l) {
      Corners<S> c;
      corners(x + 3 * n, res[l], hashed[l] != 0, strides + 3 * l, mask, c);
      S* o = out + (n * L + l) * F;
      for (int f = 0; f < F; ++f) o[f] = 0;
      for (int k = 0; k < 8; ++k) {
        const S* row = table + (offsets[l] + c.idx[k]) * F;
        for (int f = 0; f < F; ++f) o[f] += row[f] * c.w[k];
      }
    }
  }
}

template <typename S>
void backward_impl(int64_t N, const S* x, int L, int F, const S* res, const int32_t* hashed, const int64_t* strides,
                   const int64_t* offsets, int64_t mask, const S* gout, S* gtab, int nthreads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int l = 0; l < L; ++l) {
    const S* g = gout + static_cast<int64_t>(l) * N * F;
    S* gt = gtab + offsets[l] * F;
    for (int64_t n = 0; n < N; ++n) {
      Corners<S> c;
      corners(x + 3 * n, res[l], hashed[l] != 0, strides + 3 * l, mask, c);
      const S* gn = g + n * F;
      for (int k = 0; k < 8; ++k) {
        S* row = gt + c.idx[k] * F;
        for (int f = 0; f < F; ++f) row[f] += c.w[k] * gn[f];
      }
    }
  }
}

}  // namespace

extern "C" {

void hg_forward_f32(int64_t N, const float* x, int L, int F, const float* table, const float* res,
                    const int32_t* hashed, const int64_t* strides, const int64_t* offsets, int64_t mask, float* out,
                    int nthreads) {
  forward_impl<float>(N, x, L, F, table, res, hashed, strides, offsets, mask, out, nthreads);
}
void hg_forward_f64(int64_t N, const double* x, int L, int F, const double* table, const double* res,
                    const int32_t* hashed, const int64_t* strides, const int64_t* offsets, int64_t mask, double* out,
                    int nthreads) {
  forward_impl<double>(N, x, L, F, table, res, hashed, strides, offsets, mask, out, nthreads);
}
void hg_backward_f32(int64_t N, const float* x, int L, int F, const float* res, const int32_t* hashed,
                     const int64_t* strides, const int64_t* offsets, int64_t mask, const float* gout, float* gtab,
                     int nthreads) {
  backward_impl<float>(N, x, L, F, res, hashed, strides, offsets, mask, gout, gtab, nthreads);
}
void hg_backward_f64(int64_t N, const double* x, int L, int F, const double* res, const int32_t* hashed,
                     const int64_t* strides, const int64_t* offsets, int64_t mask, const double* gout, double* gtab,
                     int nthreads) {
  backward_impl<double>(N, x, L, F, res, hashed, strides, offsets, mask, gout, gtab, nthreads);
}

}  // extern "C"
