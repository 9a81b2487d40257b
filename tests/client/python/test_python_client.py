#!/usr/bin/python3
"""End-to-end test of the Python client package (client/python, openelm_client)
against real openelm_server processes serving a generated tiny checkpoint.

Needs openelm_client installed (scripts/test-python-client.sh does it in a
throw-away venv). Paths come from the environment or the command line:

  OPENELM_SERVER_BIN   / --server     build/bin/openelm_server
  OPENELM_GEN_BIN      / --gen        build/engine/tools/openelm_gen_checkpoint
  OPENELM_TOKENIZER_MODEL / --tokenizer  llama2-tokenizer.model

Two servers run for the whole test: a plain one, and one with TLS and a
tenants config whose only key is generated here (auth checks).
"""
import argparse
import hashlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc

from openelm_client import ChatMessage, Client, OpenElmError

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
START_TIMEOUT_S = 120
PROMPT = "The quick brown fox jumps over the lazy dog."
CONFIG = {
    "server": os.environ.get("OPENELM_SERVER_BIN",
                             os.path.join(REPO, "build", "bin", "openelm_server")),
    "gen": os.environ.get(
        "OPENELM_GEN_BIN",
        os.path.join(REPO, "build", "engine", "tools", "openelm_gen_checkpoint")),
    "tokenizer": os.environ.get(
        "OPENELM_TOKENIZER_MODEL",
        os.environ.get("OPENELM_TOKENIZER",
                       os.path.join(REPO, "..", "shared", "tokenizer",
                                    "llama2-tokenizer.model"))),
}


