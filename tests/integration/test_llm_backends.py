"""The generative backends with the real model: llama.cpp in-process, and llama.cpp's OpenAI-compatible
server through the ``http`` backend, killed and restarted mid-run. No fake anywhere: the GGUF is the
configured default that ``scripts/setup.sh`` installs (``hybridrec llm install``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from hybridrec.config import ExtractionHttpSettings, Settings, load_settings
from hybridrec.contract import QueryIntent
from hybridrec.models.extraction import make_backends
from hybridrec.models.extraction.gguf import model_file
from hybridrec.models.extraction.llm import GenerativeExtractor, HttpChatModel
from hybridrec.models.extraction.schema import QueryTags
from hybridrec.models.extraction.untrusted import prepare
from hybridrec.taxonomy import load_taxonomy

pytestmark = pytest.mark.llm

REVIEWS = ["사장님이 친절하시고 조용해서 좋아요. 주차도 편해요.",
           "The carbonara was rich and the staff were lovely, but it is not cheap."]
QUERIES = {"페루 비자 발급": QueryIntent.UTILITY, "Peru visa requirements": QueryIntent.UTILITY,
           "축구 하이라이트 모음": QueryIntent.INTEREST, "soccer highlights": QueryIntent.INTEREST}


def _llamacpp_settings(**extraction) -> Settings:
    settings = load_settings()
    return settings.model_copy(update={"extraction": settings.extraction.model_copy(
        update={"backend": "llamacpp", **extraction})})


def _grounded(keyword: str, text: str) -> bool:
    return " ".join(keyword.split()) in " ".join(prepare(text, 2000).text.casefold().split())


@pytest.fixture(scope="module")
def backends():
    return make_backends(_llamacpp_settings(), threads=os.cpu_count())


def test_the_real_model_answers_valid_grounded_json_in_korean_and_english(backends):
    extractor, _ = backends
    generative = extractor.generative  # the model alone, before the offline reader votes
    for text, outcome in zip(REVIEWS, generative.extract(REVIEWS)):
        assert outcome.accepted, f"{text!r}: {outcome.reason}"
        assert outcome.value.keywords and all(_grounded(k.text, text) for k in outcome.value.keywords)
    tags = [set(o.value.tags) for o in extractor.extract(REVIEWS)]
    assert "service/friendly" in tags[0] and "mood/quiet" in tags[0]


def test_the_real_teacher_gets_the_clear_cases_right_with_a_confidence_from_the_model(backends):
    _, tagger = backends
    outcomes = tagger.tag_many([(q, []) for q in QUERIES])
    for (query, intent), outcome in zip(QUERIES.items(), outcomes):
        assert outcome.accepted, f"{query!r}: {outcome.reason}"
        assert outcome.value.intent is intent, f"{query!r}: {outcome.value}"
        assert 0 < outcome.value.confidence <= 1
    assert all(o.value.tags == () for o in outcomes[:2])
    assert all("sports/soccer" in o.value.tags for o in outcomes[2:])
    model_alone = tagger._impl.generative.tag_many([(q, []) for q in QUERIES])
    assert all(o.accepted and all(_grounded(k, q) for k in o.value.keywords) for q, o in zip(QUERIES, model_alone))
    assert len({o.value.confidence for o in model_alone}) > 1, "the model's confidence is not a constant"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` with the default GGUF on loopback."""

    def __init__(self, port: int):
        self.port = port
        self.process: subprocess.Popen | None = None
        self.log = open(os.devnull, "wb")

    def start(self) -> None:
        model = model_file(Settings().extraction.llamacpp.model, "", load_settings().home_path)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "hybridrec",
             "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "4096",
             "--n_threads", str(os.cpu_count())], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300  # loading 1.1 GB of weights on two shared, busy cores
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.5)
        raise RuntimeError("llama_cpp.server did not come up within 300 s")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)


def test_http_backend_against_a_real_llama_cpp_server_survives_a_restart_mid_run():
    server = LlamaServer(_free_port())
    server.start()
    try:
        # back-off 2, 4, ... 128 s: the retries outlast a restart (the server's start may take minutes here)
        cfg = ExtractionHttpSettings(endpoint=f"http://127.0.0.1:{server.port}/v1", model="hybridrec",
                                     schema_style="json_object", timeout_s=600, retries=7, backoff_s=2.0,
                                     concurrency=1)
        model = HttpChatModel(cfg)
        extractor = GenerativeExtractor(Settings().extraction, load_taxonomy(), model, "http")
        queries = list(QUERIES)
        first = extractor.tag_many([(queries[0], [])])
        assert first[0].accepted, first[0].reason

        restarted = threading.Event()
        failures: list[BaseException] = []

        def restart_when_busy() -> None:  # the server dies while the next batch is in flight, then comes back
            time.sleep(1.0)
            server.kill()
            try:
                server.start()
            except BaseException as err:  # noqa: BLE001 (reported by the assertion below)
                failures.append(err)
            restarted.set()

        threading.Thread(target=restart_when_busy, daemon=True).start()
        rest = extractor.tag_many([(q, []) for q in queries[1:]])
        model.close()
        assert restarted.wait(360) and not failures, failures
        outcomes: list[QueryTags] = [o.value for o in first + rest]
        assert len(outcomes) == len(queries) and all(o is not None for o in outcomes)  # nothing lost, one each
        assert all(all(_grounded(k, q) for k in o.keywords) for q, o in zip(queries, outcomes))
    finally:
        server.kill()
