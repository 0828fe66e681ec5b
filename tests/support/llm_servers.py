"""Local HTTP servers that speak the Anthropic Messages API and OpenAI's chat completions API.

No LLM API is reachable from the test machines, so the providers are driven — through the official SDKs, over
real HTTP — against these servers. Each one:

- listens on 127.0.0.1 on a free port (safe under xdist) in a background thread;
- checks the API key (`x-api-key` or `Authorization: Bearer` for Anthropic, Bearer for OpenAI) and answers 401
  in the provider's error format when it is wrong;
- VALIDATES every request the way the real API does (tool_use/tool_result pairing, role order, required
  fields) and answers 400 in the provider's error format when it is invalid, without consuming a response;
- otherwise answers with the next scripted response from its queue, and records every request.

Scripting a whole conversation: give the responses in order; the provider's n-th successful call gets the
n-th response, e.g.

    with AnthropicWireServer([
        anthropic_tool_use(Call("read_file", {"path": "README.md"})),
        anthropic_error(429, retry_after=0.1),
        anthropic_text("Done."),
    ]) as server:
        provider = AnthropicProvider(base_url=server.base_url, api_key=server.api_key, ...)
        ...
        assert server.requests[1].body["messages"][-1]["content"][0]["type"] == "tool_result"

A response may also be a callable `(RecordedRequest) -> ScriptedResponse` that looks at the request (e.g. at
the tool results it carries) before answering. `server.env` gives the environment variables that point an SDK
(or a worker process) at the server.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar

from service_feature.llm.base import ToolSpec
from service_feature.llm.retry import RetryPolicy

TEST_API_KEY = "test-key"

_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):06d}"


@dataclass(frozen=True)
class Call:
    """A tool call the scripted model makes. `arguments` may be a raw string (OpenAI only: malformed JSON)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class ScriptedResponse:
    """What the server answers: a JSON body with a status and headers, after `delay` seconds.

    `drop_connection` closes the socket without answering (the client sees a connection error).
    """

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop_connection: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # the decoded JSON, or the raw text when it was not JSON
    received_at: float  # time.monotonic()


Responder = ScriptedResponse | Callable[[RecordedRequest], ScriptedResponse]


def drop_connection() -> ScriptedResponse:
    return ScriptedResponse(drop_connection=True)


def _retry_headers(retry_after: float | None, retry_after_ms: float | None) -> dict[str, str]:
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    if retry_after_ms is not None:
        headers["retry-after-ms"] = f"{retry_after_ms:g}"
    return headers


class _WireServer:
    """The HTTP plumbing shared by both APIs; subclasses define the wire format."""

    endpoint: ClassVar[str]
    url_suffix: ClassVar[str] = ""
    bad_key_message: ClassVar[str]

    def __init__(self, responses: Iterable[Responder] = (), *, api_key: str = TEST_API_KEY) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self._responses: deque[Responder] = deque(responses)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- public API ------------------------------------------------------------------------------------------

    def add(self, *responses: Responder) -> None:
        """Queue more responses (e.g. between turns of a test)."""
        with self._lock:
            self._responses.extend(responses)

    @property
    def remaining(self) -> int:
        """Scripted responses not consumed yet."""
        with self._lock:
            return len(self._responses)

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running: use it as a context manager")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{self.url_suffix}"

    @property
    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def start(self) -> None:
        wire = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                wire._handle(self)

            def do_GET(self) -> None:
                wire._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and hung up is not an error of the server

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> _WireServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what subclasses define ------------------------------------------------------------------------------

    def presented_key(self, headers: Mapping[str, str]) -> str | None:
        raise NotImplementedError

    def validate(self, body: Any) -> str | None:
        """Why the real API would reject `body` with a 400, or None."""
        raise NotImplementedError

    def error(self, status: int, message: str) -> ScriptedResponse:
        raise NotImplementedError

    def complete_body(self, body: Any, request: RecordedRequest) -> Any:
        """Fill what a scripted body left out (ids, the model echoed from the request)."""
        return body

    # -- request handling ------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw
        request = RecordedRequest(
            method=handler.command,
            path=handler.path.split("?", 1)[0],
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=body,
            received_at=time.monotonic(),
        )
        with self._lock:
            self.requests.append(request)
        response = self._respond(request)
        if response.delay:
            time.sleep(response.delay)
        if response.drop_connection:
            handler.close_connection = True
            return
        payload = json.dumps(response.body).encode()
        try:
            handler.send_response(response.status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(payload)))
            handler.send_header("request-id", _new_id("req_"))
            for name, value in response.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _respond(self, request: RecordedRequest) -> ScriptedResponse:
        if request.method != "POST" or request.path != self.endpoint:
            return self.error(404, f"no route for {request.method} {request.path}")
        if self.presented_key(request.headers) != self.api_key:
            return self.error(401, self.bad_key_message)
        problem = self.validate(request.body)
        if problem is not None:
            return self.error(400, problem)
        with self._lock:
            responder = self._responses.popleft() if self._responses else None
        if responder is None:
            return self.error(
                400, f"wire server: no scripted response left for request #{len(self.requests)}"
            )
        response = responder(request) if callable(responder) else responder
        if response.status == 200 and response.body is not None:
            response = ScriptedResponse(
                status=200,
                body=self.complete_body(response.body, request),
                headers=response.headers,
                delay=response.delay,
            )
        return response


