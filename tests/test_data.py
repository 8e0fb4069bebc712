import logging

import pytest
from datasets import Dataset

from unlearn_peft.data import (
    CONVERSATIONAL,
    LANGUAGE_MODELING,
    PROMPT_COMPLETION,
    QUESTION_ANSWER,
    ForgetRetainCollator,
    ForgetRetainDataset,
    UnlearningBatch,
    detect_format,
    keep_wrong_answer_tokens,
    paraphrase_augmentation,
    perturbed_retain_augmentation,
    tokenize_dataset,
    wrong_answer_positions,
)
from unlearn_peft.losses import IGNORE_INDEX


def _answer_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t in example["labels"] if t != IGNORE_INDEX])


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"prompt": "a", "completion": "b"}], PROMPT_COMPLETION),
        ([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}], CONVERSATIONAL),
        ([{"text": "a"}], LANGUAGE_MODELING),
        ([{"question": "a", "answer": "b", "paraphrased_answer": "c"}], QUESTION_ANSWER),
    ],
)
def test_detect_format(rows, expected):
    assert detect_format(Dataset.from_list(rows), "forget_dataset") == expected


def test_unknown_columns_name_the_supported_sets():
    with pytest.raises(ValueError, match=r"forget_dataset has columns \['input', 'output'\].*question \+ answer"):
        detect_format(Dataset.from_list([{"input": "a", "output": "b"}]), "forget_dataset")


def test_question_answer_uses_chat_template_and_masks_prompt(tokenizer):
    dataset = Dataset.from_list([{"question": "Who wrote Hamlet?", "answer": "William Shakespeare."}])
    example = tokenize_dataset(dataset, tokenizer, max_length=None, name="forget_dataset")[0]
    full = tokenizer.decode(example["input_ids"])
    assert full.startswith("<|im_start|>system") and "<|im_start|>user\nWho wrote Hamlet?<|im_end|>" in full
    assert _answer_text(tokenizer, example) == "William Shakespeare.<|im_end|>\n"
    prompt_length = example["labels"].index(next(t for t in example["labels"] if t != IGNORE_INDEX))
    assert tokenizer.decode(example["input_ids"][:prompt_length]).endswith("<|im_start|>assistant\n")


def test_prompt_completion_strings_get_eos_and_lm_counts_all(tokenizer):
    example = tokenize_dataset(
        Dataset.from_list([{"prompt": "The capital of France is", "completion": " Paris."}]),
        tokenizer,
        max_length=None,
        name="forget_dataset",
    )[0]
    assert _answer_text(tokenizer, example) == " Paris." + tokenizer.eos_token
    lm = tokenize_dataset(Dataset.from_list([{"text": "Paris is big."}]), tokenizer, max_length=None, name="x")[0]
    assert lm["labels"] == lm["input_ids"] and lm["input_ids"][-1] == tokenizer.eos_token_id


def test_conversational_counts_only_the_last_assistant_message(tokenizer):
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome."},
    ]
    example = tokenize_dataset(Dataset.from_list([{"messages": messages}]), tokenizer, max_length=None, name="f")[0]
    assert _answer_text(tokenizer, example) == "Rome.<|im_end|>\n"
    with pytest.raises(ValueError, match=r"forget_dataset row 0: the last message .* role 'user'"):
        tokenize_dataset(
            Dataset.from_list([{"messages": messages[:1]}]), tokenizer, max_length=None, name="forget_dataset"
        )


def test_prompt_completion_messages_use_the_template(tokenizer):
    row = {"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}]}
    example = tokenize_dataset(Dataset.from_list([row]), tokenizer, max_length=None, name="f")[0]
    assert _answer_text(tokenizer, example) == "4<|im_end|>\n"


def test_truncation_warns_once_with_the_count(tokenizer, caplog):
    rows = [{"question": "Q?", "answer": "word " * 200}, {"question": "Q?", "answer": "short"}] * 2
    with caplog.at_level(logging.WARNING, logger="unlearn_peft.data"):
        tokenized = tokenize_dataset(Dataset.from_list(rows), tokenizer, max_length=48, name="forget_dataset")
    warnings = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert warnings == [
        "forget_dataset: 2 of 4 rows are longer than max_length=48 tokens and were truncated from the right."
    ]
    assert max(len(ids) for ids in tokenized["input_ids"]) == 48 and len(tokenized) == 4


def test_row_without_answer_tokens_after_truncation_is_an_error(tokenizer):
    with pytest.raises(ValueError, match=r"forget_dataset row 0: no answer token is left.*Raise max_length"):
        tokenize_dataset(
            Dataset.from_list([{"question": "long " * 100, "answer": "a"}]),
            tokenizer,
            max_length=20,
            name="forget_dataset",
        )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "", "answer": "x"}, r"retain_dataset row 1: column 'question' is empty"),
        ({"question": "q", "answer": None}, r"retain_dataset row 1: column 'answer' must be a string, got NoneType"),
    ],
)
def test_bad_values_name_row_and_column(tokenizer, row, message):
    dataset = Dataset.from_list([{"question": "fine", "answer": "fine"}, row])
    with pytest.raises(ValueError, match=message):
        tokenize_dataset(dataset, tokenizer, max_length=None, name="retain_dataset")