class ServerProcess:
    """openelm_server on port 0 (it picks a free port and prints it)."""

    def __init__(self, args, log_path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [CONFIG["server"], "--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--http_port=-1",
             "--threads=1", "--kv_cache_bytes=67108864"] + args,
            stdout=subprocess.PIPE, stderr=self._log)
        self.port = self._read_port()
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.target = "127.0.0.1:%d" % self.port

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def _read_port(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        buffer = b""
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if line.startswith("listening on "):
                    return int(line.rsplit(":", 1)[1])
        self.stop()
        raise RuntimeError("server did not print its port; log:\n" + self.log())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class PythonClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        for key in ("server", "gen", "tokenizer"):
            if not os.path.exists(CONFIG[key]):  # a failure, not a skip: CI must notice
                raise RuntimeError("%s not found: %s" % (key, CONFIG[key]))
        cls.dir = tempfile.mkdtemp(prefix="openelm_py_client_")
        cls.servers = []
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        cls.model_dir = os.path.join(cls.dir, "tiny")
        subprocess.run([CONFIG["gen"], "--size=tiny", "--seed=7", "--dtype=f32",
                        "--out=" + cls.model_dir], check=True, stdout=subprocess.DEVNULL,
                       timeout=120)
        with open(os.path.join(cls.model_dir, "config.json")) as f:
            cls.model_config = json.load(f)
        common = ["--model_dir=" + cls.model_dir, "--tokenizer=" + CONFIG["tokenizer"]]

        cls.plain = ServerProcess(common, os.path.join(cls.dir, "plain.log"))
        cls.servers.append(cls.plain)

        # TLS + API keys: the tenants file stores only the key's SHA-256.
        certs = os.path.join(cls.dir, "certs")
        subprocess.run(["bash", os.path.join(REPO, "scripts", "gen-test-certs.sh"), certs],
                       check=True, stdout=subprocess.DEVNULL, timeout=60)
        with open(os.path.join(certs, "ca.pem"), "rb") as f:
            cls.ca_pem = f.read()
        cls.api_key = "sk-" + secrets.token_hex(16)
        tenants = os.path.join(cls.dir, "tenants.json")
        with open(tenants, "w") as f:
            json.dump({"auth_enabled": True, "tenants": [{
                "id": "python-client",
                "api_key_sha256": [hashlib.sha256(cls.api_key.encode()).hexdigest()],
            }]}, f)
        cls.secure = ServerProcess(
            common + ["--tenants_config=" + tenants,
                      "--tls_cert=" + os.path.join(certs, "server.pem"),
                      "--tls_key=" + os.path.join(certs, "server.key")],
            os.path.join(cls.dir, "secure.log"))
        cls.servers.append(cls.secure)

        cls.client = Client(cls.plain.target, timeout=60)
        cls.client.wait_until_serving(timeout=START_TIMEOUT_S)
        cls.keyed = Client(cls.secure.target, api_key=cls.api_key,
                           root_certificates=cls.ca_pem, timeout=60)
        cls.keyed.wait_until_serving(timeout=START_TIMEOUT_S)

    @classmethod
    def tearDownClass(cls):
        for name in ("client", "keyed"):
            if hasattr(cls, name):
                getattr(cls, name).close()
        for server in cls.servers:
            server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def assertStatus(self, error, code, *substrings):
        self.assertIsInstance(error, OpenElmError)
        self.assertEqual(error.code, code, str(error))
        self.assertEqual(error.code_name, code.name)
        for s in substrings:
            self.assertIn(s, error.message)

    # ------------------------------------------------------------ health, models

    def test_health(self):
        self.assertEqual(self.client.health(), "SERVING")
        self.assertEqual(self.client.health("openelm.v1.InferenceService"), "SERVING")
        with self.assertRaises(OpenElmError) as cm:
            self.client.health("no.such.Service")
        self.assertStatus(cm.exception, grpc.StatusCode.NOT_FOUND)

    def test_list_and_get_model(self):
        models = self.client.list_models()
        self.assertEqual(len(models), 1)
        info = models[0]
        self.assertEqual(info.id, os.path.basename(self.model_dir))
        self.assertEqual(info.vocab_size, self.model_config["vocab_size"])
        self.assertEqual(info.num_layers, self.model_config["num_transformer_layers"])
        self.assertGreater(info.num_parameters, 0)
        self.assertGreater(info.kv_capacity_tokens, 0)
        self.assertTrue(info.execution_plan)
        self.assertEqual(self.client.get_model(""), info)

    def test_server_load(self):
        load = self.client.server_load()
        self.assertGreater(load.kv_blocks_total, 0)
        self.assertLessEqual(load.kv_blocks_free, load.kv_blocks_total)
        self.assertFalse(load.draining)

    # ------------------------------------------------------------ tokenizer

    def test_tokenize_detokenize_round_trip(self):
        with_bos = self.client.tokenize(PROMPT)
        self.assertEqual(len(with_bos.token_ids), len(with_bos.pieces))
        self.assertEqual(with_bos.pieces[0], "<s>")
        plain = self.client.tokenize(PROMPT, add_bos=False)
        self.assertEqual(plain.token_ids, with_bos.token_ids[1:])
        self.assertGreater(len(plain.token_ids), 5)
        self.assertEqual(self.client.detokenize(plain.token_ids), PROMPT)
        self.assertEqual("".join(plain.pieces).replace("\u2581", " ").strip(), PROMPT)

    # ------------------------------------------------------------ generation

    def test_generate_unary(self):
        result = self.client.generate(PROMPT, max_tokens=8, temperature=0,
                                      ignore_eos=True)
        self.assertTrue(result.request_id)
        self.assertEqual(len(result.choices), 1)
        self.assertEqual(len(result.token_ids), 8)
        self.assertTrue(result.text)
        self.assertEqual(result.finish_reason, "length")
        self.assertEqual(result.usage.completion_tokens, 8)
        self.assertEqual(result.usage.prompt_tokens,
                         len(self.client.tokenize(PROMPT).token_ids))
        self.assertIsNotNone(result.timings.total_time)
        self.assertGreater(result.timings.total_time, 0)
        vocab = self.model_config["vocab_size"]
        self.assertTrue(all(0 <= t < vocab for t in result.token_ids))

    def test_stream_matches_unary(self):
        unary = self.client.generate(PROMPT, max_tokens=12, temperature=0,
                                     ignore_eos=True)
        chunks = list(self.client.stream_generate(PROMPT, max_tokens=12, temperature=0,
                                                  ignore_eos=True))
        self.assertGreaterEqual(len(chunks), 1)
        self.assertEqual("".join(c.text for c in chunks), unary.text)
        self.assertEqual([t for c in chunks for t in c.token_ids], unary.token_ids)
        last = chunks[-1]
        self.assertEqual(last.choices[-1].finish_reason, "length")
        self.assertEqual(last.usage.completion_tokens, 12)
        self.assertIsNotNone(last.timings)
        for c in chunks[:-1]:
            self.assertIsNone(c.usage)
            self.assertTrue(all(ch.finish_reason is None for ch in c.choices))

    def test_token_id_prompt_equals_text_prompt(self):
        ids = self.client.tokenize(PROMPT).token_ids  # with BOS, as a text prompt gets
        by_text = self.client.generate(PROMPT, max_tokens=6, temperature=0)
        by_ids = self.client.generate(ids, max_tokens=6, temperature=0)
        self.assertEqual(by_ids.token_ids, by_text.token_ids)
        self.assertEqual(by_ids.usage.prompt_tokens, len(ids))

    def test_sampling_options_are_sent(self):
        a = self.client.generate(PROMPT, max_tokens=10, temperature=1.0, seed=1234,
                                 ignore_eos=True)
        b = self.client.generate(PROMPT, max_tokens=10, temperature=1.0, seed=1234,
                                 ignore_eos=True)
        self.assertEqual(a.token_ids, b.token_ids)
        many = self.client.generate(PROMPT, max_tokens=4, n=3, seed=5, ignore_eos=True,
                                    logprobs=2)
        self.assertEqual(sorted(c.index for c in many.choices), [0, 1, 2])
        for choice in many.choices:
            self.assertEqual(len(choice.logprobs), len(choice.token_ids))
            for pos, token in zip(choice.logprobs, choice.token_ids):
                self.assertEqual(pos.chosen.token_id, token)
                self.assertLessEqual(pos.chosen.logprob, 0.0)
                self.assertEqual(len(pos.top), 2)

    def test_stop_token_ids(self):
        greedy = self.client.generate(PROMPT, max_tokens=8, temperature=0,
                                      ignore_eos=True)
        # Prefer a stop id that first appears after position 0.
        later = [t for t in greedy.token_ids if t != greedy.token_ids[0]]
        stop_id = later[0] if later else greedy.token_ids[0]
        first = greedy.token_ids.index(stop_id)
        stopped = self.client.generate(PROMPT, max_tokens=8, temperature=0,
                                       ignore_eos=True, stop_token_ids=[stop_id])
        self.assertEqual(stopped.finish_reason, "stop_token")
        self.assertEqual(stopped.usage.completion_tokens, first + 1)
        # Counted but not delivered, like EOS (inference.proto).
        self.assertEqual(stopped.token_ids, greedy.token_ids[:first])

    def test_invalid_argument_names_the_field(self):
        with self.assertRaises(OpenElmError) as cm:
            self.client.generate(PROMPT, temperature=5)
        self.assertStatus(cm.exception, grpc.StatusCode.INVALID_ARGUMENT, "temperature")
        with self.assertRaises(OpenElmError) as cm:
            list(self.client.stream_generate(PROMPT, max_tokens=0))
        self.assertStatus(cm.exception, grpc.StatusCode.INVALID_ARGUMENT, "max_tokens")
        with self.assertRaises(TypeError):
            self.client.generate(PROMPT, no_such_option=1)

    def test_abandoned_stream_is_cancelled(self):
        stream = self.client.stream_generate(PROMPT, max_tokens=1500, ignore_eos=True,
                                             temperature=0)
        first = next(stream)
        self.assertTrue(first.token_ids)
        stream.close()
        deadline = time.monotonic() + 10
        while self.client.server_load().requests_running and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.client.server_load().requests_running, 0)

    # ------------------------------------------------------------ chat

    def test_chat_unary_and_stream(self):
        messages = [ChatMessage("system", "You are terse."),
                    ChatMessage("user", "Name a colour.")]
        unary = self.client.chat(messages, max_tokens=8, temperature=0, ignore_eos=True)
        self.assertEqual(len(unary.token_ids), 8)
        self.assertEqual(unary.finish_reason, "length")
        # The chat template adds role markers around the contents.
        content_tokens = sum(len(self.client.tokenize(m.content, add_bos=False).token_ids)
                             for m in messages)
        self.assertGreater(unary.usage.prompt_tokens, content_tokens)
        chunks = list(self.client.stream_chat(
            [("system", "You are terse."), {"role": "user", "content": "Name a colour."}],
            max_tokens=8, temperature=0, ignore_eos=True))
        self.assertEqual("".join(c.text for c in chunks), unary.text)
        self.assertEqual([t for c in chunks for t in c.token_ids], unary.token_ids)
        self.assertEqual(chunks[-1].usage.prompt_tokens, unary.usage.prompt_tokens)

    def test_chat_errors(self):
        with self.assertRaises(OpenElmError) as cm:
            self.client.chat([("user", "hi"), ("assistant", "hello")], max_tokens=4)
        self.assertStatus(cm.exception, grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(OpenElmError) as cm:
            list(self.client.stream_chat([("user", "hi")], top_p=0.0))
        self.assertStatus(cm.exception, grpc.StatusCode.INVALID_ARGUMENT, "top_p")
        with self.assertRaises(ValueError):
            self.client.chat([("robot", "hi")])

    # ------------------------------------------------------------ API keys, TLS

    def test_api_key_required(self):
        with Client(self.secure.target, root_certificates=self.ca_pem,
                    timeout=30) as anonymous:
            with self.assertRaises(OpenElmError) as cm:
                anonymous.generate(PROMPT, max_tokens=2)
            self.assertStatus(cm.exception, grpc.StatusCode.UNAUTHENTICATED, "API key")
            with self.assertRaises(OpenElmError) as cm:
                list(anonymous.stream_chat([("user", "hi")], max_tokens=2))
            self.assertStatus(cm.exception, grpc.StatusCode.UNAUTHENTICATED)
        with Client(self.secure.target, api_key="sk-wrong", root_certificates=self.ca_pem,
                    timeout=30) as wrong:
            with self.assertRaises(OpenElmError) as cm:
                wrong.generate(PROMPT, max_tokens=2)
            self.assertStatus(cm.exception, grpc.StatusCode.UNAUTHENTICATED, "invalid")

    def test_api_key_accepted_over_tls(self):
        result = self.keyed.generate(PROMPT, max_tokens=4, temperature=0, ignore_eos=True)
        self.assertEqual(len(result.token_ids), 4)
        # Same checkpoint and greedy: the same tokens as the plain server.
        plain = self.client.generate(PROMPT, max_tokens=4, temperature=0, ignore_eos=True)
        self.assertEqual(result.token_ids, plain.token_ids)
        chunks = list(self.keyed.stream_chat([("user", "hi")], max_tokens=3,
                                             temperature=0, ignore_eos=True))
        self.assertEqual(sum(len(c.token_ids) for c in chunks), 3)

    def test_plaintext_client_cannot_reach_tls_server(self):
        with Client(self.secure.target, api_key=self.api_key, timeout=5) as plaintext:
            with self.assertRaises(OpenElmError) as cm:
                plaintext.generate(PROMPT, max_tokens=2)
            self.assertEqual(cm.exception.code, grpc.StatusCode.UNAVAILABLE)


def main():
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--server")
    parser.add_argument("--gen")
    parser.add_argument("--tokenizer")
    args, rest = parser.parse_known_args()
    for key in ("server", "gen", "tokenizer"):
        if getattr(args, key):
            CONFIG[key] = getattr(args, key)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
