"""TwoTowerModel: a query tower and an item tower whose dot product scores relevance.

Persistence is code-free: ``model.json`` (specs, statistics, layer sizes),
``weights.npz`` (the state dict as plain arrays) and one Parquet file per vocabulary.
Loading needs nothing but this package, and a loaded model embeds raw frames exactly
as the saved one did.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.features import FittedFeature, fit_feature
from hmrec.retrieval.prior import PopularityPrior
from hmrec.retrieval.towers import Tower
from hmrec.store.atomic import replaced_folder

FORMAT = "hmrec.two_tower"
FORMAT_VERSION = 1


class TwoTowerModel(nn.Module):
    """Query tower (customer + request context) and item tower (article)."""

    def __init__(self, query_tower: Tower, item_tower: Tower) -> None:
        super().__init__()
        if query_tower.output_dim != item_tower.output_dim:
            raise ValueError(
                f"tower output sizes differ: query {query_tower.output_dim}, item {item_tower.output_dim}"
            )
        self.query_tower = query_tower
        self.item_tower = item_tower

    # ---- building ------------------------------------------------------------------------
    @classmethod
    def untrained(
        cls,
        train_df: pl.DataFrame,
        articles_df: pl.DataFrame,
        config: TwoTowerConfig = TwoTowerConfig(),
    ) -> "TwoTowerModel":
        """Fit vocabularies/statistics on the training split and build seeded, untrained towers.

        Query features are fitted on the training rows; item features on the catalogue rows
        of the articles that occur in training (so an article never bought in training is
        out of vocabulary, as an unseen customer is).
        """
        q_feats = [fit_feature(spec, train_df) for spec in config.query_features]
        trained_articles = train_df.select(pl.col("article_id").cast(pl.String)).unique()
        item_rows = articles_df.with_columns(pl.col("article_id").cast(pl.String)).join(
            trained_articles, on="article_id", how="semi"
        )
        i_feats = [fit_feature(spec, item_rows) for spec in config.item_features]
        model = cls(
            Tower(q_feats, config.embedding_dim, config.hidden_dims, config.output_dim),
            Tower(i_feats, config.embedding_dim, config.hidden_dims, config.output_dim),
        )
        model.reset_parameters(config.seed)
        return model

    def reset_parameters(self, seed: int) -> None:
        g = torch.Generator().manual_seed(int(seed))
        self.query_tower.reset_parameters(g)
        self.item_tower.reset_parameters(g)

    # ---- popularity prior ----------------------------------------------------------------
    @property
    def prior(self) -> PopularityPrior | None:
        return self.item_tower.prior

    def set_prior(self, prior: PopularityPrior | None) -> None:
        """Attach (or remove) the popularity prior: embeddings grow (or lose) one score column."""
        self.item_tower.prior = prior
        self.query_tower.append_one = prior is not None

    @property
    def embedding_size(self) -> int:
        """Width of query_tower.embed / item_tower.embed (what FAISS indexes)."""
        return self.item_tower.embedding_size

    # ---- scoring -------------------------------------------------------------------------
    def forward(self, query_inputs, item_inputs) -> torch.Tensor:  # type: ignore[override]
        """Row-wise scores <query_i, item_i>."""
        return (self.query_tower(query_inputs) * self.item_tower(item_inputs)).sum(dim=1)

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model folder atomically (a crash leaves any previous version intact)."""
        path = Path(path)
        with replaced_folder(path) as tmp:
            meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "towers": {}}
            (tmp / "vocab").mkdir()
            for name, tower in (("query", self.query_tower), ("item", self.item_tower)):
                feats = []
                for f in tower.features:
                    d = f.to_json()
                    if f.vocab is not None:
                        d["vocab_file"] = f"vocab/{name}__{f.spec.column}.parquet"
                        pl.DataFrame({"value": f.vocab.cast(pl.String)}).write_parquet(tmp / d["vocab_file"])
                    feats.append(d)
                meta["towers"][name] = {
                    "embedding_dim": tower.embedding_dim,
                    "hidden_dims": list(tower.hidden_dims),
                    "output_dim": tower.output_dim,
                    "features": feats,
                }
            if self.prior is not None:
                meta["prior"] = {**self.prior.to_json(), "file": "prior.parquet"}
                self.prior.to_frame().write_parquet(tmp / "prior.parquet")
            arrays = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}
            np.savez(tmp / "weights.npz", **arrays)
            (tmp / "model.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TwoTowerModel":
        """Read a folder written by :meth:`save`."""
        path = Path(path)
        meta_file = path / "model.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"{meta_file}: no two-tower model here")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT or int(meta.get("format_version", -1)) > FORMAT_VERSION:
            raise ValueError(f"{meta_file}: unsupported format {meta.get('format')!r} v{meta.get('format_version')}")
        towers = {}
        for name in ("query", "item"):
            t = meta["towers"][name]
            feats = []
            for d in t["features"]:
                vocab = None
                if "vocab_file" in d:
                    vocab = pl.read_parquet(path / d["vocab_file"]).get_column("value")
                feats.append(FittedFeature.from_json(d, vocab))
            towers[name] = Tower(feats, int(t["embedding_dim"]), tuple(t["hidden_dims"]), int(t["output_dim"]))
        model = cls(towers["query"], towers["item"])
        if meta.get("prior"):
            model.set_prior(PopularityPrior.from_parts(meta["prior"], pl.read_parquet(path / meta["prior"]["file"])))
        with np.load(path / "weights.npz", allow_pickle=False) as z:
            state = {k: torch.from_numpy(z[k].copy()) for k in z.files}
        model.load_state_dict(state)
        model.eval()
        return model
