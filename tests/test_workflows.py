"""Researcher workflows, end to end with the real `dvc` and real training (no mocks), each test in its
own temporary git + DVC project: comparing two commits, a queued experiment sweep, and an
interrupted training run that resumes to exactly the weights of an uninterrupted one.

Every test starts from its own copy of the session's tiny project (TINY params, reproduced and
committed once: conftest.tiny_project).

Behaviours of DVC 3.x these tests pin down (see the asserts):
- `dvc exp run --queue -S 'key=a,b'` is a sweep: DVC parses -S with Hydra's override grammar
  (hydra-core is a DVC dependency; `hydra.enabled` is not needed) and queues one experiment per
  value; several -S sweeps give their Cartesian product. Sweeps are refused without --queue.
- `dvc queue start -j N` returns at once, leaving N detached celery workers (`dvc exp queue-worker`)
  that inherit its stdout/stderr: capture those with a pipe and reading it to EOF blocks until the
  workers exit. The workers shut themselves down ~10 s after the queue is empty; `dvc queue stop`
  ends them at once. There is no "wait" command: poll `dvc queue status` until nothing is
  Queued/Running.
- SIGTERM to the process group of `dvc repro` kills DVC and the stage at once (DVC installs no
  SIGTERM handler; it ignores SIGINT only while a stage runs). DVC's repo lock is an fcntl lock and
  dies with the process, but `.dvc/tmp/rwlock` keeps entries naming the dead PID. The next
  `dvc repro` removes, with a warning, every such entry for paths it locks itself, so a user simply
  re-runs `dvc repro`; the entries it does not touch stay behind harmlessly (read locks on code and
  params files) until `.dvc/tmp/rwlock` is deleted while no DVC command runs.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import copy_project, with_overrides
from tests.test_e2e import TINY, dvc

# One intra-op thread per stage process. On this shared 2-core machine torch's default (2 threads)
# makes a training iteration ~15x slower whenever the other core is busy; the results are the same.
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1"}
WALL_CLOCK = {"train.seconds", "train.iters_per_second", "train.seconds_to_specialize"}
CKPT = "models/mnist/checkpoints/train.pt"
DONE = "models/mnist/checkpoints/complete.json"


def run(cwd: Path, *args: str) -> str:
    """`dvc <args>` in `cwd` (must succeed); its stdout."""
    return dvc(cwd, *args, env=ENV)


def run_both(cwd: Path, *args: str) -> tuple[str, str]:
    """`dvc <args>` in `cwd` (must succeed); stdout and stderr (DVC's warnings go to stderr)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **ENV}
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout, r.stderr


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def commit(cwd: Path, message: str) -> str:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "-m", message)
    return git(cwd, "rev-parse", "HEAD").strip()


def stages_run(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}


def set_params(root: Path, overrides: dict) -> dict:
    p = with_overrides(yaml.safe_load((root / "params.yaml").read_text()), overrides)
    (root / "params.yaml").write_text(yaml.safe_dump(p))
    return p


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.fixture
def project(tiny_project, tmp_path) -> Path:
    """This test's own copy of the committed tiny project (commit A: code, dvc.yaml, dvc.lock, params and
    the git-tracked metrics, plots and report; data/ and models/ stay out of git)."""
    return copy_project(tiny_project, tmp_path / "project")


# --- 1. comparing commits -------------------------------------------------------------------

