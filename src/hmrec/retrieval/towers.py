"""A tower: raw features -> fixed-size embedding, built from a list of fitted features.

Layout of the MLP input: [embedding rows..., one-hot blocks..., dense floats], then
Dense(h, ReLU) ... -> Dense(output). The Hopsworks H&M tutorial's towers are
``hidden_dims=(16,)`` and ``output_dim=16``.

Training calls :meth:`Tower.forward_rows` with embedding rows gathered outside autograd
(so the big tables get sparse row updates, see ``sparse_adam.py``); inference calls
:meth:`Tower.forward` / :meth:`Tower.embed`, which look the rows up themselves.

With a popularity prior (``prior.py``) :meth:`Tower.embed` appends one score column:
the item tower the article's prior bias, the query tower a constant 1, so that
<query, item> = tower dot product + prior. ``embedding_size`` is then output_dim + 1.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import nn

from hmrec.retrieval.features import FittedFeature, TowerInputs, encode
from hmrec.retrieval.prior import PopularityPrior

#: Initial embedding rows ~ U(-a, a), as a Keras Embedding layer does (the reference).
EMBEDDING_INIT = 0.05


class Tower(nn.Module):
    """Embeds raw rows of one entity (customers+context, or articles)."""

    def __init__(
        self,
        features: list[FittedFeature],
        embedding_dim: int = 16,
        hidden_dims: tuple[int, ...] = (16,),
        output_dim: int = 16,
    ) -> None:
        super().__init__()
        emb = [f for f in features if f.spec.kind == "embedding"]
        oh = [f for f in features if f.spec.kind == "one_hot"]
        # Canonical order (matches features.encode): embeddings, one-hots, then dense in spec order.
        self.features: list[FittedFeature] = emb + oh + [f for f in features if not f.is_categorical]
        self.embedding_dim = embedding_dim
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.output_dim = int(output_dim)
        self.n_embeddings = len(emb)
        self.embeddings = nn.ModuleList(nn.Embedding(f.cardinality, f.spec.dim or embedding_dim) for f in emb)
        sizes = [f.cardinality for f in oh]
        self.one_hot_width = int(sum(sizes))
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if sizes else np.zeros(0, np.int64)
        self.register_buffer("one_hot_offsets", torch.from_numpy(offsets), persistent=False)
        self.dense_width = sum(f.dense_width for f in features)
        in_dim = sum(e.embedding_dim for e in self.embeddings) + self.one_hot_width + self.dense_width
        if in_dim == 0:
            raise ValueError("a tower needs at least one feature")
        layers: list[nn.Module] = []
        prev = in_dim
        for h in self.hidden_dims:
            layers += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        layers.append(nn.Linear(prev, self.output_dim))
        self.mlp = nn.Sequential(*layers)
        #: item tower: per-article score bias appended by embed(); None = no prior column.
        self.prior: PopularityPrior | None = None
        #: query tower: append a constant 1 (the partner of the item prior column).
        self.append_one = False

    @property
    def embedding_size(self) -> int:
        """Width of :meth:`embed` output: the MLP output plus the prior column, if any."""
        return self.output_dim + (1 if (self.prior is not None or self.append_one) else 0)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Seeded initialisation (deterministic without touching global RNG state)."""
        with torch.no_grad():
            for e in self.embeddings:
                e.weight.uniform_(-EMBEDDING_INIT, EMBEDDING_INIT, generator=generator)
                e.weight[0].zero_()  # OOV bucket starts neutral
            for m in self.mlp:
                if isinstance(m, nn.Linear):
                    bound = 1.0 / np.sqrt(m.in_features)  # torch's default Linear init
                    m.weight.uniform_(-bound, bound, generator=generator)
                    m.bias.uniform_(-bound, bound, generator=generator)

    # ---- inputs -------------------------------------------------------------------------
    def encode(self, df: pl.DataFrame) -> TowerInputs:
        """Raw frame -> encoded inputs (vocabulary codes with OOV, normalised numbers)."""
        return encode(self.features, df)

    @property
    def columns(self) -> list[str]:
        """Raw columns this tower reads."""
        return [f.spec.column for f in self.features]

    # ---- forward ------------------------------------------------------------------------
    def lookup(self, inputs: TowerInputs) -> list[torch.Tensor]:
        """Embedding rows for every embedding feature."""
        return [e(inputs.cat[:, k].long()) for k, e in enumerate(self.embeddings)]

    def forward_rows(self, rows: list[torch.Tensor], inputs: TowerInputs) -> torch.Tensor:
        """MLP over already-gathered embedding rows (the training path)."""
        parts = list(rows)
        if self.one_hot_width:
            codes = inputs.cat[:, self.n_embeddings :].long() + self.one_hot_offsets
            x = torch.zeros(codes.shape[0], self.one_hot_width, dtype=torch.float32, device=codes.device)
            parts.append(x.scatter_(1, codes, 1.0))
        if self.dense_width:
            parts.append(inputs.dense)
        return self.mlp(torch.cat(parts, dim=1))

    def forward(self, inputs: TowerInputs) -> torch.Tensor:
        return self.forward_rows(self.lookup(inputs), inputs)

    @torch.no_grad()
    def embed_inputs(self, inputs: TowerInputs, batch_size: int = 65536) -> np.ndarray:
        """Tower (MLP) output of encoded inputs, in chunks, as float32 numpy (no prior column)."""
        n = len(inputs)
        out = np.empty((n, self.output_dim), dtype=np.float32)
        for s in range(0, n, batch_size):
            out[s : s + batch_size] = self.forward(inputs.slice(s, s + batch_size)).numpy()
        return out

    def embed(self, df: pl.DataFrame, batch_size: int = 65536, prior: PopularityPrior | None = None) -> np.ndarray:
        """Raw frame -> embeddings (float32, one row per input row, ``embedding_size`` wide).

        ``prior`` overrides the stored popularity prior (item tower only), e.g. a fresher one.
        """
        was_training = self.training
        self.eval()
        try:
            core = self.embed_inputs(self.encode(df), batch_size)
        finally:
            self.train(was_training)
        prior = prior if prior is not None else self.prior
        if prior is not None:
            if "article_id" not in df.columns:
                raise ValueError("the popularity prior needs column 'article_id'")
            return np.concatenate([core, prior.lookup(df["article_id"])[:, None]], axis=1)
        if self.append_one:
            return np.concatenate([core, np.ones((core.shape[0], 1), np.float32)], axis=1)
        return core
