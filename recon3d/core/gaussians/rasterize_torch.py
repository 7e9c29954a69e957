"""CPU (pure PyTorch) tile rasterizer for 3D Gaussians, with a hand-written backward.

Algorithm (one call renders C cameras):

1. Project (``common.prepare``): EWA projection, 0.3 px low-pass, near/far culling, SH -> RGB, and
   for each visible (camera, Gaussian) pair the exact pixel box of its support (pixels where
   ``opacity * exp(-sigma) >= 1/255``). Pairs are sorted front to back.
2. Bin (``_bin_pairs``): every pair is listed in each ``tile x tile`` screen tile its box touches;
   the lists are sorted by (camera, tile, depth).
3. Composite (``_Composite.forward``): tiles are grouped by list length into batches, and each batch
   is walked front to back in *slabs* of list entries (16, 16, 32, 64, ... 256). A slab is laid out
   densely as (tiles, entries, pixels). Per element, ``log alpha = log opacity - sigma`` is a quadratic
   polynomial of the pixel's tile-centered coordinates, so a slab's exponents are one plain matmul
   ``G (tiles * entries, 6) @ F^T (6, pixels)`` with per-entry coefficients G and constant pixel
   monomials F. Alpha is clamped at 0.999 and skipped below 1/255, the transmittance is a cumulative
   product (times the transmittance carried over from earlier slabs), and a pixel stops before the
   Gaussian that would bring it to <= 1e-4 (gsplat's rule). Colors, depth and alpha are a batched
   matmul of the weights with the per-Gaussian features. After each slab, tiles whose pixels have all
   stopped leave the batch (the CPU counterpart of the CUDA kernels' early termination).
4. Backward (``_Composite.backward``) walks the slabs back to front. Weights are rebuilt from the saved
   alpha and transmittance; ``dL/dalpha_k = (T_k+ v_k - sum_{j>k} w_j v_j) / (1 - alpha_k)`` with the
   suffix sums from a cumulative sum within the slab plus a per-pixel carry from later slabs. Two
   matmuls give the gradients of the polynomial coefficients and features, and a closed-form chain
   rule maps them back to means2d, conics, log-opacities, colors and depths.

Only alpha and T of the processed elements (2 floats each) and the per-entry coefficients are kept
between forward and backward, and nothing when gradients are off. The default 4 px tiles were the
fastest on CPU (less wasted work on small Gaussians than 8 or 16 px tiles, fewer list entries than
2 px). Everything is dtype generic (float64 works, for gradcheck) and device agnostic (it also runs,
slowly, on CUDA tensors). Results match the brute-force reference (:mod:`.reference`) to float
rounding: the support-box culling is exact, not an approximation.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .common import NUM_COLS, OPACITY, Prepared, finish, prepare
from .gaussians import Gaussians
from .projection import ALPHA_MAX, ALPHA_MIN, EPS2D, T_MIN

DEFAULT_TILE_SIZE = 4
BATCH_ELEMENTS = 1 << 20  # max elements (tiles x entries x pixels) per dense slab
FIRST_SLAB = 16
MAX_SLAB = 256
_PAD_LOGIT = -200.0  # log-opacity of padding entries: exp underflows to 0 (and is < 1/255 in float64)
_FEAT = slice(6, 10)  # RGB + depth columns of the packed per-pair table


def _slabs(kmax: int):
    """Slab boundaries (start, size): 16, 16, 32, 64, ... up to MAX_SLAB, exactly covering [0, kmax)."""
    s0, size = 0, FIRST_SLAB
    while s0 < kmax:
        yield s0, min(size, kmax - s0)
        s0 += size
        size = min(2 * size, MAX_SLAB) if s0 >= 2 * FIRST_SLAB else size


def _batches(lengths: Tensor, pixels: int, budget: int):
    """Tiles grouped by decreasing list length: yields (tile indices, longest list in the group), with
    about ``budget`` elements (tiles x pixels x slab entries) per dense slab."""
    order = torch.argsort(lengths, descending=True)
    ln = lengths[order].tolist()
    i = 0
    while i < len(ln):
        kmax = ln[i]
        nb = max(1, budget // (pixels * min(kmax, MAX_SLAB)))
        yield order[i : i + nb], kmax
        i += nb


def _coefficients(g: Tensor, tc: Tensor) -> tuple[Tensor, tuple, tuple]:
    """Polynomial coefficients ``G`` (Ba, S, 6) of log alpha in tile-centered pixel coordinates.

    ``g`` is (10, Ba, S), component-major (see ``_Composite``). ``log alpha(x, y) = lo - 0.5 (A dx^2 +
    2 B dx dy + C dy^2)`` with ``d = (x, y) - (mx, my)``, expanded on the monomials
    ``[x^2, x y, y^2, x, y, 1]``. Also returns ``(mx, my)`` relative to the tile centers and
    ``(bx, by) = conic @ m``, reused by the backward chain rule.
    """
    mx = g[0] - tc[:, 0, None]
    my = g[1] - tc[:, 1, None]
    A, B, C, lo = g[2], g[3], g[4], g[5]
    bx = torch.addcmul(A * mx, B, my)
    by = torch.addcmul(B * mx, C, my)
    c0 = torch.addcmul(lo, bx, mx, value=-0.5).addcmul_(by, my, value=-0.5)
    G = torch.stack([-0.5 * A, -B, -0.5 * C, bx, by, c0], dim=-1)
    return G, (mx, my), (bx, by)


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of all tiles. See the module docstring.

    forward(packed (10, M+1), lengths (T,), starts (T,), entries (L,), centers (T, 2), F (P, 6),
    budget, store) -> (T, P, 5): per tile and pixel, sum_k w_k [r, g, b, z] and sum_k w_k (alpha).
    ``packed`` is component-major (contiguous rows are fast to compute with): its columns are
    ``[mx, my, A, B, C, log opacity, r, g, b, z]`` per depth-sorted pair, the last column an inert
    padding entry; ``entries`` lists pair columns tile after tile (``starts``/``lengths``).
    Dense batches are laid out (tiles, entries, pixels) so the exponents are one plain matmul.
    """

    @staticmethod
    def forward(ctx, packed, lengths, starts, entries, centers, F, budget: int, store: bool):
        T, P = lengths.shape[0], F.shape[0]
        dtype, dev = packed.dtype, packed.device
        pad_col = packed.shape[1] - 1
        L = entries.numel()
        out = torch.zeros(T, P, 4, dtype=dtype, device=dev)
        acc = torch.zeros(T, P, dtype=dtype, device=dev)
        trans = torch.ones(T, P, dtype=dtype, device=dev)
        Ft = F.t().contiguous()
        saved = []
        # Batches of tiles with similar list lengths (little padding), each walked front to back in
        # slabs; after every slab, tiles whose pixels have all terminated drop out.
        for batch, kmax in _batches(lengths, P, budget):
            active = batch
            for s0, size in _slabs(kmax):
                if s0 > 0:
                    alive = (lengths[active] > s0) & (trans.index_select(0, active) > 0).any(-1)
                    active = active[alive]
                    if active.numel() == 0:
                        break
                a = active
                Ba = a.numel()
                ar = torch.arange(s0, s0 + size, device=dev)
                pos = starts[a, None] + ar
                inside = ar < lengths[a, None]
                idx = torch.where(inside, entries[pos.clamp_max(L - 1)], torch.full_like(pos, pad_col))
                g = packed.index_select(1, idx.reshape(-1)).reshape(NUM_COLS, Ba, size)
                G, m, bxy = _coefficients(g, centers.index_select(0, a))
                alpha = torch.mm(G.reshape(-1, 6), Ft).reshape(Ba, size, P)  # log alpha
                alpha.exp_().clamp_(max=ALPHA_MAX)
                torch.threshold_(alpha, ALPHA_MIN, 0.0)  # skip alpha <= 1/255
                om = 1.0 - alpha
                Tc = torch.cumprod(om, dim=1)  # transmittance after each entry
                if s0 > 0:
                    Tc.mul_(trans.index_select(0, a)[:, None, :])
                torch.threshold_(Tc, T_MIN, 0.0)  # entries at/after termination: T := 0 (w = 0)
                w = Tc.div(om).mul_(alpha)
                out.index_add_(0, a, torch.bmm(w.transpose(1, 2), g[_FEAT].permute(1, 2, 0)))
                acc.index_add_(0, a, w.sum(1))
                trans.index_copy_(0, a, Tc[:, -1, :])
                if store:  # only when a backward pass can follow (saves memory in no-grad renders)
                    saved.append((a, idx, g, m, bxy, alpha, Tc))
        ctx.saved = saved
        ctx.save_for_backward(packed, F)
        return torch.cat([out, acc[..., None]], dim=-1)

    @staticmethod
    @once_differentiable
    def backward(ctx, gout):
        packed, F = ctx.saved_tensors
        T, P = gout.shape[0], gout.shape[1]
        stride = packed.shape[1]
        gpacked = torch.zeros_like(packed)
        cols = torch.arange(NUM_COLS, device=gout.device)[:, None] * stride
        suffix = torch.zeros(T, P, dtype=gout.dtype, device=gout.device)  # sum of w v over later slabs
        gout = gout.contiguous()
        for a, idx, g, m, bxy, alpha, Tk in reversed(ctx.saved):
            Ba, S = g.shape[1], g.shape[2]
            go = gout.index_select(0, a)  # (Ba, P, 5)
            feat = g[_FEAT].permute(1, 2, 0)  # (Ba, S, 4)
            om = 1.0 - alpha
            w = Tk.div(om).mul_(alpha)
            v = torch.bmm(feat, go[..., :4].transpose(1, 2)).add_(go[:, None, :, 4])  # dL/dw
            grad = torch.empty(NUM_COLS, Ba, S, dtype=gout.dtype, device=gout.device)
            grad[_FEAT] = torch.bmm(w, go[..., :4]).permute(2, 0, 1)  # features
            cs = torch.cumsum(w.mul_(v), dim=1)
            tot = cs[:, -1:, :]
            # dL/dalpha_k = (T_k+ v_k - sum_{j>k} w_j v_j) / (1 - alpha_k), the sum over the rest of
            # this slab (tot - cs_k) and all later slabs (suffix); zero after termination (Tk = 0).
            dl = torch.mul(Tk, v).add_(cs).sub_(tot).sub_(suffix.index_select(0, a)[:, None, :]).div_(om)
            suffix.index_add_(0, a, tot[:, 0, :])
            # d alpha / d log alpha = alpha, or 0 where clamped at ALPHA_MAX: multiply by -alpha
            # thresholded (one fused op) and undo the sign on the small coefficient gradient.
            dl.mul_(torch.threshold(alpha.neg(), -ALPHA_MAX, 0.0))
            gG = torch.mm(dl.reshape(-1, P), F).neg_().reshape(Ba, S, 6).permute(2, 0, 1)
            g0, g1, g2, g3, g4, g5 = gG.contiguous().unbind(0)
            mx, my = m
            bx, by = bxy
            A, B, C = g[2], g[3], g[4]
            # chain rule from the coefficients (see _coefficients) to mean, conic and log opacity
            torch.addcmul(torch.addcmul(g3 * A, g4, B), g5, bx, value=-1.0, out=grad[0])
            torch.addcmul(torch.addcmul(g3 * B, g4, C), g5, by, value=-1.0, out=grad[1])
            torch.addcmul(g0, torch.addcmul(g3, g5, mx, value=-0.5), mx, value=-2.0, out=grad[2]).mul_(-0.5)
            gb = torch.addcmul(g4, g5, my, value=-1.0)
            torch.addcmul(torch.addcmul(-g1, g3, my), gb, mx, out=grad[3])
            torch.addcmul(g2, torch.addcmul(g4, g5, my, value=-0.5), my, value=-2.0, out=grad[4]).mul_(-0.5)
            grad[5] = g5
            # scatter-add into the per-pair table; a flat 1-D index_add is faster than a 2-D one
            flat = (cols + idx.reshape(1, -1)).reshape(-1)
            gpacked.view(-1).index_add_(0, flat, grad.reshape(-1))
        return gpacked, None, None, None, None, None, None, None


