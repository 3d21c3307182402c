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


@dataclass
class Question:
    """One exercise: ``checker(answer)`` returns None when right, else the feedback sentence."""

    name: str
    checker: Callable[[Any], str | None]
    hint_text: str
    solution_text: str

    def feedback(self, answer: Any) -> str:
        """The feedback text for ``answer``, as ``check()`` prints it."""
        if answer is ____ or isinstance(answer, _Blank):
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


def count_trainable(model) -> int:
    """The number of parameters that will be updated by training."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


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
