"""The report and the pooled rotate-folds score carry the overlap guard's patients and what it could not check."""

from __future__ import annotations

import json

from run_fixtures import fabricate_results

from ecgadapt.eval.pooling import pooled_overlap
from ecgadapt.eval.report import build_report
from ecgadapt.eval.results import collect_results


def test_pooled_overlap_sums_test_and_validation_counts_and_keeps_what_was_not_checked():
    folds = [
        {
            "train": 3,
            "val": 1,
            "test": 0,
            "same_patient": {"train": 2, "val": 0, "test": 1},
            "unknown": ["a"],
        },
        {
            "train": 4,
            "val": 0,
            "test": 2,
            "same_patient": {"train": 1, "val": 1, "test": 1},
            "unknown": ["a"],
        },
    ]
    out = pooled_overlap(folds)
    assert (out["train"], out["val"], out["test"]) == (4, 1, 2)
    assert out["same_patient"] == {"train": 2, "val": 1, "test": 2} and out["unknown"] == ["a"]
    unknown = pooled_overlap(
        [{"train": None, "val": None, "test": None, "same_patient": None, "unknown": ["b"]}]
    )
    assert unknown["test"] is None and unknown["same_patient"] is None
    assert pooled_overlap([{"train": 1, "val": 0, "test": 0}]) == {"train": 1, "val": 0, "test": 0}


def test_report_warns_of_shared_patients_and_says_what_it_could_not_check(tmp_path):
    root = fabricate_results(tmp_path / "res", tasks=("superdiagnostic",), seeds=(0, 1))
    runs = sorted((root / "runs").iterdir())
    for i, run in enumerate(runs):
        final = json.loads((run / "final.json").read_text())
        if i == 0:
            final["pretraining_overlap"] = {
                "train": 0,
                "val": 0,
                "test": 0,
                "same_patient": {"train": 4, "val": 1, "test": 2},
                "unknown": [],
            }
        else:
            final["pretraining_overlap"] = {
                "train": None,
                "val": None,
                "test": None,
                "same_patient": None,
                "unknown": [
                    "3 of 3 folder record(s) carry no PTB-XL identity: whether the encoder saw them cannot be checked"
                ],
            }
        (run / "final.json").write_text(json.dumps(final))
    table = collect_results(root)
    assert sorted(table["pretraining_same_patient_test"].dropna().tolist()) == [2]
    md = build_report(root, tmp_path / "rep", n_resamples=20).markdown.read_text()
    overview = md[md.index("## Overview") : md.index("## ", md.index("## Overview") + 3)]
    assert (
        "in 1 run(s), test records (up to 2) or validation records (up to 1) belong to patients" in overview
    )
    assert "Not checked:" in overview and "carry no PTB-XL identity" in overview
