import subprocess
import sys

import pytest
import yaml

from pipeline import config
from pipeline.errors import PipelineError
from tests.conftest import ROOT, with_overrides


def test_project_params_are_valid(cfg):
    assert cfg.mnist.experts.num_experts >= 1
    assert len(cfg.mnist.data.mechanisms) == 10


@pytest.mark.parametrize("overrides,match", [
    ({"mnist.experts.num_experts": 0}, "'mnist.experts.num_experts' must be > 0"),
    ({"mnist.experts.num_expert": 3}, "unknown key 'mnist.experts.num_expert'"),
    ({"mnist.train.lr_experts": "fast"}, "'mnist.train.lr_experts' must be a number"),
    ({"mnist.train.iterations": 10.5}, "'mnist.train.iterations' must be of type int"),
    ({"mnist.train.assignment": "greedy"}, "'mnist.train.assignment' must be one of argmax, capacity"),
    ({"mnist.data.mechanisms": ["up", "sideways"]}, "unknown mechanism 'sideways'"),
    ({"mnist.data.mechanisms": ["up", "up"]}, "lists a mechanism twice"),
    ({"mnist.data.image_size": 30}, "'mnist.data.image_size' must be one of 28, 32"),
    ({"mnist.data.test_fraction": 0.7}, "'mnist.data.test_fraction' must be in"),
    ({"mnist.train.capacity_factor": 0.5}, "'mnist.train.capacity_factor' must be >= 1"),
    ({"device": "tpu"}, "'device' must be one of"),
    ({"seed": True}, "'seed' must be of type int"),
    ({"mnist.pretrain.shared": "yes"}, "'mnist.pretrain.shared' must be of type bool"),
    ({"datasets": ["mnist", "cifar"]}, "unknown dataset 'cifar'"),
])
def test_bad_params_name_the_key(params, overrides, match):
    with pytest.raises(PipelineError, match=match):
        config.from_dict(with_overrides(params, overrides))


def test_missing_key_is_named(params):
    bad = with_overrides(params, {})
    del bad["mnist"]["train"]["lr_experts"]
    with pytest.raises(PipelineError, match="missing key 'mnist.train.lr_experts'"):
        config.from_dict(bad)