def test_params_metrics_and_plots_diff_between_two_commits(project, tmp_path):
    tracked = set(git(project, "ls-files").split())
    assert {"dvc.lock", "params.yaml", "reports/metrics/mnist.json", "reports/plots/mnist/train/plots/metrics/d_loss.tsv"} <= tracked
    assert not any(p.startswith(("models/", "data/")) for p in tracked)

    old_lr = yaml.safe_load((project / "params.yaml").read_text())["mnist"]["train"]["lr_experts"]
    new_lr = round(old_lr * 3, 6)
    set_params(project, {"mnist.train.lr_experts": new_lr})
    # Only as far as the metrics (test_e2e checks that `dvc repro` reruns every stage downstream).
    assert stages_run(run(project, "repro", "evaluate@mnist")) == {"train@mnist", "evaluate@mnist"}
    commit(project, "B: lr_experts x3")

    diff = json.loads(run(project, "params", "diff", "HEAD~1", "--json"))["params.yaml"]
    assert set(diff) == {"mnist.train.lr_experts"}
    assert diff["mnist.train.lr_experts"]["old"] == pytest.approx(old_lr)
    assert diff["mnist.train.lr_experts"]["new"] == pytest.approx(new_lr)

    # metrics diff: exactly the values that differ between the two committed metrics files.
    a = flatten(json.loads(git(project, "show", "HEAD~1:reports/metrics/mnist.json")))
    b = flatten(json.loads((project / "reports/metrics/mnist.json").read_text()))
    md = json.loads(run(project, "metrics", "diff", "HEAD~1", "--json"))["reports/metrics/mnist.json"]
    for key, d in md.items():
        assert (d["old"], d["new"]) == (a.get(key), b.get(key)), key
    changed = {k for k in a if isinstance(a[k], (int, float)) and isinstance(b.get(k), (int, float)) and a[k] != b[k]}
    assert changed <= set(md)
    model_changes = set(md) - WALL_CLOCK
    # A 3x expert learning rate changes what the experts learn, not only the timings (measured
    # with TINY: specialization.purity_mean/min and per_mechanism.invert.*).
    assert any(k.startswith(("specialization.", "classifier.", "per_mechanism.")) for k in model_changes), md

    # plots diff: the HTML renders, and the training curve holds both revisions' own data.
    out_dir = tmp_path / "plots"
    run(project, "plots", "diff", "HEAD~1", "-o", str(out_dir))
    html = (out_dir / "index.html").read_text()
    assert "mnist: discriminator BCE loss" in html and "mnist: identity pretraining MSE" in html
    pd = json.loads(run(project, "plots", "diff", "HEAD~1", "--json"))
    curve = pd["data"]["reports/plots/mnist/train/plots/metrics/d_loss.tsv"][0]
    assert set(curve["revisions"]) == {"workspace", "HEAD~1"}
    by_rev = {rev: [float(v["d_loss"]) for v in curve["content"]["data"]["values"] if v["rev"] == rev]
              for rev in curve["revisions"]}

    def tsv(text: str) -> list[float]:
        return [float(line.split("\t")[1]) for line in text.strip().splitlines()[1:]]

    assert by_rev["HEAD~1"] == tsv(git(project, "show", "HEAD~1:reports/plots/mnist/train/plots/metrics/d_loss.tsv"))
    assert by_rev["workspace"] == tsv((project / "reports/plots/mnist/train/plots/metrics/d_loss.tsv").read_text())
    assert len(by_rev["workspace"]) == TINY["mnist.train.iterations"] and by_rev["workspace"] != by_rev["HEAD~1"]
    # The only plots DVC cannot load are those of the datasets this tiny project does not run.
    assert all("/mnist/" not in e["name"] for e in pd.get("errors", [])), pd.get("errors")


# --- 2. experiment sweep through the queue --------------------------------------------------

def queue_workers(root: Path) -> list[int]:
    """PIDs of `dvc exp queue-worker` processes working in `root` (started by `dvc queue start`)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"queue-worker" in cmd and Path(cwd).is_relative_to(root.resolve()):
            pids.append(int(proc.name))
    return pids


def start_queue(root: Path, jobs: int, log: Path) -> None:
    """`dvc queue start -j <jobs>`. Its output goes to a file, not a pipe: the workers it detaches
    inherit its stdout/stderr, so reading a pipe to EOF would block until they have exited."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **ENV}
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)], cwd=root, env=env,
                            stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, timeout=120).returncode
    assert rc == 0 and f"Started '{jobs}' new experiments task queue workers" in log.read_text(), log.read_text()


def wait_for_queue(root: Path, timeout: float) -> dict[str, str]:
    """Poll `dvc queue status` until no task is Queued or Running; {task name: final status}."""
    deadline = time.monotonic() + timeout
    while True:
        status = run(root, "queue", "status")
        tasks = [line.split() for line in status.splitlines()[1:] if line.strip() and not line.startswith("Worker")]
        if tasks and not any(t[-1] in ("Queued", "Running") for t in tasks):
            return {t[1]: t[-1] for t in tasks}
        if time.monotonic() > deadline:
            pytest.fail(f"queue not done after {timeout} s:\n{status}")
        time.sleep(3)


