"""``python -m course_utils reproduce 04`` on a tiny budget: every table, the report's header, rows reused."""

import json

from course_utils import reproduce
from tests.test_taught_in_notebooks import notebook_function


def test_reproduce_04_tiny_budget_writes_every_table(tmp_path):
    out = tmp_path / "04.json"
    report = reproduce.run(reproduce.TINY, out)
    saved = json.loads(out.read_text())
    assert {"date", "machine", "device", "versions", "wall_seconds", "budget", "rows"} <= saved.keys()
    assert saved["versions"]["torch"] and saved["wall_seconds"] > 0
    runs = {}
    for row in saved["rows"]:
        runs.setdefault((row["table"], row["strategy"]), []).append(row["seed"])
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["balanced_accuracy"] <= 1
        assert 0 <= row["roc_auc"] <= 1 and 0 <= row["average_precision"] <= 1  # threshold-free, on every row
    plateau = [row for row in saved["rows"] if row["strategy"] == reproduce.SCRATCH_PLATEAU]
    assert all(len(row["val_curve"]) == row["epochs"] == reproduce.TINY.plateau_epochs
               and row["val_curve"][row["best_epoch"] - 1] == max(row["val_curve"]) for row in plateau)
    strategies = {s for t, s in runs if t == "strategy"}
    assert strategies == {"linear probe", "top blocks (the lesson's recipe)", "from scratch", "full fine-tuning",
                          "LP-FT", reproduce.SCRATCH_PLATEAU}
    assert all(runs[("strategy", s)] == list(reproduce.TINY.seeds) for s in strategies)
    assert len([key for key in runs if key[0] == "75/25"]) == 2 * len(reproduce.TINY.splits)  # two input sizes
    assert sum("EfficientNet-Lite0" in s for t, s in runs if t == "lever") == 2  # the second backbone, both sizes
    ensembles = {s: seeds for (t, s), seeds in runs.items() if t == "ensemble"}  # the recipe at both sizes
    assert len(ensembles) == 2 and all(seeds == list(range(reproduce.ENSEMBLES)) for seeds in ensembles.values())
    assert len(saved["rows"]) == len({(r["table"], r["strategy"], r["seed"]) for r in saved["rows"]})  # no repeats
    table = reproduce.summary(saved)
    assert {"accuracy", "accuracy_std", "balanced_accuracy", "roc_auc", "average_precision", "mono", "poly",
            "seconds"} <= set(table.columns)

    # An interrupted or repeated run reads back every row it measured: the same numbers and the same seconds.
    again = reproduce.run(reproduce.TINY, None)
    assert [(r["accuracy"], r["seconds"]) for r in again["rows"]] == [(r["accuracy"], r["seconds"])
                                                                       for r in report["rows"]]


def test_reproduce_uses_the_lessons_settings():
    top = notebook_function("04_fine_tuning_images.ipynb", "train_top_blocks")
    assert (top["TOP_EPOCHS"], top["TOP_LR"]) == (reproduce.TOP_EPOCHS, reproduce.TOP_LR)
    groups = notebook_function("04_fine_tuning_images.ipynb", "param_groups")
    assert (groups["LR"], groups["SPAN"]) == (reproduce.LR, reproduce.SPAN)
