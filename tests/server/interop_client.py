#!/usr/bin/python3
"""Interop check with a client that is not ours: Debian's python3-grpcio.

Generates Python stubs from the project's .proto files into a temp dir at run
time (Debian's protoc 3.21 with grpc_python_plugin; the protoc 3.5 bundled in
python3-grpc-tools predates proto3 `optional`), then against a running
openelm_server:
  1. lists the services through server reflection (v1alpha);
  2. fetches inference.proto's descriptor through reflection;
  3. streams a greedy completion and checks it against the unary result;
  4. checks a validation error's code and message.
Exits 0 on success; prints the failure otherwise.
"""
import argparse
import importlib
import os
import subprocess
import sys
import tempfile


def generate_stubs(out_dir, proto_root, test_proto_root):
    for root, name in ((proto_root, "openelm/v1/inference.proto"),
                       (test_proto_root, "interop/reflection_v1alpha.proto")):
        subprocess.run(
            ["protoc", "-I" + root, "--python_out=" + out_dir,
             "--grpc_python_out=" + out_dir,
             "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin", name],
            check=True)
    sys.path.insert(0, out_dir)


def check(condition, message):
    if not condition:
        print("FAIL: " + message, flush=True)
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--proto_root", required=True)
    parser.add_argument("--test_proto_root", required=True)
    args = parser.parse_args()

    out_dir = tempfile.mkdtemp(prefix="openelm_interop_")
    generate_stubs(out_dir, args.proto_root, args.test_proto_root)
    import grpc  # Debian's python3-grpcio
    pb = importlib.import_module("openelm.v1.inference_pb2")
    pb_grpc = importlib.import_module("openelm.v1.inference_pb2_grpc")
    refl = importlib.import_module("interop.reflection_v1alpha_pb2")
    refl_grpc = importlib.import_module("interop.reflection_v1alpha_pb2_grpc")

    channel = grpc.insecure_channel("127.0.0.1:%d" % args.port)
    grpc.channel_ready_future(channel).result(timeout=30)

    # 1. Reflection: list services.
    reflection = refl_grpc.ServerReflectionStub(channel)
    responses = list(reflection.ServerReflectionInfo(
        iter([refl.ServerReflectionRequest(list_services="")]), timeout=30))
    names = sorted(s.name for s in responses[0].list_services_response.service)
    print("services:", names, flush=True)
    for want in ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                 "openelm.v1.InferenceService"):
        check(want in names, "reflection does not list " + want)

    # 2. Reflection: the descriptor of our service's file.
    responses = list(reflection.ServerReflectionInfo(
        iter([refl.ServerReflectionRequest(
            file_containing_symbol="openelm.v1.InferenceService")]), timeout=30))
    files = responses[0].file_descriptor_response.file_descriptor_proto
    check(len(files) >= 1, "no file descriptor for openelm.v1.InferenceService")
    from google.protobuf import descriptor_pb2
    fdp = descriptor_pb2.FileDescriptorProto.FromString(files[0])
    check(fdp.name == "openelm/v1/inference.proto", "descriptor name " + fdp.name)
    methods = [m.name for s in fdp.service for m in s.method]
    check("StreamGenerate" in methods, "StreamGenerate missing from reflection")

    # 3. Streaming completion, compared with the unary form.
    stub = pb_grpc.InferenceServiceStub(channel)
    request = pb.GenerateRequest(text="Once upon a time there was")
    request.options.max_tokens = 12
    request.options.temperature = 0.0
    request.options.ignore_eos = True
    text, ids, finish, usage, messages = "", [], None, None, 0
    for response in stub.StreamGenerate(request, timeout=60):
        messages += 1
        for choice in response.choices:
            text += choice.text
            ids.extend(choice.token_ids)
            if choice.finish_reason:
                finish = choice.finish_reason
        if response.HasField("usage"):
            usage = response.usage
    print("streamed %d messages, %d tokens: %r" % (messages, len(ids), text), flush=True)
    check(len(ids) == 12, "expected 12 tokens, got %d" % len(ids))
    check(finish == pb.FINISH_REASON_LENGTH, "finish reason %r" % finish)
    check(usage is not None and usage.prompt_tokens == 7 and usage.completion_tokens == 12,
          "usage %r" % usage)
    unary = stub.Generate(request, timeout=60)
    check(list(unary.choices[0].token_ids) == ids, "unary ids differ from streamed ids")
    check(unary.choices[0].text == text, "unary text differs from streamed text")

    # 4. A validation error reaches this client as INVALID_ARGUMENT.
    bad = pb.GenerateRequest(text="Hi")
    bad.options.top_p = 2.0
    try:
        stub.Generate(bad, timeout=30)
        check(False, "top_p=2 was accepted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "code %s" % e.code())
        check("options.top_p" in e.details(), "message %r" % e.details())

    print("interop OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
