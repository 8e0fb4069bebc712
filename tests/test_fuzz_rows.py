"""Property-based tests over dataset rows of every supported format (issue #9, "Reliability").

Hypothesis generates datasets of valid rows and corrupts some of them: missing or extra columns, empty strings,
None, wrong types, mixed formats in one dataset, enormous rows, non-ASCII and control characters, lone surrogates,
special-token text, bad chat messages. Every case must either tokenise (and train) with exactly one example per row,
each with at least one loss token, or raise one `ValueError`/`TypeError` whose message names the dataset, the row and
the column. Each generated case knows which rows it broke and whether the break must raise (`Fault.fatal`), so a bad
row that trains, a good row that raises and an error that blames the wrong row all fail the test.

The cases tried per category are counted and printed when the module finishes (even without `pytest -s`). A case
with two faults counts under both categories, so a harmless fault (e.g. non-ASCII text) shows clear errors that came
from the other fault of its case.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearn_peft import UnlearnConfig, UnlearnTrainer
from unlearn_peft.data import (
    CONVERSATIONAL,
    FORMAT_COLUMNS,
    LANGUAGE_MODELING,
    PROMPT_COMPLETION,
    QUESTION_ANSWER,
    as_dataset,
    paraphrase_augmentation,
    perturbed_retain_augmentation,
    tokenize_dataset,
)
from unlearn_peft.losses import IGNORE_INDEX

FORMATS = (QUESTION_ANSWER, PROMPT_COMPLETION, CONVERSATIONAL, LANGUAGE_MODELING)
TOKENIZE_MAX_LENGTH = 512  # well above any valid generated row (≤ 5 messages of ≤ 12 characters, ≤ 4 tokens each)
TRAIN_MAX_LENGTH = 256  # trainer level: ≤ 8 characters per value
ENORMOUS_CHARS = 20_000  # thousands of tokens whatever the characters: far above both max_lengths

# (level, category) -> Counter(tried=, clear_error=, trained=); printed at the end of the module.
CASE_COUNTS: dict[tuple[str, str], Counter] = defaultdict(Counter)

# ---------------------------------------------------------------------------------------------------- values

NON_ASCII = [
    "東京は日本の首都です。",
    "서울은 한국의 수도입니다",
    "🙂👍🏽🇫🇷 emoji",
    "مرحبا بالعالم",
    "שָׁלוֹם עוֹלָם",
    "Ünïcödé façade naïve",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙",
    "e\u0301 combining",
    "Ελληνικά και русский",
]
CONTROL = [
    "a\x00b",
    "\x1b[31mred\x1b[0m",
    "line\r\nbreak\r",
    "zero\u200bwidth\u200djoiner",
    "\ufeffbyte order mark",
    "\u202eright-to-left override",
    "tab\tbell\x07",
    "\x7fdelete\x08backspace",
    "\u2028line separator\u2029",
]
SPECIAL_TOKEN_TEXT = ["before <|im_end|> after", "<|endoftext|> x", "<|im_start|>assistant\nfake", "x <|im_start|>"]
LONE_SURROGATES = ["bad \ud800 text", "\udcff", "ok\udfffok"]
BLANK = ["", " ", "\n\t ", "\u3000"]
BAD_ROLES = ["human", "gpt", "bot", "Assistant", "", None, 5, "from"]
EXTRA_COLUMNS = ["id", "source", "label", "metadata", "x_notes"]


def text(max_size: int) -> st.SearchStrategy[str]:
    """A valid value: any non-blank UTF-8 text (no surrogates)."""
    return st.text(st.characters(codec="utf-8"), min_size=1, max_size=max_size).filter(lambda s: s.strip() != "")


CONTROL_TEXT = st.one_of(
    st.sampled_from(CONTROL),
    st.text(
        st.sampled_from(
            ["\x00", "\x1b", "\r", "\n", "\t", "\u200b", "\u200d", "\u202e", "\ufeff", "\x7f", "\x85", "a"]
        ),
        min_size=1,
        max_size=12,
    ).filter(lambda s: s.strip() != ""),
)
WRONG_TYPES = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.sampled_from(["a", "role", "content"]), st.integers(-5, 5), max_size=2),
    st.binary(max_size=4),
    st.booleans(),
)
EXTRA_VALUES = st.one_of(
    st.none(),
    st.integers(-(2**31), 2**31),
    st.floats(),
    text(8),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(-5, 5), max_size=2),
    st.binary(max_size=4),
    st.booleans(),
)

# ---------------------------------------------------------------------------------------------------- cases


@dataclass
class Fault:
    """One corruption: which row and column an error must name, and whether the case must raise."""

    category: str
    row: int | None  # None: the error may name any row
    column: str | None  # base column name the error must quote; None: any
    fatal: bool | None  # True: must raise; False: must train; None: either


@dataclass
class Case:
    row_format: str
    rows: list[Any]
    faults: list[Fault] = field(default_factory=list)

    @property
    def categories(self) -> set[str]:
        return {fault.category for fault in self.faults} or {"valid"}

    @property
    def must_raise(self) -> bool:
        return any(fault.fatal for fault in self.faults)

    @property
    def may_raise(self) -> bool:
        return any(fault.fatal is not False for fault in self.faults)


def _messages(draw, values, turns: int) -> list[dict[str, Any]]:
    messages = [{"role": "system", "content": draw(values)}] if draw(st.booleans()) else []
    for _ in range(turns):
        messages += [{"role": "user", "content": draw(values)}, {"role": "assistant", "content": draw(values)}]
    return messages


def _valid_row(draw, row_format: str, values, pc_kind: str) -> dict[str, Any]:
    if row_format == QUESTION_ANSWER:
        return {"question": draw(values), "answer": draw(values)}
    if row_format == LANGUAGE_MODELING:
        return {"text": draw(values)}
    if row_format == CONVERSATIONAL:
        return {"messages": _messages(draw, values, draw(st.integers(1, 2)))}
    if pc_kind == "messages":
        return {
            "prompt": _messages(draw, values, 0) + [{"role": "user", "content": draw(values)}],
            "completion": [{"role": "assistant", "content": draw(values)}],
        }
    return {"prompt": draw(values), "completion": draw(values)}


def _text_fields(row: dict[str, Any], row_format: str) -> list[tuple[tuple, str, bool]]:
    """(path, column the library names, is the value on the prompt side) of every text value of a valid row."""
    fields = []
    for column in FORMAT_COLUMNS[row_format]:
        value = row[column]
        answer_side = column in ("answer", "completion", "text")
        if isinstance(value, list):
            for position in range(len(value)):
                last = position == len(value) - 1
                fields.append(
                    ((column, position, "content"), column, not (answer_side or (column == "messages" and last)))
                )
        else:
            fields.append(((column,), column, not answer_side))
    return fields


def _set(row: dict[str, Any], path: tuple, value: Any) -> None:
    target = row
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _enormous(draw) -> str:
    base = draw(st.one_of(text(12), st.sampled_from(NON_ASCII + CONTROL)))
    return ((base + " ") * (ENORMOUS_CHARS // (len(base) + 1) + 1))[:ENORMOUS_CHARS]


ROW_OPS = (
    "missing_column",
    "extra_column",
    "empty_string",
    "none",
    "wrong_type",
    "enormous",
    "non_ascii",
    "control_chars",
    "lone_surrogate",
    "special_tokens",
    "untokenizable",
)
MESSAGE_OPS = ("wrong_role", "missing_content", "last_not_assistant")
LAST_OPS = ("mixed_formats", "row_not_dict")  # replace whole rows: applied after the others


def _categories(row_format: str, pc_kind: str) -> tuple[str, ...]:
    categories = ROW_OPS + LAST_OPS + ("extra_column_mixed_types",)
    if row_format == CONVERSATIONAL:
        categories += MESSAGE_OPS + ("only_assistant",)
    if row_format == PROMPT_COMPLETION:
        categories += ("mixed_kinds",) + (MESSAGE_OPS if pc_kind == "messages" else ())
    if row_format == QUESTION_ANSWER:
        categories += ("augmentation_columns", "augmentation_wrong_type")
    return categories


def _apply(draw, case: Case, category: str, index: int, values, pc_kind: str) -> None:
    row, row_format = case.rows[index], case.row_format
    fields = _text_fields(row, row_format)
    path, column, prompt_side = draw(st.sampled_from(fields))
    message_columns = [c for c in FORMAT_COLUMNS[row_format] if isinstance(row[c], list)]

    def fault(fatal: bool | None, fault_column: str | None = column, fault_row: int | None = index) -> None:
        case.faults.append(Fault(category, fault_row, fault_column, fatal))

    if category == "missing_column":
        column = draw(st.sampled_from(FORMAT_COLUMNS[row_format]))
        del row[column]
        fault(True, column)
    elif category == "extra_column":
        row[draw(st.sampled_from(EXTRA_COLUMNS))] = draw(EXTRA_VALUES)
        fault(False)
    elif category == "empty_string":
        _set(row, path, draw(st.sampled_from(BLANK)))
        fault(True)
    elif category == "none":
        if message_columns and draw(st.booleans()):
            column = draw(st.sampled_from(message_columns))
            path = (column,)
        _set(row, path, None)
        fault(True, column)
    elif category == "wrong_type":
        if message_columns and draw(st.booleans()):
            column = draw(st.sampled_from(message_columns))
            path = (column,)
        _set(row, path, draw(WRONG_TYPES))
        fault(True, column)
    elif category == "enormous":
        _set(row, path, _enormous(draw))
        fault(prompt_side)  # a prompt that fills max_length leaves no answer token: an error; an answer truncates
    elif category in ("non_ascii", "control_chars", "special_tokens"):
        pool = {"non_ascii": st.sampled_from(NON_ASCII), "control_chars": CONTROL_TEXT}
        _set(row, path, draw(pool.get(category, st.sampled_from(SPECIAL_TOKEN_TEXT))))
        fault(False)
    elif category == "untokenizable":  # control bytes missing from SmolLM2's byte-level vocabulary
        _set(row, path, draw(st.text(st.sampled_from("\x04\x06\x13\x14\x16"), min_size=1, max_size=4)))
        fault(True)
    elif category == "lone_surrogate":
        _set(row, path, draw(st.sampled_from(LONE_SURROGATES)))
        fault(True)
    elif category == "wrong_role":
        column = draw(st.sampled_from(message_columns))
        message = draw(st.sampled_from(row[column]))
        role = draw(st.sampled_from(BAD_ROLES))
        if role == "from":  # ShareGPT's schema
            message.clear()
            message.update({"from": "human", "value": draw(values)})
        else:
            message["role"] = role
        fault(True, column)
    elif category == "missing_content":
        column = draw(st.sampled_from(message_columns))
        del draw(st.sampled_from(row[column]))["content"]
        fault(True, column)
    elif category == "last_not_assistant":
        column = "messages" if row_format == CONVERSATIONAL else "completion"
        if draw(st.booleans()):
            row[column][-1]["role"] = draw(st.sampled_from(["user", "system"]))
        else:
            row[column].append({"role": "user", "content": draw(values)})
        fault(True, column)
    elif category == "only_assistant":
        row["messages"] = [{"role": "assistant", "content": draw(values)}]
        fault(True, "messages")
    elif category == "mixed_kinds":
        if pc_kind == "strings":
            row["prompt"] = [{"role": "user", "content": row["prompt"]}]
            row["completion"] = [{"role": "assistant", "content": row["completion"]}]
        else:
            row["prompt"], row["completion"] = row["prompt"][-1]["content"], row["completion"][-1]["content"]
        fault(None, "prompt")  # fatal only when the dataset ends up holding both kinds: decided in `_finish`
    elif category == "augmentation_wrong_type":
        column = draw(st.sampled_from(["paraphrased_answer", "paraphrased_question", "perturbed_answer"]))
        bad = draw(WRONG_TYPES.filter(lambda v: not isinstance(v, list) or v))
        row[column] = [draw(values), bad] if column == "perturbed_answer" and draw(st.booleans()) else bad
        fault(True, column)
    else:
        raise AssertionError(category)


def _replace_row(draw, case: Case, category: str, index: int, values) -> None:
    case.faults = [f for f in case.faults if f.row != index]  # earlier faults of this row no longer exist
    if category == "row_not_dict":
        case.rows[index] = draw(st.sampled_from(["question? answer.", None, 5, [("question", "q")], ("x",)]))
        case.faults.append(Fault(category, index, None, True))
    else:
        other = draw(st.sampled_from([f for f in FORMATS if f != case.row_format]))
        case.rows[index] = _valid_row(draw, other, values, draw(st.sampled_from(["strings", "messages"])))
        case.rows[index]["__format__"] = other  # removed in `_finish`
        case.faults.append(Fault(category, None, None, None))


def _finish(case: Case) -> None:
    """Decide the faults whose fatality depends on the whole dataset."""
    formats = set()
    for row in case.rows:
        if isinstance(row, dict):
            formats.add(row.pop("__format__", case.row_format))
    for fault in case.faults:
        if fault.category == "mixed_formats":
            fault.fatal = len(formats) > 1
    kinds = {
        isinstance(row.get("prompt"), list)
        for row in case.rows
        if isinstance(row, dict) and "prompt" in row and "completion" in row
    }
    for fault in case.faults:
        if fault.category == "mixed_kinds":
            fault.fatal = len(kinds) > 1


@st.composite
def cases(draw, formats=FORMATS, max_rows: int = 5, max_chars: int = 12, max_faults: int = 2) -> Case:
    row_format = draw(st.sampled_from(formats))
    pc_kind = draw(st.sampled_from(["strings", "messages"]))
    values = text(max_chars)
    rows = [_valid_row(draw, row_format, values, pc_kind) for _ in range(draw(st.integers(1, max_rows)))]
    case = Case(row_format, rows)
    # One case in six is left valid; the others get one or more faults.
    count = draw(st.sampled_from([0] + [1] * 3 + [max_faults] * 2))
    categories = [draw(st.sampled_from(_categories(row_format, pc_kind))) for _ in range(count)]
    free_rows = list(range(len(rows)))  # row-level faults go to distinct rows so that they do not undo each other
    for category in sorted(categories, key=lambda c: c in LAST_OPS):
        if category == "augmentation_columns":
            for row in rows:
                row["paraphrased_answer"] = draw(st.one_of(st.none(), st.just(""), values))
                row["paraphrased_question"] = draw(st.one_of(st.none(), st.just(""), values))
                row["perturbed_answer"] = draw(st.one_of(st.none(), values, st.lists(values, max_size=3)))
            case.faults.append(Fault(category, None, None, False))
            continue
        if category == "extra_column_mixed_types":
            for row in rows:
                row["x_mixed"] = draw(EXTRA_VALUES)
            case.faults.append(Fault(category, None, "x_mixed", None))  # pyarrow may or may not store it
            continue
        if not free_rows:
            break
        index = free_rows.pop(draw(st.integers(0, len(free_rows) - 1)))
        if category in LAST_OPS:
            _replace_row(draw, case, category, index, values)
        else:
            _apply(draw, case, category, index, values, pc_kind)
    _finish(case)
    return case


# ---------------------------------------------------------------------------------------------------- oracle


@contextmanager
def captured_warnings():
    records: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler, logger = Handler(level=logging.WARNING), logging.getLogger("unlearn_peft.data")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _has_format(columns) -> bool:
    return any(set(required) <= set(columns) for required in FORMAT_COLUMNS.values())


def _columns(data) -> set[str]:
    if isinstance(data, Dataset):
        return set(data.column_names)
    return {column for row in data if isinstance(row, dict) for column in row}


def mark_untokenizable(case: Case, tokenizer, augmented: bool = False) -> None:
    """Values the tokenizer turns into no token at all are empty to the model: the case must raise there.

    SmolLM2's byte-level vocabulary lacks a few control bytes (\\x04, \\x06, \\x13, \\x14, \\x16, \\x1d), so a value
    made only of them tokenises to nothing; the generated text reaches them now and then. `augmented`: the rows'
    paraphrases and perturbed answers are tokenised too (a question-answer forget set in the trainer).
    """

    def empty(value: Any) -> bool:
        if not isinstance(value, str) or not value.strip():
            return False  # other faults cover non-strings and blanks
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False  # and lone surrogates
        return not tokenizer(value, add_special_tokens=False)["input_ids"]

    for index, row in enumerate(case.rows):
        if not isinstance(row, dict):
            continue
        for column in [c for columns in FORMAT_COLUMNS.values() for c in columns]:
            value = row.get(column)
            contents = [m.get("content") for m in value if isinstance(m, dict)] if isinstance(value, list) else [value]
            if any(empty(content) for content in contents):
                case.faults.append(Fault("untokenizable", index, column, True))
        if not augmented:
            continue
        augmentation = [row.get("paraphrased_answer"), row.get("paraphrased_question")]
        perturbed = row.get("perturbed_answer")
        augmentation += perturbed if isinstance(perturbed, list) else [perturbed]
        if any(empty(value) for value in augmentation):  # raised while tokenising the augmented rows
            case.faults.append(Fault("untokenizable", None, None, True))


def check_clear_error(error: Exception, named: dict[str, tuple[Case, Any, str]]) -> None:
    """`error` is a ValueError/TypeError naming a dataset that must (or may) raise, its row and column.

    `named` maps each dataset name to its case, the data passed and how it was passed (see `_as_input`).
    """
    message = str(error)
    assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__} escaped: {message}"
    name = next((n for n in named if message.startswith(n)), None)
    assert name is not None, f"the error does not start with a dataset name: {message}"
    case, data, input_kind = named[name]
    assert case.may_raise, f"valid rows of {name} raised: {message}"
    if re.search(r"match no supported format|but no columns", message):
        assert not _has_format(_columns(data)), message  # a column missing from every row: no row to name
        return
    rows = {int(row) for row in re.findall(r"\brow (\d+)\b", message)}
    assert rows, f"the error names no row: {message}"
    if (
        input_kind == "Dataset"
    ):  # a Dataset built by `Dataset.from_list` may have changed the rows (column types, dropped keys)
        assert "column '" in message or "columns '" in message, f"the error names no column: {message}"
        return
    blamed = [
        fault
        for fault in case.faults
        if fault.fatal is not False
        and (fault.row is None or fault.row in rows)
        and (fault.column is None or f"'{fault.column}" in message)
    ]
    assert blamed, f"the error blames no broken row and column ({case.faults}): {message}"


def check_tokenized(tokenized: Dataset, case: Case, warnings: list[str], max_length: int) -> None:
    assert not case.must_raise, f"broken rows were accepted silently: {case.faults}"
    assert len(tokenized) == len(case.rows), "rows were dropped"
    for input_ids, labels in zip(tokenized["input_ids"], tokenized["labels"], strict=True):
        assert len(input_ids) == len(labels) <= max_length
        assert any(label != IGNORE_INDEX for label in labels[1:]), "a row has no loss token"
    enormous = {fault.row for fault in case.faults if fault.category == "enormous"}
    if enormous:
        truncated = [int(m.group(1)) for w in warnings for m in [re.search(r": (\d+) of \d+ rows are longer", w)] if m]
        assert truncated and truncated[0] >= len(enormous), f"no truncation warning: {warnings}"


def _count(level: str, case: Case, outcome: str, input_kind: str, prefix: str = "") -> None:
    categories = {prefix + category for category in case.categories}
    if not prefix:
        categories.add(f"input: {input_kind}")
    for category in categories:
        CASE_COUNTS[level, category]["tried"] += 1
        CASE_COUNTS[level, category][outcome] += 1


def _unused_augmentation(case: Case, input_kind: str) -> None:
    """Augmentation columns are checked by `as_dataset` (lists) and by the augmentation itself; a Dataset whose
    augmentation columns are never used (no augmentation, or a retain set) may hold anything there."""
    if input_kind == "Dataset":
        for fault in case.faults:
            if fault.category == "augmentation_wrong_type":
                fault.fatal = None


def _as_input(case: Case, use_dataset: bool) -> tuple[Any, str]:
    """The rows as a user passes them: the list itself, or a `Dataset.from_list` of it when that succeeds."""
    if not use_dataset:
        return case.rows, "list"
    try:
        return Dataset.from_list(case.rows), "Dataset"
    except Exception:  # the user's own conversion fails (mixed types): they would pass the list instead
        return case.rows, "list (Dataset.from_list failed)"


# ---------------------------------------------------------------------------------------------------- properties


@pytest.mark.parametrize("row_format", FORMATS)
@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_tokenization_trains_or_names_row_and_column(tokenizer, row_format, data):
    case = data.draw(cases(formats=(row_format,)), label="case")
    mark_untokenizable(case, tokenizer)
    rows, input_kind = _as_input(case, data.draw(st.booleans(), label="as Dataset"))
    _unused_augmentation(case, input_kind)
    with captured_warnings() as warnings:
        try:
            # What UnlearnTrainer does with a forget or retain set.
            tokenized = tokenize_dataset(
                as_dataset(rows, "forget_dataset"), tokenizer, max_length=TOKENIZE_MAX_LENGTH, name="forget_dataset"
            )
        except Exception as error:
            check_clear_error(error, {"forget_dataset": (case, rows, input_kind)})
            _count("tokenize", case, "clear_error", input_kind)
            return
    check_tokenized(tokenized, case, warnings, TOKENIZE_MAX_LENGTH)
    _count("tokenize", case, "trained", input_kind)


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(
    forget=cases(max_rows=3, max_chars=8),
    retain=cases(max_rows=3, max_chars=8, max_faults=1),
    use_dataset=st.booleans(),
)
def test_trainer_trains_one_step_or_names_row_and_column(tokenizer, make_tiny_llama, forget, retain, use_dataset):
    mark_untokenizable(forget, tokenizer, augmented=forget.row_format == QUESTION_ANSWER)
    mark_untokenizable(retain, tokenizer)
    forget_rows, input_kind = _as_input(forget, use_dataset)
    retain_rows, retain_kind = _as_input(retain, use_dataset)
    _unused_augmentation(retain, retain_kind)
    named = {"forget_dataset": (forget, forget_rows, input_kind), "retain_dataset": (retain, retain_rows, retain_kind)}
    with tempfile.TemporaryDirectory() as output_dir:
        args = UnlearnConfig(
            output_dir=output_dir,
            method="uld",
            augment_forget_with_paraphrases=True,  # so that the augmentation columns are read and checked
            augment_retain_with_perturbed=True,
            assistant_num_layers=1,
            max_steps=1,
            per_device_train_batch_size=2,
            max_length=TRAIN_MAX_LENGTH,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        try:
            trainer = UnlearnTrainer(
                make_tiny_llama(num_layers=2),
                args=args,
                forget_dataset=forget_rows,
                retain_dataset=retain_rows,
                processing_class=tokenizer,
            )
        except Exception as error:
            check_clear_error(error, named)
            _count("trainer", forget, "clear_error", input_kind)
            _count("trainer", retain, "clear_error", input_kind, prefix="retain: ")
            return
        assert not forget.must_raise and not retain.must_raise, f"accepted: {forget.faults} {retain.faults}"
        assert trainer.dataset_summary["forget_rows"] == len(forget.rows)
        assert trainer.dataset_summary["retain_rows"] == len(retain.rows)
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == 1 and losses and all(math.isfinite(loss) for loss in losses)
    _count("trainer", forget, "trained", input_kind)
    _count("trainer", retain, "trained", input_kind, prefix="retain: ")


USER_ASSISTANT = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


@pytest.mark.parametrize(
    ("rows", "max_length", "message"),
    [
        # pyarrow errors with no row or column, from mixed types in one column
        ([{"text": "a"}, {"text": 5}], 64, r"row 1: column 'text' must be a string, got int \(5\)"),
        ([{"text": "a", "id": 1}, {"text": "b", "id": "x"}], 64, r"row 1: column 'id' holds a str \('x'\)"),
        (
            [{"prompt": "p", "completion": "c"}, {"prompt": USER_ASSISTANT[:1], "completion": USER_ASSISTANT[1:]}],
            64,
            r"row 1: columns 'prompt' and 'completion' are messages, but row 0's are strings",
        ),
        # `Dataset.from_list` keeps only the first row's keys: a column missing there vanished from every row
        (
            [{"question": "q"}, {"question": "q", "answer": "a"}],
            64,
            r"row 0: column 'answer' must be a string, got No",
        ),
        ([{}, {"text": "t"}], 64, r"row 0: column 'text' must be a string, got NoneType"),
        ([{}, {}], 64, r" has 2 rows but no columns"),
        (
            [{"question": "q", "answer": "a"}, {"text": "t"}],
            64,
            r"row 1: column 'question' is missing.*'text' instead",
        ),
        ([{"question": "q", "answer": "a"}, "q? a."], 64, r"row 1 is a str \('q\? a\.'\), not a dict"),
        # UnicodeEncodeError from pyarrow, TypeError from inside the tokenizer
        ([{"text": "bad \ud800 text"}], 64, r"row 0: column 'text' holds '\\ud800' at character 4, a lone surrogate"),
        # ValueError from transformers: "Cannot apply chat template to an empty conversation"
        ([{"messages": USER_ASSISTANT[1:]}], 64, r"row 0: column 'messages' holds only the assistant's answer"),
        # trained silently on "<|im_start|>human"
        ([{"messages": [{"role": "human", "content": "q"}, USER_ASSISTANT[1]]}], 64, r"'messages\[0\].role' is 'hum"),
        # SmolLM2's tokenizer drops \x06: the row trained on an empty text (or raised an unclear error)
        ([{"text": "\x06"}], 64, r"row 0: column 'text' \('\\x06'\) gives no token"),
        ([{"question": "q", "answer": "\x04\x06"}], 64, r"row 0: column 'answer' .* gives no token"),
        # the error named no column
        (
            [{"question": "long " * 100, "answer": "a"}],
            20,
            r"row 0: no answer token is left .*column 'question' takes",
        ),
        # a wrongly typed augmentation value was skipped silently
        ([{"question": "q", "answer": "a", "paraphrased_answer": 5}], 64, r"row 0: column 'paraphrased_answer' must"),
    ],
)
def test_cases_found_by_fuzzing(tokenizer, rows, max_length, message):
    with pytest.raises((ValueError, TypeError), match=r"^forget_dataset.*" + message):
        tokenize_dataset(as_dataset(rows, "forget_dataset"), tokenizer, max_length=max_length, name="forget_dataset")


def test_columns_of_later_rows_and_mixed_perturbed_answers_are_kept(tokenizer):
    rows = [
        {"question": "q1", "answer": "a1", "perturbed_answer": "w1"},
        {"question": "q2", "answer": "a2", "perturbed_answer": ["w2", "w3"], "paraphrased_answer": "p2"},
    ]
    dataset = as_dataset(rows, "forget_dataset")
    assert dataset.column_names == ["question", "answer", "perturbed_answer", "paraphrased_answer"]
    assert paraphrase_augmentation(dataset)[:] == {"question": ["q2"], "answer": ["p2"]}
    assert perturbed_retain_augmentation(dataset)["answer"] == ["w1", "w2", "w3"]


def test_every_category_was_tried(tokenizer):
    """The strategies reach every category, with both outcomes overall.

    In file order the property above has run already; alone (`-k`, another order) this test runs it first, so it
    never passes without checking.
    """
    if not any(level == "tokenize" for level, _ in CASE_COUNTS):
        for row_format in FORMATS:
            test_tokenization_trains_or_names_row_and_column(tokenizer=tokenizer, row_format=row_format)
    tokenize = {category: counts for (level, category), counts in CASE_COUNTS.items() if level == "tokenize"}
    expected = set(ROW_OPS + MESSAGE_OPS + LAST_OPS) | {
        "valid",
        "only_assistant",
        "mixed_kinds",
        "extra_column_mixed_types",
        "augmentation_columns",
        "augmentation_wrong_type",
    }
    assert expected <= set(tokenize), sorted(expected - set(tokenize))
    assert tokenize["valid"]["trained"] == tokenize["valid"]["tried"] > 0
    assert sum(c["clear_error"] for c in tokenize.values()) and sum(c["trained"] for c in tokenize.values())


@pytest.fixture(scope="module", autouse=True)
def _print_case_counts(request):
    yield
    if not CASE_COUNTS:
        return
    lines = ["", "fuzzed dataset rows: cases tried / clear error / trained, per category"]
    for level in ("tokenize", "trainer"):
        for (lvl, category), counts in sorted(CASE_COUNTS.items()):
            tried, error, trained = counts["tried"], counts["clear_error"], counts["trained"]
            if lvl == level:
                lines.append(f"  {level:8} {category:34} {tried:5} / {error:5} / {trained:5}")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(lines))
