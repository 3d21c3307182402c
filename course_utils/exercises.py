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
# A checker returns NOT_ATTEMPTED for an object the exercise cell made but the learner has not changed yet.


def _has_blank(answer: Any) -> bool:
    """True when the answer is ``____`` or holds it (a tuple, list or dict with a part not filled in)."""
    if isinstance(answer, _Blank):
        return True
    if isinstance(answer, (tuple, list)):
        return any(isinstance(part, _Blank) for part in answer)
    if isinstance(answer, dict):
        return any(isinstance(part, _Blank) for part in answer.values())
    return False


# What reading a wrong or half-finished answer raises (``None.shape``, ``int + str``, a wrong shape): the learner's to
# fix. Any other error inside a checker (a KeyError, an IndexError) is a bug in the checker.
ANSWER_ERRORS = (TypeError, AttributeError, ValueError, RuntimeError)


@dataclass
class Question:
    """One exercise: ``checker(answer)`` returns None when right, else the feedback sentence."""

    name: str
    checker: Callable[[Any], str | None]
    hint_text: str
    solution_text: str
    done: bool = False  # set once an answer is right (for an open question: once it is written)

    def problem(self, answer: Any) -> str | None:
        """What is wrong with ``answer`` (NOT_ATTEMPTED for a blank), or None when it is right."""
        if _has_blank(answer):
            return NOT_ATTEMPTED
        try:
            return self.checker(answer)
        except ANSWER_ERRORS as exc:  # a half-finished answer (a wrong type, a wrong shape) gets feedback
            return f"checking your answer raised {type(exc).__name__}: {exc}"
        except Exception as exc:  # anything else is the checker's own mistake: say so, not "your answer"
            return (f"the checker itself failed ({type(exc).__name__}: {exc}). This is a bug in the course, not in "
                    "your answer: please report it, with the line above.")

    def feedback(self, answer: Any) -> str:
        """The feedback text for ``answer``, as ``check()`` prints it."""
        problem = self.problem(answer)
        if problem == NOT_ATTEMPTED:
            return f"{self.name}: {NOT_ATTEMPTED}"
        self.done = self.done or problem is None
        return f"{self.name}: Correct!" if problem is None else f"{self.name}: Not yet. {problem}"

    def check(self, answer: Any = ____) -> None:
        """Print the feedback for ``answer`` (``feedback`` returns the same text, for tests)."""
        print(self.feedback(answer))

    def grade(self, answer: Any) -> None:
        """Raise AssertionError with the feedback unless ``answer`` passes the checker (nbgrader's test cells)."""
        if self.problem(answer) is not None:
            raise AssertionError(self.feedback(answer))
        print(f"{self.name}: passed")

    def hint(self) -> None:
        """Print a hint."""
        print(f"{self.name} hint: {self.hint_text}")

    def solution(self) -> None:
        """Print the reference solution."""
        print(f"{self.name} solution:\n{self.solution_text}")


MIN_WORDS = 5  # an open answer shorter than this is not an answer yet


def _words_checker(answer: Any) -> str | None:
    """Checker of an open question: any answer written as a sentence."""
    if isinstance(answer, str) and len(answer.split()) >= MIN_WORDS:
        return None
    return f"Write your answer as a sentence in quotes (at least {MIN_WORDS} words)."


class Thought(Question):
    """An open question: ``check(text)`` takes the learner's answer in words, then shows a model answer."""

    def __init__(self, name: str, answer_text: str,
                 hint_text: str = "There is no single right wording: say what you expect and why, in a sentence or two."):
        super().__init__(name, _words_checker, hint_text, answer_text)

    def feedback(self, answer: Any) -> str:
        """The feedback text for ``answer``: once it is a sentence, the model answer to compare it with."""
        text = super().feedback(answer)
        if text == f"{self.name}: Correct!":
            return f"{self.name}: Thank you. Compare yours with this model answer:\n{self.solution_text}"
        return text


def choice_checker(right: str, why_not: dict[str, str]) -> Callable[[Any], str | None]:
    """Checker of a multiple-choice question: ``right`` is the letter; ``why_not`` says what is wrong with each other."""

    def check(answer: Any) -> str | None:
        letter = str(answer).strip().lower().strip("()")
        if letter == right:
            return None
        if letter not in why_not:
            return f"Answer with one letter: {', '.join(sorted([right, *why_not]))}."
        return why_not[letter]

    return check


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
    if len(trainable) == len(list(model.parameters())):
        return NOT_ATTEMPTED  # every parameter still trainable: the model as new_classifier made it
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