def _pixel_monomials(tile: int, dtype, device) -> Tensor:
    """(tile*tile, 6) monomials [x^2, x y, y^2, x, y, 1] of tile-centered pixel-center coordinates."""
    r = torch.arange(tile, dtype=dtype, device=device) + 0.5 - 0.5 * tile
    py, px = torch.meshgrid(r, r, indexing="ij")
    px, py = px.reshape(-1), py.reshape(-1)
    return torch.stack([px * px, px * py, py * py, px, py, torch.ones_like(px)], dim=-1)


def _bin_pairs(prep: Prepared, C: int, nty: int, ntx: int, tile: int):
    """Per-tile lists of pair indices, front to back.

    Returns ``(lengths, starts, entries)``: for every tile of every camera (``C * nty * ntx``, in
    raster order), the number of pairs whose box touches it and where its list starts in ``entries``.
    """
    box = prep.box
    M = box.shape[0]
    tx0 = box[:, 0] // tile
    tx1 = (box[:, 1] - 1) // tile + 1
    ty0 = box[:, 2] // tile
    ty1 = (box[:, 3] - 1) // tile + 1
    nx = tx1 - tx0
    cnt = nx * (ty1 - ty0)
    pair = torch.repeat_interleave(torch.arange(M, device=box.device), cnt)
    first = torch.cumsum(cnt, 0) - cnt
    local = torch.arange(pair.shape[0], device=box.device) - first[pair]
    nxp = nx[pair]
    ty = ty0[pair] + torch.div(local, nxp, rounding_mode="floor")
    tx = tx0[pair] + local % nxp
    tile_id = (prep.cam[pair] * nty + ty) * ntx + tx
    # Pairs were generated front to back, so a stable sort by tile yields (tile, depth) order.
    ntiles = C * nty * ntx
    if ntiles < 2**31:
        tile_id = tile_id.to(torch.int32)  # integer sorts are radix sorts; 32-bit keys are faster
    tile_sorted, perm = torch.sort(tile_id, stable=True)
    entries = pair[perm]
    tile_sorted = tile_sorted.long()
    lengths = torch.bincount(tile_sorted, minlength=C * nty * ntx)
    starts = torch.cumsum(lengths, 0) - lengths
    return lengths, starts, entries


