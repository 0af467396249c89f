"""params.yaml -> one validated, typed, frozen config object.

Every key is declared here with its type and allowed range; params.yaml holds (and
documents) every value, so there are no defaults in code. Missing or unknown keys, wrong
types and values out of range are all collected and raised as one PipelineError naming each
key, in the order of the keys. Nothing else in the package reads params.yaml.
"""
from __future__ import annotations

import dataclasses as dc
import math
import typing
from pathlib import Path
from typing import Callable, Literal, Optional

import yaml

from pipeline.errors import PipelineError
from pipeline.mechanisms import FACE_MECHANISMS, MECHANISMS, FaceStrength

RACES = ("white", "black", "asian", "indian", "others")   # UTKFace race codes 0..4

Check = Callable[[bool, str, str], None]   # check(cond, key, msg): note "'key' msg" unless cond


def _check(cond: bool, key: str, msg: str) -> None:
    """Fail at once: for lookups on a config that is already known to be valid."""
    if not cond:
        raise PipelineError(f"params: '{key}' {msg}")


class _Problems:
    """Every mistake found in params, in the order met (the order of the dataclass fields), so that
    one run names them all instead of one per edit-and-retry."""

    def __init__(self):
        self.items: list[str] = []

    def add(self, text: str) -> None:
        self.items.append(text)

    def check(self, cond: bool, key: str, msg: str) -> None:
        if not cond:
            self.add(f"'{key}' {msg}")

    def raise_any(self) -> None:
        if len(self.items) == 1:
            raise PipelineError(f"params: {self.items[0]}")
        if self.items:
            listed = "".join(f"\n  - {p}" for p in self.items)
            raise PipelineError(f"params: {len(self.items)} problems:{listed}")


_BAD = object()   # stands for a value that failed its check (already noted in _Problems)


@dc.dataclass(frozen=True)
class MnistData:
    source: Literal["embedded", "full"]
    image_size: Literal[28, 32]
    test_fraction: float
    val_fraction: float
    shift: int
    noise_variance: float
    mechanisms: tuple[str, ...]

    def validate(self, key: str, check: Check) -> None:
        for name in ("test_fraction", "val_fraction"):
            v = getattr(self, name)
            check(0.0 < v < 0.5, f"{key}.{name}", f"must be in (0, 0.5), got {v}")
        check(1 <= self.shift <= 8, f"{key}.shift", f"must be in [1, 8], got {self.shift}")
        check(0.0 < self.noise_variance <= 1.0, f"{key}.noise_variance",
               f"must be in (0, 1], got {self.noise_variance}")
        check(len(self.mechanisms) >= 1, f"{key}.mechanisms", "must list at least one mechanism")
        for m in self.mechanisms:
            check(m in MECHANISMS, f"{key}.mechanisms",
                   f"has unknown mechanism '{m}'; known: {', '.join(sorted(MECHANISMS))}")
        check(len(set(self.mechanisms)) == len(self.mechanisms), f"{key}.mechanisms",
               "lists a mechanism twice")


@dc.dataclass(frozen=True)
class FaceargLayout:
    layout: Literal["folders", "csv"]
    mapping: dict[str, str]      # folder name (folders) or CSV race value (csv) -> race group
    csv: Optional[str]           # annotation file, relative to the FaceARG root (layout csv)
    columns: dict[str, str]      # csv: {"file": ..., "race": ..., optional "age", "gender"} -> column

    def validate(self, key: str, check: Check) -> None:
        for k, race in self.mapping.items():
            check(race in RACES, f"{key}.mapping.{k}", f"must be one of {', '.join(RACES)}; got {race!r}")
        if self.layout == "csv":
            check(bool(self.csv), f"{key}.csv", "must name the annotation file when layout is csv")
            for need in ("file", "race"):
                check(need in self.columns, f"{key}.columns", f"must name the '{need}' column")