def lesson05(tokenizer: Any) -> tuple[Question, Question, Thought]:
    """The exercises of ``05_fine_tuning_language.ipynb``."""
    text = "An unwatchable mess."
    q1 = Question("q1", _ids_checker(tokenizer, text),
                  "Call the tokenizer on the text; the ids are under 'input_ids'. Both ends get a special token.",
                  f'ids = tokenizer("{text}")["input_ids"]')
    q2 = Question("q2", _head_only_checker,
                  "Loop over student_model.named_parameters() and set requires_grad; the head's names start with "
                  "'classifier'.",
                  "student_model = new_classifier(seed=0)\n"
                  "for name, param in student_model.named_parameters():\n"
                  "    param.requires_grad = name.startswith(\"classifier\")")
    q3 = Thought("q3", "The errors of section 6 and the sarcastic review share a cause: friendly words in a negative "
                 "verdict. A few hundred more labelled reviews would help only if they contain such cases; collect "
                 "and label examples of sarcasm, faint praise and mixed verdicts (the model's most confident "
                 "mistakes are a good place to find them), add them to training, and measure on a *separate* set of "
                 "such reviews, not only on the whole test set, where they are rare and a gain would hide in the "
                 "noise. A bigger pretrained model, or one whose pretraining saw more reviews, may read them "
                 "better, but that is a claim to measure the same way, not to assume.")
    return q1, q2, q3


def _eager_flagger_checker(answer: Any) -> str | None:
    """Checker: flagging every defective cell and half the functional ones gives balanced accuracy 0.75."""
    value = float(answer)
    if abs(value - 0.75) < 0.01:  # 0.75 exactly by reasoning, within a cell of it by simulation
        return None
    if abs(value - (0.312 + 0.688 / 2)) < 0.02:
        return (f"{value:.3f} is the plain accuracy (every defective cell right, half the functional ones). "
                "Balanced accuracy averages the two recalls instead: 1.0 on defective, 0.5 on functional.")
    if abs(value - 0.5) < 0.01:
        return "0.5 is what a model that flags *everything* gets; this one leaves half the functional cells alone."
    return f"{value:.3f} is not it: average the recall of the two classes (what fraction of each class is right)."


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
    q1 = Question("q1", _eager_flagger_checker,
                  "Balanced accuracy = (recall on functional + recall on defective) / 2. What is each recall here?",
                  "answer = (1.0 + 0.5) / 2  # recall 1.0 on defective cells, 0.5 on functional ones: 0.75")
    q2 = Question("q2", _head_checker,
                  "The head maps the 1,280 features to the 2 classes with one linear layer.",
                  "head = nn.Linear(1280, 2)  # 1,280 * 2 weights + 2 biases = 2,562 parameters")
    q3 = Question("q3", _split_checker,
                  "few_labels returns positions within the array you give it; `pool[...]` turns them into cell indices.",
                  "train = pool[few_labels(cells.labels[pool], 20, seed=3)]")
    return q1, q2, q3


