"""Legacy ``/v1/completions``, implemented on top of the chat path.

Each prompt becomes a chat request (an instruction to continue the text, then the prompt),
validated by ``parse_chat_request`` like any other. Each prompt gets ``n`` choices, numbered
``prompt_index * n + j`` as OpenAI numbers them. The chat converters' chunks are re-shaped into
``text_completion`` objects here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .chat_request import ChatRequest, parse_chat_request
from .chat_stream import ChatWire, CompletionMeta
from .errors import InvalidRequestError
from .settings import Settings
from .sse import DONE_EVENT, encode_json_event
from .usage import estimate_prompt_tokens
from .validate import missing_parameter, opt_bool, opt_int, opt_str, type_error

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for legacy completions
CONTINUE_INSTRUCTION = (
    "Continue the text that the user sends. Reply with the continuation only: do not repeat the "
    "text, do not comment on it."
)
# Fields that mean the same on both endpoints and are handed to the chat validation unchanged.
_SHARED_FIELDS = (
    "model", "temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "logit_bias",
    "stop", "stream", "stream_options", "user", "parameters",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    prompts: tuple[str, ...]
    chats: tuple[ChatRequest, ...]  # one per prompt, each with n=1
    n: int
    echo: bool
    stream: bool
    include_usage: bool

    @property
    def bot(self) -> str:
        return self.chats[0].bot

    def choice_requests(self) -> list[tuple[int, ChatRequest]]:
        """``(choice index, chat request)`` for every choice."""
        return [(p * self.n + j, chat) for p, chat in enumerate(self.chats) for j in range(self.n)]

    def prompt_tokens_per_choice(self) -> list[int]:
        return [estimate_prompt_tokens(chat.prompt_texts()) for chat in self.chats for _ in range(self.n)]

    def prompt_of(self, index: int) -> str:
        return self.prompts[index // self.n]


def parse_completion_request(body: Mapping[str, Any], settings: Settings) -> CompletionRequest:
    """Validate an OpenAI ``/v1/completions`` body. Raises ``InvalidRequestError``."""
    prompts = _parse_prompts(body.get("prompt"))
    n = opt_int(body, "n", 1, settings.max_n) or 1
    best_of = opt_int(body, "best_of", 1, settings.max_n)
    if best_of is not None and best_of > n:
        raise InvalidRequestError(
            "'best_of' greater than 'n' is not supported: ranking candidates needs log probabilities, "
            "which Poe does not return. Use n to get several completions.",
            param="best_of",
            code="unsupported_parameter",
        )
    echo = bool(opt_bool(body, "echo"))
    suffix = opt_str(body, "suffix")
    opt_int(body, "logprobs", 0, 5)  # accepted; the answer's logprobs are null (README)
    max_tokens = opt_int(body, "max_tokens", 1)
    instruction = CONTINUE_INSTRUCTION
    if suffix:
        instruction += f" The continuation will be followed by this text, so it must lead into it: {suffix}"
    shared = {key: body[key] for key in _SHARED_FIELDS if key in body}
    chats = []
    for prompt in prompts:
        chat_body = {
            **shared,
            "messages": [{"role": "system", "content": instruction}, {"role": "user", "content": prompt}],
            "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        }
        chats.append(parse_chat_request(chat_body, settings))
    first = chats[0]
    return CompletionRequest(
        prompts=tuple(prompts),
        chats=tuple(chats),
        n=n,
        echo=echo,
        stream=first.stream,
        include_usage=first.include_usage,
    )


def _parse_prompts(prompt: Any) -> list[str]:
    if prompt is None:
        raise missing_parameter("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(p, int | list) for p in prompt):
        raise InvalidRequestError(
            "Token arrays are not supported by this proxy: send the prompt as text.",
            param="prompt",
            code="unsupported_input",
        )
    if isinstance(prompt, list) and not prompt:
        raise InvalidRequestError("'prompt' must not be empty.", param="prompt", code="empty_array")
    raise type_error("prompt", "a string or an array of strings", prompt)


def completion_chunk_from_chat(
    chunk: Mapping[str, Any], object_name: str = "text_completion"
) -> dict[str, Any] | None:
    """A chat chunk as a legacy completion chunk; ``None`` for chunks with nothing to say."""
    choice = chunk["choices"][0]
    text = choice["delta"].get("content") or ""
    if not text and choice["finish_reason"] is None:
        return None
    return {
        "id": chunk["id"],
        "object": object_name,
        "created": chunk["created"],
        "model": chunk["model"],
        "choices": [
            {
                "text": text,
                "index": choice["index"],
                "logprobs": None,
                "finish_reason": choice["finish_reason"],
            }
        ],
    }


def echo_chunks(meta: CompletionMeta, request: CompletionRequest) -> list[dict[str, Any]]:
    """With ``echo``, each choice's stream starts with its prompt."""
    if not request.echo:
        return []
    return [
        {
            "id": meta.id,
            "object": "text_completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [
                {"text": request.prompt_of(index), "index": index, "logprobs": None, "finish_reason": None}
            ],
        }
        for index, _ in request.choice_requests()
    ]


def completion_usage_chunk(meta: CompletionMeta, usage: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [],
        "usage": dict(usage),
    }


class CompletionWire(ChatWire):
    """Legacy completions stream as ``text_completion`` chunks: the prompts first with ``echo``,
    then each chat chunk re-shaped (the ones with nothing to say left out)."""

    def __init__(self, meta: CompletionMeta, request: CompletionRequest) -> None:
        super().__init__(meta)
        self._request = request

    def head(self) -> bytes:
        return b"".join(map(encode_json_event, echo_chunks(self.meta, self._request)))

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        return b"".join(
            encode_json_event(c) for c in map(completion_chunk_from_chat, chunks) if c is not None
        )

    def tail(self, usage: dict[str, Any]) -> bytes:
        if not self.meta.include_usage:
            return DONE_EVENT
        return encode_json_event(completion_usage_chunk(self.meta, usage)) + DONE_EVENT


def text_completion(
    meta: CompletionMeta,
    request: CompletionRequest,
    choices: Sequence[Any],
    usage: Mapping[str, Any],
) -> dict[str, Any]:
    """The non-streaming ``text_completion`` from finished chat converters (index order)."""
    return {
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": None,
        "choices": [
            {
                "text": (request.prompt_of(c.index) if request.echo else "") + c.content,
                "index": c.index,
                "logprobs": None,
                "finish_reason": c.finish_reason or "stop",
            }
            for c in sorted(choices, key=lambda c: c.index)
        ],
        "usage": dict(usage),
    }