# ===================================================================================== Anthropic Messages API

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


class AnthropicWireServer(_WireServer):
    """`POST /v1/messages`; point the SDK at `base_url` (it appends `/v1/messages`)."""

    endpoint = "/v1/messages"
    bad_key_message = "invalid x-api-key"

    def __enter__(self) -> AnthropicWireServer:
        self.start()
        return self

    @property
    def env(self) -> dict[str, str]:
        return {"ANTHROPIC_BASE_URL": self.base_url, "ANTHROPIC_API_KEY": self.api_key}

    def presented_key(self, headers: Mapping[str, str]) -> str | None:
        authorization = headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            return authorization.removeprefix("Bearer ")
        return headers.get("x-api-key")

    def error(self, status: int, message: str) -> ScriptedResponse:
        return anthropic_error(status, message)

    def complete_body(self, body: Any, request: RecordedRequest) -> Any:
        if isinstance(body, dict) and body.get("type") == "message":
            body = {"id": _new_id("msg_"), "model": request.body.get("model", ""), **body}
        return body

    def validate(self, body: Any) -> str | None:
        return validate_anthropic_request(body)


def validate_anthropic_request(body: Any) -> str | None:
    """The checks of the Messages API that a client translating a conversation can get wrong."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: Field required (a positive integer)"
    breakpoints = 0
    system = body.get("system")
    if system is not None:
        if isinstance(system, list):
            for index, block in enumerate(system):
                if not isinstance(block, dict) or block.get("type") != "text" or not block.get("text"):
                    return f"system.{index}: text content blocks must be non-empty"
                breakpoints += "cache_control" in block
        elif not isinstance(system, str):
            return "system: Input should be a valid string or list of text blocks"
    tools = body.get("tools") or []
    names = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or not _TOOL_NAME.match(str(tool.get("name", ""))):
            return f"tools.{index}.name: String should match pattern '{_TOOL_NAME.pattern}'"
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{index}.input_schema.type: Input should be 'object'"
        if tool["name"] in names:
            return f"tools: Tool names must be unique ({tool['name']})"
        names.add(tool["name"])
        breakpoints += "cache_control" in tool
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    problem, message_breakpoints = _validate_anthropic_messages(messages)
    if problem:
        return problem
    if breakpoints + message_breakpoints > 4:
        found = breakpoints + message_breakpoints
        return f"A maximum of 4 blocks with cache_control may be provided. Found {found}."
    return None


def _validate_anthropic_messages(messages: list[Any]) -> tuple[str | None, int]:
    breakpoints = 0
    seen_ids: set[str] = set()
    unanswered: list[str] = []  # tool_use ids of the previous assistant message
    previous_role = None
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"{where}.role: Input should be 'user' or 'assistant'", 0
        role = message["role"]
        if index == 0 and role != "user":
            return 'messages: first message must use the "user" role', 0
        if role == previous_role:
            return f'{where}: roles must alternate between "user" and "assistant"', 0
        previous_role = role
        content = message.get("content")
        if isinstance(content, str):
            if not content:
                return f"{where}: user messages must have non-empty content", 0
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list) or not content:
            return f"{where}: messages must have non-empty content", 0
        for position, block in enumerate(content):
            if not isinstance(block, dict):
                return f"{where}.content.{position}: Input should be an object", 0
            if block.get("type") == "text" and not block.get("text"):
                return f"{where}.content.{position}: text content blocks must be non-empty", 0
            breakpoints += "cache_control" in block
        if role == "user":
            problem = _check_tool_results(where, content, unanswered)
            if problem:
                return problem, 0
            unanswered = []
        else:
            unanswered = []
            for position, block in enumerate(content):
                kind = block.get("type")
                if kind == "tool_result":
                    return (
                        f"{where}.content.{position}: tool_result blocks are only allowed in user messages",
                        0,
                    )
                if kind == "tool_use":
                    use_id = block.get("id")
                    if not isinstance(use_id, str) or not use_id or use_id in seen_ids:
                        return f"{where}.content.{position}: tool_use ids must be unique non-empty strings", 0
                    if not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
                        return (
                            f"{where}.content.{position}: tool_use blocks need a name and an input object",
                            0,
                        )
                    seen_ids.add(use_id)
                    unanswered.append(use_id)
    if unanswered:
        return _unanswered_tool_use(f"messages.{len(messages) - 1}", unanswered), 0
    return None, breakpoints


def _check_tool_results(where: str, content: list[dict[str, Any]], expected: list[str]) -> str | None:
    answered: list[str] = []
    leading = True
    for position, block in enumerate(content):
        if block.get("type") != "tool_result":
            leading = False
            continue
        if not leading:
            return f"{where}.content.{position}: tool_result blocks must come first in the user message"
        use_id = block.get("tool_use_id")
        if use_id not in expected or use_id in answered:
            return (
                f"{where}.content.{position}: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{use_id}. Each `tool_result` block must have a corresponding `tool_use` block in the "
                "previous message."
            )
        result = block.get("content", "")
        if not isinstance(result, (str, list)):
            return f"{where}.content.{position}.content: Input should be a string or a list of blocks"
        if "is_error" in block and not isinstance(block["is_error"], bool):
            return f"{where}.content.{position}.is_error: Input should be a valid boolean"
        answered.append(use_id)
    missing = [use_id for use_id in expected if use_id not in answered]
    return _unanswered_tool_use(where, missing) if missing else None


def _unanswered_tool_use(where: str, ids: list[str]) -> str:
    return (
        f"{where}: `tool_use` ids were found without `tool_result` blocks immediately after: "
        f"{', '.join(ids)}. Each `tool_use` block must have a corresponding `tool_result` block in the next "
        "message."
    )


def _anthropic_usage(usage: Mapping[str, int] | None) -> dict[str, int]:
    return {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        **(usage or {}),
    }


def anthropic_message(
    content: list[dict[str, Any]], *, stop_reason: str, usage: Mapping[str, int] | None = None
) -> ScriptedResponse:
    """A Messages API response with these content blocks (`id` and `model` are filled in by the server)."""
    return ScriptedResponse(
        body={
            "type": "message",
            "role": "assistant",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": _anthropic_usage(usage),
        }
    )


def _tool_use_block(call: Call) -> dict[str, Any]:
    if isinstance(call.arguments, str):
        raise ValueError("the Messages API always returns tool input as an object")
    return {
        "type": "tool_use",
        "id": call.id or _new_id("toolu_"),
        "name": call.name,
        "input": call.arguments,
    }


def anthropic_text(text: str, *, usage: Mapping[str, int] | None = None) -> ScriptedResponse:
    """The model answers and ends its turn."""
    return anthropic_message([{"type": "text", "text": text}], stop_reason="end_turn", usage=usage)


def anthropic_tool_use(
    *calls: Call, text: str = "", usage: Mapping[str, int] | None = None
) -> ScriptedResponse:
    """The model calls one tool, or several in parallel (one `tool_use` block each)."""
    content = [{"type": "text", "text": text}] if text else []
    content += [_tool_use_block(call) for call in calls]
    return anthropic_message(content, stop_reason="tool_use", usage=usage)


def anthropic_max_tokens(
    text: str = "", *, cut_call: Call | None = None, usage: Mapping[str, int] | None = None
) -> ScriptedResponse:
    """An over-long answer stopped at `max_tokens`, optionally in the middle of a tool_use block."""
    content = [{"type": "text", "text": text}] if text else []
    if cut_call is not None:
        content.append(_tool_use_block(cut_call))
    return anthropic_message(content, stop_reason="max_tokens", usage=usage)


def anthropic_error(
    status: int,
    message: str | None = None,
    *,
    retry_after: float | None = None,
    retry_after_ms: float | None = None,
) -> ScriptedResponse:
    """An error in the Messages API format: 429 rate limit, 529 overloaded, 500, 401, ..."""
    error_type = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return ScriptedResponse(
        status=status,
        body={
            "type": "error",
            "error": {"type": error_type, "message": message or error_type.replace("_", " ")},
        },
        headers=_retry_headers(retry_after, retry_after_ms),
    )


# ========================================================================== OpenAI chat completions API

_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


class OpenAIWireServer(_WireServer):
    """`POST /v1/chat/completions`; `base_url` ends in `/v1` like OPENAI_BASE_URL does."""

    endpoint = "/v1/chat/completions"
    url_suffix = "/v1"
    bad_key_message = "Incorrect API key provided. You can find your API key at your provider's dashboard."

    def __enter__(self) -> OpenAIWireServer:
        self.start()
        return self

    @property
    def env(self) -> dict[str, str]:
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": self.api_key}

    def presented_key(self, headers: Mapping[str, str]) -> str | None:
        authorization = headers.get("authorization", "")
        return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None

    def error(self, status: int, message: str) -> ScriptedResponse:
        return openai_error(status, message)

    def complete_body(self, body: Any, request: RecordedRequest) -> Any:
        if isinstance(body, dict) and body.get("object") == "chat.completion":
            body = {
                "id": _new_id("chatcmpl-"),
                "created": int(time.time()),
                "model": request.body.get("model", ""),
                **body,
            }
        return body

    def validate(self, body: Any) -> str | None:
        return validate_openai_request(body)


def validate_openai_request(body: Any) -> str | None:
    """The checks of chat completions that a client translating a conversation can get wrong."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    if "max_tokens" in body and "max_completion_tokens" in body:
        return "max_tokens and max_completion_tokens cannot both be set"
    for index, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict) or not function.get("name"):
            return f"Invalid 'tools[{index}]': expected a function tool with a name"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Invalid 'messages': empty array. Expected an array with minimum length 1"
    pending: list[str] = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return f"Invalid value for 'messages[{index}].role'"
        if pending and role != "tool":
            return _unanswered(pending)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                return (
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                    f"message with 'tool_calls' (messages[{index}].tool_call_id={call_id!r})."
                )
            pending.remove(call_id)
            if not isinstance(message.get("content"), (str, list)):
                return f"Invalid type for 'messages[{index}].content': expected a string"
        elif role == "assistant":
            problem, pending = _assistant_tool_calls(index, message)
            if problem:
                return problem
        elif not isinstance(message.get("content"), (str, list)):
            return f"Invalid type for 'messages[{index}].content': expected a string"
    return _unanswered(pending) if pending else None