def probe_score(features: Any, labels: Any, train: Any, test: Any) -> float:
    """Lesson 02's linear probe: standardised features, logistic regression, test balanced accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced"))
    clf.fit(features[train], labels[train])
    return float(balanced_accuracy_score(labels[test], clf.predict(features[test])))


def lesson02_prediction() -> Thought:
    """The question of ``02_what_networks_learn.ipynb`` asked before the probe runs: predict, then look."""
    return Thought("q1", "The probe below answers it; here is how to reason before seeing it. The first layers detect "
                 "edges and colour contrasts, which any image has, but a stage that early, averaged over the whole "
                 "cell, may hold little about a thin crack. The last layer is the most tied to ImageNet's 1,000 "
                 "classes (Yosinski et al. 2014), and grey electroluminescence cells look nothing like ImageNet's "
                 "photos. So a good bet is a middle-to-late block: general enough to describe lines, dark patches "
                 "and texture, specific enough to combine them. Compare with the figure: was the first stage the "
                 "worst, and did the last layer add anything?",
                 "Think of what a crack is made of (lines, dark patches) and which layers detect such things.")


def lesson02(stages: list[str], probe: Any, pooled: dict, labels: Any) -> tuple[Question, Question]:
    """The end-of-lesson exercises of ``02_what_networks_learn.ipynb``; ``probe`` is (stages, seeds) balanced
    accuracy, ``pooled`` the probe's features by stage."""
    import numpy as np

    from course_utils.vision import elpv_splits

    best = stages[int(np.asarray(probe).mean(axis=1).argmax())]
    split = elpv_splits(labels, n_train=100, seed=0)
    few = probe_score(pooled[best], labels, split["train"], split["test"])
    q2 = Question("q2", choice_checker("b", {
        "a": "The curve is almost flat after the second stage, and the deepest layer (`features`) is not the best: "
             "depth alone does not explain the scores.",
        "c": "`features` has 1,280 numbers per cell and is no better than the best block with an eighth of that (160): "
             "more features did not help here.",
        "d": "Not each stage's score: the random-weights control scores within about a point of the pretrained "
             "network at the first stage, so most of that stage's score comes from the architecture and the probe. "
             "What pretraining explains is the gap between the two curves, which broadly grows with depth (not at every stage).",
    }), "Look at how many numbers per cell each stage gives the probe, and what else changes between stages.",
        'answer = "b"  # 16 channels at features.1, 1,280 at the end: width and depth change together')
    stage_hint = f"the best stage, {best}"

    def check_few(answer: Any) -> str | None:
        value = float(answer)
        if abs(value - few) < 1e-6:
            return None
        if abs(value - float(np.asarray(probe)[stages.index(best)].mean())) < 1e-6:
            return "That is the 800-cell score from the table; train a new probe on the 100-cell split."
        return (f"{value:.3f} is not it: fit the probe on pooled[stages[best]][split['train']] of "
                "elpv_splits(cells.labels, n_train=100, seed=0) and score it on split['test'].")

    q3 = Question("q3", check_few, f"Copy the probe from section 5: same pipeline, {stage_hint}, the 100-cell split.",
                  "split = elpv_splits(cells.labels, n_train=100, seed=0)\n"
                  "clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, "
                  "class_weight=\"balanced\"))\n"
                  "clf.fit(pooled[best_stage][split[\"train\"]], cells.labels[split[\"train\"]])\n"
                  "answer = balanced_accuracy_score(cells.labels[split[\"test\"]], "
                  "clf.predict(pooled[best_stage][split[\"test\"]]))")
    return q2, q3


def _frozen_new_head_checker(model: Any) -> str | None:
    """Checker: a MobileNetV2 with a new 3-class head, everything else frozen."""
    from torch import nn

    if not isinstance(model, nn.Module) or not hasattr(model, "classifier"):
        return f"Expected a MobileNetV2 (from load_mobilenet_v2()), got {type(model).__name__}."
    last = model.classifier[-1]
    if all(p.requires_grad for p in model.parameters()) and last.out_features == 1000:
        return NOT_ATTEMPTED  # the model as load_mobilenet_v2() made it
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


def _threshold_checker(labels: Any, probs: Any, target: float = 0.9) -> Callable[[Any], str | None]:
    """Checker: the highest threshold whose recall on (labels, probs) is at least ``target``."""
    import numpy as np

    labels, probs = np.asarray(labels), np.asarray(probs)
    defects = np.sort(probs[labels == 1])[::-1]
    best = defects[int(np.ceil(target * len(defects))) - 1]  # the k-th most confident defect, k = target of them

    def recall_alarms(t: float) -> tuple[float, int]:
        flagged = probs >= t
        return float(flagged[labels == 1].mean()), int(flagged[labels == 0].sum())

    def check(answer: Any) -> str | None:
        t = float(answer)
        recall, alarms = recall_alarms(t)
        if recall < target:
            return f"At {t:.3f} the validation recall is {recall:.3f}, under {target}: lower the threshold."
        if alarms > recall_alarms(best)[1]:
            return (f"At {t:.3f} the recall is {recall:.3f} with {alarms} false alarms; a higher threshold still "
                    f"catches {target:.0%} of the defects with fewer ({recall_alarms(best)[1]}).")
        return None

    return check