def test_invalid_yaml_and_missing_file(tmp_path):
    (tmp_path / "p.yaml").write_text("seed: [1,\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        config.load(tmp_path / "p.yaml")
    with pytest.raises(PipelineError, match="not found"):
        config.load(tmp_path / "none.yaml")


def test_stage_cli_prints_one_line_exits_nonzero_and_writes_nothing(tmp_path, params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_overrides(params, {"mnist.experts.num_experts": -2})))
    r = subprocess.run([sys.executable, "-m", "pipeline.stages.download", "mnist"], cwd=tmp_path,
                       capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["error: params: 'mnist.experts.num_experts' must be > 0, got -2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# ---- params as people write them ----------------------------------------------------------------

def test_yaml_exponent_without_dot_is_a_number(tmp_path, params):
    assert yaml.safe_load("lr: 1e-3")["lr"] == "1e-3"          # why: PyYAML follows YAML 1.1 here
    text = yaml.safe_dump(with_overrides(params, {"mnist.train.lr_experts": "LR_A", "mnist.pretrain.lr": "LR_B"}))
    (tmp_path / "p.yaml").write_text(text.replace("LR_A", "1e-3").replace("LR_B", "2E-4"))
    cfg = config.load(tmp_path / "p.yaml")
    assert cfg.mnist.train.lr_experts == 0.001 and cfg.mnist.pretrain.lr == 0.0002
    assert type(cfg.mnist.train.lr_experts) is float


@pytest.mark.parametrize("value", ["fast", "1e-3x", "", "nan", "inf", True, False, None, [1]])
def test_non_numbers_are_still_refused(params, value):
    with pytest.raises(PipelineError, match="'mnist.train.lr_experts' must be a number"):
        config.from_dict(with_overrides(params, {"mnist.train.lr_experts": value}))


@pytest.mark.parametrize("value, want", [(True, "true"), (False, "false"), ("auto", "auto"),
                                         ("true", "true")])
def test_yaml_bools_stand_for_true_false_choices(params, value, want):
    cfg = config.from_dict(with_overrides(params, {"mnist.experts.batched": value}))
    assert cfg.mnist.experts.batched == want


@pytest.mark.parametrize("key, value", [("mnist.experts.batched", 1), ("mnist.experts.batched", "yes"),
                                        ("device", True), ("mnist.data.image_size", True)])
def test_bools_and_numbers_do_not_slip_into_other_choices(params, key, value):
    with pytest.raises(PipelineError, match=f"'{key}' must be one of"):
        config.from_dict(with_overrides(params, {key: value}))


def test_yaml_true_is_range_checked_like_the_string(params):
    bad = with_overrides(params, {"mnist.experts.arch": "unet", "mnist.experts.batched": True})
    with pytest.raises(PipelineError, match="batched form exists for arch 'paper' only"):
        config.from_dict(bad)


@pytest.mark.parametrize("arch", ["vae", "vae_local"])
def test_vae_experts_are_accepted_but_not_residual(params, arch):
    assert config.from_dict(with_overrides(params, {"mnist.experts.arch": arch})).mnist.experts.arch == arch
    bad = with_overrides(params, {"mnist.experts.arch": arch, "mnist.experts.residual": True})
    with pytest.raises(PipelineError, match=f"set residual: false for arch {arch}"):
        config.from_dict(bad)


# ---- every problem at once --------------------------------------------------------------------

THREE_MISTAKES = {"faces.data.test_fraction": 0.7,            # range check (validate)
                  "mnist.train.lr_experts": "fast",           # wrong type
                  "distributed.nproc": 0}                     # range check, earlier section


def test_all_problems_are_listed_in_key_order(params):
    bad = with_overrides(params, THREE_MISTAKES)
    del bad["mnist"]["pretrain"]["perturb"]                   # missing
    bad["faces"]["experts"]["num_expert"] = 3                 # unknown
    with pytest.raises(PipelineError) as e:
        config.from_dict(bad)
    assert str(e.value).splitlines() == [
        "params: 5 problems:",
        "  - 'distributed.nproc' must be >= 1, got 0",
        "  - missing key 'mnist.pretrain.perturb'; see params.yaml for its meaning",
        "  - 'mnist.train.lr_experts' must be a number, got 'fast'",
        "  - 'faces.data.test_fraction' must be in (0, 0.5), got 0.7",
        "  - unknown key 'faces.experts.num_expert' (allowed here: arch, batched, beta, channels, latent_dim, num_experts, "
        "residual); "
        "check for a typo",
    ]


def test_the_listing_is_the_same_every_time(params):
    messages = set()
    for _ in range(3):
        with pytest.raises(PipelineError) as e:
            config.from_dict(with_overrides(params, THREE_MISTAKES))
        messages.add(str(e.value))
    (msg,) = messages
    lines = msg.splitlines()
    assert lines[0] == "params: 3 problems:" and len(lines) == 4
    assert [line.split("'")[1] for line in lines[1:]] == [
        "distributed.nproc", "mnist.train.lr_experts", "faces.data.test_fraction"]


def test_range_checks_of_a_section_still_run_when_another_section_is_mistyped(params):
    bad = with_overrides(params, {"mnist.experts.num_experts": "two", "mnist.train.capacity_factor": 0.5,
                                  "datasets": ["mnist", "cifar"]})
    with pytest.raises(PipelineError) as e:
        config.from_dict(bad)
    msg = str(e.value)
    assert msg.startswith("params: 3 problems:")
    assert "'mnist.experts.num_experts' must be of type int" in msg
    assert "'mnist.train.capacity_factor' must be >= 1" in msg and "unknown dataset 'cifar'" in msg


def test_three_problems_reach_the_cli_as_one_error(tmp_path, params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_overrides(params, THREE_MISTAKES)))
    r = subprocess.run([sys.executable, "-m", "pipeline.stages.download", "mnist"], cwd=tmp_path,
                       capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0] == "error: params: 3 problems:" and len(r.stderr.splitlines()) == 4
