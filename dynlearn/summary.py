"""Summaries of result stores (``dynlearn show``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr

from .store import committed_epochs, open_store, root_attrs

__all__ = ["summarize", "summary_text", "claims_text"]


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return [_py(x) for x in v.tolist()]
    return v


def summarize(store: str | os.PathLike) -> dict[str, Any]:
    """A JSON-able summary: experiment, progress, outcome counts, final loss by hyper-parameter, groups, claims."""
    attrs = root_attrs(store)
    tree = open_store(store)
    cfg = attrs.get("config", {})
    info: dict[str, Any] = {
        "store": str(store),
        "name": cfg.get("name"),
        "description": cfg.get("description"),
        "config_hash": attrs.get("config_hash"),
        "dynlearn_version": attrs.get("version"),
        "created": attrs.get("provenance", {}).get("created"),
        "system": cfg.get("system", {}).get("name"),
        "groups": {},
    }
    for name, node in tree.children.items():
        info["groups"][name] = {"dims": {k: int(v) for k, v in node.sizes.items()}, "variables": sorted(node.data_vars)}
    if "train" in tree.children and "committed" not in tree["train"].data_vars:  # written by dynlearn.Recorder
        steps = tree["train"]["epoch"].values
        stored = tree["params"]["epoch"].values if "params" in tree.children else steps[:0]
        info["recorded"] = {"steps": int(len(steps)), "first_step": _py(steps[0]) if len(steps) else None,
                            "last_step": _py(steps[-1]) if len(steps) else None, "stored_weights": int(len(stored))}
        if len(steps):
            last = tree["train"]["loss"].isel(epoch=-1).values
            if np.isfinite(last).any():
                info["recorded"]["final_loss_overall"] = {
                    "min": float(np.nanmin(last)), "median": float(np.nanmedian(last)), "max": float(np.nanmax(last))}
    elif "train" in tree.children:
        train = tree["train"]
        done = committed_epochs(tree)
        total = int(train.sizes["epoch"])
        info["training"] = {"epochs_committed": done, "epochs": total, "complete": done == total}
        out = train["outcome"].values.ravel()
        labels, counts = np.unique(out.astype(str), return_counts=True)
        info["training"]["outcomes"] = {str(k): int(c) for k, c in zip(labels, counts)}
        if done:
            last = train["loss"].isel(epoch=done - 1).load()
            hyper = [d for d in last.dims if d != "seed"]
            final: dict[str, Any] = {}
            for d in hyper:
                red = last.mean([o for o in last.dims if o != d])
                final[d] = {"values": _py(red[d].values), "mean_final_loss": _py(red.values)}
            info["training"]["final_loss"] = final
            info["training"]["final_loss_overall"] = {
                "min": float(np.nanmin(last.values)), "median": float(np.nanmedian(last.values)),
                "max": float(np.nanmax(last.values))}
    if "claims" in tree.children:
        c = tree["claims"]
        info["claims"] = [
            {"claim": str(c["claim"].values[i]), "expected": float(c["expected"].values[i]),
             "measured": float(c["measured"].values[i]), "passed": bool(c["passed"].values[i])}
            for i in range(c.sizes["claim"])
        ]
    return info


def summary_text(info: dict[str, Any]) -> str:
    lines = [f"{info['store']}: experiment {info['name']!r} (config {info['config_hash']}, dynlearn "
             f"{info['dynlearn_version']}, created {info['created']})"]
    if info.get("description"):
        lines.append(f"  {info['description']}")
    if info.get("system"):
        lines.append(f"  system: {info['system']}")
    tr = info.get("training")
    if tr:
        state = "complete" if tr["complete"] else "INCOMPLETE (resume with dynlearn run ... --out this store)"
        lines.append(f"  training: {tr['epochs_committed']}/{tr['epochs']} epochs committed, {state}")
        lines.append("  outcomes: " + ", ".join(f"{k}={v}" for k, v in tr["outcomes"].items()))
        if "final_loss_overall" in tr:
            f = tr["final_loss_overall"]
            lines.append(f"  final loss: min {f['min']:.4g}, median {f['median']:.4g}, max {f['max']:.4g}")
    rec = info.get("recorded")
    if rec:
        span = f" (steps {rec['first_step']} .. {rec['last_step']})" if rec["steps"] else ""
        lines.append(f"  recorded (dynlearn.Recorder): {rec['steps']} steps{span}, weights stored at "
                     f"{rec['stored_weights']} of them")
        if "final_loss_overall" in rec:
            f = rec["final_loss_overall"]
            lines.append(f"  final loss: min {f['min']:.4g}, median {f['median']:.4g}, max {f['max']:.4g}")
    lines.append("  groups:")
    for name, g in info["groups"].items():
        dims = ", ".join(f"{k}={v}" for k, v in g["dims"].items())
        lines.append(f"    /{name:<14} ({dims}): {', '.join(g['variables'])}")
    if info.get("claims"):
        ok = sum(c["passed"] for c in info["claims"])
        lines.append(f"  claims: {ok}/{len(info['claims'])} reproduced")
    return "\n".join(lines)


def claims_text(claims: xr.Dataset) -> str:
    rows = []
    for i in range(claims.sizes["claim"]):
        rows.append((
            "PASS" if bool(claims["passed"].values[i]) else "FAIL",
            str(claims["claim"].values[i]),
            f"{float(claims['expected'].values[i]):.6g}",
            f"{float(claims['measured'].values[i]):.6g}",
            str(claims["tolerance"].values[i]),
            str(claims["description"].values[i]),
        ))
    head = ("", "claim", "expected", "measured", "criterion", "")
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    return "\n".join(fmt.format(*r) for r in [head, *rows])
