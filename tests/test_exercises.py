"""Every checker: the reference answer passes, a typical wrong answer gets the intended feedback."""

import pytest

from course_utils.exercises import ____, lesson05
from course_utils.text import load_tokenizer, new_classifier


@pytest.fixture(scope="module")
def questions():
    return lesson05(load_tokenizer())


def test_blank_says_not_attempted(questions, capsys):
    q1, q2, _ = questions
    q1.check(____)
    q2.check()
    out = capsys.readouterr().out
    assert out.count("Not attempted yet: replace ____ with your answer") == 2


def test_q1_reference_and_wrong_answers(questions):
    q1, _, _ = questions
    tok = load_tokenizer()
    ids = tok("An unwatchable mess.")["input_ids"]
    assert q1.feedback(ids) == "q1: Correct!"
    assert "word pieces (strings)" in q1.feedback(tok.tokenize("An unwatchable mess."))
    no_special = q1.feedback(ids[1:-1])
    assert f"{len(ids) - 2} ids, but the [CLS] (101) and [SEP] (102) ids are missing" in no_special


def test_q2_reference_and_wrong_answers(questions):
    _, q2, _ = questions
    model = new_classifier(seed=0)
    assert "Not attempted yet" in q2.feedback(model)  # the exercise cell's model, not changed yet
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("classifier")
    assert q2.feedback(model) == "q2: Correct!"
    for param in model.bert.encoder.parameters():  # typical slip: freeze the encoder, forget the rest
        param.requires_grad = False
    for param in model.bert.embeddings.parameters():
        param.requires_grad = True
    text = q2.feedback(model)
    assert "parameters outside the head are still trainable (in embeddings)" in text
    assert "expected only the head's 770" in text
    for param in model.parameters():
        param.requires_grad = False
    assert "Nothing is trainable" in q2.feedback(model)


def test_a_crashing_answer_gets_feedback_not_a_traceback(questions):
    q1, _, _ = questions
    assert "checking your answer raised TypeError" in q1.feedback(42)


def test_a_blank_inside_a_tuple_or_dict_says_not_attempted(questions):
    q1, _, _ = questions
    for answer in [(____, [1, 2]), [1, ____], {"train": ____}]:
        assert "Not attempted yet" in q1.feedback(answer)


def test_open_question_shows_its_model_answer_once_answered(questions, capsys):
    _, _, q3 = questions
    q3.check()
    q3.check("more data")
    assert not q3.done
    q3.check("Label more sarcastic reviews and measure on a separate set of them.")
    out = capsys.readouterr().out
    assert out.count("Not attempted yet") == 1 and "at least 5 words" in out
    assert "Compare yours with this model answer" in out and q3.done


def test_lesson06b():
    from course_utils.exercises import lesson06b

    q1, q2 = lesson06b()
    assert q1.feedback(37_634) == "q1: Correct!"
    assert "the new head" in q1.feedback(36_864)
    assert "Half of it" in q1.feedback(19_202)
    assert "frozen query and value matrices" in q1.feedback(1_769_472)
    assert "Not attempted yet" in q1.feedback(____)
    assert "model answer" in q2.feedback("LoRA, because each customer needs only a small adapter file.")


def test_grade_passes_right_answers_and_fails_others_with_the_feedback(questions):
    q1, _, q3 = questions
    q1.grade(load_tokenizer()("An unwatchable mess.")["input_ids"])
    for wrong in (____, [101, 102], ["an"]):
        with pytest.raises(AssertionError, match="q1: Not"):
            q1.grade(wrong)
    q3.grade("Label more sarcastic reviews and measure on them.")  # an open question: answered in a sentence
    with pytest.raises(AssertionError, match="at least 5 words"):
        q3.grade("no idea")


def test_lesson07_checkers():
    import numpy as np
    import pandas as pd

    from course_utils.exercises import lesson07
    from course_utils.sim import inverse_kinematics

    table = pd.DataFrame({25: [5.6, 3.3, 4.3], 100: [1.5, 2.1, 1.5], 400: [0.8, 1.3, 0.93], 1600: [0.8, 1.1, 0.69]},
                         index=["scratch", "frozen, spatial softmax", "fine-tuned block 6"])
    q1, q2, q3 = lesson07(table)
    assert "0.69 cm, is below 0.93 at 400" in q3.solution_text  # the model answer reads the lesson's own table
    q = inverse_kinematics(np.array([0.10, 0.25]))
    assert q1.feedback(q) == "q1: Correct!"
    assert "look like degrees" in q1.feedback(np.degrees(q))
    assert "cm from the cube" in q1.feedback(q + 0.3)
    assert q2.feedback(100) == "q2: Correct!"
    assert "not yet" in q2.feedback(25) and "smaller budget" in q2.feedback(400)
    assert "one of the budgets" in q2.feedback(50)
