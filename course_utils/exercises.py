"""Exercises in the learntools style: ``q1.check()``, ``q1.hint()``, ``q1.solution()``.

A lesson defines each question with a checker, a hint and a solution. The learner assigns an
answer (or leaves the ``____`` placeholder) and calls ``check()``; the checker returns ``None``
when the answer is right, or one sentence saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class _Blank:
    """The ``____`` placeholder: an answer not attempted yet."""

    def __repr__(self) -> str:
        return "____"


____ = _Blank()  # noqa: E305 - the name learners see in a blank exercise cell

NOT_ATTEMPTED = "Not attempted yet: replace ____ with your answer, then run the cell again."


def _has_blank(answer: Any) -> bool:
    """True when the answer is ``____`` or holds it (a tuple, list or dict with a part not filled in)."""
    if isinstance(answer, _Blank):
        return True
    if isinstance(answer, (tuple, list)):
        return any(isinstance(part, _Blank) for part in answer)
    if isinstance(answer, dict):
        return any(isinstance(part, _Blank) for part in answer.values())
    return False


@dataclass
class Question:
    """One exercise: ``checker(answer)`` returns None when right, else the feedback sentence."""

    name: str
    checker: Callable[[Any], str | None]
    hint_text: str
    solution_text: str

    def feedback(self, answer: Any) -> str:
        """The feedback text for ``answer``, as ``check()`` prints it."""
        if _has_blank(answer):
            return f"{self.name}: {NOT_ATTEMPTED}"
        try:
            problem = self.checker(answer)
        except Exception as exc:  # a half-finished answer should get feedback, not a traceback
            problem = f"checking your answer raised {type(exc).__name__}: {exc}"
        return f"{self.name}: Correct!" if problem is None else f"{self.name}: Not yet. {problem}"

    def check(self, answer: Any = ____) -> None:
        """Print the feedback for ``answer`` (``feedback`` returns the same text, for tests)."""
        print(self.feedback(answer))

    def hint(self) -> None:
        """Print a hint."""
        print(f"{self.name} hint: {self.hint_text}")

    def solution(self) -> None:
        """Print the reference solution."""
        print(f"{self.name} solution:\n{self.solution_text}")


def _ids_checker(tokenizer, text: str) -> Callable[[Any], str | None]:
    """Checker: ``answer`` must be the input ids the tokenizer gives ``text``, special tokens included."""
    expected = list(tokenizer(text)["input_ids"])

    def check(answer: Any) -> str | None:
        answer = list(answer)
        if answer == expected:
            return None
        if answer and all(isinstance(a, str) for a in answer):
            return "These are word pieces (strings); the model needs their ids: tokenizer(text)['input_ids']."
        if answer == expected[1:-1]:
            return (f"{len(answer)} ids, but the [CLS] ({expected[0]}) and [SEP] ({expected[-1]}) ids are missing: "
                    "call tokenizer(text), not tokenizer.encode(text, add_special_tokens=False).")
        return f"Expected {len(expected)} ids starting with {expected[:2]}, got {len(answer)} starting with {answer[:2]}."

    return check


def _head_only_checker(model: Any) -> str | None:
    """Checker: only the classification head of ``model`` may be trainable."""
    head = sum(p.numel() for p in model.classifier.parameters())
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    outside = sorted({n.rsplit(".", 2)[0] if n.startswith("bert.encoder") else n.split(".")[1]
                      for n in trainable if not n.startswith("classifier")})
    if not trainable:
        return f"Nothing is trainable: the head ({head:,} parameters) must stay trainable or nothing can learn."
    if outside:
        total = sum(v for n, v in trainable.items() if not n.startswith("classifier"))
        return (f"{total:,} parameters outside the head are still trainable (in {', '.join(outside[:3])}"
                f"{' …' if len(outside) > 3 else ''}); expected only the head's {head:,}.")
    if sum(trainable.values()) != head:
        return f"Part of the head is frozen: {sum(trainable.values()):,} of its {head:,} parameters are trainable."
    return None


def lesson05(tokenizer: Any) -> tuple[Question, Question]:
    """The exercises of ``05_fine_tuning_language.ipynb``."""
    text = "An unwatchable mess."
    q1 = Question("q1", _ids_checker(tokenizer, text),
                  "Call the tokenizer on the text; the ids are under 'input_ids'. Both ends get a special token.",
                  f'ids = tokenizer("{text}")["input_ids"]')
    q2 = Question("q2", _head_only_checker,
                  "Loop over model.named_parameters() and set requires_grad; the head's names start with 'classifier'.",
                  "for name, param in model.named_parameters():\n"
                  "    param.requires_grad = name.startswith(\"classifier\")")
    return q1, q2


def _always_defective_checker(answer: Any) -> str | None:
    """Checker: the balanced accuracy of always predicting 'defective' is exactly 0.5."""
    value = float(answer)
    if abs(value - 0.5) < 1e-9:
        return None
    if 0.25 < value < 0.4:
        return (f"{value:.3f} is the plain accuracy (the share of defective cells). Balanced accuracy averages "
                "the recall of each class: 1.0 on defective, 0.0 on functional.")
    return f"{value:.3f} is not it: average the recall of the two classes (what fraction of each class is caught)."


def _head_checker(answer: Any) -> str | None:
    """Checker: the doctor's head maps 1,280 features to 2 classes, 2,562 parameters."""
    from torch import nn

    if not isinstance(answer, nn.Module):
        return f"Expected a layer (an nn.Module), got {type(answer).__name__}."
    count = sum(p.numel() for p in answer.parameters())
    if isinstance(answer, nn.Linear) and (answer.in_features, answer.out_features) == (1280, 2):
        return None
    if count > 1_000_000 and not isinstance(answer, nn.Linear):
        return f"This has {count:,} parameters: that is a whole network. The head alone is one nn.Linear."
    return (f"This layer has {count:,} parameters. The head takes the 1,280 features of MobileNetV2 to our "
            "2 classes: nn.Linear(1280, 2), 1,280 x 2 weights + 2 biases = 2,562.")


