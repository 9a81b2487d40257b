"""Python client for openelm-serve (openelm.v1.InferenceService over gRPC).

    from openelm_client import Client

    with Client("127.0.0.1:50051") as client:
        for chunk in client.stream_generate("Once upon a time", max_tokens=32):
            print(chunk.text, end="", flush=True)

The gRPC stubs (``openelm_client._proto``) are generated from the project's
.proto files when the package is built.
"""
from openelm_client.client import (GENERATION_OPTIONS, ChatMessage, Choice, Client,
                                   GenerateResult, ModelInfo, OpenElmError,
                                   PositionLogprobs, ServerLoad, StreamChunk, Timings,
                                   TokenizeResult, TokenLogprob, Usage)

__all__ = [
    "GENERATION_OPTIONS", "ChatMessage", "Choice", "Client", "GenerateResult",
    "ModelInfo", "OpenElmError", "PositionLogprobs", "ServerLoad", "StreamChunk",
    "Timings", "TokenizeResult", "TokenLogprob", "Usage",
]
__version__ = "0.1.0"
