"""Static feature pages beside the report: the browser's own templates, rendered through Flask's test
client, written as `sae/<sae>/feature/<n>.html` so a report folder can be shared as it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featstore.browser.data import Store, rows
from featstore.report.build import build_report
from featstore.report.markup import feature_page_path
from featstore.warehouse import Warehouse


def chosen_features(store: Store, most_frequent: int) -> dict[str, set[int]]:
    """Per SAE: its `most_frequent` features (firings summed over slices) plus those the report shows."""
    con = store.connect()
    try:
        snap = store.snapshot(con)
        chosen: dict[str, set[int]] = {sae: set() for sae in snap.saes}
        for sae, by_corpus in snap.partitions.items():
            firing = sum(store.partition(snap, sae, corpus).n_firing for corpus in by_corpus)
            chosen[sae].update(int(f) for f in np.argsort(-firing, kind="stable")[:most_frequent])
        for pair in rows(con, "report_features"):
            chosen[pair["parent_sae"]].add(pair["parent_feature"])
            chosen[pair["child_sae"]].add(pair["child_feature"])
    finally:
        con.close()
    return chosen


def export_feature_pages(wh: Warehouse, out_dir: Path, most_frequent: int) -> list[Path]:
    """Write the chosen features' pages under `out_dir`; links lead only to pages written here."""
    from featstore.browser.app import create_app

    store = Store(wh)
    chosen = chosen_features(store, most_frequent)
    paths = {feature_page_path(sae, n) for sae, features in chosen.items() for n in features}
    client = create_app(wh, store, static_pages=paths).test_client()
    written = []
    for path in sorted(paths):
        response = client.get("/" + path.removesuffix(".html"))
        if response.status_code != 200:
            raise RuntimeError(f"feature page {path} failed to render: HTTP {response.status_code}")
        target = Path(out_dir) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.data)
        written.append(target)
    return written


def report_with_pages(wh: Warehouse, most_frequent: int | None = None, out_dir: str | Path | None = None) -> Path:
    """`featstore report`: the report, plus (with `most_frequent`) the feature pages its figures link to."""
    pages = None if most_frequent is None else (lambda folder: export_feature_pages(wh, folder, most_frequent))
    return build_report(wh, out_dir, pages=pages)