@dc.dataclass(frozen=True)
class FacesSource:
    kind: Literal["utkface", "facearg"]
    archive: str                 # file name looked up in the mirror (and the download name)
    path: Optional[str]          # a user-supplied archive or folder (FaceARG); null = mirror, then urls
    mirror: Optional[str]        # mirror folder; env ICM_DATA_MIRROR, when set, takes precedence
    urls: tuple[str, ...]
    sha256: Optional[str]
    facearg: Optional[FaceargLayout]

    def validate(self, key: str, check: Check) -> None:
        if self.sha256:
            ok = len(self.sha256) == 64 and all(c in "0123456789abcdefABCDEF" for c in self.sha256)
            check(ok, f"{key}.sha256", f"must be 64 hex digits or null, got {self.sha256!r}")
        check(self.kind != "facearg" or self.facearg is not None, f"{key}.facearg",
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

    def validate(self, key: str, check: Check) -> None:
        for name in ("test_fraction", "val_fraction"):
            v = getattr(self, name)
            check(0.0 < v < 0.5, f"{key}.{name}", f"must be in (0, 0.5), got {v}")
        check(self.cap_per_group >= 10, f"{key}.cap_per_group", f"must be >= 10, got {self.cap_per_group}")
        for g in (self.canonical, *self.transformed):
            check(g in RACES, f"{key}.canonical/transformed", f"has unknown group {g!r}; use {', '.join(RACES)}")
        check(self.canonical not in self.transformed, f"{key}.transformed", "must not contain the canonical group")
        if self.mode == "demographic":
            check(len(self.transformed) >= 1, f"{key}.transformed", "must list at least one group")
        else:
            check(len(self.mechanisms) >= 1, f"{key}.mechanisms", "must list at least one mechanism")
        for m in self.mechanisms:
            check(m in FACE_MECHANISMS, f"{key}.mechanisms",
                   f"has unknown mechanism '{m}'; known: {', '.join(sorted(FACE_MECHANISMS))}")
        check(len(set(self.mechanisms)) == len(self.mechanisms), f"{key}.mechanisms", "lists a mechanism twice")
        st, k = self.strength, f"{key}.strength"
        check(0 <= st.shift <= self.image_size // 4, f"{k}.shift", f"must be in [0, image_size/4], got {st.shift}")
        check(0.0 <= st.cast <= 1.0, f"{k}.cast", f"must be in [0, 1], got {st.cast}")
        check(-1.0 <= st.brightness <= 1.0, f"{k}.brightness", f"must be in [-1, 1], got {st.brightness}")
        check(0.0 < st.contrast <= 2.0, f"{k}.contrast", f"must be in (0, 2], got {st.contrast}")
        check(0.0 < st.band <= 0.5, f"{k}.band", f"must be in (0, 0.5], got {st.band}")
        check(0.0 < st.blur <= 0.25, f"{k}.blur", f"must be in (0, 0.25], got {st.blur}")


@dc.dataclass(frozen=True)
class Classifier:
    epochs: int
    batch_size: int
    lr: float

    def validate(self, key: str, check: Check) -> None:
        _positive(self, key, ("epochs", "batch_size", "lr"), check)


@dc.dataclass(frozen=True)
class Experts:
    num_experts: int
    channels: int
    arch: Literal["paper", "unet", "vae", "vae_local"]
    batched: Literal["auto", "true", "false"]
    residual: bool               # E(x) = clamp(x + g(x)), g's last layer zero: exactly the identity at start
    latent_dim: int              # arch vae: Gaussian latent dimensions; vae_local: latent channels per pixel
    beta: float                  # arch vae: KL weight (1: VAE, > 1: beta-VAE), pretraining and winners' loss

    def validate(self, key: str, check: Check) -> None:
        _positive(self, key, ("num_experts", "channels", "latent_dim"), check)
        check(self.beta >= 0, f"{key}.beta", f"must be >= 0, got {self.beta}")
        check(not self.residual or self.arch in ("paper", "unet"), f"{key}.residual",
              f"residual experts exist for arch paper and unet only; set residual: false for arch {self.arch}")
        check(self.arch == "paper" or self.batched != "true", f"{key}.batched",
               "the batched form exists for arch 'paper' only; use auto or false")


@dc.dataclass(frozen=True)
class Pretrain:
    lr: float
    batch_size: int
    mse_threshold: float
    max_iterations: int
    shared: bool
    perturb: float

    def validate(self, key: str, check: Check) -> None:
        _positive(self, key, ("lr", "batch_size", "mse_threshold", "max_iterations"), check)
        check(self.perturb >= 0, f"{key}.perturb", f"must be >= 0, got {self.perturb}")


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
    identity_blind_offsets: bool  # the identity term ignores each channel's mean change (global casts, brightness)
    spectral_norm: bool          # spectral normalisation on every D layer
    r1_gamma: float              # R1 penalty gamma/2 * E|grad_x D(x_real)|^2 (0 = off)
    ema: float                   # EMA decay of the expert weights used for evaluation (0 = off)
    hysteresis: float            # a sample's last owner keeps it unless beaten by this logit margin (0 = off)
    vae_weight: float            # arch vae: weight of the winner's reconstruction + beta * KL term
    instance_noise: float        # std of Gaussian noise on D's inputs while training, decayed linearly to 0
    lr_specialized_experts: float        # the experts' lr x this from the first specialised check on (1 = off)
    lr_specialized_discriminator: float  # D's lr x this from the first specialised check on (1 = off)
    raw_fake_weight: float               # D also learns the raw transformed inputs as fakes, this weight (0 = off)
    winner_fake_weight: float            # once specialised, D also learns the winners' outputs as fakes (0 = off)

    def validate(self, key: str, check: Check) -> None:
        check(self.identity_weight >= 0, f"{key}.identity_weight", f"must be >= 0, got {self.identity_weight}")
        check(self.r1_gamma >= 0, f"{key}.r1_gamma", f"must be >= 0, got {self.r1_gamma}")
        check(0.0 <= self.ema < 1.0, f"{key}.ema", f"must be in [0, 1), got {self.ema}")
        check(self.hysteresis >= 0, f"{key}.hysteresis", f"must be >= 0, got {self.hysteresis}")
        check(self.vae_weight >= 0, f"{key}.vae_weight", f"must be >= 0, got {self.vae_weight}")
        check(self.raw_fake_weight >= 0, f"{key}.raw_fake_weight", f"must be >= 0, got {self.raw_fake_weight}")
        check(self.winner_fake_weight >= 0, f"{key}.winner_fake_weight",
              f"must be >= 0, got {self.winner_fake_weight}")
        check(self.instance_noise >= 0, f"{key}.instance_noise", f"must be >= 0, got {self.instance_noise}")
        for name in ("lr_specialized_experts", "lr_specialized_discriminator"):
            check(0.0 <= getattr(self, name) <= 1.0, f"{key}.{name}",
                  f"must be in [0, 1] (1 = off), got {getattr(self, name)}")
        _positive(self, key, ("iterations", "batch_size", "lr_experts", "lr_discriminator",
                              "check_every", "check_size", "checkpoint_every"), check)
        for name in ("reseed_every", "reseed_below", "reseed_perturb"):
            check(getattr(self, name) >= 0, f"{key}.{name}", f"must be >= 0, got {getattr(self, name)}")
        check(self.reseed_above >= 1.0, f"{key}.reseed_above", f"must be >= 1, got {self.reseed_above}")
        check(0.0 < self.lr_final_fraction <= 1.0, f"{key}.lr_final_fraction",
               f"must be in (0, 1], got {self.lr_final_fraction}")
        check(self.capacity_factor >= 1.0, f"{key}.capacity_factor",
               f"must be >= 1 (at 1 every expert takes exactly its share), got {self.capacity_factor}")
        check(0.0 < self.purity_threshold <= 1.0, f"{key}.purity_threshold",
               f"must be in (0, 1], got {self.purity_threshold}")


@dc.dataclass(frozen=True)
class Evaluate:
    batch_size: int

    def validate(self, key: str, check: Check) -> None:
        _positive(self, key, ("batch_size",), check)


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

    def validate(self, key: str, check: Check) -> None:
        check(self.nproc >= 1, f"{key}.nproc", f"must be >= 1, got {self.nproc}")


@dc.dataclass(frozen=True)
class Transfer:
    datasets: tuple[str, ...]                    # MNIST datasets whose experts are tried on Omniglot
    archives: tuple[str, ...]                    # zips under <mirror>/omniglot/
    sha256: tuple[str, ...]                      # one per archive ("" = no check)
    mirror: Optional[str]                        # env ICM_DATA_MIRROR, when set, takes precedence
    max_images: int                              # 0 = every character
    batch_size: int

    def validate(self, key: str, check: Check) -> None:
        check(len(self.sha256) == len(self.archives), f"{key}.sha256", "must give one checksum per archive")
        check(self.max_images >= 0, f"{key}.max_images", f"must be >= 0, got {self.max_images}")
        check(self.batch_size > 0, f"{key}.batch_size", f"must be > 0, got {self.batch_size}")
        for name in self.datasets:
            check(name == "mnist", f"{key}.datasets", f"names {name!r}; only mnist has the paper's transfer")


@dc.dataclass(frozen=True)
class Seeds:
    datasets: tuple[str, ...]                    # datasets whose whole chain the seeds stage reruns per seed
    values: tuple[int, ...]                      # the seeds (the main chain uses `seed`)

    def validate(self, key: str, check: Check) -> None:
        check(len(self.values) >= 2, f"{key}.values", f"needs at least 2 seeds for a spread, got {list(self.values)}")
        check(len(set(self.values)) == len(self.values), f"{key}.values", f"repeats a seed: {list(self.values)}")
        for name in self.datasets:
            check(name == "mnist", f"{key}.datasets", f"names {name!r}; the seeds sweep runs mnist only "
                  "(a faces chain takes ~15 min per seed on 2 cores; use bench/variants.py --seeds there)")


@dc.dataclass(frozen=True)
class Latent:
    datasets: tuple[str, ...]                    # face datasets whose raw/ faces (every race) it studies
    image_size: int                              # 64 (default) or 32
    max_faces: int                               # faces drawn (evenly over the manifest); 0 = all
    test_fraction: float
    channels: int                                # encoder widths channels, 2x, 4x
    latent_dim: int
    betas: tuple[float, ...]                     # one VAE per beta; the first and the last are compared
    iterations: int
    batch_size: int
    lr: float
    age_edges: tuple[int, ...]                   # age bins for the mutual information
    top_k: int                                   # dimensions in the traversal figure
    traversal_faces: int
    probe_pixels: int                            # the pixel probe's pooled side
    batch_eval: int

    def validate(self, key: str, check: Check) -> None:
        check(self.image_size in (32, 64), f"{key}.image_size", f"must be 32 or 64, got {self.image_size}")
        check(len(self.betas) >= 1 and all(b >= 0 for b in self.betas), f"{key}.betas",
              f"must list betas >= 0, got {list(self.betas)}")
        check(0 < self.test_fraction < 1, f"{key}.test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        check(self.max_faces >= 0, f"{key}.max_faces", f"must be >= 0, got {self.max_faces}")
        check(list(self.age_edges) == sorted(set(self.age_edges)), f"{key}.age_edges",
              f"must be increasing, got {list(self.age_edges)}")
        _positive(self, key, ("channels", "latent_dim", "iterations", "batch_size", "lr", "top_k",
                              "traversal_faces", "probe_pixels", "batch_eval"), check)
        check(self.latent_dim >= 2, f"{key}.latent_dim", "must be >= 2 (MIG compares two dimensions)")


@dc.dataclass(frozen=True)
class Debias:
    datasets: tuple[str, ...]                    # face datasets whose raw/ faces (every race) it reads
    image_size: int                              # 64 (default) or 32
    race_mix: dict[str, float]                   # race -> share of the training set
    train_size: int
    test_per_cell: int                           # test faces per race x gender cell
    seeds: tuple[int, ...]                       # one run of every arm per seed
    arms: tuple[Literal["erm", "reweight", "dbvae"], ...]
    epochs: int
    batch_size: int
    lr: float
    channels: int                                # encoder widths channels, 2x, 4x
    latent_dim: int
    hflip: bool                                  # random horizontal flips in training (every arm)
    recon_weight: float                          # dbvae: weight of (reconstruction + kl_weight * KL) / pixels
    kl_weight: float
    rule: Literal["max", "product"]              # dbvae: how the per-dimension densities combine
    bins: int
    alpha: float
    batch_eval: int

    def validate(self, key: str, check: Check) -> None:
        check(self.image_size in (32, 64), f"{key}.image_size", f"must be 32 or 64, got {self.image_size}")
        unknown = sorted(set(self.race_mix) - set(RACES))
        check(not unknown, f"{key}.race_mix", f"names unknown races {unknown}; use {', '.join(RACES)}")
        check(all(v >= 0 for v in self.race_mix.values()) and abs(sum(self.race_mix.values()) - 1) < 1e-6,
              f"{key}.race_mix", f"shares must be >= 0 and sum to 1, got {dict(self.race_mix)}")
        check(len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds), f"{key}.seeds",
              f"must list distinct seeds, got {list(self.seeds)}")
        check(len(self.arms) >= 1 and len(set(self.arms)) == len(self.arms), f"{key}.arms",
              f"must list distinct arms, got {list(self.arms)}")
        check(self.alpha >= 0, f"{key}.alpha", f"must be >= 0, got {self.alpha}")
        check(self.recon_weight >= 0 and self.kl_weight >= 0, f"{key}.recon_weight",
              "and kl_weight must be >= 0")
        _positive(self, key, ("train_size", "test_per_cell", "epochs", "batch_size", "lr", "channels",
                              "latent_dim", "bins", "batch_eval"), check)


@dc.dataclass(frozen=True)
class Config:
    seed: int
    device: Literal["auto", "cpu", "cuda", "mps"]
    distributed: Distributed
    datasets: tuple[str, ...]
    transfer: Transfer
    seeds: Seeds
    latent: Latent
    debias: Debias
    mnist: MnistConfig
    faces: FacesConfig
    faces_synthetic: FacesConfig
    facearg: FacesConfig

    def dataset(self, name: str):
        _check(name in self.datasets, "datasets", f"does not list '{name}'")
        return getattr(self, name)


def _positive(obj, key: str, names, check: Check) -> None:
    for name in names:
        v = getattr(obj, name)
        check(v > 0, f"{key}.{name}", f"must be > 0, got {v}")


def _as_float(value):
    """A number, or a string that reads as a finite one: PyYAML (YAML 1.1) loads `1e-3` as a string."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if not isinstance(value, str) or math.isfinite(number) else None


def _literal(allowed: tuple, value):
    """`value` if it is one of `allowed` (same type: 1 is not True); YAML's true/false may stand for
    the strings 'true'/'false', as people write `batched: true`."""
    if isinstance(value, bool) and str(value).lower() in allowed:
        return str(value).lower()
    return value if value in allowed and type(value) in {type(a) for a in allowed} else _BAD


def _coerce(tp, value, key: str, problems: _Problems):
    """Check `value` against the annotation `tp`: the typed value, or _BAD after noting the problem."""
    def bad(msg: str):
        problems.add(f"'{key}' {msg}")
        return _BAD

    origin = typing.get_origin(tp)
    if dc.is_dataclass(tp):
        if not isinstance(value, dict):
            return bad(f"must be a mapping, got {type(value).__name__}")
        return _build(tp, value, key, problems)
    if origin is Literal:
        allowed = typing.get_args(tp)
        out = _literal(allowed, value)
        return bad(f"must be one of {', '.join(map(str, allowed))}; got {value!r}") if out is _BAD else out
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        if not isinstance(value, list):
            return bad(f"must be a list, got {type(value).__name__}")
        items = [_coerce(inner, v, f"{key}[{i}]", problems) for i, v in enumerate(value)]
        return _BAD if any(v is _BAD for v in items) else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            return bad(f"must be a mapping, got {type(value).__name__}")
        inner = typing.get_args(tp)[1]
        items = {str(k): _coerce(inner, v, f"{key}.{k}", problems) for k, v in value.items()}
        return _BAD if any(v is _BAD for v in items.values()) else items
    if origin is typing.Union:  # Optional[X]
        return None if value is None else _coerce(typing.get_args(tp)[0], value, key, problems)
    if tp is float:
        number = _as_float(value)
        return bad(f"must be a number, got {value!r}") if number is None else number
    return value if type(value) is tp else bad(f"must be of type {tp.__name__}, got {value!r}")


def _build(cls, data: dict, key: str, problems: _Problems):
    """`cls` from `data`, noting unknown, missing and mistyped keys. Its validate() range checks run
    only when all its values parsed (they may combine several values); other sections still run theirs."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dc.fields(cls)]
    prefix = f"{key}." if key else ""
    for k in data:
        if k not in names:
            problems.add(f"unknown key '{prefix}{k}' (allowed here: {', '.join(sorted(names))}); "
                         "check for a typo")
    kwargs = {}
    for n in names:
        if n in data:
            kwargs[n] = _coerce(hints[n], data[n], prefix + n, problems)
        else:
            problems.add(f"missing key '{prefix}{n}'; see params.yaml for its meaning")
    if len(kwargs) < len(names) or any(v is _BAD for v in kwargs.values()):
        return _BAD
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(key, problems.check)
    return obj


def _check_datasets(names, check: Check) -> None:
    """Checked on the raw list, so a misspelt dataset is reported even when other sections fail."""
    known = {f.name for f in dc.fields(Config)} - {"seed", "device", "distributed", "datasets", "transfer", "seeds", "latent", "debias"}
    for name in names if isinstance(names, list) else []:
        check(not isinstance(name, str) or name in known, "datasets", f"names unknown dataset '{name}'")


def from_dict(data: dict) -> Config:
    """The typed config, or one PipelineError listing every problem found."""
    if not isinstance(data, dict):
        raise PipelineError("params: the file must hold a mapping of keys")
    problems = _Problems()
    cfg = _build(Config, data, "", problems)
    _check_datasets(data.get("datasets"), problems.check)
    if cfg is not _BAD:
        for section in ("transfer", "seeds", "latent", "debias"):
            for name in getattr(cfg, section).datasets:
                problems.check(name in cfg.datasets, f"{section}.datasets",
                               f"names {name!r}, which 'datasets' does not list; add it there or remove it here")
        for section in ("latent", "debias"):
            for name in getattr(cfg, section).datasets:
                ds = getattr(cfg, name, None)
                problems.check(isinstance(ds, FacesConfig) and ds.data.source.kind == "utkface",
                               f"{section}.datasets", f"names {name!r}; the {section} stage needs UTKFace faces "
                               "(age, gender and race labels), e.g. faces_synthetic")
    problems.raise_any()
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
