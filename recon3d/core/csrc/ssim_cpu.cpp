// Fused SSIM (Gaussian window, 'valid' map) with its backward w.r.t. the first image, on CPU.
//
// The C-ABI twin of recon3d/core/metrics.py::ssim (same window, constants and 'valid' map; see there).
// Images are (H, W, C) row-major (C innermost, as the trainers hold them). Per image pair:
//   forward: the five local statistics (mu_x, mu_y, E[x^2], E[y^2], E[xy]) by a separable Gaussian filter
//            (horizontal pass over the C*5 quantities of each row, then vertical), the SSIM map and its sum;
//            the filtered statistics (H', W', C, 5) are kept for the backward pass.
//   backward: d SSIM / d (mu_x, E[x^2], E[xy]) per map pixel (closed form), filtered back with the
//            transposed filter (a 'full' correlation with the same symmetric taps):
//            dL/dx = G^T(d mu_x) + 2 x G^T(d E[x^2]) + y G^T(d E[xy]).
// Rows are spread over OpenMP threads; every output element is written by one thread.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

namespace {

template <typename S>
void forward_impl(int H, int W, int C, const S* x, const S* y, const S* g, int win, S c1, S c2, S* stats, S* smap,
                  int nthreads) {
  const int Ho = H - win + 1, Wo = W - win + 1, Q = 5 * C;
  std::vector<S> hbuf(static_cast<size_t>(H) * Wo * Q);
  // horizontal pass: hbuf[r, j, q] = sum_t g[t] * quantity_q(r, j + t)
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int r = 0; r < H; ++r) {
    std::vector<S> row(static_cast<size_t>(W) * Q);
    for (int j = 0; j < W; ++j)
      for (int c = 0; c < C; ++c) {
        const S a = x[(static_cast<int64_t>(r) * W + j) * C + c], b = y[(static_cast<int64_t>(r) * W + j) * C + c];
        S* q = row.data() + static_cast<size_t>(j) * Q + 5 * c;
        q[0] = a; q[1] = b; q[2] = a * a; q[3] = b * b; q[4] = a * b;
      }
    S* out = hbuf.data() + static_cast<size_t>(r) * Wo * Q;
    for (int j = 0; j < Wo; ++j) {
      S* o = out + static_cast<size_t>(j) * Q;
      for (int q = 0; q < Q; ++q) o[q] = 0;
      for (int t = 0; t < win; ++t) {
        const S gt = g[t];
        const S* in = row.data() + static_cast<size_t>(j + t) * Q;
        for (int q = 0; q < Q; ++q) o[q] += gt * in[q];
      }
    }
  }
  // vertical pass and the SSIM map
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int i = 0; i < Ho; ++i) {
    S* st = stats + static_cast<size_t>(i) * Wo * Q;
    for (int k = 0; k < Wo * Q; ++k) st[k] = 0;
    for (int t = 0; t < win; ++t) {
      const S gt = g[t];
      const S* in = hbuf.data() + static_cast<size_t>(i + t) * Wo * Q;
      for (int k = 0; k < Wo * Q; ++k) st[k] += gt * in[k];
    }
    for (int j = 0; j < Wo; ++j)
      for (int c = 0; c < C; ++c) {
        const S* q = st + static_cast<size_t>(j) * Q + 5 * c;
        const S mx = q[0], my = q[1];
        const S mxx = mx * mx, myy = my * my, mxy = mx * my;
        const S vx = q[2] - mxx, vy = q[3] - myy, cov = q[4] - mxy;
        smap[(static_cast<size_t>(i) * Wo + j) * C + c] =
            ((2 * mxy + c1) * (2 * cov + c2)) / ((mxx + myy + c1) * (vx + vy + c2));
      }
  }
}

