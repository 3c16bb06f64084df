"""Batched dual-graph reward shaping: Query Alignment Score and Preference Alignment Score.

One :class:`GraphRewardScorer` (a ``torch.nn.Module``) holds both graphs as buffers, moves with the
policy (``.to(device)``) and scores a whole rollout batch with tensor ops:

- **QAS** on the item–attribute graph: ``QAS(p, g) = |A(p) ∩ A(g)| / |A(g)|`` where, for several truths,
  ``A(g)`` is the intersection of their attribute neighbourhoods; 0 when ``p`` is not in the graph, when
  ``A(g)`` is empty (this includes a truth that is not in the graph or has no attribute: its
  neighbourhood is empty, so the intersection is), and when there is no truth. With attribute weights
  ``w`` (see :class:`~rerec.graph.item_graph.ItemAttributeGraph`) both sizes become weight sums:
  ``Σ_{a ∈ A(p) ∩ A(g)} w_a / Σ_{a ∈ A(g)} w_a``.
- **PAS** on the user–item interaction graph: cosine similarity of the LightGCN embeddings of the
  prediction and the truth. With several truths PAS is the **max** over the truths that have an
  embedding: the query is satisfied by any one of its truths, so a prediction that is (or is close to)
  one of them deserves full (or high) credit; a mean would penalise that prediction for the other truths
  being diverse, and would rank "close to nothing in particular" (the centroid) above "exactly one of
  them". PAS is 0 when the prediction or every truth lacks an embedding. It is a raw cosine in
  ``[-1, 1]``.

How QAS is batched without a Python loop per rollout (loops run over the ≤ M truth columns only):

1. Runs of rows with equal truths (the G rollouts of a prompt are contiguous) share one ``A(g)``.
2. ``A(g) ⊆ A(pivot)`` for the truth with the fewest attributes, so each set's pivot attributes are
   expanded from the CSR incidence with one ``repeat_interleave`` and filtered by a membership test
   against each other truth column.
3. Every rollout's prediction is tested against the attributes of its ``A(g)`` (one more expansion), and
   ``index_add_`` sums the (weighted) hits and sizes per rollout.

A membership test is a bit lookup in a packed item × attribute bitmap, or a binary search over sorted
edge keys when the bitmap would exceed its memory budget. PAS is one gather from a precomputed cosine
table (or a batched dot product of unit embeddings), then a max over the truth columns. Catalog ids
map to rows through :class:`CatalogIndex`, so any int64 ids work.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rerec.data.records import Release, Triple
from rerec.graph.item_graph import ItemAttributeGraph, Weighting

log = logging.getLogger(__name__)

EmbeddingSource = Mapping[str, torch.Tensor] | str | os.PathLike[str] | None

PAS_DISABLED_MESSAGE = (
    "PAS disabled: no LightGCN item embeddings were given, so the 'pas' reward component is 0 for every "
    "rollout. Train them with `python -m rerec fit --config configs/lightgcn-<dataset>.yaml` (or "
    "rerec.graph.lightgcn_inline.train_lightgcn) and pass the item_embeddings.pt it writes."
)


def load_item_embeddings(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read item embeddings written by :mod:`rerec.graph.lightgcn_module`.

    Args:
        path: ``item_embeddings.pt`` (``{"item_ids": LongTensor (I,), "embeddings": FloatTensor (I, d)}``)
            or a Lightning checkpoint of ``LightGCNModule`` (the same dict under ``"item_embeddings"``).

    Returns:
        ``{"item_ids", "embeddings"}`` on the CPU, validated (see :func:`validate_item_embeddings`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"item embeddings file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: cannot be read as a torch file of tensors: {err}") from err
    if isinstance(obj, dict) and "item_embeddings" in obj and "item_ids" not in obj:
        obj = obj["item_embeddings"]  # a LightGCNModule checkpoint
    return validate_item_embeddings(obj, source=str(path))


def validate_item_embeddings(obj: object, source: str = "item_embeddings") -> dict[str, torch.Tensor]:
    """Check ``{"item_ids": (I,) int, "embeddings": (I, d) float}``; errors name ``source`` and the field."""
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{source}: expected a dict with 'item_ids' and 'embeddings', got {type(obj).__name__}"
        )
    for key in ("item_ids", "embeddings"):
        if key not in obj:
            raise ValueError(f"{source}: field {key!r} is missing")
    ids = torch.as_tensor(obj["item_ids"])
    emb = torch.as_tensor(obj["embeddings"])
    if ids.dim() != 1 or ids.is_floating_point() or ids.is_complex():
        raise ValueError(
            f"{source}: field 'item_ids' must be a 1-D integer tensor, got {ids.dtype} {tuple(ids.shape)}"
        )
    if emb.dim() != 2 or emb.size(0) != ids.numel() or not emb.is_floating_point():
        raise ValueError(
            f"{source}: field 'embeddings' must be a float tensor of shape ({ids.numel()}, d), "
            f"got {emb.dtype} {tuple(emb.shape)}"
        )
    if torch.unique(ids).numel() != ids.numel():
        raise ValueError(f"{source}: field 'item_ids' holds duplicate ids")
    if not bool(torch.isfinite(emb).all()):
        raise ValueError(f"{source}: field 'embeddings' holds NaN or infinite values")
    return {"item_ids": ids.to(torch.long).cpu(), "embeddings": emb.to(torch.float32).cpu()}


class CatalogIndex(nn.Module):
    """Catalog id → row for any int64 ids, batched.

    A dense ``int32`` table over ``[min id, max id]`` when that span has at most ``max_table_size``
    entries (MovieLens ids: 3,952 entries), else a binary search over the sorted ids; both give -1 for
    an unknown id and for the "no item" id -1.

    Args:
        ids: Catalog id of every row, unique.
        max_table_size: Largest span of ids served by the dense table.
    """

    def __init__(self, ids: torch.Tensor, max_table_size: int = 1 << 22) -> None:
        super().__init__()
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
        self.size = int(ids.numel())
        self.low = int(ids.min()) if self.size else 0
        span = int(ids.max()) - self.low + 1 if self.size else 0
        self.dense = 0 < span <= max_table_size
        table = torch.full((span if self.dense else 0,), -1, dtype=torch.int32)
        if self.dense:
            table[ids - self.low] = torch.arange(self.size, dtype=torch.int32)
        sorted_ids, rows = torch.sort(ids) if not self.dense else (ids[:0], ids[:0])
        self.register_buffer("table", table, persistent=False)
        self.register_buffer("sorted_ids", sorted_ids, persistent=False)
        self.register_buffer("rows", rows, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows of ``ids`` (any shape, int64), -1 where unknown."""
        if self.size == 0:
            return torch.full_like(ids, -1)
        flat = ids.reshape(-1)
        if self.dense:
            offset = flat - self.low
            inside = (offset >= 0) & (offset < self.table.numel()) & (flat != -1)
            found = self.table.index_select(0, offset.clamp(0, self.table.numel() - 1)).long()
            return torch.where(inside, found, -1).view_as(ids)
        pos = torch.searchsorted(self.sorted_ids, flat).clamp_(max=self.size - 1)
        inside = (self.sorted_ids.index_select(0, pos) == flat) & (flat != -1)
        return torch.where(inside, self.rows.index_select(0, pos), -1).view_as(ids)