def _assistant_tool_calls(index: int, message: dict[str, Any]) -> tuple[str | None, list[str]]:
    calls = message.get("tool_calls")
    content = message.get("content")
    if calls is None:
        if not isinstance(content, (str, list)):
            return f"Invalid value for 'messages[{index}].content': expected a string, got null.", []
        return None, []
    if not isinstance(calls, list) or not calls:
        return (
            f"Invalid 'messages[{index}].tool_calls': empty array. Expected an array with minimum length 1",
            [],
        )
    if content is not None and not isinstance(content, (str, list)):
        return f"Invalid type for 'messages[{index}].content'", []
    ids = []
    for position, call in enumerate(calls):
        where = f"messages[{index}].tool_calls[{position}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call.get("id"), str) or not call["id"] or call.get("type") != "function":
            return f"Invalid '{where}': needs an id and type 'function'", []
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return f"Invalid '{where}.function.name'", []
        if not isinstance(function.get("arguments"), str):
            return f"Invalid type for '{where}.function.arguments': expected a string", []
        ids.append(call["id"])
    return None, ids


def _unanswered(pending: list[str]) -> str:
    return (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}"
    )


def openai_completion(
    message: dict[str, Any], *, finish_reason: str, usage: Mapping[str, Any] | None = None
) -> ScriptedResponse:
    """A chat completion with this assistant message (the server fills in `id`, `created` and `model`)."""
    wire_usage: dict[str, Any] = {"prompt_tokens": 10, "completion_tokens": 5, **(usage or {})}
    wire_usage["total_tokens"] = wire_usage["prompt_tokens"] + wire_usage["completion_tokens"]
    return ScriptedResponse(
        body={
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}
            ],
            "usage": wire_usage,
        }
    )