def lesson03(test_labels: Any, predicted: Any, val_labels: Any, val_probs: Any
             ) -> tuple[Question, Question, Question, Question]:
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
                  "freeze(exercise_model) sets requires_grad=False everywhere; a layer created afterwards trains.",
                  "exercise_model = load_mobilenet_v2()\nfreeze(exercise_model)\n"
                  "exercise_model.classifier[-1] = nn.Linear(1280, 3)")
    q2 = Question("q2", check_recall, "Select the truly defective cells first, then count how many were predicted 1.",
                  "recall = np.mean(predicted[test_labels == 1] == 1)")
    q3 = Question("q3", check_recompute, "Look at what cached_features puts in its key (and what fingerprint hashes).",
                  "answer = False  # only the body's weights, the pixels, the size and the layer are in the key")
    q4 = Question("q4", _threshold_checker(val_labels, val_probs),
                  "Sort the defective validation cells' probabilities from high to low; the threshold is the one "
                  "at position ceil(0.9 x their number).",
                  "defects = np.sort(val_probs[val_labels == 1])[::-1]\n"
                  "threshold = defects[int(np.ceil(0.9 * len(defects))) - 1]")
    return q1, q2, q3, q4


def _top_blocks_checker(model: Any, k: int = 3) -> str | None:
    """Checker: only the top ``k`` blocks of ``features`` and the head are trainable."""
    expected = {n for n, _ in model.named_parameters()
                if n.startswith("classifier") or int(n.split(".")[1]) >= len(model.features) - k}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if len(trainable) == len(list(model.parameters())):
        return NOT_ATTEMPTED  # nothing frozen yet: the model as load_mobilenet_v2 made it
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


def lesson04(k: int = 3) -> tuple[Question, Thought, Question]:
    """The exercises of ``04_fine_tuning_images.ipynb``."""
    q1 = Question("q1", lambda model: _top_blocks_checker(model, k),
                  f"freeze(exercise_model.features[:-{k}]) freezes every block below the top {k}; the head stays "
                  "trainable.",
                  f"exercise_model = load_mobilenet_v2(num_classes=2)\nfreeze(exercise_model.features[:-{k}])")
    q2 = Thought("q2", "Choose what changes the picture but not the answer. Flips and half turns: a crack is a "
                 "defect whichever way it points, and a mirrored or half-turned cell still has horizontal busbars, "
                 "so it looks like a real cell with the same label. Quarter turns keep the label but make the "
                 "busbars run vertically, which none of the cells shown in this lesson does: whether they help is a question to "
                 "measure, not to assume (section 2.6's lever that trains on the 8 cached views lands within a point "
                 "of the recipe, though it also changes the epochs and the test-time views; section 3.1's ablation "
                 "'no quarter turns' measures them alone, on one seed: without them, averaging the 8 views at test "
                 "costs about 6 points, while the plain reading is 2 points higher, just past the yardstick, and its "
                 "ROC AUC 0.009 lower, within it; on a second split the 8-view average cost 1.4 points). Mild "
                 "brightness and "
                 "contrast changes: electroluminescence intensity varies between modules and exposures. Avoid: "
                 "colour jitter (the images are grey), large random crops (they can cut the crack out and leave a "
                 "'defective' label on a clean patch), blur or heavy downscaling (they may erase thin cracks: likely, not tested; section 3.1's 160 px ablation moved accuracy by 0.3 points on split 0 and 0.8 to 0.9 on split 1, within its yardstick), and "
                 "shear or perspective (the camera does not see cells that way). The loaders here use flips, "
                 "quarter turns, brightness and contrast.",
                 "For each augmentation ask: does the transformed cell still look like a real cell, and does it keep "
                 "its label?")
    q3 = Question("q3", _discriminative_checker,
                  "Four layer groups: ft_model.features[:7], ft_model.features[7:14], ft_model.features[14:] and "
                  "ft_model.classifier; one dict per group, {'params': list(group.parameters()), 'lr': rate}, the "
                  "rates rising from 1e-5 to 1e-3.",
                  "ft_model = load_mobilenet_v2(num_classes=2)\n"
                  "groups = [ft_model.features[:7], ft_model.features[7:14], ft_model.features[14:], ft_model.classifier]\n"
                  "rates = [1e-3 / 100 ** (1 - i / 3) for i in range(4)]  # 1e-5, 4.6e-5, 2.2e-4, 1e-3\n"
                  "ft_groups = [{'params': list(g.parameters()), 'lr': r} for g, r in zip(groups, rates)]")
    return q1, q2, q3


def lesson06_prediction() -> Thought:
    """The predict-first question of ``06_when_transfer_fails.ipynb``."""
    return Thought("q1", "A random first stage still computes local contrasts (random edge and blob filters), "
                   "averaged over the cell, so it could come close to the pretrained one at `features.1`. Deeper random "
                   "layers mix random mixtures, so they add little; the pretrained network's later layers were trained "
                   "to combine edges into textures and parts, so the gap should grow with depth. Only the measurement "
                   "says by how much.",
                   "Think of what a random 3x3 convolution over a grey cell still computes, and of what a random "
                   "layer does to the output of another random layer.")


