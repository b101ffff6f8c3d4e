"""Exact cosine top-k of every row among the other rows (ITHN's prior hard negatives, §3.2), at MIMIC-CXR scale.

The search is the matrix product X Xᵀ of the l2-normalised rows, cut into square tiles of `block_size` rows,
with a running top-k per row. Three things keep it at the speed of the bare matrix product with bounded memory:

- **Symmetry.** Similarity is symmetric, so only the tiles on and above the diagonal are computed; tile (I, J)
  serves the rows of I (along its rows) and the rows of J (along its columns). That is half of the n²·d
  multiply-adds of the plain product.
- **Thresholded top-k.** A row's running k-th best score only grows, so after the first tiles most rows have no
  candidate in a new tile: one max per row (and per column) finds the rows that do, and only those are ranked.
- **Exclusions without a mask over everything.** Rows are sorted by their group (patient) so that each group is
  a contiguous range; a tile only needs masking where it meets the groups of its rows, which is the diagonal band.

Memory: the normalised copy of the rows (n·d floats), one tile (block_size² floats) and the running top-k (n·k),
never an n × n or block_size × n matrix. The result is exactly the brute-force top-k (up to the order of ties and
the last bit of float32 sums).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def _group_ranges(groups: Sequence[Any] | None, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(order, start, stop): the row permutation that makes each group contiguous (stable, so rows keep their
    relative order), and for every sorted row the range [start, stop) of sorted rows in its group. Without groups
    every row is its own group (only itself is excluded)."""
    if groups is None:
        order = torch.arange(n)
        return order, order.clone(), order + 1
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries for {n} reports")
    codes: dict[Any, int] = {}
    group_ids = torch.tensor([codes.setdefault(g, len(codes)) for g in groups], dtype=torch.long)
    sorted_ids, order = torch.sort(group_ids, stable=True)
    counts = torch.bincount(sorted_ids, minlength=len(codes))
    ends = counts.cumsum(0)
    stop = ends[sorted_ids]
    return order, stop - counts[sorted_ids], stop


_CHUNK = 64  # elements per chunk of a tile line when looking for its top-k (see `_TileLines`)