def _split_checker(answer: Any) -> str | None:
    """Checker: 20 training cells per class, none of them in the test set."""
    import numpy as np

    train, labels, test = (np.asarray(a) for a in answer)
    leaked = np.intersect1d(train, test)
    if len(leaked):
        return (f"{len(leaked)} of your cells are test cells: draw from `pool` (few_labels(cells.labels[pool], ...) "
                "gives positions in the pool, so index the pool with them).")
    counts = np.bincount(labels[train], minlength=2)
    if counts.tolist() != [20, 20]:
        return f"Expected 20 functional and 20 defective cells, got {counts[0]} and {counts[1]}."
    return None


def lesson01() -> tuple[Question, Question, Question]:
    """The exercises of ``01_doctor_to_lawyer.ipynb``."""
    q1 = Question("q1", _always_defective_checker,
                  "Balanced accuracy = (recall on functional + recall on defective) / 2. What is each recall here?",
                  "answer = balanced_accuracy_score(cells.labels[test], np.ones(len(test), dtype=int))  # 0.5")
    q2 = Question("q2", _head_checker,
                  "The head maps the 1,280 features to the 2 classes with one linear layer.",
                  "head = nn.Linear(1280, 2)  # 1,280 * 2 weights + 2 biases = 2,562 parameters")
    q3 = Question("q3", _split_checker,
                  "few_labels returns positions within the array you give it; `pool[...]` turns them into cell indices.",
                  "train = pool[few_labels(cells.labels[pool], 20, seed=3)]")
    return q1, q2, q3


