"""Compiled (numba) kernels of the PAF decoding steps in ``paf.py``.

Each kernel computes what its step's NumPy code computes, in one pass over the data instead of
many small array operations (the NumPy code stays the reference and the fallback: tests check
both give the same results). Kernels are compiled with ``cache=True`` (numba's on-disk cache,
beside this file or under ``NUMBA_CACHE_DIR``) and always called with the same argument types
(the step functions convert their inputs first), so ``warm_up`` — which the decoder's nodes
call in ``start()`` — compiles or loads every kernel once, before the first frame.

``GRAPHFLOW_JIT=0`` in the environment, or ``paf.use_jit(False)``, runs the NumPy code instead;
without numba installed the NumPy code runs.
"""
from __future__ import annotations

import math
import os

import numpy as np

try:
    import numba
    from numba import njit
except ImportError:  # numba is optional: the NumPy steps run instead
    numba = None

AVAILABLE = numba is not None
ENABLED = AVAILABLE and os.environ.get("GRAPHFLOW_JIT", "1").strip().lower() not in ("0", "false", "no", "off")


if AVAILABLE:
    jit = njit(cache=True, nogil=True)

    # Elementwise loops written as out[i] = f(a[i], b[i], ...) into a buffer distinct from the
    # inputs: the form LLVM vectorizes (an in-place dst[i] = max(dst[i], src[i]) stayed scalar,
    # 4x slower).
    @njit(nogil=True, fastmath=True, inline="always")
    def _max3(out, a, b, c, n):
        for i in range(n):
            out[i] = max(max(a[i], b[i]), c[i])

    @njit(nogil=True, fastmath=True, inline="always")
    def _max2(out, a, b, n):
        for i in range(n):
            out[i] = max(a[i], b[i])

    @njit(cache=True, nogil=True, fastmath=True)
    def _pool3(src, out, tmp, C, H, W):
        """3x3 max pooling of flat (C*H*W) src into out, windows clipped to each channel."""
        HW = H * W
        for c in range(C):
            s = src[c * HW:(c + 1) * HW]
            o = out[c * HW:(c + 1) * HW]
            if H == 1:
                tmp[:HW] = s
            else:  # rows: max of a cell and the cells above and below
                _max2(tmp, s, s[W:], W)
                _max2(tmp[HW - W:], s[HW - 2 * W:], s[HW - W:], W)
                if H > 2:
                    _max3(tmp[W:], s, s[W:], s[2 * W:], HW - 2 * W)
            if W == 1:
                o[:] = tmp[:HW]
                continue
            if HW > 2:  # columns, over the channel as one flat row ...
                _max3(o[1:], tmp, tmp[1:], tmp[2:], HW - 2)
            for y in range(H):  # ... then the row ends again, which saw the next/previous row
                i = y * W
                o[i] = max(tmp[i], tmp[i + 1])
                j = i + W - 1
                o[j] = max(tmp[j - 1], tmp[j])

    @jit
    def max_pool(h, r):
        """(C, H, W) float32 → same-size max over (2r+1)² windows clipped to the map: r passes
        of 3x3 pooling (a clipped 5x5 window is a clipped 3x3 window of clipped 3x3 windows)."""
        C, H, W = h.shape
        out = np.empty_like(h)
        if r == 0:
            out[:] = h
            return out
        tmp = np.empty(H * W, np.float32)
        _pool3(h.ravel(), out.ravel(), tmp, C, H, W)
        if r > 1:
            other = np.empty_like(h)
            for _ in range(r - 1):
                _pool3(out.ravel(), other.ravel(), tmp, C, H, W)
                out, other = other, out
        return out

    @jit
    def _blocks(words):
        """Indices of the 8-word (64-cell) blocks of a flat bool map with a True cell, in order:
        a sparse map is skipped a cache line at a time."""
        nb = words.size // 8
        found = np.empty(nb, np.int64)
        n = 0
        for b in range(nb):
            w = words[8 * b:8 * b + 8]
            if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0:
                found[n] = b
                n += 1
        return found[:n]

    @jit
    def non_maximum_suppression(h, pooled, threshold):
        """Peak map as in paf.non_maximum_suppression (same tie-break against the original peaks)."""
        C, H, W = h.shape
        n = C * H * W
        hf = h.ravel()
        pf = pooled.ravel()
        flags = np.empty(n, np.uint8)
        for i in range(n):  # branch-free: vectorized
            v = hf[i]
            flags[i] = (v >= pf[i]) & (v >= threshold)
        out = flags.view(np.bool_)
        blocks = _blocks(flags[: n // 64 * 64].view(np.uint64))
        # Reverse raster order: the earlier neighbours a cell is compared with still hold their
        # original peak flags when it is visited (as in the NumPy code, which uses them all at once).
        tail = n // 64 * 64
        for k in range(blocks.size + 1):
            if k == 0:
                lo, hi = tail, n
            else:
                lo = blocks[blocks.size - k] * 64
                hi = lo + 64
            for i in range(hi - 1, lo - 1, -1):
                if not out[i]:
                    continue
                v = hf[i]
                x = i % W
                y = (i // W) % H
                if y > 0:
                    j = i - W
                    if out[j] and hf[j] == v:
                        out[i] = False
                        continue
                    if x > 0 and out[j - 1] and hf[j - 1] == v:
                        out[i] = False
                        continue
                    if x < W - 1 and out[j + 1] and hf[j + 1] == v:
                        out[i] = False
                        continue
                if x > 0 and out[i - 1] and hf[i - 1] == v:
                    out[i] = False
        return out.reshape(C, H, W)

    @jit
    def _fit(m, c0, p, inside):
        den = m - np.float32(2.0) * c0 + p
        if not inside or not den < 0:
            return np.float32(0.0)
        off = np.float32(0.5) * (m - p) / den
        return np.float32(min(max(off, np.float32(-0.5)), np.float32(0.5)))

    @jit
    def peak_candidates(h, flat, quadratic, gaussian):
        """Peaks of a flat bool map: part, y, x, score, and the integer cells; sub-pixel offsets
        by a parabola (on log values if ``gaussian``)."""
        tail = flat.size // 64 * 64
        blocks = _blocks(flat[:tail].view(np.uint8).view(np.uint64))
        count = 0
        for b in blocks:
            for i in range(64 * b, 64 * b + 64):
                if flat[i]:
                    count += 1
        for i in range(tail, flat.size):
            if flat[i]:
                count += 1
        idx = np.empty(count, np.int64)
        k = 0
        for b in blocks:
            for i in range(64 * b, 64 * b + 64):
                if flat[i]:
                    idx[k] = i
                    k += 1
        for i in range(tail, flat.size):
            if flat[i]:
                idx[k] = i
                k += 1
        return _peak_records(h, idx, quadratic, gaussian)

    @jit
    def _peak_records(h, idx, quadratic, gaussian):
        """part, y, x, score, yi, xi of the peaks at flat indices idx (sub-pixel as in peak_candidates)."""
        C, H, W = h.shape
        HW = H * W
        count = idx.size
        part = np.empty(count, np.int32)
        ys = np.empty(count, np.float32)
        xs = np.empty(count, np.float32)
        score = np.empty(count, np.float32)
        yi = np.empty(count, np.int64)
        xi = np.empty(count, np.int64)
        hf = h.ravel()
        eps = np.float32(1e-6)
        for k in range(count):
            i = idx[k]
            c = i // HW
            rem = i - c * HW
            y = rem // W
            x = rem - y * W
            part[k] = c
            yi[k] = y
            xi[k] = x
            ctr = hf[i]
            score[k] = ctr
            dy = np.float32(0.0)
            dx = np.float32(0.0)
            if quadratic or gaussian:
                up = hf[i - W] if y > 0 else ctr
                dn = hf[i + W] if y < H - 1 else ctr
                lf = hf[i - 1] if x > 0 else ctr
                rt = hf[i + 1] if x < W - 1 else ctr
                c0 = ctr
                if gaussian:
                    c0 = np.float32(math.log(max(c0, eps)))
                    up = np.float32(math.log(max(up, eps)))
                    dn = np.float32(math.log(max(dn, eps)))
                    lf = np.float32(math.log(max(lf, eps)))
                    rt = np.float32(math.log(max(rt, eps)))
                dy = _fit(up, c0, dn, y > 0 and y < H - 1)
                dx = _fit(lf, c0, rt, x > 0 and x < W - 1)
            ys[k] = np.float32(y) + dy
            xs[k] = np.float32(x) + dx
        return part, ys, xs, score, yi, xi

    @njit(nogil=True, inline="always")
    def _window_peak(hf, i, y, x, H, W, r, threshold):
        """Whether flat cell i (row y, column x of its channel) is a step-4 peak: >= threshold and
        no cell of its (2r+1)^2 window, clipped to the channel, is larger."""
        v = hf[i]
        if not v >= threshold:
            return False
        base = i - y * W - x
        for yy in range(max(y - r, 0), min(y + r + 1, H)):
            row = base + yy * W
            for xx in range(max(x - r, 0), min(x + r + 1, W)):
                if hf[row + xx] > v:
                    return False
        return True

    @njit(cache=True, nogil=True, error_model="numpy")
    def find_peaks(h, r, threshold, quadratic, gaussian):
        """Steps 3-5 at once, without the pooled map: the cells that ``non_maximum_suppression``
        marks on ``max_pool(h, 2r+1)`` (same plateau tie-break), listed as ``peak_candidates``
        lists them. Only cells >= threshold are compared with their window; they are found by a
        branch-free (vectorized) pass and then 64 cells at a time, skipping blocks without one."""
        C, H, W = h.shape
        HW = H * W
        hf = h.ravel()
        n = hf.size
        flags = np.empty(n, np.uint8)
        # Branch-free (vectorized) pre-test: >= threshold and >= both flat neighbours, which for
        # a cell inside its row are in its window, so no peak is lost ...
        flags[0] = hf[0] >= threshold
        flags[n - 1] = hf[n - 1] >= threshold
        if r == 0:  # the window is the cell itself
            for i in range(n):
                flags[i] = hf[i] >= threshold
        else:
            for i in range(1, n - 1):
                v = hf[i]
                flags[i] = (v >= threshold) & (v >= hf[i - 1]) & (v >= hf[i + 1])
        # ... and a row's first and last cells, whose flat neighbours are in other rows, are
        # tested against their own row only
        for row in range(0, n if r > 0 else 0, W):
            last = row + W - 1
            flags[row] = hf[row] >= threshold and (W == 1 or hf[row] >= hf[row + 1])
            flags[last] = hf[last] >= threshold and (W == 1 or hf[last] >= hf[last - 1])
        tail = n // 64 * 64
        blocks = _blocks(flags[:tail].view(np.uint64))
        idx = np.empty(64, np.int64)
        count = 0
        for k in range(blocks.size + 1):
            if k < blocks.size:
                lo = blocks[k] * 64
                hi = lo + 64
            else:
                lo, hi = tail, n
            rem = lo % HW
            y0 = rem // W
            x0 = rem - y0 * W
            for i in range(lo, hi):
                if not flags[i]:
                    continue
                # the cell's row and column from the block's first (no division per cell)
                x = x0 + (i - lo)
                y = y0
                while x >= W:
                    x -= W
                    y += 1
                while y >= H:
                    y -= H
                if not _window_peak(hf, i, y, x, H, W, r, threshold):
                    continue
                # plateau tie-break: an earlier 3x3 neighbour that is a peak of the same value wins
                v = hf[i]
                dup = False
                for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
                    yy = y + dy
                    xx = x + dx
                    if yy < 0 or xx < 0 or xx >= W:
                        continue
                    j = i + dy * W + dx
                    if hf[j] == v and _window_peak(hf, j, yy, xx, H, W, r, threshold):
                        dup = True
                        break
                if dup:
                    continue
                if count == idx.size:
                    grown = np.empty(2 * idx.size, np.int64)
                    grown[:count] = idx
                    idx = grown
                idx[count] = i
                count += 1
        return _peak_records(h, idx[:count], quadratic, gaussian)

    @jit
    def _by_type(part, e):
        """The peaks grouped by part type: type t's are order[start[t]:start[t + 1]] (input order),
        and the number of (a, b) pairs over the links e."""
        K = part.size
        n_parts = 18
        for k in range(e.shape[0]):
            n_parts = max(n_parts, e[k, 0] + 1, e[k, 1] + 1)
        for i in range(K):
            n_parts = max(n_parts, part[i] + 1)
        start = np.zeros(n_parts + 1, np.int64)
        for i in range(K):
            start[part[i] + 1] += 1
        for t in range(n_parts):
            start[t + 1] += start[t]
        order = np.empty(K, np.int64)
        fill = start[:-1].copy()
        for i in range(K):
            order[fill[part[i]]] = i
            fill[part[i]] += 1
        total = 0
        for k in range(e.shape[0]):
            total += (start[e[k, 0] + 1] - start[e[k, 0]]) * (start[e[k, 1] + 1] - start[e[k, 1]])
        return start, order, total

    @jit
    def edge_candidates(part, x, y, e, threshold_edge_size):
        """Every (a, b) pair per link, in link order, a-major, parts of a type in input order."""
        start, order, total = _by_type(part, e)
        link = np.empty(total, np.int32)
        a = np.empty(total, np.int32)
        b = np.empty(total, np.int32)
        length = np.empty(total, np.float32)
        limit = threshold_edge_size > 0 and np.isfinite(threshold_edge_size)
        n = 0
        for k in range(e.shape[0]):
            ta, tb = e[k, 0], e[k, 1]
            for ia in range(start[ta], start[ta + 1]):
                pa = order[ia]
                for ib in range(start[tb], start[tb + 1]):
                    pb = order[ib]
                    dx = x[pb] - x[pa]
                    dy = y[pb] - y[pa]
                    d = np.float32(math.sqrt(dx * dx + dy * dy))
                    if limit and d > threshold_edge_size:
                        continue
                    link[n] = k
                    a[n] = pa
                    b[n] = pb
                    length[n] = d
                    n += 1
        return link[:n], a[:n], b[:n], length[:n]

    @njit(nogil=True, fastmath={"reassoc", "contract", "arcp"}, inline="always")
    def _bilinear(px, py, sx, sy, W, H):
        """Both channels of a field plane (flat px, py) interpolated at (sx, sy) inside the map."""
        x0 = min(np.int32(sx), W - 2)  # sx >= 0: truncation is floor
        y0 = min(np.int32(sy), H - 2)
        fx = sx - np.float32(x0)
        fy = sy - np.float32(y0)
        # unsigned: numba then skips its negative-index (wraparound) test on each of the 8 reads
        j = np.uint64(y0 * W + x0)
        w = np.uint64(W)
        one = np.uint64(1)
        # interpolate each channel, then one dot product (not four)
        gx0 = px[j] + (px[j + one] - px[j]) * fx
        gx1 = px[j + w] + (px[j + w + one] - px[j + w]) * fx
        gy0 = py[j] + (py[j + one] - py[j]) * fx
        gy1 = py[j + w] + (py[j + w + one] - py[j + w]) * fx
        return gx0 + (gx1 - gx0) * fy, gy0 + (gy1 - gy0) * fy

    @jit
    def sample_order(steps):
        """The order step 8 reads a pair's inside samples in (the ends come first: their field
        values are computed once per peak): from the middle outwards, where a pair joining two
        different people is least likely to lie on a field, so a hopeless pair fails soonest."""
        order = np.empty(max(steps - 2, 0), np.int64)
        k = 0
        mid = (steps - 1) // 2
        for d in range(steps):
            for s in (mid - d, mid + 1 + d):
                if 0 < s < steps - 1 and k < order.size:
                    order[k] = s
                    k += 1
        return order

    _FAST = dict(nogil=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})

    # reassociation and fused multiply-adds (11% faster), keeping NaN/inf semantics; numpy's
    # error model: no zero test before each division
    @njit(inline="always", **_FAST)
    def _pair_score(px, py, W, H, ax, ay, bx, by, e0x, e0y, e1x, e1y, t, order, threshold, nearest, allowed_fails):
        """Step 8 for one pair with clipped ends (ax, ay), (bx, by) on a field plane (flat px, py):
        (mean, count) of PAF·direction over the samples, the ends' field values given (e0, e1).
        A pair stops being read once more than ``allowed_fails`` samples failed: its count is
        then the passing samples seen and its mean NaN."""
        steps = t.size
        vx = bx - ax
        vy = by - ay
        norm = np.float32(math.sqrt(vx * vx + vy * vy))
        if norm <= 1e-6:
            return np.float32(0.0), 0
        inv = np.float32(1.0) / norm
        ux = vx * inv
        uy = vy * inv
        half = np.float32(0.5)
        if nearest:
            # samples lie in [0, W-1] x [0, H-1]: truncating x + 0.5 rounds to the nearest cell
            j = np.int32(ay + half) * W + np.int32(ax + half)
            v0 = px[j] * ux + py[j] * uy
            j = np.int32(ay + vy * t[steps - 1] + half) * W + np.int32(ax + vx * t[steps - 1] + half)
            v1 = px[j] * ux + py[j] * uy
        else:
            v0 = e0x * ux + e0y * uy
            v1 = e1x * ux + e1y * uy
        total = v0 + v1
        fails = np.int32(v0 < threshold) + np.int32(v1 < threshold)
        seen = 2
        for s in order:
            sx = ax + vx * t[s]
            sy = ay + vy * t[s]
            if nearest:
                j = np.int32(sy + half) * W + np.int32(sx + half)
                v = px[j] * ux + py[j] * uy
            else:
                gx, gy = _bilinear(px, py, sx, sy, W, H)
                v = gx * ux + gy * uy
            total += v
            fails += np.int32(v < threshold)
            seen += 1
            if fails > allowed_fails:
                return np.float32(np.nan), seen - fails
        return total / np.float32(steps), steps - fails

    @njit(**_FAST)
    def _clipped(x, y, W, H):
        """Peak coordinates clipped to the map (samples are convex combinations of the ends)."""
        cx = np.empty(x.size, np.float32)
        cy = np.empty(x.size, np.float32)
        for k in range(x.size):
            cx[k] = min(max(x[k], np.float32(0.0)), np.float32(W - 1))
            cy[k] = min(max(y[k], np.float32(0.0)), np.float32(H - 1))
        return cx, cy

    @njit(cache=True, **_FAST)
    def edge_scores(p, x, y, link, a, b, plane_of_link, steps, threshold_sample_score, nearest):
        """Step 8: mean and passing count of PAF·direction at ``steps`` points of every pair, and
        -1, or the first pair whose link has no plane in ``plane_of_link`` (nothing read then)."""
        C, H, W = p.shape
        HW = H * W
        flat = p.ravel()
        n = a.size
        K = x.size
        score = np.empty(n, np.float32)
        count = np.empty(n, np.int32)
        cx, cy = _clipped(x, y, W, H)
        t = np.linspace(0.0, 1.0, steps).astype(np.float32)
        order = sample_order(steps)
        # the field at each (plane, peak), computed when first needed: an end of many pairs
        have = np.zeros((C // 2) * K, np.bool_)
        end_x = np.empty((C // 2) * K, np.float32)
        end_y = np.empty((C // 2) * K, np.float32)
        links = plane_of_link.size
        for i in range(n):
            if link[i] < 0 or link[i] >= links:
                return score[:0], count[:0], i
        for i in range(n):
            plane = plane_of_link[link[i]]
            px = flat[2 * HW * plane:]
            py = px[HW:]
            if not nearest:
                for q in (a[i], b[i]):
                    k = plane * K + q
                    if not have[k]:
                        end_x[k], end_y[k] = _bilinear(px, py, cx[q], cy[q], W, H)
                        have[k] = True
            ka = plane * K + a[i]
            kb = plane * K + b[i]
            score[i], count[i] = _pair_score(px, py, W, H, cx[a[i]], cy[a[i]], cx[b[i]], cy[b[i]], end_x[ka],
                                             end_y[ka], end_x[kb], end_y[kb], t, order, threshold_sample_score,
                                             nearest, steps)
        return score, count, -1

    @jit
    def _assemble(part, pscore, link, a, b, s, e, K, num_parts, n_links):
        """Greedy one-to-one per link by descending score, then people grown link by link (the
        CMU rules of paf._assemble_sequential). Returns the person → peak table and edge sums."""
        n = s.size
        rank = np.empty(n, np.float32)
        for i in range(n):
            rank[i] = s[i] + pscore[a[i]] + pscore[b[i]]
        order = np.argsort(-rank, kind="mergesort")
        used_a = np.zeros(n_links * K, np.bool_)
        used_b = np.zeros(n_links * K, np.bool_)
        chosen = np.zeros(n, np.bool_)
        for j in range(n):
            i = order[j]
            ka = link[i] * K + a[i]
            kb = link[i] * K + b[i]
            if used_a[ka] or used_b[kb]:
                continue
            used_a[ka] = True
            used_b[kb] = True
            chosen[i] = True
        # chosen connections grouped by link, in input order within a link
        per_link = np.zeros(n_links + 1, np.int64)
        for i in range(n):
            if chosen[i]:
                per_link[link[i] + 1] += 1
        for k in range(n_links):
            per_link[k + 1] += per_link[k]
        m = per_link[n_links]
        conn = np.empty(m, np.int64)
        fill = per_link[:-1].copy()
        for i in range(n):
            if chosen[i]:
                conn[fill[link[i]]] = i
                fill[link[i]] += 1
        owner = np.full(K, -1, np.int64)
        table = np.full((max(m, 1), num_parts), -1, np.int64)
        esum = np.zeros(max(m, 1), np.float64)
        alive = np.zeros(max(m, 1), np.bool_)
        pa = np.empty(m, np.int64)
        pb = np.empty(m, np.int64)
        people = 0
        for k in range(n_links):
            lo, hi = per_link[k], per_link[k + 1]
            if lo == hi:
                continue
            A, B = e[k, 0], e[k, 1]
            for c in range(lo, hi):  # owners as the link starts (the NumPy code's phases)
                pa[c] = owner[a[conn[c]]]
                pb[c] = owner[b[conn[c]]]
            for c in range(lo, hi):  # new people
                if pa[c] < 0 and pb[c] < 0:
                    i = conn[c]
                    table[people, A] = a[i]
                    table[people, B] = b[i]
                    owner[a[i]] = people
                    owner[b[i]] = people
                    esum[people] = s[i]
                    alive[people] = True
                    people += 1
            free_b = np.empty(hi - lo, np.bool_)
            free_a = np.empty(hi - lo, np.bool_)
            for c in range(lo, hi):
                free_b[c - lo] = pa[c] >= 0 and pb[c] < 0 and table[pa[c], B] < 0
                free_a[c - lo] = pa[c] < 0 and pb[c] >= 0 and table[pb[c], A] < 0
            for c in range(lo, hi):
                i = conn[c]
                if free_b[c - lo]:
                    table[pa[c], B] = b[i]
                    owner[b[i]] = pa[c]
                    esum[pa[c]] += s[i]
            for c in range(lo, hi):
                i = conn[c]
                if free_a[c - lo]:
                    table[pb[c], A] = a[i]
                    owner[a[i]] = pb[c]
                    esum[pb[c]] += s[i]
            for c in range(lo, hi):
                if pa[c] >= 0 and pa[c] == pb[c]:
                    esum[pa[c]] += s[conn[c]]
            for c in range(lo, hi):  # two different people: merge when their part types are disjoint
                if not (pa[c] >= 0 and pb[c] >= 0 and pa[c] != pb[c]):
                    continue
                i = conn[c]
                px, py = owner[a[i]], owner[b[i]]
                if px == py:
                    esum[px] += s[i]
                    continue
                overlap = False
                for t in range(num_parts):
                    if table[px, t] >= 0 and table[py, t] >= 0:
                        overlap = True
                        break
                if overlap:
                    continue
                for t in range(num_parts):
                    if table[py, t] >= 0:
                        table[px, t] = table[py, t]
                        owner[table[py, t]] = px
                        table[py, t] = -1
                esum[px] += esum[py] + s[i]
                alive[py] = False
        keep = np.zeros(people, np.bool_)
        for q in range(people):
            keep[q] = alive[q]
        return table[:people][keep], esum[:people][keep]

    @jit
    def skeletons_from_table(table, esum, x, y, score, min_parts, min_object_score, max_people):
        """People of a person → peak table that pass the part-count and object-score cuts, best
        first (person score, then smallest peak index): parts [P, J, 3], score, index, edge sum."""
        P, J = table.shape
        pscore = np.zeros(P, np.float32)
        first = np.zeros(P, np.int64)
        keep = np.zeros(P, np.bool_)
        for q in range(P):
            n = 0
            total = 0.0
            lowest = 1 << 62
            for j in range(J):
                k = table[q, j]
                if k >= 0:
                    n += 1
                    total += score[k]
                    lowest = min(lowest, k)
            first[q] = lowest
            obj = (total + esum[q]) / max(n, 1)
            keep[q] = n >= min_parts and obj >= min_object_score
            pscore[q] = np.float32((total / max(n, 1)) * math.sqrt(n / J)) if n > 0 else np.float32(0.0)
        kept = np.flatnonzero(keep)
        # best first; ties by the person's smallest peak index (deterministic across code paths)
        order = kept[np.argsort(first[kept], kind="mergesort")]
        order = order[np.argsort(-pscore[order], kind="mergesort")]
        if max_people > 0 and order.size > max_people:
            order = order[:max_people]
        out_n = order.size
        parts = np.full((out_n, J, 3), np.nan, np.float32)
        index = np.full((out_n, J), -1, np.int32)
        out_score = np.empty(out_n, np.float32)
        out_esum = np.empty(out_n, np.float32)
        for r in range(out_n):
            q = order[r]
            out_score[r] = pscore[q]
            out_esum[r] = esum[q]
            for j in range(J):
                k = table[q, j]
                if k >= 0:
                    parts[r, j, 0] = x[k]
                    parts[r, j, 1] = y[k]
                    parts[r, j, 2] = score[k]
                    index[r, j] = k
                else:
                    parts[r, j, 2] = 0.0
        return parts, out_score, index, out_esum

    @jit
    def graph_matching(part, x, y, pscore, link, a, b, s, e, num_parts, min_parts, min_object_score, max_people):
        table, esum = _assemble(part, pscore, link, a, b, s, e, part.size, num_parts, e.shape[0])
        return skeletons_from_table(table, esum, x, y, pscore, min_parts, min_object_score, max_people)

    @jit
    def _owners(index, K):
        """Peak → skeleton (-1: none) and each skeleton's part types as bits (for J <= 64)."""
        P, J = index.shape
        owner = np.full(K, -1, np.int64)
        types = np.zeros(P, np.uint64)
        for q in range(P):
            for j in range(J):
                if index[q, j] >= 0:
                    owner[index[q, j]] = q
                    types[q] |= np.uint64(1) << np.uint64(j % 64)
        return owner, types

    @jit
    def _share_a_type(index, p, q):
        """Whether skeletons p and q have a part type in common (the long way, for J > 64)."""
        for j in range(index.shape[1]):
            if index[p, j] >= 0 and index[q, j] >= 0:
                return True
        return False

    @jit
    def merge_split_graphs(index, edge_score, x, y, pscore, a, b, s, threshold_split_score):
        """Skeleton → peak table after merging disjoint skeletons joined by a scored pair (best
        first), or an empty table when nothing merges."""
        owner, types = _owners(index, x.size)
        fits = index.shape[1] <= 64  # part types fit the bit masks
        cand = []
        for i in range(a.size):
            oa, ob = owner[a[i]], owner[b[i]]
            if oa < 0 or ob < 0 or oa == ob or not s[i] >= threshold_split_score:
                continue
            if (types[oa] & types[ob]) == 0 if fits else not _share_a_type(index, oa, ob):
                cand.append(i)
        return _merge(index, edge_score, owner, a, b, s, cand)

    @jit
    def merge_and_judge(index, edge_score, x, y, pscore, a, b, s, threshold_split_score, min_parts,
                        min_object_score):
        """Step 11 whole: ``merge_split_graphs``' merges (when there are two skeletons and scored
        pairs), then ``skeletons_from_table``'s part-count and object-score cuts."""
        table = index.astype(np.int64)
        esum = edge_score.astype(np.float64)
        if index.shape[0] >= 2 and a.size > 0:
            merged_table, merged_esum, merged = merge_split_graphs(index, edge_score, x, y, pscore, a, b, s,
                                                                   threshold_split_score)
            if merged:
                table, esum = merged_table, merged_esum
        return skeletons_from_table(table, esum, x, y, pscore, min_parts, min_object_score, 0)

    @jit
    def _merge(index, edge_score, owner, a, b, s, cand):
        """Step 11's merges over the candidate pairs ``cand`` (joining two disjoint skeletons)."""
        P, J = index.shape
        table = index.astype(np.int64)
        if len(cand) == 0:
            return table[:0], edge_score.astype(np.float64)[:0], False
        cand_arr = np.array(cand, np.int64)
        cand_arr = cand_arr[np.argsort(-s[cand_arr], kind="mergesort")]
        esum = edge_score.astype(np.float64)
        group = np.arange(P)
        for i in cand_arr:
            gx, gy = group[owner[a[i]]], group[owner[b[i]]]
            if gx == gy:
                continue
            overlap = False
            for j in range(J):
                if table[gx, j] >= 0 and table[gy, j] >= 0:
                    overlap = True
                    break
            if overlap:
                continue
            for j in range(J):
                if table[gy, j] >= 0:
                    table[gx, j] = table[gy, j]
                    table[gy, j] = -1
            esum[gx] += esum[gy] + s[i]
            for q in range(P):
                if group[q] == gy:
                    group[q] = gx
        keep = np.zeros(P, np.bool_)
        for q in range(P):
            for j in range(J):
                if table[q, j] >= 0:
                    keep[q] = True
                    break
        return table[keep], esum[keep], True

    @jit
    def map_to_pixels(parts, sx, sy, ox, oy):
        """Step 12's cell → pixel mapping of [P, J, 3] joints into a new array (scores kept)."""
        out = np.empty_like(parts)
        P, J, _ = parts.shape
        for q in range(P):
            for j in range(J):
                out[q, j, 0] = parts[q, j, 0] * sx + ox
                out[q, j, 1] = parts[q, j, 1] * sy + oy
                out[q, j, 2] = parts[q, j, 2]
        return out

    @jit
    def edge_threshold(link, a, b, length, score, count, threshold_edge_score, threshold_count):
        """Step 9: the pairs with score >= threshold_edge_score and count >= threshold_count."""
        keep = np.empty(score.size, np.bool_)
        n = 0
        for i in range(score.size):
            keep[i] = score[i] >= threshold_edge_score and count[i] >= threshold_count
            n += keep[i]
        out = (np.empty(n, link.dtype), np.empty(n, a.dtype), np.empty(n, b.dtype),
               np.empty(n, length.dtype), np.empty(n, score.dtype), np.empty(n, count.dtype))
        k = 0
        for i in range(score.size):
            if keep[i]:
                out[0][k] = link[i]
                out[1][k] = a[i]
                out[2][k] = b[i]
                out[3][k] = length[i]
                out[4][k] = score[i]
                out[5][k] = count[i]
                k += 1
        return out

    @njit(**_FAST)
    def _score_links(p, part, x, y, e, plane_of_link, threshold_edge_size, steps, threshold_sample_score,
                     nearest, min_count):
        """Steps 7-8 fused: the pairs ``edge_candidates`` lists, each scored as ``edge_scores``
        scores it, except that a pair stops being read once it can no longer reach ``min_count``
        passing samples (score NaN; step 9 rejects it whatever its mean)."""
        C, H, W = p.shape
        HW = H * W
        flat = p.ravel()
        K = part.size
        start, order_peaks, total = _by_type(part, e)
        link = np.empty(total, np.int32)
        a = np.empty(total, np.int32)
        b = np.empty(total, np.int32)
        score = np.empty(total, np.float32)
        count = np.empty(total, np.int32)
        cx, cy = _clipped(x, y, W, H)
        t = np.linspace(0.0, 1.0, steps).astype(np.float32)
        order = sample_order(steps)
        allowed_fails = steps - min_count if min_count > 0 else steps
        limit = threshold_edge_size > 0 and np.isfinite(threshold_edge_size)
        ex = np.empty(K, np.float32)
        ey = np.empty(K, np.float32)
        n = 0
        for k in range(e.shape[0]):
            ta, tb = e[k, 0], e[k, 1]
            if start[ta] == start[ta + 1] or start[tb] == start[tb + 1]:
                continue
            px = flat[2 * HW * plane_of_link[k]:]
            py = px[HW:]
            if not nearest:  # the field at each end, shared by all the pairs with that end
                for t_ in (ta, tb):
                    for j in range(start[t_], start[t_ + 1]):
                        q = order_peaks[j]
                        ex[q], ey[q] = _bilinear(px, py, cx[q], cy[q], W, H)
            for ia in range(start[ta], start[ta + 1]):
                pa = order_peaks[ia]
                for ib in range(start[tb], start[tb + 1]):
                    pb = order_peaks[ib]
                    if limit:
                        dx = x[pb] - x[pa]
                        dy = y[pb] - y[pa]
                        if np.float32(math.sqrt(dx * dx + dy * dy)) > threshold_edge_size:
                            continue
                    link[n] = k
                    a[n] = pa
                    b[n] = pb
                    score[n], count[n] = _pair_score(px, py, W, H, cx[pa], cy[pa], cx[pb], cy[pb], ex[pa], ey[pa],
                                                     ex[pb], ey[pb], t, order, threshold_sample_score, nearest,
                                                     allowed_fails)
                    n += 1
        return link[:n], a[:n], b[:n], score[:n], count[:n]

    @njit(**_FAST)
    def _merge_with_completion(p, x, y, link, a, b, plane_of_link, steps, threshold_sample_score, nearest,
                               score, count, index, edge_score, threshold_split_score):
        """Step 11 (``merge_split_graphs``) on pairs that step 8 may have stopped early (score
        NaN): a pair joining two skeletons that share no part type is read in full first, so every
        pair step 11 looks at has the score the plain step 8 gives it."""
        C, H, W = p.shape
        HW = H * W
        flat = p.ravel()
        owner, types = _owners(index, x.size)
        fits = index.shape[1] <= 64  # part types fit the bit masks
        cx, cy = _clipped(x, y, W, H)
        t = np.linspace(0.0, 1.0, steps).astype(np.float32)
        order = sample_order(steps)
        cand = []
        for i in range(a.size):
            oa, ob = owner[a[i]], owner[b[i]]
            if oa < 0 or ob < 0 or oa == ob:
                continue
            if (types[oa] & types[ob]) != 0 if fits else _share_a_type(index, oa, ob):
                continue
            if np.isnan(score[i]):
                px = flat[2 * HW * plane_of_link[link[i]]:]
                py = px[HW:]
                pa, pb = a[i], b[i]
                e0x, e0y = _bilinear(px, py, cx[pa], cy[pa], W, H)
                e1x, e1y = _bilinear(px, py, cx[pb], cy[pb], W, H)
                score[i], count[i] = _pair_score(px, py, W, H, cx[pa], cy[pa], cx[pb], cy[pb], e0x, e0y, e1x, e1y,
                                                 t, order, threshold_sample_score, nearest, steps)
            if score[i] >= threshold_split_score:
                cand.append(i)
        return _merge(index, edge_score, owner, a, b, score, cand)

    @jit
    def decode(h, p, r, threshold_heatmap, quadratic, gaussian, e, plane_of_link, threshold_edge_size,
               steps, threshold_sample_score, nearest, threshold_edge_score, threshold_edge_sampling_counter,
               threshold_part_counter, threshold_object_score, threshold_split_score, max_people,
               sx, sy, ox, oy):
        """Steps 3-12 in one call, with the results of the step functions chained (paf.decode).
        Two shortcuts, neither changing a result: steps 3-5 compare only the cells above the
        threshold with their window (``find_peaks``), and step 8 stops reading a pair once step 9
        is sure to reject it, reading it in full later only if step 11 may use it."""
        part, ys, xs, pscore, _, _ = find_peaks(h, r, threshold_heatmap, quadratic, gaussian)
        link, a, b, score, count = _score_links(p, part, xs, ys, e, plane_of_link, threshold_edge_size, steps,
                                                threshold_sample_score, nearest, threshold_edge_sampling_counter)
        n = a.size
        keep = np.empty(n, np.bool_)
        m = 0
        for i in range(n):
            keep[i] = score[i] >= threshold_edge_score and count[i] >= threshold_edge_sampling_counter
            m += keep[i]
        kl = np.empty(m, np.int32)
        ka = np.empty(m, np.int32)
        kb = np.empty(m, np.int32)
        ks = np.empty(m, np.float32)
        k = 0
        for i in range(n):
            if keep[i]:
                kl[k] = link[i]
                ka[k] = a[i]
                kb[k] = b[i]
                ks[k] = score[i]
                k += 1
        # step 10 keeps every person; step 11 merges, then applies the part and object-score cuts
        _, _, index, esum = graph_matching(part, xs, ys, pscore, kl, ka, kb, ks, e, 18, 0, -np.inf, 0)
        table, tsum = index.astype(np.int64), esum.astype(np.float64)
        if index.shape[0] >= 2 and n > 0:
            merged_table, merged_sum, merged = _merge_with_completion(
                p, xs, ys, link, a, b, plane_of_link, steps, threshold_sample_score, nearest, score, count,
                index, esum, threshold_split_score)
            if merged:
                table, tsum = merged_table, merged_sum
        parts, pers, index, esum = skeletons_from_table(table, tsum, xs, ys, pscore, threshold_part_counter,
                                                        threshold_object_score, 0)
        if max_people > 0 and pers.size > max_people:
            parts, pers, index, esum = parts[:max_people], pers[:max_people], index[:max_people], esum[:max_people]
        return map_to_pixels(parts, sx, sy, ox, oy), pers, index, esum
