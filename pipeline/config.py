"""params.yaml -> one validated, typed, frozen config object.

Every key is declared here with its type and allowed range; params.yaml holds (and
documents) every value, so there are no defaults in code. Missing or unknown keys, wrong
types and values out of range raise PipelineError naming the key. Nothing else in the
package reads params.yaml.
"""
from __future__ import annotations

import dataclasses as dc
import typing
from pathlib import Path
from typing import Literal, Optional

import yaml

from pipeline.errors import PipelineError
from pipeline.mechanisms import FACE_MECHANISMS, MECHANISMS, FaceStrength

RACES = ("white", "black", "asian", "indian", "others")   # UTKFace race codes 0..4

def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise PipelineError(f"params: '{key}' {msg}")


@dc.dataclass(frozen=True)
class MnistData:
    source: Literal["embedded", "full"]
    image_size: Literal[28, 32]
    test_fraction: float
    val_fraction: float
    shift: int
    noise_variance: float
    mechanisms: tuple[str, ...]

    def validate(self, key: str) -> None:
        for name in ("test_fraction", "val_fraction"):
            v = getattr(self, name)
            _check(0.0 < v < 0.5, f"{key}.{name}", f"must be in (0, 0.5), got {v}")
        _check(1 <= self.shift <= 8, f"{key}.shift", f"must be in [1, 8], got {self.shift}")
        _check(0.0 < self.noise_variance <= 1.0, f"{key}.noise_variance",
               f"must be in (0, 1], got {self.noise_variance}")
        _check(len(self.mechanisms) >= 1, f"{key}.mechanisms", "must list at least one mechanism")
        for m in self.mechanisms:
            _check(m in MECHANISMS, f"{key}.mechanisms",
                   f"has unknown mechanism '{m}'; known: {', '.join(sorted(MECHANISMS))}")
        _check(len(set(self.mechanisms)) == len(self.mechanisms), f"{key}.mechanisms",
               "lists a mechanism twice")


@dc.dataclass(frozen=True)
class FaceargLayout:
    layout: Literal["folders", "csv"]
    mapping: dict[str, str]      # folder name (folders) or CSV race value (csv) -> race group
    csv: Optional[str]           # annotation file, relative to the FaceARG root (layout csv)
    columns: dict[str, str]      # csv: {"file": ..., "race": ..., optional "age", "gender"} -> column

    def validate(self, key: str) -> None:
        for k, race in self.mapping.items():
            _check(race in RACES, f"{key}.mapping.{k}", f"must be one of {', '.join(RACES)}; got {race!r}")
        if self.layout == "csv":
            _check(bool(self.csv), f"{key}.csv", "must name the annotation file when layout is csv")
            for need in ("file", "race"):
                _check(need in self.columns, f"{key}.columns", f"must name the '{need}' column")


@dc.dataclass(frozen=True)
class FacesSource:
    kind: Literal["utkface", "facearg"]
    archive: str                 # file name looked up in the mirror (and the download name)
    path: Optional[str]          # a user-supplied archive or folder (FaceARG); null = mirror, then urls
    mirror: Optional[str]        # mirror folder; env ICM_DATA_MIRROR, when set, takes precedence
    urls: tuple[str, ...]
    sha256: Optional[str]
    facearg: Optional[FaceargLayout]

    def validate(self, key: str) -> None:
        if self.sha256:
            ok = len(self.sha256) == 64 and all(c in "0123456789abcdefABCDEF" for c in self.sha256)
            _check(ok, f"{key}.sha256", f"must be 64 hex digits or null, got {self.sha256!r}")
        _check(self.kind != "facearg" or self.facearg is not None, f"{key}.facearg",
               "must give the FaceARG layout when kind is facearg")