def lesson02(model: Any, stages: list[str], probe: Any) -> tuple[Question, Question, Question]:
    """The exercises of ``02_what_networks_learn.ipynb``; ``probe`` is (stages, seeds) balanced accuracy."""
    import torch
    from torchvision.models.feature_extraction import create_feature_extractor

    with torch.no_grad():
        acts = create_feature_extractor(model, ["features.7", "features.13"]).eval()(torch.zeros(1, 3, 224, 224))
    channels, side = acts["features.13"].shape[1], acts["features.7"].shape[-1]
    best = stages[int(probe.mean(axis=1).argmax())]

    def check_channels(answer: Any) -> str | None:
        if int(answer) == channels:
            return None
        if int(answer) in (7, 14, 28):
            return f"{answer} is a spatial size; the channels are the first dimension of the map (C, H, W)."
        return f"{answer} is not it: look at the first dimension of the (channels, height, width) map."

    def check_side(answer: Any) -> str | None:
        if int(answer) == side:
            return None
        if int(answer) == 224 // 8:
            return f"{answer} = 224 / 8, but features.7 comes after a fourth stride-2 block: 224 / 16."
        return f"{answer} is not it: count the stride-2 blocks up to features.7 (or measure the map)."

    def check_best(answer: Any) -> str | None:
        if answer == best:
            return None
        if answer not in stages:
            return f"{answer!r} is not one of the stages: {', '.join(stages)}."
        return f"{answer} scored {probe[stages.index(answer)].mean():.3f} on average; one stage scored higher."

    q1 = Question("q1", check_channels, "feature_maps(model, cat_input, ['features.13']) gives a (C, H, W) tensor.",
                  "channels_13 = feature_maps(model, cat_input, ['features.13'])['features.13'].shape[0]")
    q2 = Question("q2", check_side, "The cat's map at features.7 was printed in section 3; or take .shape[-1].",
                  "side = feature_maps(model, cat_input, ['features.7'])['features.7'].shape[-1]  # 224 / 16")
    q3 = Question("q3", check_best, "probe.mean(axis=1) is the mean per stage; argmax finds the best row.",
                  "answer = stages[probe.mean(axis=1).argmax()]")
    return q1, q2, q3


def _frozen_new_head_checker(model: Any) -> str | None:
    """Checker: a MobileNetV2 with a new 3-class head, everything else frozen."""
    from torch import nn

    if not isinstance(model, nn.Module) or not hasattr(model, "classifier"):
        return f"Expected a MobileNetV2 (from load_mobilenet_v2()), got {type(model).__name__}."
    last = model.classifier[-1]
    if not isinstance(last, nn.Linear) or last.out_features != 3:
        return f"The last layer of classifier should be nn.Linear(1280, 3); it is {last}."
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    body = sum(v for n, v in trainable.items() if n.startswith("features"))
    if body:
        return f"{body:,} parameters of the body are still trainable: freeze(model.features) (or the whole model) first."
    if sum(trainable.values()) != 1280 * 3 + 3:
        return (f"{sum(trainable.values()):,} parameters are trainable; the new head alone has 3,843. "
                "Did you freeze after replacing the head? Replace it last.")
    return None


def lesson03(test_labels: Any, predicted: Any) -> tuple[Question, Question, Question]:
    """The exercises of ``03_replacing_the_head.ipynb``."""
    import numpy as np

    test_labels, predicted = np.asarray(test_labels), np.asarray(predicted)
    recall = float(np.mean(predicted[test_labels == 1] == 1))
    precision = float(np.mean(test_labels[predicted == 1] == 1))

    def check_recall(answer: Any) -> str | None:
        value = float(answer)
        if abs(value - recall) < 1e-6:
            return None
        if abs(value - precision) < 1e-6:
            return ("That is the precision: the share of cells *flagged* defective that are. Recall divides by "
                    "the truly defective cells: predicted[test_labels == 1].")
        return f"{value:.3f} is not it: among cells with test_labels == 1, what fraction has predicted == 1?"

    def check_recompute(answer: Any) -> str | None:
        if answer is False:
            return None
        if answer is True:
            return ("The key hashes only the weights under `features` (plus pixels, size and layer); "
                    "a new head leaves them unchanged, so the cached file is found.")
        return "Answer True or False."

    q1 = Question("q1", _frozen_new_head_checker,
                  "freeze(model) sets requires_grad=False everywhere; a layer created afterwards trains.",
                  "exercise_model = load_mobilenet_v2()\nfreeze(exercise_model)\n"
                  "exercise_model.classifier[-1] = nn.Linear(1280, 3)")
    q2 = Question("q2", check_recall, "Select the truly defective cells first, then count how many were predicted 1.",
                  "recall = np.mean(predicted[test_labels == 1] == 1)")
    q3 = Question("q3", check_recompute, "Look at what cached_features puts in its key (and what fingerprint hashes).",
                  "answer = False  # only the body's weights, the pixels, the size and the layer are in the key")
    return q1, q2, q3


