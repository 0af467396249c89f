"""Resume rules: only an interrupted run with identical params, inputs and code is resumed."""
import torch

from pipeline import checkpoint


def _fp(tmp_path, code="x = 1\n", weight=1.0, lr=1e-3):
    src = tmp_path / "module.py"
    src.write_text(code)
    return checkpoint.fingerprint({"lr": lr}, {"pretrained": {"w": torch.full((2,), weight)}}, [src])


def test_fingerprint_changes_with_code_inputs_and_params(tmp_path):
    base = _fp(tmp_path)
    assert _fp(tmp_path) == base
    assert _fp(tmp_path, code="x = 1\n# a comment\n") != base
    assert _fp(tmp_path, weight=1.0 + 1e-6) != base
    assert _fp(tmp_path, lr=2e-3) != base


def test_code_files_are_the_loaded_pipeline_modules():
    names = {f.name for f in checkpoint.code_files()}
    assert {"checkpoint.py", "io.py"} <= names and all(f.suffix == ".py" for f in checkpoint.code_files())


def test_interrupted_run_resumes_only_with_the_same_fingerprint(tmp_path):
    d = tmp_path / "checkpoints"
    assert checkpoint.resumable(d, "a") == (None, "no checkpoint")
    checkpoint.save(d, "a", {"iteration": 40})
    (d / ".train.pt.abc123").write_bytes(b"half a save")      # left by a killed save
    state, why = checkpoint.resumable(d, "a")
    assert state == {"iteration": 40} and why.endswith("at iteration 40")
    assert not (d / ".train.pt.abc123").exists()
    state, why = checkpoint.resumable(d, "b")
    assert state is None and "other params, inputs or code" in why


def test_a_finished_run_is_never_resumed(tmp_path):
    d = tmp_path / "checkpoints"
    checkpoint.save(d, "a", {"iteration": 40})
    checkpoint.finish(d, 50)
    assert sorted(p.name for p in d.iterdir()) == ["complete.json"]
    assert checkpoint.resumable(d, "a") == (None, "the previous run finished")