def test_augmentation_is_deterministic_and_complete(tofu_forget):
    forget = Dataset.from_list(tofu_forget[:3])
    paraphrased = paraphrase_augmentation(forget)
    assert len(paraphrased) == 6
    assert paraphrased[0] == {"question": tofu_forget[0]["question"], "answer": tofu_forget[0]["paraphrased_answer"]}
    assert paraphrased[1] == {"question": tofu_forget[0]["paraphrased_question"], "answer": tofu_forget[0]["answer"]}
    perturbed = perturbed_retain_augmentation(forget)
    expected = [(r["question"], a) for r in tofu_forget[:3] for a in dict.fromkeys(r["perturbed_answer"])]
    assert [(r["question"], r["answer"]) for r in perturbed] == expected
    truths = [
        [r["answer"], r["paraphrased_answer"]] for r in tofu_forget[:3] for _ in dict.fromkeys(r["perturbed_answer"])
    ]
    assert perturbed["true_answers"] == truths
    assert perturbed_retain_augmentation(forget)[:] == perturbed[:]
    plain = Dataset.from_list([{"question": "q", "answer": "a"}])
    assert paraphrase_augmentation(plain) is None and perturbed_retain_augmentation(plain) is None


@pytest.mark.parametrize(
    ("perturbed", "true_answers", "expected"),
    [
        # Shared beginning [1, 2, 3] and the first token after it (same context as the truth's 4), then 8 is wrong,
        # and 5 is shared again.
        ([1, 2, 3, 9, 8, 5], [[1, 2, 3, 4, 5]], [False, False, False, False, True, False]),
        # No shared beginning: only the first token's context is the truth's; [4, 5] is a shared block.
        ([7, 8, 4, 5], [[1, 4, 5]], [False, True, False, False]),
        # Two true answers: a token shared with either is not wrong.
        ([7, 8, 9], [[7, 1], [2, 9]], [False, False, False]),
        ([6, 6], [], [True, True]),
        ([1, 2], [[1, 2, 3]], [False, False]),
    ],
)
def test_wrong_answer_positions_by_hand(perturbed, true_answers, expected):
    assert wrong_answer_positions(perturbed, true_answers) == expected


def test_perturbed_retain_rows_label_only_their_wrong_tokens(tokenizer, caplog):
    rows = [
        {
            "question": "Who wrote 'Blue Rain'?",
            "answer": "Blue Rain was written by Ada Lind.",
            "perturbed_answer": [
                "Blue Rain was written by Ada Lind.",
                "Blue Rain was written by Tomas Berg, a sailor.",
            ],
            "paraphrased_answer": "Ada Lind is the author of Blue Rain.",
        },
    ]
    perturbed = perturbed_retain_augmentation(Dataset.from_list(rows))

    def tokenize(dataset, name):
        return tokenize_dataset(dataset, tokenizer, max_length=None, name=name)

    with caplog.at_level(logging.WARNING):
        kept = keep_wrong_answer_tokens(perturbed, tokenize, "retain_dataset (perturbed-answer augmentation)")
    assert "1 of 2 perturbed answers have no wrong token" in caplog.text
    plain = tokenize(
        Dataset.from_list([{"question": rows[0]["question"], "answer": rows[0]["perturbed_answer"][1]}]), "x"
    )
    assert kept["input_ids"] == plain["input_ids"]
    answer = [label for label in plain["labels"][0] if label != IGNORE_INDEX]
    truth_rows = [
        {"question": rows[0]["question"], "answer": rows[0][key]} for key in ("answer", "paraphrased_answer")
    ]
    truths = [
        [t for t in labels if t != IGNORE_INDEX] for labels in tokenize(Dataset.from_list(truth_rows), "y")["labels"]
    ]
    # Reference: the answer's tokens with those not wrong (by the hand-checked rule above) left out.
    wrong = wrong_answer_positions(answer, truths)
    labelled = [label for label in kept["labels"][0] if label != IGNORE_INDEX]
    assert labelled == [token for token, is_wrong in zip(answer, wrong, strict=True) if is_wrong]
    text = tokenizer.decode(labelled)
    assert "Berg" in text and "sailor" in text and "Blue Rain" not in text and "written" not in text


