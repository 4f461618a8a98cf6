#!/usr/bin/env python3
"""The peer learners of `make bench`, on exactly what a berserkr model was trained on: the same gold
snapshot (the table version in the model's manifest, read with the deltalake package), the same
features, the same time-based split (train cutoffs / evaluation cutoff).

  peer_models.py lightgbm LAKE MODEL_DIR
      LightGBM with berserkr's hyper-parameters where LightGBM has them (trees, depth, leaves =
      2^depth, min rows per leaf, learning rate, L2 on leaf values, 2 threads, 255 bins).
  peer_models.py export LAKE MODEL_DIR OUT_DIR
      OUT_DIR/train.csv and OUT_DIR/eval.csv (the features, then label) for the linfa peer.
  peer_models.py evaluate LAKE MODEL_DIR SCORES.csv
      Metrics of every column of SCORES.csv (one score per evaluation row, in eval.csv's order).

Each prints one JSON line: fit seconds where it fits, ROC AUC, and precision@k / recall@k per
customer computed as berserkr computes them (customers with a positive; ties by item code), with
berserkr's own figures beside them.
"""
import json, os, sys, time
import numpy as np, polars as pl
from deltalake import DeltaTable
from sklearn.metrics import roc_auc_score


def load(lake, model_dir):
    m = json.load(open(os.path.join(model_dir, "manifest.json")))
    split, feats = m["split"], m["features"]
    if split["kind"] != "time":
        sys.exit("peer_models.py needs a model trained with a time-based split (several cutoffs)")
    table = os.path.join(os.path.abspath(lake), *m["snapshot"]["table"].split("."))
    t = time.perf_counter()
    dt = DeltaTable(table, version=m["snapshot"]["version"])
    g = pl.from_arrow(dt.to_pyarrow_table(columns=["cutoff", "CustomerID", "StockCode", *feats, "label"]))
    g = g.sort("cutoff", "CustomerID", "StockCode")
    load_s = time.perf_counter() - t
    tr = g.filter(pl.col("cutoff").is_in(split["train_cutoffs"]))
    ev = g.filter(pl.col("cutoff") == split["eval_cutoff"])
    return m, feats, tr, ev, load_s


def metrics(ev, scores):
    y = ev["label"].to_numpy()
    out = {"roc_auc": round(float(roc_auc_score(y, scores)), 4)}
    d = ev.select("CustomerID", "StockCode", "label").with_columns(pl.Series("s", np.asarray(scores, dtype=np.float64)))
    d = d.filter(pl.col("label").sum().over("CustomerID") > 0)
    d = d.sort(["CustomerID", "s", "StockCode"], descending=[False, True, False])
    d = d.with_columns(pl.int_range(pl.len()).over("CustomerID").alias("r"))
    for k in (5, 10):
        a = d.group_by("CustomerID").agg(
            (pl.col("label").filter(pl.col("r") < k).sum() / k).alias("p"),
            (pl.col("label").filter(pl.col("r") < k).sum() / pl.col("label").sum()).alias("rc"))
        out[f"precision@{k}"] = round(float(a["p"].mean()), 4)
        out[f"recall@{k}"] = round(float(a["rc"].mean()), 4)
    return out


def ours(m):
    e = m["evaluation"]
    row = lambda x: {"roc_auc": round(x["roc_auc"], 4),
                     **{f"precision@{k}": round(v, 4) for k, v in x["precision_at"].items()},
                     **{f"recall@{k}": round(v, 4) for k, v in x["recall_at"].items()}}
    return {"fit_s": round(m["fit_seconds"], 2), "model": m["params"]["model"], **row(e["model"]),
            "popularity": row(e["popularity"]), "recency": row(e["recency"])}


def main():
    cmd, lake, model_dir = sys.argv[1:4]
    m, feats, tr, ev, load_s = load(lake, model_dir)
    out = {"rows_train": tr.height, "rows_eval": ev.height, "features": len(feats), "load_s": round(load_s, 2)}
    if cmd == "lightgbm":
        import lightgbm as lgb
        p = m["params"]
        lp = dict(n_estimators=p["trees"], learning_rate=p["learning_rate"], max_depth=p["max_depth"],
                  num_leaves=2 ** p["max_depth"], min_child_samples=p["min_leaf"], min_child_weight=0.0,
                  reg_lambda=p["lambda"], max_bin=255, n_jobs=2, random_state=p["seed"], verbose=-1)
        Xtr, ytr = tr.select(feats).to_numpy().astype(np.float64), tr["label"].to_numpy()
        Xev = ev.select(feats).to_numpy().astype(np.float64)
        t = time.perf_counter()
        model = lgb.LGBMClassifier(**lp).fit(Xtr, ytr)
        fit_s = time.perf_counter() - t
        out["lightgbm"] = {"fit_s": round(fit_s, 2), **metrics(ev, model.predict_proba(Xev)[:, 1]),
                           "version": lgb.__version__, "params": lp}
        out["berserkr"] = ours(m)
        out["fit_ratio"] = round(m["fit_seconds"] / fit_s, 3)
    elif cmd == "export":
        os.makedirs(sys.argv[4], exist_ok=True)
        tr.select(*feats, "label").write_csv(os.path.join(sys.argv[4], "train.csv"))
        ev.select(*feats, "label").write_csv(os.path.join(sys.argv[4], "eval.csv"))
    elif cmd == "evaluate":
        s = pl.read_csv(sys.argv[4])
        if s.height != ev.height:
            sys.exit(f"{sys.argv[4]}: {s.height} scores for {ev.height} evaluation rows")
        for c in s.columns:
            out[c] = metrics(ev, s[c].to_numpy())
        out["berserkr"] = ours(m)
    else:
        sys.exit(__doc__)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