def _top_blocks_checker(model: Any, k: int = 3) -> str | None:
    """Checker: only the top ``k`` blocks of ``features`` and the head are trainable."""
    expected = {n for n, _ in model.named_parameters()
                if n.startswith("classifier") or int(n.split(".")[1]) >= len(model.features) - k}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    count = sum(p.numel() for n, p in model.named_parameters() if n in expected)
    if trainable == expected:
        return None
    if not trainable & {n for n in expected if n.startswith("classifier")}:
        return "The head is frozen too: it is new, so it must train. Freeze model.features[:-3] only."
    if trainable > expected:
        blocks = sorted({int(n.split(".")[1]) for n in trainable - expected if n.startswith("features")})
        return (f"Blocks {blocks[0]}-{blocks[-1]} of features are still trainable; expected only the last {k} "
                f"and the head ({count:,} parameters).")
    return f"{sum(p.numel() for n, p in model.named_parameters() if n in trainable):,} trainable, expected {count:,}."


MOBILENET_V2_2_CLASSES = 2_226_434  # weights of load_mobilenet_v2(num_classes=2)


def _discriminative_checker(answer: Any) -> str | None:
    """Checker: layer groups of a whole 2-class MobileNetV2, head at 1e-3, none below 1e-5, lowest at the stem."""
    groups = answer.param_groups if hasattr(answer, "param_groups") else list(answer)
    groups = [{**g, "params": list(g["params"])} for g in groups]
    lrs = [g["lr"] for g in groups]
    if len(groups) < 3:
        return (f"{len(groups)} group(s): use the four layer groups (features[:7], features[7:14], features[14:], "
                "classifier), each with its own learning rate.")
    if len(set(lrs)) == 1:
        return (f"All {len(groups)} groups share lr={lrs[0]:g}: that is plain fine-tuning. Give each layer group its "
                "own rate, smaller going down.")
    if abs(max(lrs) - 1e-3) > 1e-12:
        return f"The head (the largest lr) should get 1e-3; the largest here is {max(lrs):g}."
    if min(lrs) < 1e-5 * (1 - 1e-9):
        return (f"The lowest group gets {min(lrs):g}, under 1e-5 (a hundredth of the head's rate): it would hardly "
                "train. Spread the rates over about 100 times, not more.")
    counts = [sum(p.numel() for p in g["params"]) for g in groups]
    if sum(counts) != MOBILENET_V2_2_CLASSES:
        return (f"The groups hold {sum(counts):,} weights; a 2-class MobileNetV2 has {MOBILENET_V2_2_CLASSES:,}. Full "
                "fine-tuning puts every weight in exactly one group (start from a fresh, unfrozen model).")
    if counts[lrs.index(max(lrs))] != 1280 * 2 + 2:
        return "The group with the largest rate should be the head alone (model.classifier, 2,562 weights)."
    if not any(tuple(p.shape) == (32, 3, 3, 3) for p in groups[lrs.index(min(lrs))]["params"]):
        return "The smallest rate belongs to the first layers (model.features[0], the stem), which hold the most general features."
    return None


def lesson04(k: int = 3) -> tuple[Question, Question]:
    """The exercises of ``04_fine_tuning_images.ipynb``."""
    q1 = Question("q1", lambda model: _top_blocks_checker(model, k),
                  f"freeze(model.features[:-{k}]) freezes every block below the top {k}; the head stays trainable.",
                  f"exercise_model = load_mobilenet_v2(num_classes=2)\nfreeze(exercise_model.features[:-{k}])")
    q2 = Question("q2", _discriminative_checker,
                  "Four layer groups: ft_model.features[:7], ft_model.features[7:14], ft_model.features[14:] and "
                  "ft_model.classifier; one dict per group, {'params': list(group.parameters()), 'lr': rate}, the "
                  "rates rising from 1e-5 to 1e-3.",
                  "ft_model = load_mobilenet_v2(num_classes=2)\n"
                  "groups = [ft_model.features[:7], ft_model.features[7:14], ft_model.features[14:], ft_model.classifier]\n"
                  "rates = [1e-3 / 100 ** (1 - i / 3) for i in range(4)]  # 1e-5, 4.6e-5, 2.2e-4, 1e-3\n"
                  "ft_groups = [{'params': list(g.parameters()), 'lr': r} for g, r in zip(groups, rates)]")
    return q1, q2