template <typename S>
void backward_impl(int H, int W, int C, const S* x, const S* y, const S* g, int win, S c1, S c2, const S* stats,
                   S scale, S* gx, int nthreads) {
  // scale = dL/d(each SSIM map value) (the same for all: a mean)
  const int Ho = H - win + 1, Wo = W - win + 1, Q3 = 3 * C;
  std::vector<S> dmap(static_cast<size_t>(Ho) * Wo * Q3);  // (d mu_x, d E[x^2], d E[xy]) per map pixel
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int i = 0; i < Ho; ++i)
    for (int j = 0; j < Wo; ++j)
      for (int c = 0; c < C; ++c) {
        const S* q = stats + (static_cast<size_t>(i) * Wo + j) * 5 * C + 5 * c;
        const S mx = q[0], my = q[1];
        const S A1 = 2 * mx * my + c1, A2 = 2 * (q[4] - mx * my) + c2;
        const S B1 = mx * mx + my * my + c1, B2 = (q[2] - mx * mx) + (q[3] - my * my) + c2;
        const S inv = S(1) / (B1 * B2), Sv = A1 * A2 * inv;
        S* d = dmap.data() + (static_cast<size_t>(i) * Wo + j) * Q3 + 3 * c;
        d[0] = scale * ((2 * my * A2 - 2 * my * A1) * inv - Sv * (2 * mx / B1 - 2 * mx / B2));
        d[1] = scale * (-Sv / B2);
        d[2] = scale * (2 * A1 * inv);
      }
  // transposed vertical pass: vbuf[r, j, q] = sum over map rows i with r - i in [0, win) of g[r - i] dmap[i]
  std::vector<S> vbuf(static_cast<size_t>(H) * Wo * Q3);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int r = 0; r < H; ++r) {
    S* o = vbuf.data() + static_cast<size_t>(r) * Wo * Q3;
    for (int k = 0; k < Wo * Q3; ++k) o[k] = 0;
    const int i0 = std::max(0, r - win + 1), i1 = std::min(Ho - 1, r);
    for (int i = i0; i <= i1; ++i) {
      const S gt = g[r - i];
      const S* in = dmap.data() + static_cast<size_t>(i) * Wo * Q3;
      for (int k = 0; k < Wo * Q3; ++k) o[k] += gt * in[k];
    }
  }
  // transposed horizontal pass and the chain rule to x
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int r = 0; r < H; ++r) {
    const S* vr = vbuf.data() + static_cast<size_t>(r) * Wo * Q3;
    for (int j = 0; j < W; ++j) {
      S acc[3 * 16];
      const int n = std::min(Q3, 3 * 16);
      for (int k = 0; k < n; ++k) acc[k] = 0;
      const int j0 = std::max(0, j - win + 1), j1 = std::min(Wo - 1, j);
      for (int jj = j0; jj <= j1; ++jj) {
        const S gt = g[j - jj];
        const S* in = vr + static_cast<size_t>(jj) * Q3;
        for (int k = 0; k < n; ++k) acc[k] += gt * in[k];
      }
      for (int c = 0; c < C; ++c) {
        const int64_t p = (static_cast<int64_t>(r) * W + j) * C + c;
        gx[p] = acc[3 * c] + 2 * x[p] * acc[3 * c + 1] + y[p] * acc[3 * c + 2];
      }
    }
  }
}

}  // namespace

extern "C" {

void ssim_forward_f32(int H, int W, int C, const float* x, const float* y, const float* g, int win, double c1,
                      double c2, float* stats, float* smap, int nthreads) {
  forward_impl<float>(H, W, C, x, y, g, win, float(c1), float(c2), stats, smap, nthreads);
}
void ssim_forward_f64(int H, int W, int C, const double* x, const double* y, const double* g, int win, double c1,
                      double c2, double* stats, double* smap, int nthreads) {
  forward_impl<double>(H, W, C, x, y, g, win, c1, c2, stats, smap, nthreads);
}
void ssim_backward_f32(int H, int W, int C, const float* x, const float* y, const float* g, int win, double c1,
                       double c2, const float* stats, double scale, float* gx, int nthreads) {
  backward_impl<float>(H, W, C, x, y, g, win, float(c1), float(c2), stats, float(scale), gx, nthreads);
}
void ssim_backward_f64(int H, int W, int C, const double* x, const double* y, const double* g, int win, double c1,
                       double c2, const double* stats, double scale, double* gx, int nthreads) {
  backward_impl<double>(H, W, C, x, y, g, win, c1, c2, stats, scale, gx, nthreads);
}

}  // extern "C"