class _TileLines:
    """The rows (`along_rows`) or the columns of a tile as lines to rank, with each line's maximum.

    Each line is cut into chunks of `_CHUNK` elements and the chunk maxima are taken in one vectorised pass (the
    line maxima follow from them). The top-k elements of a line lie in the k chunks with the largest maxima (any
    other chunk has k chunks above it, each holding an element at least as large), so `top_k` ranks only those
    k · `_CHUNK` elements, and columns are never transposed in memory. Short or ragged lines are ranked whole."""

    def __init__(self, tile: torch.Tensor, along_rows: bool, k: int) -> None:
        self.tile, self.along_rows = tile, along_rows
        rows, cols = tile.shape
        length = cols if along_rows else rows
        self.k = min(k, length)
        self.chunks = length // _CHUNK if length % _CHUNK == 0 and length >= 2 * self.k * _CHUNK else 0
        if not self.chunks:
            self.chunk_maxima = None
            self.maxima = tile.amax(dim=1 if along_rows else 0)
        elif along_rows:
            self.chunk_maxima = tile.view(rows, self.chunks, _CHUNK).amax(dim=2)  # (lines, chunks)
            self.maxima = self.chunk_maxima.amax(dim=1)
        else:
            self.chunk_maxima = tile.view(self.chunks, _CHUNK, cols).amax(dim=1)  # (chunks, lines)
            self.maxima = self.chunk_maxima.amax(dim=0)

    def top_k(self, lines: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact top-k (values, positions along the line) of the given lines, each (len(lines), k)."""
        tile, k = self.tile, self.k
        if not self.chunks:
            selected = tile.index_select(0 if self.along_rows else 1, lines)
            top = (selected if self.along_rows else selected.T).topk(k, dim=1)
            return top.values, top.indices
        if self.along_rows:
            best_chunks = self.chunk_maxima.index_select(0, lines).topk(k, dim=1).indices  # (h, k)
            values = tile.view(tile.size(0), self.chunks, _CHUNK)[lines[:, None], best_chunks]  # (h, k, _CHUNK)
        else:
            best_chunks = self.chunk_maxima.index_select(1, lines).T.topk(k, dim=1).indices
            values = tile.view(self.chunks, _CHUNK, tile.size(1))[best_chunks, :, lines[:, None]]
        top = values.flatten(1).topk(k, dim=1)
        chunk = best_chunks.gather(1, torch.div(top.indices, _CHUNK, rounding_mode="floor"))
        return top.values, chunk * _CHUNK + top.indices % _CHUNK


class _RunningTopK:
    """Per row the best k scores seen so far (descending) and their column ids; -inf / -1 where none yet."""

    def __init__(self, n: int, k: int, device: torch.device) -> None:
        self.scores = torch.full((n, k), float("-inf"), device=device)
        self.indices = torch.full((n, k), -1, dtype=torch.long, device=device)
        self.k = k

    def offer(self, rows: slice, tile: torch.Tensor, columns: torch.Tensor, along_rows: bool = True) -> None:
        """Merge the tile's scores into the top-k of `rows`: tile[r, c] (or tile[c, r] when not `along_rows`) is
        the score of row r of `rows` against column id columns[c]. Only the rows whose best tile score beats their
        current k-th best are ranked."""
        lines = _TileLines(tile, along_rows, self.k)
        hits = (lines.maxima > self.scores[rows, -1]).nonzero().flatten()
        if hits.numel() == 0:
            return
        values, positions = lines.top_k(hits)
        rows_hit = hits + rows.start
        merged_scores = torch.cat([self.scores[rows_hit], values], dim=1)
        merged_indices = torch.cat([self.indices[rows_hit], columns[positions]], dim=1)
        best = merged_scores.topk(self.k, dim=1)
        self.scores[rows_hit] = best.values
        self.indices[rows_hit] = merged_indices.gather(1, best.indices)


def _mask_own_groups(tile: torch.Tensor, rows: slice, cols: slice, start: torch.Tensor, stop: torch.Tensor) -> None:
    """Set tile[r, c] = -inf where sorted column c lies in the group range of sorted row r (only the columns that
    any of these rows' groups reach are touched)."""
    first, last = int(start[rows].min()), int(stop[rows].max())
    lo, hi = max(first, cols.start), min(last, cols.stop)
    if lo >= hi:
        return
    band = torch.arange(lo, hi, device=tile.device)
    inside = (band[None, :] >= start[rows, None]) & (band[None, :] < stop[rows, None])
    tile[:, lo - cols.start : hi - cols.start].masked_fill_(inside, float("-inf"))


def nearest_neighbours(
    embeddings: torch.Tensor,
    k: int,
    groups: Sequence[Any] | None = None,
    block_size: int = 4096,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact cosine top-k of every row among the other rows (see the module docstring for how).

    Args:
        embeddings: (n, d) features (normalised here).
        k: neighbours per row (fewer exist when the exclusions leave fewer; those slots score -inf, index -1).
        groups: one key per row (e.g. patient id): rows with the same key are never neighbours. None: only the row
            itself is excluded.
        block_size: rows (and columns) per tile; memory holds one block_size² float32 tile.
        device: where the search runs ("cuda" for a GPU).
    Returns (scores (n, k) float32, indices (n, k) long) on the CPU, each row sorted by decreasing cosine.
    """
    from tqdm.auto import tqdm

    n = embeddings.size(0)
    if n < 2:
        raise ValueError(f"need at least 2 reports to find neighbours, got {n}")
    k = min(k, n - 1)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    device = torch.device(device)
    order, start, stop = _group_ranges(groups, n)
    matrix = embeddings.to(device=device, dtype=torch.float32)[order.to(device)]  # a copy: normalised in place
    matrix.div_(matrix.norm(dim=1, keepdim=True).clamp_min(1e-12))  # F.normalize's arithmetic, one n x d copy
    start, stop, columns = start.to(device), stop.to(device), order.to(device)
    best = _RunningTopK(n, k, device)
    blocks = [slice(i, min(i + block_size, n)) for i in range(0, n, block_size)]
    tiles = len(blocks) * (len(blocks) + 1) // 2
    with torch.no_grad(), tqdm(total=tiles, desc="neighbour search", unit="tile", disable=not progress) as bar:
        # last row block first: a block's own rows are ranked (along the tile rows, the cheaper direction) before
        # the tiles above it offer its rows as columns, by which time few of them still have candidates
        for a in reversed(range(len(blocks))):
            rows = blocks[a]
            for cols in blocks[a:]:
                tile = matrix[rows] @ matrix[cols].T
                _mask_own_groups(tile, rows, cols, start, stop)
                best.offer(rows, tile, columns[cols])
                if cols != rows:  # the same tile, read along its columns, serves the rows of `cols`
                    best.offer(cols, tile, columns[rows], along_rows=False)
                bar.update()
    scores, indices = torch.empty_like(best.scores), torch.empty_like(best.indices)
    scores[order.to(device)], indices[order.to(device)] = best.scores, best.indices
    indices = indices.masked_fill(torch.isinf(scores), -1)
    return scores.cpu(), indices.cpu()


__all__ = ["nearest_neighbours"]