def _channel_means_checker(model: Any, images: Any, size: int) -> Callable[[Any], str | None]:
    """Checker: the per-channel mean of the first convolution's output over ``images``."""
    import numpy as np
    import torch

    from course_utils.env import model_device
    from course_utils.vision import to_input

    with torch.no_grad():
        out = model.features[0][0](to_input(images, size).to(model_device(model)))
    expected = out.mean(dim=(0, 2, 3)).cpu().numpy()
    imagenet = model.features[0][1].running_mean.cpu().numpy()

    def check(answer: Any) -> str | None:
        value = np.asarray(answer.detach().cpu() if isinstance(answer, torch.Tensor) else answer, dtype=np.float64)
        if value.shape != expected.shape:
            return (f"Expected one number per channel, shape {expected.shape}, not {value.shape}: average over the "
                    "images, the height and the width (dims 0, 2 and 3), not over the channels.")
        if np.allclose(value, imagenet, atol=1e-4):
            return "That is the running mean stored from ImageNet; compute the mean of the convolution's output on the cells."
        if not np.allclose(value, expected, rtol=1e-3, atol=1e-4):
            return ("Not the mean of the first convolution's output: pass to_input(cells_256, SIZE) through "
                    "pretrained.features[0][0] (the convolution alone, before its BatchNorm).")
        return None

    return check


def lesson06(model: Any, images: Any, size: int) -> tuple[Question, Question]:
    """The end-of-lesson exercises of ``06_when_transfer_fails.ipynb``: ``model`` a pretrained MobileNetV2,
    ``images`` the cells of q2."""
    q2 = Question("q2", _channel_means_checker(model, images, size),
                  "Run the convolution alone under torch.no_grad(), then take .mean(dim=(0, 2, 3)).",
                  "with torch.no_grad():\n"
                  "    out = pretrained.features[0][0](to_input(cells_256, SIZE).to(device))\n"
                  "answer = out.mean(dim=(0, 2, 3))")
    q3 = Question("q3", choice_checker("b", {
        "a": "The poly test cells are *less* often defective than the mono ones (see the table of section 2), yet "
             "the probe flags most of them.",
        "c": "The same network, probed the same way, scores well on mono cells: capacity is not what changed.",
        "d": "It happens on every seed, with 380 poly test cells: not noise.",
    }), "Look at the example cells at the start of section 2: what does a functional poly cell look like?",
        'answer = "b"  # the grain of a poly cell looks like what marked a defect on mono cells')
    return q2, q3


