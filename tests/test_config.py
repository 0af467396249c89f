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
