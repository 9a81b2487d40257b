"""A small typed wrapper over the generated openelm.v1 gRPC stubs."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import (Any, Iterable, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import grpc

from openelm_client._proto.grpc.health.v1 import health_pb2, health_pb2_grpc
from openelm_client._proto.openelm.v1 import inference_pb2 as pb
from openelm_client._proto.openelm.v1 import inference_pb2_grpc as pb_grpc

__all__ = [
    "ChatMessage", "Choice", "Client", "GenerateResult", "ModelInfo", "OpenElmError",
    "PositionLogprobs", "ServerLoad", "StreamChunk", "Timings", "TokenLogprob",
    "TokenizeResult", "Usage", "GENERATION_OPTIONS",
]

# Keyword arguments accepted as generation options (openelm.v1.GenerationOptions).
GENERATION_OPTIONS = tuple(f.name for f in pb.GenerationOptions.DESCRIPTOR.fields)

Metadata = Tuple[Tuple[str, str], ...]


class OpenElmError(Exception):
    """A failed RPC: the gRPC status code and the server's message.

    ``code`` is a ``grpc.StatusCode`` (e.g. ``grpc.StatusCode.INVALID_ARGUMENT``),
    ``message`` the status details (for INVALID_ARGUMENT it names the field,
    e.g. "options.temperature ...").
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__("%s: %s" % (code.name, message))
        self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        """The status code's name, e.g. "UNAUTHENTICATED"."""
        return self.code.name

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "OpenElmError":
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "")


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float
    text: str


@dataclass(frozen=True)
class PositionLogprobs:
    chosen: TokenLogprob
    top: List[TokenLogprob] = field(default_factory=list)


@dataclass(frozen=True)
class Choice:
    """One completion: all of it (unary) or what is new (a stream chunk)."""
    index: int
    text: str
    token_ids: List[int]
    # "eos", "length", "stop_sequence", "stop_token", "context_length",
    # "cancelled", "deadline", "error", "shutdown"; None until the choice ends.
    finish_reason: Optional[str] = None
    stop_sequence: str = ""
    logprobs: List[PositionLogprobs] = field(default_factory=list)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    preemptions: int


@dataclass(frozen=True)
class Timings:
    """Seconds; None where the server did not report the value."""
    queue_time: Optional[float]
    time_to_first_token: Optional[float]
    total_time: Optional[float]