def test_forget_retain_pairing_cycles_and_walks_through_retain():
    forget = Dataset.from_dict({"input_ids": [[i] for i in range(3)], "labels": [[i] for i in range(3)]})
    retain = Dataset.from_dict({"input_ids": [[10 + i] for i in range(5)], "labels": [[10 + i] for i in range(5)]})
    paired = ForgetRetainDataset(forget, retain)
    assert len(paired) == 3
    seen = []
    for epoch in range(2):
        paired.set_epoch(epoch)
        seen += [paired[i]["retain"]["input_ids"][0] for i in range(3)]
    assert seen == [10, 11, 12, 13, 14, 10]


def test_collator_pads_forget_and_retain_to_one_length():
    collator = ForgetRetainCollator(pad_token_id=0)
    batch = collator(
        [
            {
                "forget": {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "reference_log_prob": -1.5},
                "retain": {"input_ids": [8], "labels": [8]},
            },
            {
                "forget": {"input_ids": [5], "labels": [5], "reference_log_prob": -2.0},
                "retain": {"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]},
            },
        ]
    )
    assert isinstance(batch, UnlearningBatch) and batch.refusal is None and len(batch) == 2
    assert batch.forget.input_ids.shape == batch.retain.input_ids.shape == (2, 4)
    assert batch.forget.input_ids[1].tolist() == [5, 0, 0, 0]
    assert batch.forget.labels[1].tolist() == [5, -100, -100, -100]
    assert batch.forget.attention_mask[0].tolist() == [1, 1, 1, 0]
    assert batch.retain.attention_mask[0].tolist() == [1, 0, 0, 0]
    assert batch.retain.labels[0].tolist() == [8, -100, -100, -100]
    assert batch.forget.reference_log_prob.tolist() == [-1.5, -2.0] and batch.retain.reference_log_prob is None
    assert batch.num_tokens() == 3 + 1 + 1 + 4


def test_collator_adds_the_refusal_group_and_pads_it_with_the_others():
    forget_row = {
        "input_ids": [5, 6],
        "labels": [-100, 6],
        "refusal_input_ids": [5, 7, 7, 7, 7],
        "refusal_labels": [-100, 7, 7, 7, 7],
    }
    batch = ForgetRetainCollator(pad_token_id=9, pad_to_multiple_of=4)([{"forget": forget_row}])
    assert batch.retain is None
    assert batch.forget.input_ids.tolist() == [[5, 6, 9, 9, 9, 9, 9, 9]]
    assert batch.refusal.input_ids.tolist() == [[5, 7, 7, 7, 7, 9, 9, 9]]
    assert batch.refusal.labels.tolist() == [[-100, 7, 7, 7, 7, -100, -100, -100]]
    assert list(batch.groups()) == ["forget", "refusal"]


def test_collator_refuses_a_batch_where_only_some_examples_have_a_retain_row():
    with pytest.raises(ValueError, match="'retain' row"):
        ForgetRetainCollator(pad_token_id=0)(
            [
                {"forget": {"input_ids": [1], "labels": [1]}, "retain": {"input_ids": [2], "labels": [2]}},
                {"forget": {"input_ids": [1], "labels": [1]}},
            ]
        )


def test_collator_concatenates_the_plausible_token_sets_in_answer_token_order():
    retain_rows = [
        {"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "plausible_token_ids": [[4, 9], [2]]},
        {"input_ids": [1, 5], "labels": [-100, 5], "plausible_token_ids": [[5, 6, 7]]},
    ]
    forget = {"input_ids": [1], "labels": [1]}
    batch = ForgetRetainCollator(pad_token_id=0)([{"forget": forget, "retain": row} for row in retain_rows])
    assert batch.retain.plausible_token_ids.tolist() == [[4, 9, -1], [2, -1, -1], [5, 6, 7]]
    assert batch.forget.plausible_token_ids is None
    # one set per counted token, in the row-major order of AnswerTokens
    assert batch.retain.plausible_token_ids.shape[0] == int(batch.retain.labels[:, 1:].ne(-100).sum())