def _lora_count_checker(answer: Any) -> str | None:
    """Checker: LoRA of rank 4 on MiniLM's query and value matrices (6 layers, 384 wide), plus the 384 -> 2 head."""
    layers, width, rank, head = 6, 384, 4, 384 * 2 + 2
    adapters = layers * 2 * (rank * width + width * rank)
    value = int(answer)
    if value == adapters + head:
        return None
    if value == adapters:
        return f"{value:,} are the adapters; the new head (384 x 2 weights and 2 biases) trains too."
    if value in (adapters // 2, adapters // 2 + head):
        return "Half of it: two matrices per layer (query and value), and each gains both A (r x 384) and B (384 x r)."
    if value in (layers * 2 * width * width, layers * 2 * width * width + head):
        return "That is the size of the frozen query and value matrices themselves; LoRA adds r x 384 + 384 x r to each."
    return "Count A (r x 384) and B (384 x r) for each of the 2 matrices in each of the 6 layers, then add the head."


def lesson06b() -> tuple[Question, Thought]:
    """The exercises of ``06b_how_little_to_train.ipynb``."""
    q1 = Question("q1", _lora_count_checker,
                  "Each adapted matrix gains A (r x 384) and B (384 x r); MiniLM has 6 layers with a query and a value "
                  "matrix each; the head is a 384 -> 2 linear layer with biases.",
                  "rank = 4\nanswer = 6 * 2 * (rank * 384 + 384 * rank) + (384 * 2 + 2)  # 37,634")
    q2 = Thought("q2", "Measure first, on each customer's own held-out reviews. The frozen encoder with one head per "
                 "customer costs 3 KB each, one pass of the shared encoder serves every customer's head, and it was 2 "
                 "to 4 points behind LoRA and full fine-tuning here. If that gap matters for a "
                 "customer, a LoRA adapter costs about 150 KB (rank 4) or 580 KB (rank 16) per customer on one shared "
                 "base model kept in memory once, switched per request and not merged (merging would make 50 whole "
                 "models again); here it came within about a point of full fine-tuning. Full fine-tuning 50 times "
                 "stores 50 models of 86 MB, for about a point over LoRA r=4 and nothing over r=16 in this lesson.",
                 "Look at the table's columns beyond accuracy: what must be stored per customer, and what one "
                 "shared copy of the base model saves.")
    return q1, q2


def _joint_angles_checker(answer: Any) -> str | None:
    """Checker: joint angles that put the gripper at (10 cm, 25 cm), either elbow."""
    import numpy as np

    from course_utils.sim import forward_kinematics

    q = np.asarray(answer, dtype=float)
    if q.shape != (2,):
        return f"Expected two angles (shoulder, elbow), got an array of shape {q.shape}."
    miss = float(np.linalg.norm(forward_kinematics(q) - [0.10, 0.25]))
    if miss < 1e-3:
        return None
    if np.linalg.norm(forward_kinematics(np.radians(q)) - [0.10, 0.25]) < 1e-3:
        return "These look like degrees: numpy's trigonometry works in radians (np.radians converts)."
    return (f"These angles put the gripper {100 * miss:.1f} cm from the cube. Elbow: arccos of (r^2 - L1^2 - L2^2) / "
            "(2 L1 L2); shoulder: the angle to the point minus the angle the bent elbow adds.")


def lesson07(test_error: Any) -> tuple[Question, Question, Thought]:
    """The exercises of ``07_robot_reaching.ipynb``; ``test_error`` is the mean test error (cm), approach x budget."""
    scratch, frozen = test_error.loc["scratch"], test_error.loc["frozen, spatial softmax"]
    tuned = test_error.loc["fine-tuned block 6"]
    caught_up = [int(n) for n in test_error.columns if all(scratch[m] <= frozen[m] for m in test_error.columns if m >= n)]
    right = caught_up[0] if caught_up else None

    def budget_checker(answer: Any) -> str | None:
        if right is None:
            return "In this run scratch never caught up: no budget is right; say so in the discussion."
        value = int(answer)
        if value == right:
            return None
        if value not in test_error.columns:
            return f"Answer with one of the budgets in the table: {', '.join(str(n) for n in test_error.columns)}."
        if value < right:
            return (f"At {value} frames scratch's mean error is {scratch[value]:.2f} cm, the frozen features' "
                    f"{frozen[value]:.2f} cm: not yet.")
        return "It was already at or below them at a smaller budget; look one column to the left."

    q1 = Question("q1", _joint_angles_checker,
                  "r^2 = x^2 + y^2; cos(q2) = (r^2 - L1^2 - L2^2) / (2 L1 L2); q1 = atan2(y, x) - atan2(L2 sin q2, "
                  "L1 + L2 cos q2).",
                  "x, y = 0.10, 0.25\nq2 = -np.arccos((x**2 + y**2 - L1**2 - L2**2) / (2 * L1 * L2))\n"
                  "answer = np.array([np.arctan2(y, x) - np.arctan2(L2 * np.sin(q2), L1 + L2 * np.cos(q2)), q2])")
    q2 = Question("q2", budget_checker, "Compare the rows 'scratch' and 'frozen, spatial softmax' column by column.",
                  f"answer = {right}")
    q3 = Thought("q3", "Section 5 is the evidence: under cube colours and a light it never saw, plain scratch's "
                 "error grew several-fold while the frozen and fine-tuned ImageNet features held (new colours) or "
                 "degraded far less (dim light). Scratch trained with colour and light jitter cut its error under both "
                 "shifts, but at the lesson's steps it stayed behind them in centimetres, on ordinary frames as "
                 "under the shifts. So ship the fine-tuned "
                 "block (or the frozen features, if training time matters), label a few hundred frames or more (its "
                 f"error at 1,600 frames, {tuned[1600]:.2f} cm, is below {tuned[400]:.2f} at 400 on the mean, though "
                 "three seeds do not resolve that fall), and before trusting it, label "
                 "frames of the conditions you fear (new colours, the night shift's light) and measure the error and "
                 "the reaching success on them, not only on frames like the training ones. If the arm will look again "
                 "while it moves (section 4.1), label frames with the arm near and over the parts too: the ImageNet "
                 "models misread those.",
                 "Section 5 compares the approaches under conditions training never showed.")
    return q1, q2, q3