@dataclass(frozen=True)
class GenerateResult:
    """A unary Generate / Chat response."""
    request_id: str
    choices: List[Choice]
    usage: Optional[Usage]
    timings: Optional[Timings]
    prompt_logprobs: List[PositionLogprobs] = field(default_factory=list)
    prompt_token_ids: List[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The first completion's text."""
        return self.choices[0].text if self.choices else ""

    @property
    def token_ids(self) -> List[int]:
        """The first completion's token ids."""
        return self.choices[0].token_ids if self.choices else []

    @property
    def finish_reason(self) -> Optional[str]:
        """The first completion's finish reason."""
        return self.choices[0].finish_reason if self.choices else None


@dataclass(frozen=True)
class StreamChunk:
    """One message of a StreamGenerate / StreamChat stream.

    ``choices`` hold the new text and token ids of each completion in this
    message; ``usage`` and ``timings`` are set on the last message only.
    """
    request_id: str
    choices: List[Choice]
    usage: Optional[Usage] = None
    timings: Optional[Timings] = None
    prompt_logprobs: List[PositionLogprobs] = field(default_factory=list)
    prompt_token_ids: List[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        """New text of completion 0 in this message."""
        return "".join(c.text for c in self.choices if c.index == 0)

    @property
    def token_ids(self) -> List[int]:
        """New token ids of completion 0 in this message."""
        return [t for c in self.choices if c.index == 0 for t in c.token_ids]


@dataclass(frozen=True)
class TokenizeResult:
    token_ids: List[int]
    pieces: List[str]


@dataclass(frozen=True)
class ModelInfo:
    id: str
    size: str
    num_parameters: int
    num_layers: int
    max_context_length: int
    vocab_size: int
    weight_dtype: str
    kv_dtype: str
    kv_block_size_tokens: int
    kv_num_blocks: int
    kv_bytes_per_token: int
    kv_capacity_tokens: int
    chat: bool
    activation_dtype: str
    cpu_isa: str
    execution_plan: str


@dataclass(frozen=True)
class ServerLoad:
    requests_waiting: int
    requests_running: int
    kv_blocks_free: int
    kv_blocks_total: int
    kv_usage_ratio: float
    draining: bool


@dataclass(frozen=True)
class ChatMessage:
    """A chat turn; role is "system", "user" or "assistant"."""
    role: str
    content: str


ChatMessageLike = Union[ChatMessage, Tuple[str, str], Mapping[str, str]]

_ROLES = {"system": pb.ROLE_SYSTEM, "user": pb.ROLE_USER, "assistant": pb.ROLE_ASSISTANT}


# ---------------------------------------------------------------- conversions


def _from_message(cls: Any, message: Any) -> Any:
    return cls(**{f.name: getattr(message, f.name) for f in dataclasses.fields(cls)})


def _finish_reason(value: int) -> Optional[str]:
    if value == pb.FINISH_REASON_UNSPECIFIED:
        return None
    return pb.FinishReason.Name(value)[len("FINISH_REASON_"):].lower()


def _token_logprob(m: Any) -> TokenLogprob:
    return TokenLogprob(token_id=m.token_id, logprob=m.logprob, text=m.text)


def _position_logprobs(items: Iterable[Any]) -> List[PositionLogprobs]:
    return [PositionLogprobs(chosen=_token_logprob(p.chosen),
                             top=[_token_logprob(t) for t in p.top]) for p in items]


def _choice(c: Any) -> Choice:
    return Choice(index=c.index, text=c.text, token_ids=list(c.token_ids),
                  finish_reason=_finish_reason(c.finish_reason),
                  stop_sequence=c.stop_sequence, logprobs=_position_logprobs(c.logprobs))


def _seconds(response_timings: Any, name: str) -> Optional[float]:
    if not response_timings.HasField(name):
        return None
    d = getattr(response_timings, name)
    return d.seconds + d.nanos / 1e9


def _usage(r: Any) -> Optional[Usage]:
    return _from_message(Usage, r.usage) if r.HasField("usage") else None


def _timings(r: Any) -> Optional[Timings]:
    if not r.HasField("timings"):
        return None
    return Timings(queue_time=_seconds(r.timings, "queue_time"),
                   time_to_first_token=_seconds(r.timings, "time_to_first_token"),
                   total_time=_seconds(r.timings, "total_time"))


def _result(r: Any) -> GenerateResult:
    return GenerateResult(request_id=r.request_id, choices=[_choice(c) for c in r.choices],
                          usage=_usage(r), timings=_timings(r),
                          prompt_logprobs=_position_logprobs(r.prompt_logprobs),
                          prompt_token_ids=list(r.prompt_token_ids))


def _chunk(r: Any) -> StreamChunk:
    return StreamChunk(request_id=r.request_id, choices=[_choice(c) for c in r.choices],
                       usage=_usage(r), timings=_timings(r),
                       prompt_logprobs=_position_logprobs(r.prompt_logprobs),
                       prompt_token_ids=list(r.prompt_token_ids))


def _options(options: Mapping[str, Any]) -> Any:
    """GenerationOptions from keyword arguments; None values are left unset."""
    unknown = sorted(set(options) - set(GENERATION_OPTIONS))
    if unknown:
        raise TypeError("unknown generation option(s): %s (known: %s)" %
                        (", ".join(unknown), ", ".join(GENERATION_OPTIONS)))
    message = pb.GenerationOptions()
    for name, value in options.items():
        if value is None:
            continue
        if name == "logit_bias":
            for token, bias in dict(value).items():
                message.logit_bias[int(token)] = float(bias)
        elif name == "stop":
            message.stop.extend([value] if isinstance(value, str) else list(value))
        elif name == "stop_token_ids":
            message.stop_token_ids.extend(int(v) for v in value)
        else:
            setattr(message, name, value)
    return message


def _chat_message(m: ChatMessageLike) -> Any:
    if isinstance(m, ChatMessage):
        role, content = m.role, m.content
    elif isinstance(m, Mapping):
        role, content = m["role"], m["content"]
    else:
        role, content = m
    if role not in _ROLES:
        raise ValueError("chat role must be one of %s, got %r" % (sorted(_ROLES), role))
    return pb.ChatMessage(role=_ROLES[role], content=content)


# ---------------------------------------------------------------- client


class Client:
    """A connection to one openelm_server.

    Args:
      target: "host:port" of the gRPC listener.
      api_key: sent as ``authorization: Bearer <key>`` metadata when the
        server runs with a tenants config (``--tenants_config``).
      root_certificates: PEM CA bundle; when given (or with ``tls=True``, which
        uses the system roots) the channel speaks TLS.
      private_key, certificate_chain: PEM client key and certificate for
        mutual TLS (``--tls_client_ca`` on the server).
      timeout: default deadline of each call, in seconds (None: no deadline).
        Every method also takes ``timeout=``.
      channel_options: extra gRPC channel arguments.
    """

    def __init__(self, target: str, *, api_key: Optional[str] = None,
                 root_certificates: Optional[bytes] = None, tls: bool = False,
                 private_key: Optional[bytes] = None,
                 certificate_chain: Optional[bytes] = None,
                 timeout: Optional[float] = 60.0,
                 channel_options: Sequence[Tuple[str, Any]] = ()):
        self.target = target
        self.timeout = timeout
        self._metadata: Metadata = (
            (("authorization", "Bearer " + api_key),) if api_key else ())
        if tls or root_certificates is not None or private_key is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates, private_key=private_key,
                certificate_chain=certificate_chain)
            self._channel = grpc.secure_channel(target, credentials,
                                                options=list(channel_options))
        else:
            self._channel = grpc.insecure_channel(target, options=list(channel_options))
        self._stub = pb_grpc.InferenceServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    # -- lifecycle

    def close(self) -> None:
        """Closes the channel (cancels calls in flight)."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- helpers

    def _timeout(self, timeout: Optional[float]) -> Optional[float]:
        return self.timeout if timeout is None else timeout

    def _unary(self, method: Any, request: Any, timeout: Optional[float]) -> Any:
        try:
            return method(request, timeout=self._timeout(timeout), metadata=self._metadata)
        except grpc.RpcError as e:
            raise OpenElmError.from_rpc_error(e) from None

    def _stream(self, method: Any, request: Any,
                timeout: Optional[float]) -> Iterator[StreamChunk]:
        call = method(request, timeout=self._timeout(timeout), metadata=self._metadata)
        try:
            for response in call:
                yield _chunk(response)
        except grpc.RpcError as e:
            raise OpenElmError.from_rpc_error(e) from None
        finally:
            call.cancel()  # no-op once finished; stops generation if abandoned

    @staticmethod
    def _generate_request(prompt: Union[str, Sequence[int]], model: str,
                          add_bos: Optional[bool], options: Mapping[str, Any]) -> Any:
        request = pb.GenerateRequest(model=model, options=_options(options))
        if isinstance(prompt, str):
            request.text = prompt
        else:
            request.token_ids.ids.extend(int(i) for i in prompt)
        if add_bos is not None:
            request.add_bos = add_bos
        return request

    @staticmethod
    def _chat_request(messages: Sequence[ChatMessageLike], model: str,
                      options: Mapping[str, Any]) -> Any:
        return pb.ChatRequest(model=model, messages=[_chat_message(m) for m in messages],
                              options=_options(options))

    # -- generation

    def generate(self, prompt: Union[str, Sequence[int]], *, model: str = "",
                 add_bos: Optional[bool] = None, timeout: Optional[float] = None,
                 **options: Any) -> GenerateResult:
        """Completes a prompt (text, or token ids used as given) in one response.

        ``options`` are GenerationOptions fields: max_tokens, temperature, top_k,
        top_p, min_p, repetition_penalty, presence_penalty, frequency_penalty,
        logit_bias ({id: bias}), seed, stop (str or list), stop_token_ids,
        min_tokens, ignore_eos, logprobs, prompt_logprobs, n, priority.
        Raises OpenElmError on a failed call.
        """
        request = self._generate_request(prompt, model, add_bos, options)
        return _result(self._unary(self._stub.Generate, request, timeout))

    def stream_generate(self, prompt: Union[str, Sequence[int]], *, model: str = "",
                        add_bos: Optional[bool] = None, timeout: Optional[float] = None,
                        **options: Any) -> Iterator[StreamChunk]:
        """Like generate(), yielding text and token ids as they are produced.

        The last chunk carries finish reasons, usage and timings. Leaving the
        loop early cancels the request. Raises OpenElmError on a failed call.
        """
        request = self._generate_request(prompt, model, add_bos, options)
        return self._stream(self._stub.StreamGenerate, request, timeout)

    def chat(self, messages: Sequence[ChatMessageLike], *, model: str = "",
             timeout: Optional[float] = None, **options: Any) -> GenerateResult:
        """Chat completion for -Instruct models.

        ``messages``: ChatMessage, ("role", "content") tuples or
        {"role": ..., "content": ...} dicts; roles "system", "user", "assistant";
        the last must be from the user. Options as for generate().
        """
        request = self._chat_request(messages, model, options)
        return _result(self._unary(self._stub.Chat, request, timeout))

    def stream_chat(self, messages: Sequence[ChatMessageLike], *, model: str = "",
                    timeout: Optional[float] = None,
                    **options: Any) -> Iterator[StreamChunk]:
        """The streaming form of chat()."""
        request = self._chat_request(messages, model, options)
        return self._stream(self._stub.StreamChat, request, timeout)

    # -- tokenizer

    def tokenize(self, text: str, *, add_bos: Optional[bool] = None,
                 timeout: Optional[float] = None) -> TokenizeResult:
        """Token ids and pieces of ``text`` (BOS prepended unless add_bos=False)."""
        request = pb.TokenizeRequest(text=text)
        if add_bos is not None:
            request.add_bos = add_bos
        r = self._unary(self._stub.Tokenize, request, timeout)
        return TokenizeResult(token_ids=list(r.token_ids), pieces=list(r.pieces))

    def detokenize(self, token_ids: Sequence[int], *,
                   timeout: Optional[float] = None) -> str:
        """The text of ``token_ids``."""
        request = pb.DetokenizeRequest(token_ids=[int(i) for i in token_ids])
        return self._unary(self._stub.Detokenize, request, timeout).text

    # -- models and server

    def list_models(self, *, timeout: Optional[float] = None) -> List[ModelInfo]:
        """The served model(s) and their limits."""
        r = self._unary(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [_from_message(ModelInfo, m) for m in r.models]

    def get_model(self, model: str = "", *, timeout: Optional[float] = None) -> ModelInfo:
        """One model's info; "" is the served model."""
        r = self._unary(self._stub.GetModel, pb.GetModelRequest(model=model), timeout)
        return _from_message(ModelInfo, r)

    def server_load(self, *, timeout: Optional[float] = None) -> ServerLoad:
        """The server's queue, running requests and KV cache use."""
        r = self._unary(self._stub.GetServerLoad, pb.GetServerLoadRequest(), timeout)
        return _from_message(ServerLoad, r)

    def health(self, service: str = "", *, timeout: Optional[float] = None) -> str:
        """grpc.health.v1 Check: "SERVING", "NOT_SERVING", "UNKNOWN" ...

        ``service`` "" is the server as a whole.
        """
        r = self._unary(self._health.Check,
                        health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    def wait_until_serving(self, timeout: float = 60.0, interval: float = 0.1) -> None:
        """Polls health() until SERVING; raises OpenElmError(DEADLINE_EXCEEDED)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OpenElmError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   "server not SERVING after %.1fs (last: %s)" %
                                   (timeout, last))
            try:
                status = self.health(timeout=min(left, 5.0))
                if status == "SERVING":
                    return
                last = status
            except OpenElmError as e:
                last = str(e)
            time.sleep(min(interval, max(deadline - time.monotonic(), 0)))
