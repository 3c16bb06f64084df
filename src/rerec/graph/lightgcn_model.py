"""The LightGCN model over an :class:`~rerec.graph.interactions.InteractionSplit`: graph, network, BPR loss.

The graph is normalised once, as a ``D^-1/2 A D^-1/2`` ``torch.sparse_csr_tensor`` used with
``LightGCN(normalize=False)``, so each ``LGConv`` layer is one sparse × dense product instead of a
re-normalisation of the edge index in every layer (several times slower on a movie-scale graph). A COO
tensor propagates about as fast but is converted to CSR inside every layer, with a warning, so CSR is
the default; ``"edge_index"`` keeps the plain path for comparison. Timings: docs/performance.md.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor
from torch_geometric.nn import LightGCN
from torch_geometric.utils import to_torch_coo_tensor, to_torch_csr_tensor

from rerec.graph.interactions import InteractionSplit

Adjacency = Literal["csr", "coo", "edge_index"]


def build_adjacency(split: InteractionSplit, kind: Adjacency = "csr") -> Tensor:
    """The symmetric user–item graph over ``U + I`` nodes for :class:`LightGCN`.

    ``"csr"``/``"coo"``: a sparse tensor holding the normalised ``D^-1/2 A D^-1/2`` (use with
    ``LightGCN(normalize=False)``); ``"edge_index"``: the plain ``(2, 2E)`` edge index that ``LGConv``
    normalises itself in every layer.
    """
    src = split.train_users
    dst = split.train_items + split.num_users
    edge_index = torch.cat((torch.stack((src, dst)), torch.stack((dst, src))), dim=1)
    if kind == "edge_index":
        return edge_index
    n = split.num_users + split.num_items
    degree = torch.bincount(edge_index[0], minlength=n).to(torch.float32)
    inv_sqrt = degree.pow(-0.5).masked_fill_(degree == 0, 0.0)
    value = inv_sqrt[edge_index[0]] * inv_sqrt[edge_index[1]]
    if kind == "csr":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
            return to_torch_csr_tensor(edge_index, value, size=(n, n))
    if kind == "coo":
        return to_torch_coo_tensor(edge_index, value, size=(n, n))
    raise ValueError(f"adjacency must be 'csr', 'coo' or 'edge_index', got {kind!r}")


def make_lightgcn(
    split: InteractionSplit, embedding_dim: int, num_layers: int, adjacency: Adjacency
) -> LightGCN:
    """A ``torch_geometric.nn.LightGCN`` over the split's ``U + I`` nodes (normalising only for edge_index)."""
    return LightGCN(
        split.num_users + split.num_items, embedding_dim, num_layers, normalize=adjacency == "edge_index"
    )


def bpr_loss(
    model: LightGCN, adj: Tensor, num_users: int, batch: tuple[Tensor, Tensor, Tensor], lambda_reg: float
) -> Tensor:
    """Mean BPR loss of ``(user, positive item, negative item)`` index triples, plus L2 on their layer-0
    embeddings."""
    users, pos, neg = batch
    emb = model.get_embedding(adj)
    u, p, n = emb[users], emb[num_users + pos], emb[num_users + neg]
    node_id = torch.cat((users, num_users + pos, num_users + neg))
    return model.recommendation_loss((u * p).sum(-1), (u * n).sum(-1), node_id=node_id, lambda_reg=lambda_reg)
