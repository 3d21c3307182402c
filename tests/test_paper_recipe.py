"""``python -m course_utils reproduce paper`` on a tiny budget: rows appended run by run, never run twice."""

import json

from course_utils import paper_recipe


def test_runs_are_appended_one_by_one_and_skipped_once_in_the_table(tmp_path, capsys):
    table = tmp_path / "paper.jsonl"
    first = paper_recipe.run(paper_recipe.TINY_PLAN, table, max_runs=1, checkpoint=False)
    assert len(first) == 1 and len(paper_recipe.load(table)) == 1  # written as soon as it finished
    row = first[0]
    assert {"key", "name", "split", "seed", "recipe", "accuracy", "tta_accuracy", "tta_roc_auc",
            "tta_average_precision", "mono_accuracy", "test_probability", "seconds", "machine", "device",
            "versions"} <= row.keys()
    assert len(row["test_probability"]) == paper_recipe.TINY.max_cells
    assert all(0 <= row[k] <= 1 for k in ("accuracy", "tta_accuracy", "tta_roc_auc", "tta_balanced_accuracy"))
    rest = paper_recipe.run(paper_recipe.TINY_PLAN, table, checkpoint=False)  # an interrupted plan goes on
    assert [r["name"] for r in rest] == [paper_recipe.TINY_PLAN[1].name]
    assert paper_recipe.run(paper_recipe.TINY_PLAN, table, checkpoint=False) == []  # nothing left to run
    assert "2 of 2 runs already in" in capsys.readouterr().out
    rows = paper_recipe.load(table)
    assert [json.loads(line)["key"] for line in table.read_text().splitlines()] == [r.key for r in
                                                                                     paper_recipe.TINY_PLAN]
    assert rows[0]["recipe"]["soft"] and not rows[1]["recipe"]["soft"]
    assert set(paper_recipe.summary(rows).index) == {r.name for r in paper_recipe.TINY_PLAN}


def test_the_plan_changes_one_ingredient_at_a_time_and_keys_runs_by_their_settings():
    base = paper_recipe.PAPER
    for name, recipe in paper_recipe.ABLATIONS.items():
        changed = [k for k, v in vars(recipe).items() if vars(base)[k] != v]
        assert len(changed) == 1, (name, changed)
    keys = [r.key for r in paper_recipe.PLAN]
    assert len(keys) == len(set(keys))  # no run twice in the plan
    assert [(r.name, r.split) for r in paper_recipe.PLAN[:3]] == [("paper recipe", s) for s in (0, 1, 2)]


def test_the_committed_table_holds_only_planned_runs():
    planned = {r.key: r for r in paper_recipe.PLAN}
    for row in paper_recipe.load():
        assert row["key"] in planned, row["name"]
        assert row["name"] == planned[row["key"]].name and len(row["test_probability"]) == 656


def test_the_controlled_strategies_differ_only_in_what_trains():
    paper = paper_recipe.PAPER
    full, top = paper_recipe.CONTROLLED["full fine-tuning"], paper_recipe.CONTROLLED["top 3 blocks"]
    for recipe in (full, top):  # same input, views, batch, schedule, epochs in all, selection
        assert recipe.head_epochs + recipe.epochs == paper.head_epochs + paper.epochs
        assert {k for k, v in vars(recipe).items() if vars(paper)[k] != v} <= {"head_epochs", "epochs", "trainable"}
    assert paper_recipe.Run("x", paper, 0).key == "38b0eb8e18e8a243"  # a later setting leaves old keys alone


def test_top_blocks_trains_only_the_top_blocks_and_the_head():
    import numpy as np

    recipe = paper_recipe.replace(paper_recipe.TINY, head_epochs=0, epochs=2, batch_size=8, trainable="top")
    images = np.random.default_rng(0).integers(0, 255, (16, 64, 64), dtype=np.uint8)
    targets = np.linspace(0, 1, 16).astype(np.float32)
    model, history = paper_recipe.train(paper_recipe.Run("top", recipe, 0), images, targets, checkpoint=False)
    built = paper_recipe.build(recipe.backbone)
    before = dict(built.named_parameters())
    k = len(model.features) - paper_recipe.TOP_K
    for name, p in model.named_parameters():
        moved = not np.array_equal(p.detach().numpy(), before[name].detach().numpy())
        assert moved == (name.startswith("classifier") or int(name.split(".")[1]) >= k), name
    assert len(history) == recipe.epochs


def test_an_unknown_trainable_is_refused_before_any_training():
    import pytest

    with pytest.raises(ValueError, match="choose 'all' or 'top'"):
        paper_recipe.replace(paper_recipe.PAPER, trainable="middle")