def rasterize_torch(
    gaussians: Gaussians,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: Optional[int] = None,
    near: float = 0.01,
    far: float = 1e10,
    backgrounds: Optional[Tensor] = None,
    antialiased: bool = False,
    tile_size: Optional[int] = None,
    eps2d: float = EPS2D,
    batch_elements: int = BATCH_ELEMENTS,
) -> dict:
    """Render ``gaussians`` (N, see :class:`.gaussians.Gaussians`) into C cameras with the PyTorch tile
    rasterizer. Arguments and outputs as :func:`recon3d.core.gaussians.rasterize` (returns a dict of
    the :class:`~.api.RasterOutput` fields); ``batch_elements`` caps the elements (tiles x entries x
    pixels) of one dense slab, i.e. the working memory."""
    tile = int(tile_size or DEFAULT_TILE_SIZE)
    C = viewmats.shape[0]
    dtype, device = gaussians.dtype, gaussians.device
    prep = prepare(gaussians, viewmats, Ks, width, height, sh_degree, near, far, antialiased, eps2d)
    ntx = (width + tile - 1) // tile
    nty = (height + tile - 1) // tile
    P = tile * tile

    # Per-pair table (+ one inert padding row): mean (2), conic (3), log opacity (1), RGB (3), depth (1).
    pairs = prep.pairs
    logo = torch.log(pairs[:, OPACITY : OPACITY + 1].clamp_min(1e-30))
    pad = torch.zeros(1, NUM_COLS, dtype=dtype, device=device)
    pad[0, OPACITY] = _PAD_LOGIT
    packed = torch.cat([torch.cat([pairs[:, :OPACITY], logo, pairs[:, OPACITY + 1 :]], dim=-1), pad], dim=0)
    packed = packed.t().contiguous()  # (10, M + 1), component-major

    full = torch.zeros(C * nty * ntx, P, 5, dtype=dtype, device=device)
    if pairs.shape[0] > 0:
        with torch.no_grad():
            lengths, starts, entries = _bin_pairs(prep, C, nty, ntx, tile)
            tiles = torch.nonzero(lengths, as_tuple=True)[0]
            t_img = tiles % (nty * ntx)
            centers = torch.stack(
                [(t_img % ntx) * tile + 0.5 * tile, torch.div(t_img, ntx, rounding_mode="floor") * tile + 0.5 * tile],
                dim=-1,
            ).to(dtype)
        F = _pixel_monomials(tile, dtype, device)
        store = torch.is_grad_enabled() and packed.requires_grad
        out = _Composite.apply(packed, lengths[tiles], starts[tiles], entries, centers, F, int(batch_elements), store)
        full = full.index_copy(0, tiles, out)
    img = full.reshape(C, nty, ntx, tile, tile, 5).permute(0, 1, 3, 2, 4, 5)
    img = img.reshape(C, nty * tile, ntx * tile, 5)[:, :height, :width]
    return finish(prep, img[..., :3], img[..., 3:4], img[..., 4:5], backgrounds)
