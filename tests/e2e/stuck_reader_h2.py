#!/usr/bin/python3
"""A raw HTTP/2 client that never lets the server send it a byte of data.

Opens one StreamGenerate call with the stream's receive window set to 0 and
never sends a WINDOW_UPDATE, as a client that stopped reading would. The
server must end the call by itself: the engine request is cut at the backlog
bound, and the stream must then end (trailers or RST_STREAM) within
--max_seconds, with the connection still open. Uses Debian's python3-h2, not
a gRPC library, so no client-side flow control logic can help the server.

Prints what ended the stream and how long it took; exits 0 when it ended in
time the way --expect says (default: trailers with grpc-status 8,
RESOURCE_EXHAUSTED), 1 otherwise.
"""
import argparse
import select
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_bytes(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def generate_request(max_tokens):
    # GenerationOptions: max_tokens = 1 (varint), temperature = 2 (float),
    # ignore_eos = 14 (bool).
    options = (varint(1 << 3 | 0) + varint(max_tokens) +
               varint(2 << 3 | 5) + struct.pack("<f", 0.0) +
               varint(14 << 3 | 0) + varint(1))
    # GenerateRequest: text = 2, options = 4.
    message = field_bytes(2, b"Once upon a time there was") + field_bytes(4, options)
    return b"\x00" + struct.pack(">I", len(message)) + message


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max_tokens", type=int, default=1500)
    parser.add_argument("--max_seconds", type=float, default=15.0)
    parser.add_argument("--expect", default="trailers grpc-status=8 ",
                        help="how the stream must end (prefix of the outcome line)")
    args = parser.parse_args()

    sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(stream_id, [
        (":method", "POST"), (":scheme", "http"),
        (":path", "/openelm.v1.InferenceService/StreamGenerate"),
        (":authority", "127.0.0.1:%d" % args.port),
        ("content-type", "application/grpc"), ("te", "trailers"),
    ])
    conn.send_data(stream_id, generate_request(args.max_tokens), end_stream=True)
    sock.sendall(conn.data_to_send())
    start = time.monotonic()

    outcome = None
    data_bytes = 0
    while outcome is None and time.monotonic() - start < args.max_seconds:
        ready, _, _ = select.select([sock], [], [], 0.2)
        if not ready:
            continue
        chunk = sock.recv(65536)
        if not chunk:
            outcome = "connection closed by the server"
            break
        for event in conn.receive_data(chunk):
            if isinstance(event, h2.events.DataReceived):
                # Counted, never acknowledged: the window stays shut.
                data_bytes += len(event.data)
            elif isinstance(event, h2.events.TrailersReceived):
                headers = dict(event.headers)
                outcome = "trailers grpc-status=%s grpc-message=%s" % (
                    headers.get("grpc-status"), headers.get("grpc-message", ""))
            elif isinstance(event, h2.events.StreamReset):
                outcome = "RST_STREAM error_code=%d" % event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                outcome = "GOAWAY error_code=%d" % event.error_code
        pending = conn.data_to_send()  # settings and ping acks only
        if pending:
            sock.sendall(pending)
    elapsed = time.monotonic() - start
    print("stuck reader: %s after %.2f s (%d data bytes received)" %
          (outcome or "nothing", elapsed, data_bytes), flush=True)
    sock.close()
    if outcome is None or not outcome.startswith(args.expect):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