def stop_queue(root: Path) -> None:
    """`dvc queue stop --kill`, then wait for the workers to exit (SIGKILL them, by PID, after 30 s)."""
    subprocess.run([sys.executable, "-m", "dvc", "queue", "stop", "--kill"], cwd=root, capture_output=True,
                   env={**os.environ, **ENV})
    deadline = time.monotonic() + 30
    while queue_workers(root) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in queue_workers(root):
        os.kill(pid, signal.SIGKILL)


def test_queued_sweep_runs_both_points_and_exp_show_lists_them(project, tmp_path):
    lrs = (0.0005, 0.003)
    queued = run(project, "exp", "run", "--queue", "-S", f"mnist.train.lr_experts={lrs[0]},{lrs[1]}",
                 "evaluate@mnist")                          # as far as the metrics, to keep the test short
    assert queued.count("Queued experiment") == 2, queued       # one -S with a comma list = 2 points
    try:
        start_queue(project, 2, tmp_path / "queue-start.log")
        deadline = time.monotonic() + 60
        while len(queue_workers(project)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(queue_workers(project)) == 2               # detached celery workers, one per job
        tasks = wait_for_queue(project, timeout=300)
    finally:
        stop_queue(project)
    assert queue_workers(project) == []
    assert list(tasks.values()) == ["Success", "Success"], tasks

    show = json.loads(run(project, "exp", "show", "--json"))
    baseline = next(r for r in show if r["rev"] != "workspace")
    assert baseline["rev"] == git(project, "rev-parse", "HEAD").strip()
    exps = {}
    for e in baseline["experiments"]:
        assert e["executor"]["state"] == "success", e["executor"]
        rev = e["revs"][0]
        lr = rev["data"]["params"]["params.yaml"]["data"]["mnist"]["train"]["lr_experts"]
        exps[lr] = (rev["name"], rev["data"]["metrics"]["reports/metrics/mnist.json"]["data"])
        live = rev["data"]["metrics"]["reports/plots/mnist/train/metrics.json"]["data"]   # dvclive's summary
        assert live["step"] == TINY["mnist.train.iterations"] and 0 <= live["d_loss"] < 10, live
    assert sorted(exps) == sorted(lrs) and {name for name, _ in exps.values()} == set(tasks)
    for name, m in exps.values():
        assert m["train"]["iterations"] == TINY["mnist.train.iterations"]
        assert 0 <= m["specialization"]["purity_mean"] <= 1 and 0 <= m["classifier"]["acc_experts"] <= 1
    model = [{k: v for k, v in flatten(m).items() if k not in WALL_CLOCK} for _, m in exps.values()]
    assert model[0] != model[1]                                # the swept param reached training

    # Each experiment reused the cached data, classifier and pretrained experts: only train and evaluate ran.
    name, metrics = exps[lrs[1]]
    assert stages_run(run(project, "queue", "logs", name)) == {"train@mnist", "evaluate@mnist"}
    # Keep a point as a branch: its commit holds the swept param and its own metrics.
    run(project, "exp", "branch", name, "sweep-lr")
    assert yaml.safe_load(git(project, "show", "sweep-lr:params.yaml"))["mnist"]["train"]["lr_experts"] == lrs[1]
    committed = flatten(json.loads(git(project, "show", "sweep-lr:reports/metrics/mnist.json")))
    assert {k: v for k, v in committed.items() if v is not None} == flatten(metrics)   # exp show drops nulls


# --- 3. interrupted training resumes ----------------------------------------------------------

def checkpoint_iteration(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["state"]["iteration"]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def curves(root: Path) -> dict[str, str]:
    d = root / "reports/plots/mnist/train"
    return {str(p.relative_to(d)): p.read_text() for p in sorted(d.rglob("*.tsv"))}


def test_killed_training_resumes_from_its_checkpoint_to_identical_weights(project, tmp_path):
    iterations = 50
    set_params(project, {"mnist.train.iterations": iterations, "mnist.train.checkpoint_every": 10,
                         "mnist.train.check_every": 25})
    assert stages_run(run(project, "repro", "pretrain@mnist", "classifier@mnist")) == set()  # all cached
    ckpt = project / CKPT
    assert not ckpt.exists() and (project / DONE).exists()     # the TINY run finished: nothing to resume

    # `dvc repro` in its own session; SIGTERM its whole process group once a checkpoint at >= 10 exists.
    log = tmp_path / "interrupted.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **ENV}
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=project, env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, seen, at = time.monotonic() + 180, None, 0
        while at < 10:
            assert proc.poll() is None, "dvc repro ended before the first checkpoint:\n" + log.read_text()
            assert time.monotonic() < deadline, "no checkpoint at iteration >= 10:\n" + log.read_text()
            time.sleep(0.1)
            stamp = ckpt.stat().st_mtime_ns if ckpt.exists() else None
            if stamp != seen:                      # written atomically (temp file + rename): safe to load
                seen, at = stamp, checkpoint_iteration(ckpt)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:          # not needed with DVC 3.67: SIGTERM ends it at once
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert rc == -signal.SIGTERM                   # no handler in DVC: it dies of the signal
    deadline = time.monotonic() + 20
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not group_alive(proc.pid)               # the training process went with it
    interrupted = log.read_text()
    assert "training from iteration 0 (the previous run finished)" in interrupted
    assert 10 <= checkpoint_iteration(ckpt) < iterations
    assert not (project / "models/mnist/trained.pt").exists()      # DVC cleared the output; nothing half-written
    stale = json.loads((project / ".dvc/tmp/rwlock").read_text())
    assert any(info["pid"] == proc.pid for info in stale["write"].values())   # the dead run still "holds" it

    # The user re-runs `dvc repro`: DVC drops the dead PID's lock entries itself and training resumes.
    out, err = run_both(project, "repro", "evaluate@mnist")   # as far as the metrics
    assert "had been killed. Auto removed it from the lock file" in err
    resumed_at = re.search(rf"resuming from {re.escape(CKPT)} at iteration (\d+)", out)
    assert resumed_at and 10 <= int(resumed_at.group(1)) < iterations, out
    assert stages_run(out) == {"train@mnist", "evaluate@mnist"}
    assert json.loads((project / "models/mnist/train.json").read_text())["iterations"] == iterations
    assert json.loads((project / "reports/metrics/mnist.json").read_text())["train"]["iterations"] == iterations
    resumed = torch.load(project / "models/mnist/trained.pt", map_location="cpu", weights_only=True)
    resumed_curves = curves(project)

    assert not ckpt.exists() and (project / DONE).exists()

    # Reference: the same params trained without interruption (`-f` on a finished run starts afresh).
    out = run(project, "repro", "-f", "-s", "train@mnist")
    assert stages_run(out) == {"train@mnist"} and "resuming" not in out
    assert "training from iteration 0 (the previous run finished)" in out
    straight = torch.load(project / "models/mnist/trained.pt", map_location="cpu", weights_only=True)
    for part in ("bank", "disc"):
        assert resumed[part].keys() == straight[part].keys() and resumed[part]
        differ = [k for k in straight[part] if not torch.equal(resumed[part][k], straight[part][k])]
        assert differ == [], f"{part}: resumed != uninterrupted for {differ}"
    # Curves (losses, wins, checks, reseeds) continue exactly too.
    assert resumed_curves == curves(project)


# --- 4. a code change never reuses stale results ---------------------------------------------

def test_a_code_change_retrains_from_iteration_zero(project):
    assert (project / DONE).exists() and not (project / CKPT).exists()
    with open(project / "pipeline/icm.py", "a") as f:
        f.write("\n# a code change that must invalidate every trained result\n")
    out = run(project, "repro", "train@mnist")
    assert "train@mnist" in stages_run(out)
    assert "training from iteration 0 (the previous run finished)" in out and "resuming" not in out, out
    n = TINY["mnist.train.iterations"]
    for it in range(TINY["mnist.train.check_every"], n + 1, TINY["mnist.train.check_every"]):
        assert f"train: iteration {it}/{n} " in out, out        # every iteration was trained again
    steps = [int(line.split("\t")[0]) for line in
             (project / "reports/plots/mnist/train/plots/metrics/d_loss.tsv").read_text().splitlines()[1:]]
    assert steps == list(range(1, n + 1))
