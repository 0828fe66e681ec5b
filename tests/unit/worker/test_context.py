from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service_feature.llm import anthropic, openai
from service_feature.llm.base import (
    AssistantMessage,
    Message,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from service_feature.worker.context import (
    ContextOverflow,
    ContextWindow,
    estimate_tokens,
    message_tokens,
    prefix_tokens,
)
from service_feature.worker.tools import TOOL_SPECS
from tests.support.llm_servers import validate_anthropic_request, validate_openai_request

TASK = UserMessage("<feature_request>\nAdd a greeting\n</feature_request>")


def lines(count: int, width: int = 40) -> str:
    return "\n".join(f"{n:6}\t" + "x" * width for n in range(1, count + 1))


def read_turn(index: int, result_lines: int) -> list[Message]:
    call = ToolCall(f"call_{index}", "read_file", {"path": f"src/f{index}.py"})
    return [AssistantMessage("", (call,)), ToolResultMessage(call.id, call.name, lines(result_lines))]


def conversation(turns: int, result_lines: int = 100) -> list[Message]:
    history: list[Message] = [TASK]
    for index in range(turns):
        history += read_turn(index, result_lines)
    return history


def window(limit: int, **overrides: Any) -> ContextWindow:
    return ContextWindow(limit=limit, prefix=prefix_tokens("system", TOOL_SPECS), **overrides)


def assert_valid_for_both_apis(messages: list[Message]) -> None:
    tools = list(TOOL_SPECS)
    assert validate_anthropic_request(anthropic.build_request("m", 64, "sys", messages, tools)) is None
    assert validate_openai_request(openai.build_request("m", None, "sys", messages, tools)) is None


def test_the_estimate_is_four_characters_a_token() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert message_tokens(UserMessage("a" * 400)) > 100


def test_a_history_that_fits_is_returned_as_it_is() -> None:
    history = conversation(3)
    assert window(100_000).fit(history) is history


def test_old_tool_results_become_stubs_and_the_recent_turns_stay_intact() -> None:
    history = conversation(12)
    context = window(window(10**9).estimate(history) // 2, keep_recent=4)
    fitted = context.fit(history)
    assert context.estimate(fitted) <= context.limit
    assert fitted[0] == TASK
    assert fitted[-8:] == history[-8:]  # the last 4 turns, untouched
    first_result = fitted[2]
    assert isinstance(first_result, ToolResultMessage)
    assert first_result.content == "[result of read_file(path=src/f0.py) elided: 100 lines]"
    assert context.dropped == 0
    assert_valid_for_both_apis(fitted)


def test_old_turns_are_condensed_below_the_low_water_mark_when_the_recent_ones_leave_room() -> None:
    history = conversation(40, result_lines=20)
    context = window(window(10**9).estimate(history) * 9 // 10, keep_recent=2)
    fitted = context.fit(history)
    assert context.estimate(fitted) <= context.limit * context.low_water
    assert context.dropped == 0  # stubs were enough
    assert fitted[-4:] == history[-4:]


def test_long_arguments_of_old_calls_are_elided_too() -> None:
    write = ToolCall("w1", "write_file", {"path": "big.py", "content": lines(200)})
    history: list[Message] = [
        TASK,
        AssistantMessage("writing", (write,)),
        ToolResultMessage("w1", "write_file", "wrote big.py (200 lines)"),
        *conversation(4, 10)[1:],
    ]
    context = window(window(10**9).estimate(history) // 2, keep_recent=2)
    fitted = context.fit(history)
    assistant = fitted[1]
    assert isinstance(assistant, AssistantMessage)
    assert assistant.tool_calls[0].arguments == {"path": "big.py", "content": "[elided: 200 lines]"}
    assert assistant.tool_calls[0].id == "w1"
    assert_valid_for_both_apis(fitted)


def test_when_stubs_are_not_enough_old_turns_are_dropped_in_pairs_with_a_note() -> None:
    history = conversation(60, result_lines=5)
    context = window(2_000, keep_recent=3)
    fitted = context.fit(history)
    assert context.dropped > 0
    assert fitted[0] == TASK
    note = fitted[1]
    assert isinstance(note, UserMessage)
    assert f"{context.dropped} earlier turn(s) were dropped" in note.content
    assert context.estimate(fitted) <= context.limit
    assert fitted[-6:] == history[-6:]
    assert_valid_for_both_apis(fitted)


def test_a_huge_last_result_is_cut_in_the_middle() -> None:
    history = [TASK, *read_turn(0, 5_000)]
    context = window(3_000)
    fitted = context.fit(history)
    result = fitted[-1]
    assert isinstance(result, ToolResultMessage)
    assert result.content.startswith("     1\t")
    assert result.content.endswith(lines(5_000).rsplit("\n", 1)[1])
    assert "characters elided" in result.content
    assert context.estimate(fitted) <= context.limit


def test_a_task_bigger_than_the_window_is_a_clear_failure() -> None:
    with pytest.raises(ContextOverflow, match=r"context window exceeded: .* over the limit of 1,000"):
        window(1_000).fit([UserMessage("y" * 10_000)])


def test_a_condensed_history_stays_put_until_the_window_fills_again() -> None:
    """Hysteresis: turns after a condensation extend the history, so the provider's cache still hits."""
    history = conversation(20)
    context = window(window(10**9).estimate(history) * 3 // 4)
    first = context.fit(history)
    grown = [*first, *read_turn(100, 10)]
    assert context.fit(grown) is grown
    assert grown[: len(first)] == first


def test_calibration_from_reported_tokens_scales_the_estimate() -> None:
    history = conversation(2)
    context = window(100_000)
    estimated = context.estimate(history)
    context.calibrate(history, 0)  # not reported: no change
    assert context.estimate(history) == estimated
    context.calibrate(history, estimated * 2)
    assert context.estimate(history) in range(2 * estimated - 2, 2 * estimated + 3)
    context.calibrate(history, estimated // 3)  # denser than estimated is not trusted
    assert context.estimate(history) == estimated


_CALLS = st.sampled_from(["read_file", "write_file", "run_tests", "search"])


@st.composite
def histories(draw: st.DrawFn) -> list[Message]:
    history: list[Message] = [TASK]
    for turn in range(draw(st.integers(1, 25))):
        calls = tuple(
            ToolCall(
                f"t{turn}_{n}",
                name,
                {"path": f"f{n}.py", "content": "c" * draw(st.integers(0, 2_000))}
                if name == "write_file"
                else {"path": f"f{n}.py"},
            )
            for n, name in enumerate(draw(st.lists(_CALLS, max_size=3)))
        )
        history.append(AssistantMessage(draw(st.sampled_from(["", "thinking"])), calls))
        history += [
            ToolResultMessage(call.id, call.name, lines(draw(st.integers(0, 300))), draw(st.booleans()))
            for call in calls
        ]
        if not calls:
            history.append(UserMessage("Continue with the tools."))
    return history


@settings(max_examples=150, deadline=None)
@given(history=histories(), limit=st.integers(400, 40_000), keep_recent=st.integers(0, 6))
def test_condensation_keeps_the_task_and_the_pairing_and_fits(
    history: list[Message], limit: int, keep_recent: int
) -> None:
    context = window(limit, keep_recent=keep_recent)
    last_turn = max(i for i, m in enumerate(history) if isinstance(m, AssistantMessage))
    smallest = context.estimate([TASK, history[last_turn], UserMessage("[context note: …]")])
    try:
        fitted = context.fit(history)
    except ContextOverflow:
        assert limit < 2 * smallest + 100 * len(history[last_turn + 1 :])
        return
    assert fitted[0] == TASK
    assert context.estimate(fitted) <= limit
    assert_valid_for_both_apis(fitted)