def openai_text(text: str, *, usage: Mapping[str, Any] | None = None) -> ScriptedResponse:
    """The model answers and stops."""
    return openai_completion({"content": text}, finish_reason="stop", usage=usage)


def openai_tool_calls(
    *calls: Call,
    text: str | None = None,
    finish_reason: str = "tool_calls",
    usage: Mapping[str, Any] | None = None,
) -> ScriptedResponse:
    """The model calls one tool or several in parallel; str `Call.arguments` are sent verbatim (malformed)."""
    wire_calls = [
        {
            "id": call.id or _new_id("call_"),
            "type": "function",
            "function": {
                "name": call.name,
                "arguments": call.arguments
                if isinstance(call.arguments, str)
                else json.dumps(call.arguments),
            },
        }
        for call in calls
    ]
    return openai_completion(
        {"content": text, "tool_calls": wire_calls}, finish_reason=finish_reason, usage=usage
    )


def openai_length(
    text: str = "", *, cut_call: Call | None = None, usage: Mapping[str, Any] | None = None
) -> ScriptedResponse:
    """An over-long answer stopped by the token limit (`finish_reason: length`), maybe mid tool call."""
    if cut_call is not None:
        return openai_tool_calls(cut_call, text=text or None, finish_reason="length", usage=usage)
    return openai_completion({"content": text}, finish_reason="length", usage=usage)


def openai_error(
    status: int,
    message: str | None = None,
    *,
    retry_after: float | None = None,
    retry_after_ms: float | None = None,
) -> ScriptedResponse:
    """An error in the OpenAI format: 429 rate limit, 500, 401 bad key, ..."""
    error_type, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
    return ScriptedResponse(
        status=status,
        body={
            "error": {
                "message": message or f"{error_type} ({status})",
                "type": error_type,
                "param": None,
                "code": code,
            }
        },
        headers=_retry_headers(retry_after, retry_after_ms),
    )


# Shared by the provider tests: retries without real waiting, a system prompt and two tools.
FAST = RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=2.0)
SYSTEM = "You are a careful engineer."
TOOLS = [
    ToolSpec("read_file", "Read a file", {"type": "object", "properties": {"path": {"type": "string"}}}),
    ToolSpec("run_tests", "Run the tests", {"type": "object", "properties": {}}),
]