@dc.dataclass(frozen=True)
class FacesData:
    source: FacesSource
    mode: Literal["demographic", "synthetic"]
    canonical: str               # race group used as P
    transformed: tuple[str, ...]  # demographic mode: the race groups treated as Q_j
    cap_per_group: int
    image_size: Literal[32, 64]
    test_fraction: float
    val_fraction: float
    mechanisms: tuple[str, ...]  # synthetic mode: FACE_MECHANISMS applied to canonical faces
    strength: FaceStrength         # mechanism strengths (synthetic mode)

    def validate(self, key: str) -> None:
        for name in ("test_fraction", "val_fraction"):
            v = getattr(self, name)
            _check(0.0 < v < 0.5, f"{key}.{name}", f"must be in (0, 0.5), got {v}")
        _check(self.cap_per_group >= 10, f"{key}.cap_per_group", f"must be >= 10, got {self.cap_per_group}")
        for g in (self.canonical, *self.transformed):
            _check(g in RACES, f"{key}.canonical/transformed", f"has unknown group {g!r}; use {', '.join(RACES)}")
        _check(self.canonical not in self.transformed, f"{key}.transformed", "must not contain the canonical group")
        if self.mode == "demographic":
            _check(len(self.transformed) >= 1, f"{key}.transformed", "must list at least one group")
        else:
            _check(len(self.mechanisms) >= 1, f"{key}.mechanisms", "must list at least one mechanism")
        for m in self.mechanisms:
            _check(m in FACE_MECHANISMS, f"{key}.mechanisms",
                   f"has unknown mechanism '{m}'; known: {', '.join(sorted(FACE_MECHANISMS))}")
        _check(len(set(self.mechanisms)) == len(self.mechanisms), f"{key}.mechanisms", "lists a mechanism twice")
        st, k = self.strength, f"{key}.strength"
        _check(0 <= st.shift <= self.image_size // 4, f"{k}.shift", f"must be in [0, image_size/4], got {st.shift}")
        _check(0.0 <= st.cast <= 1.0, f"{k}.cast", f"must be in [0, 1], got {st.cast}")
        _check(-1.0 <= st.brightness <= 1.0, f"{k}.brightness", f"must be in [-1, 1], got {st.brightness}")
        _check(0.0 < st.contrast <= 2.0, f"{k}.contrast", f"must be in (0, 2], got {st.contrast}")
        _check(0.0 < st.band <= 0.5, f"{k}.band", f"must be in (0, 0.5], got {st.band}")
        _check(0.0 < st.blur <= 0.25, f"{k}.blur", f"must be in (0, 0.25], got {st.blur}")


@dc.dataclass(frozen=True)
class Classifier:
    epochs: int
    batch_size: int
    lr: float

    def validate(self, key: str) -> None:
        _positive(self, key, ("epochs", "batch_size", "lr"))


@dc.dataclass(frozen=True)
class Experts:
    num_experts: int
    channels: int
    arch: Literal["paper", "unet"]
    batched: Literal["auto", "true", "false"]

    def validate(self, key: str) -> None:
        _positive(self, key, ("num_experts", "channels"))
        _check(self.arch == "paper" or self.batched != "true", f"{key}.batched",
               "the batched form exists for arch 'paper' only; use auto or false")


@dc.dataclass(frozen=True)
class Pretrain:
    lr: float
    batch_size: int
    mse_threshold: float
    max_iterations: int
    shared: bool
    perturb: float

    def validate(self, key: str) -> None:
        _positive(self, key, ("lr", "batch_size", "mse_threshold", "max_iterations"))
        _check(self.perturb >= 0, f"{key}.perturb", f"must be >= 0, got {self.perturb}")


@dc.dataclass(frozen=True)
class Train:
    iterations: int
    batch_size: int
    lr_experts: float
    lr_discriminator: float
    lr_final_fraction: float
    assignment: Literal["argmax", "capacity"]
    capacity_factor: float
    check_every: int
    check_size: int
    purity_threshold: float
    checkpoint_every: int
    reseed_every: int
    reseed_below: float
    reseed_above: float
    reseed_perturb: float
    precision: Literal["auto", "fp32", "bf16"]
    identity_weight: float

    def validate(self, key: str) -> None:
        _check(self.identity_weight >= 0, f"{key}.identity_weight", f"must be >= 0, got {self.identity_weight}")
        _positive(self, key, ("iterations", "batch_size", "lr_experts", "lr_discriminator",
                              "check_every", "check_size", "checkpoint_every"))
        for name in ("reseed_every", "reseed_below", "reseed_perturb"):
            _check(getattr(self, name) >= 0, f"{key}.{name}", f"must be >= 0, got {getattr(self, name)}")
        _check(self.reseed_above >= 1.0, f"{key}.reseed_above", f"must be >= 1, got {self.reseed_above}")
        _check(0.0 < self.lr_final_fraction <= 1.0, f"{key}.lr_final_fraction",
               f"must be in (0, 1], got {self.lr_final_fraction}")
        _check(self.capacity_factor >= 1.0, f"{key}.capacity_factor",
               f"must be >= 1 (at 1 every expert takes exactly its share), got {self.capacity_factor}")
        _check(0.0 < self.purity_threshold <= 1.0, f"{key}.purity_threshold",
               f"must be in (0, 1], got {self.purity_threshold}")


@dc.dataclass(frozen=True)
class Evaluate:
    batch_size: int

    def validate(self, key: str) -> None:
        _positive(self, key, ("batch_size",))


@dc.dataclass(frozen=True)
class MnistConfig:
    data: MnistData
    classifier: Classifier
    experts: Experts
    pretrain: Pretrain
    train: Train
    evaluate: Evaluate


@dc.dataclass(frozen=True)
class FacesConfig:
    data: FacesData
    classifier: Classifier
    experts: Experts
    pretrain: Pretrain
    train: Train
    evaluate: Evaluate


@dc.dataclass(frozen=True)
class Distributed:
    nproc: int                                   # train stage processes; > 1 relaunches it under torchrun
    backend: Literal["auto", "gloo", "nccl"]     # auto: nccl on CUDA, gloo on CPU

    def validate(self, key: str) -> None:
        _check(self.nproc >= 1, f"{key}.nproc", f"must be >= 1, got {self.nproc}")


@dc.dataclass(frozen=True)
class Config:
    seed: int
    device: Literal["auto", "cpu", "cuda", "mps"]
    distributed: Distributed
    datasets: tuple[str, ...]
    mnist: MnistConfig
    faces: FacesConfig
    faces_synthetic: FacesConfig
    facearg: FacesConfig

    def dataset(self, name: str):
        _check(name in self.datasets, "datasets", f"does not list '{name}'")
        return getattr(self, name)


def _positive(obj, key: str, names) -> None:
    for name in names:
        v = getattr(obj, name)
        _check(v > 0, f"{key}.{name}", f"must be > 0, got {v}")


def _coerce(tp, value, key: str):
    """Check `value` against the annotation `tp`, returning the typed value."""
    origin = typing.get_origin(tp)
    if dc.is_dataclass(tp):
        _check(isinstance(value, dict), key, f"must be a mapping, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        _check(value in allowed and type(value) in {type(a) for a in allowed}, key,
               f"must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        _check(isinstance(value, list), key, f"must be a list, got {type(value).__name__}")
        return tuple(_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _check(isinstance(value, dict), key, f"must be a mapping, got {type(value).__name__}")
        inner = typing.get_args(tp)[1]
        return {str(k): _coerce(inner, v, f"{key}.{k}") for k, v in value.items()}
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _coerce(typing.get_args(tp)[0], value, key)
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        _check(ok, key, f"must be a number, got {value!r}")
        return float(value)
    _check(type(value) is tp, key, f"must be of type {tp.__name__}, got {value!r}")
    return value


def _build(cls, data: dict, key: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dc.fields(cls)}
    unknown = sorted(set(data) - names)
    prefix = f"{key}." if key else ""
    if unknown:
        raise PipelineError(f"params: unknown key '{prefix}{unknown[0]}' (allowed here: "
                            f"{', '.join(sorted(names))}); check for a typo")
    missing = [n for n in (f.name for f in dc.fields(cls)) if n not in data]
    if missing:
        raise PipelineError(f"params: missing key '{prefix}{missing[0]}'; see params.yaml for its meaning")
    kwargs = {n: _coerce(hints[n], data[n], prefix + n) for n in names}
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(key)
    return obj


def from_dict(data: dict) -> Config:
    if not isinstance(data, dict):
        raise PipelineError("params: the file must hold a mapping of keys")
    cfg = _build(Config, data, "")
    for name in cfg.datasets:
        _check(name in {f.name for f in dc.fields(Config)} - {"seed", "device", "distributed", "datasets"},
               "datasets", f"names unknown dataset '{name}'")
    return cfg


def load(path: str | Path = "params.yaml") -> Config:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"params: {path} not found; run from the project root")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise PipelineError(f"params: {path} is not valid YAML: {e}".splitlines()[0]) from e
    return from_dict(data)


def as_dict(obj) -> dict:
    """Plain nested dict of a config section (for fingerprints and reports)."""
    return dc.asdict(obj)