class GraphRewardScorer(nn.Module):
    """QAS and PAS for a batch of rollouts, on the device the module lives on.

    Call it as ``scorer(pred_item_ids, truth_item_ids)`` with ``pred_item_ids`` a LongTensor ``(R,)``
    (-1 = no item: unparsable answer or unmatched title) and ``truth_item_ids`` a LongTensor ``(R, M)``
    right-padded with -1; it returns ``{"qas": (R,), "pas": (R,)}`` float32 tensors. The graph tensors
    are non-persistent buffers: they follow ``.to(device)`` but stay out of the policy's checkpoints (the
    scorer is rebuilt from the data, not restored).

    Membership of an (item, attribute) pair is a bit test in a packed item × attribute bitmap
    (``num_items · ⌈num_attributes / 8⌉`` bytes: 4.7 MB for a movie-scale graph) when it fits
    ``max_bitmap_bytes``, else a binary search over the sorted edge keys. PAS reads a precomputed
    cosine table when it fits ``max_similarity_bytes``, else gathers the unit embeddings.

    Args:
        graph: The item–attribute graph (weighted QAS when it carries attribute weights).
        item_embeddings: LightGCN item embeddings: a ``{"item_ids", "embeddings"}`` dict or a path to
            ``item_embeddings.pt`` / a ``LightGCNModule`` checkpoint. ``None``: PAS is disabled with one
            warning, returns zeros and :attr:`pas_enabled` is ``False``.
        max_bitmap_bytes: Memory budget of the membership bitmap (0 forces the binary search).
        max_similarity_bytes: Memory budget of the precomputed item × item cosine table of PAS
            (``4 · I²`` bytes for I embedded items; 0 computes cosines from the embeddings per call).

    Attributes:
        pas_enabled: Whether PAS is computed (item embeddings were given).
        weighted: Whether QAS uses attribute weights.
    """

    def __init__(
        self,
        graph: ItemAttributeGraph,
        item_embeddings: EmbeddingSource = None,
        max_bitmap_bytes: int = 256 * 2**20,
        max_similarity_bytes: int = 256 * 2**20,
    ) -> None:
        super().__init__()
        self.num_items = graph.num_items
        self.num_attributes = graph.num_attributes
        self.num_edges = graph.num_edges
        self.weighted = graph.weighted
        self.item_index = CatalogIndex(graph.item_ids)
        rows, cols = graph.edge_index
        self.register_buffer("crow", graph.crow.clone(), persistent=False)
        self.register_buffer("col", cols.clone(), persistent=False)
        weights = graph.attribute_weights if graph.weighted else torch.ones(graph.num_attributes)
        self.register_buffer("attribute_weights", weights.to(torch.float32).clone(), persistent=False)
        self.bytes_per_row = (graph.num_attributes + 7) // 8
        self.use_bitmap = graph.num_items * self.bytes_per_row <= max_bitmap_bytes
        if self.use_bitmap:
            bits = torch.zeros(graph.num_items * self.bytes_per_row, dtype=torch.int32)
            # Each (item, attribute) pair is unique, so adding the bit values ORs them into their byte.
            bits.index_add_(0, rows * self.bytes_per_row + (cols >> 3), (1 << (cols & 7)).to(torch.int32))
            self.register_buffer("member_bits", bits.to(torch.uint8), persistent=False)
            self.register_buffer("edge_keys", torch.zeros(0, dtype=torch.long), persistent=False)
        else:
            self.register_buffer("member_bits", torch.zeros(0, dtype=torch.uint8), persistent=False)
            # Row-major edges, so these keys are sorted.
            self.register_buffer("edge_keys", rows * max(graph.num_attributes, 1) + cols, persistent=False)

        if item_embeddings is None:
            self.pas_enabled = False
            warnings.warn(PAS_DISABLED_MESSAGE, RuntimeWarning, stacklevel=2)
            emb_ids, unit = torch.zeros(0, dtype=torch.long), torch.zeros(0, 1)
        else:
            self.pas_enabled = True
            if isinstance(item_embeddings, Mapping):
                table = validate_item_embeddings(item_embeddings)
            else:
                table = load_item_embeddings(item_embeddings)
            emb_ids, unit = table["item_ids"], F.normalize(table["embeddings"], dim=1)
            covered = int(torch.isin(graph.item_ids, emb_ids).sum())
            if graph.num_items and covered == 0:
                warnings.warn(
                    "PAS: none of the graph's catalog ids has an item embedding; are the embeddings from "
                    "another dataset? PAS will be 0 for every rollout.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            log.info("PAS: %d of %d catalog items have a LightGCN embedding", covered, graph.num_items)
        self.embedding_index = CatalogIndex(emb_ids)
        self.register_buffer("unit_embeddings", unit, persistent=False)
        # All pairwise cosines when they fit the budget (3,883 items: 60 MB): PAS becomes one gather.
        fits = 0 < emb_ids.numel() ** 2 * 4 <= max_similarity_bytes
        self.register_buffer("similarity", unit @ unit.t() if fits else torch.zeros(0), persistent=False)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """Follow ``.to(device)`` but not a dtype cast: when the policy around this module is cast to
        bf16/fp16 (``Trainer(precision="bf16-true")``) the tables stay float32, so scores keep their
        precision."""

        def same_dtype(tensor: torch.Tensor) -> torch.Tensor:
            moved = fn(tensor)
            return tensor.to(moved.device) if moved.dtype != tensor.dtype else moved

        return super()._apply(same_dtype, recurse)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_triples(
        cls,
        triples: Iterable[Triple],
        item_ids: Iterable[int] | None,
        item_embeddings: EmbeddingSource = None,
        *,
        weighting: Weighting = "none",
        relation_weights: Mapping[str, float] | None = None,
    ) -> GraphRewardScorer:
        """Build the graph from triples over the catalog ``item_ids`` (see
        :meth:`ItemAttributeGraph.from_triples` for ``weighting``/``relation_weights``) and attach the
        item embeddings (dict, file path, or ``None`` to disable PAS)."""
        graph = ItemAttributeGraph.from_triples(
            triples, item_ids, weighting=weighting, relation_weights=relation_weights
        )
        return cls(graph, item_embeddings)

    @classmethod
    def from_release(
        cls,
        release: Release,
        item_embeddings: EmbeddingSource = None,
        *,
        weighting: Weighting = "none",
        relation_weights: Mapping[str, float] | None = None,
    ) -> GraphRewardScorer:
        """The scorer of a loaded release: its ``triples`` over its catalog (see :meth:`from_triples`)."""
        return cls.from_triples(
            release.triples, release.items.keys(), item_embeddings,
            weighting=weighting, relation_weights=relation_weights,
        )

    # ------------------------------------------------------------------ scoring
    def forward(self, pred_item_ids: torch.Tensor, truth_item_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"qas": (R,), "pas": (R,)}`` for predictions ``(R,)`` and -1-padded truths ``(R, M)``."""
        pred, truth = self._check(pred_item_ids, truth_item_ids)
        return {"qas": self._qas(pred, truth), "pas": self._pas(pred, truth)}

    def qas(self, pred_item_ids: torch.Tensor, truth_item_ids: torch.Tensor) -> torch.Tensor:
        """Query Alignment Score only, ``(R,)``."""
        return self._qas(*self._check(pred_item_ids, truth_item_ids))

    def pas(self, pred_item_ids: torch.Tensor, truth_item_ids: torch.Tensor) -> torch.Tensor:
        """Preference Alignment Score only, ``(R,)`` (zeros when PAS is disabled)."""
        return self._pas(*self._check(pred_item_ids, truth_item_ids))

    def _check(self, pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.crow.device
        pred = torch.as_tensor(pred, device=device)
        truth = torch.as_tensor(truth, device=device)
        if pred.dim() != 1 or truth.dim() != 2 or truth.size(0) != pred.size(0):
            raise ValueError(
                f"expected pred_item_ids (R,) and truth_item_ids (R, M), got {tuple(pred.shape)} and "
                f"{tuple(truth.shape)}"
            )
        if pred.is_floating_point() or truth.is_floating_point():
            raise TypeError("item ids must be integer tensors")
        return pred.to(torch.long), truth.to(torch.long)

    # Membership tests are split in a per-row part and a per-attribute part so that each is computed
    # once and only the cheap combination runs per (row, attribute) pair.
    def _row_base(self, rows: torch.Tensor) -> torch.Tensor:
        """Per-row part of a membership test (rows must be valid, ≥ 0)."""
        return rows * (self.bytes_per_row if self.use_bitmap else max(self.num_attributes, 1))

    def _attr_code(self, attrs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-attribute part of a membership test: (byte column, bit) or (attribute, unused)."""
        if self.use_bitmap:
            return attrs >> 3, (attrs & 7).to(torch.uint8)
        return attrs, attrs

    def _member(self, base: torch.Tensor, code: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Whether each (row, attribute) pair, given as ``_row_base`` and ``_attr_code``, is an edge."""
        if self.use_bitmap:
            return ((self.member_bits.index_select(0, base + code[0]) >> code[1]) & 1).bool()
        keys = base + code[0]
        pos = torch.searchsorted(self.edge_keys, keys).clamp_(max=self.edge_keys.numel() - 1)
        return self.edge_keys.index_select(0, pos) == keys

    def _qas(self, pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        num_rollouts, num_truths = truth.shape
        device = truth.device
        out = torch.zeros(num_rollouts, dtype=torch.float32, device=device)
        if num_rollouts == 0 or num_truths == 0 or self.num_edges == 0:
            return out
        pred_row = self.item_index(pred)
        # The G rollouts of a prompt are contiguous rows with the same truths: A(g) is computed once per
        # run of equal truth rows (any layout is correct, this one is just the fast one).
        new = torch.ones(num_rollouts, dtype=torch.bool, device=device)
        new[1:] = (truth[1:] != truth[:-1]).any(dim=1)
        group = new.cumsum(0) - 1
        first = torch.nonzero(new).squeeze(1)
        group_truth = truth.index_select(0, first)
        pair_group, pair_attr = self._truth_intersections(self.item_index(group_truth), group_truth != -1)
        num_groups = first.numel()
        weight = self.attribute_weights.index_select(0, pair_attr)
        denominator = out.new_zeros(num_groups).index_add_(0, pair_group, weight).index_select(0, group)
        # Numerator: test the prediction against every attribute of its rollout's A(g).
        size = torch.bincount(pair_group, minlength=num_groups)
        start = size.cumsum(0) - size
        lengths = torch.where(pred_row >= 0, size.index_select(0, group), 0)
        rollout = torch.repeat_interleave(torch.arange(num_rollouts, device=device), lengths)
        offset = torch.repeat_interleave(start.index_select(0, group) - (lengths.cumsum(0) - lengths), lengths)
        pair = offset + torch.arange(rollout.numel(), device=device)
        column, bit = self._attr_code(pair_attr)
        code = (column.index_select(0, pair), bit.index_select(0, pair))
        hit = self._member(self._row_base(pred_row).index_select(0, rollout), code)
        numerator = out.clone().index_add_(0, rollout, weight.index_select(0, pair) * hit)
        return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-30), out)

    def _truth_intersections(self, rows: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``A(g)`` of every truth set as (set index, attribute) pairs, sorted by set.

        ``rows`` (U, M) are graph rows of the truths (-1: not in the graph), ``real`` marks non-padding.
        The pivot is the set's truth with the fewest attributes: ``A(g) ⊆ A(pivot)``, so expanding the
        pivot's attributes and keeping those every other truth has gives ``A(g)``.
        """
        num_sets, num_truths = rows.shape
        device = rows.device
        # A real truth outside the graph has an empty neighbourhood, so the intersection is empty.
        empty = (real & (rows < 0)).any(dim=1) | ~real.any(dim=1)
        degree = self.crow[1:] - self.crow[:-1]
        truth_degree = torch.where(real & (rows >= 0), degree[rows.clamp(min=0)], degree.new_tensor(2**62))
        pivot_col = truth_degree.argmin(dim=1)
        pivot = rows.gather(1, pivot_col.unsqueeze(1)).squeeze(1).masked_fill(empty, -1)
        safe = pivot.clamp(min=0)
        lengths = torch.where(pivot >= 0, degree.index_select(0, safe), 0)
        owner = torch.repeat_interleave(torch.arange(num_sets, device=device), lengths)
        before = lengths.cumsum(0) - lengths
        offset = torch.repeat_interleave(self.crow.index_select(0, safe) - before, lengths)
        attrs = self.col.index_select(0, offset + torch.arange(owner.numel(), device=device))
        keep = torch.ones_like(owner, dtype=torch.bool)
        code = self._attr_code(attrs)
        for j in range(num_truths):  # ≤ M columns, never a loop over rollouts
            other = real[:, j] & (pivot_col != j)
            if bool(other.any()):
                # Where column j is padding or the pivot itself, test against the pivot: always true.
                rows_j = torch.where(other, rows[:, j], safe)
                keep &= self._member(self._row_base(rows_j).index_select(0, owner), code)
        kept = torch.nonzero(keep).squeeze(1)
        return owner.index_select(0, kept), attrs.index_select(0, kept)

    def _pas(self, pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        num_rollouts, num_truths = truth.shape
        out = torch.zeros(num_rollouts, dtype=torch.float32, device=truth.device)
        if not self.pas_enabled or num_rollouts == 0 or num_truths == 0 or self.embedding_index.size == 0:
            return out
        pred_row = self.embedding_index(pred)
        truth_row = self.embedding_index(truth)
        valid = (truth_row >= 0) & (pred_row >= 0).unsqueeze(1)
        if self.similarity.numel():
            # Precomputed cosine table: one gather per (rollout, truth).
            flat = pred_row.clamp(min=0).unsqueeze(1) * self.embedding_index.size + truth_row.clamp(min=0)
            cosine = self.similarity.view(-1).index_select(0, flat.view(-1)).view(num_rollouts, num_truths)
        else:
            p = self.unit_embeddings.index_select(0, pred_row.clamp(min=0)).unsqueeze(1)
            t = self.unit_embeddings.index_select(0, truth_row.clamp(min=0).view(-1))
            t = t.view(num_rollouts, num_truths, -1)
            cosine = torch.linalg.vecdot(p, t)
        best = cosine.masked_fill(~valid, float("-inf")).amax(dim=1)
        return torch.where(torch.isfinite(best), best, out)

    def extra_repr(self) -> str:
        return (
            f"items={self.num_items}, attributes={self.num_attributes}, edges={self.num_edges}, "
            f"weighted={self.weighted}, bitmap={self.use_bitmap}, pas_enabled={self.pas_enabled}, "
            f"embedded_items={self.embedding_index.size}"
        )
