r"""Sharing pipeline outputs through DVC remotes: push from one clone, pull into a fresh one.

A copy of the session's tiny project (the e2e test's TINY params, reproduced and committed); each
test pushes it to a remote, clones it with git, pulls, and compares every file under dvc.lock's outs
by sha256. Remotes: a local folder, an S3 bucket served by moto on 127.0.0.1, and copies of a local
remote with the object of models/mnist/trained.pt overwritten (same size, different bytes).

What DVC 3.67 does with a corrupted object (dvc/config_schema.py: `verify` defaults to False for
local and S3 remotes; dvc_data/hashfile/db/__init__.py HashFileDB.add/check, db/local.py):
- verify false (default): downloads are not hashed. A corrupted object is checked out, `dvc pull`
  exits 0 and `dvc status` says "Data and pipelines are up to date."
- `dvc remote modify <remote> verify true`: each download is hashed in the clone's cache; a mismatch
  is deleted from the cache and `dvc pull` exits 1 with "ERROR: failed to pull data from the cloud -
  Checkout failed for following targets:\n<path>\nIs your cache up to date?". The cause is only
  logged with -v: "corrupted cache file '<cache path>'".
- Local remotes only: an object that is no longer read-only (0444) is hashed when DVC asks the remote
  whether it has it; a mismatch is deleted from the remote, and the pull fails, verify or not, with
  "WARNING: Some of the cache files do not exist neither locally nor on remote".
"""
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_project

LOG_FORMAT_CHANGED = (f"DVC {version('dvc')} no longer logs this line in the form pipeline/remote.py parses "
                      "(CORRUPTED, MISSING_ITEM); update those patterns, then the dvc pin in pyproject.toml:\n")

BUCKET = "icm-dvc-remote"
REGION = "us-east-1"
TRAINED = "models/mnist/trained.pt"
GIT_ID = ["-c", "user.name=ICM tests", "-c", "user.email=icm-tests@example.invalid"]


@pytest.fixture(scope="module")
def dvc_env(tmp_path_factory) -> dict:
    """Environment of every dvc subprocess here: no AWS_* variables (profiles, keys, endpoints), AWS
    config/credential files that do not exist, and DVC's global/system config and site cache (where it
    keeps remote indexes, keyed by repo path) in a fresh folder, so nothing on this machine leaks in."""
    tmp = tmp_path_factory.mktemp("dvc_env")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(tmp / "site_cache"),
        DVC_GLOBAL_CONFIG_DIR=str(tmp / "global_config"),
        DVC_SYSTEM_CONFIG_DIR=str(tmp / "system_config"),
        AWS_CONFIG_FILE=str(tmp / "missing" / "aws_config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "missing" / "aws_credentials"),
    )
    return env


def run_dvc(env: dict, cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if ok:
        assert r.returncode == 0, f"dvc {' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    return r


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_ID, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def lock_outs(repo: Path) -> dict[str, str]:
    """Every output path in dvc.lock -> its recorded md5 (directories end in `.dir`)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}


def snapshot(repo: Path, outs) -> dict[str, str]:
    """relative path -> sha256 of every file under `outs` that exists in `repo`."""
    hashes = {}
    for out in outs:
        top = repo / out
        for f in sorted([top] if top.is_file() else top.rglob("*") if top.is_dir() else []):
            if f.is_file():
                hashes[f.relative_to(repo).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return hashes


def object_path(store: Path, md5: str) -> Path:
    """Where DVC 3 keeps an object in a local remote (or cache)."""
    return store / "files" / "md5" / md5[:2] / md5[2:]


@pytest.fixture(scope="module")
def source(tiny_project, tmp_path_factory, dvc_env) -> Path:
    """A copy of the session's tiny project (TINY mnist chain, reproduced and committed; cached outputs
    git-ignored as `dvc init` would)."""
    repo = copy_project(tiny_project, tmp_path_factory.mktemp("source") / "repo")
    tracked = git(repo, "ls-files").splitlines()
    assert "dvc.lock" in tracked and TRAINED not in tracked
    assert not any(p.startswith((".dvc/cache", "data/mnist/prepared/")) for p in tracked)
    assert json.loads(run_dvc(dvc_env, repo, "status", "--json").stdout) == {}
    return repo


@pytest.fixture(scope="module")
def expected(source) -> dict[str, str]:
    """sha256 of every output file of the source repo (cached ones and the git-tracked ones)."""
    snap = snapshot(source, lock_outs(source))
    assert TRAINED in snap and "models/mnist/checkpoints/complete.json" in snap  # persist outputs are cached too
    assert any(p.startswith("data/mnist/prepared/") for p in snap)
    return snap


def fresh_clone(source: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True, capture_output=True)
    assert not (dest / TRAINED).exists() and not (dest / "data/mnist/prepared").exists()
    assert not (dest / ".dvc" / "cache").exists()
    return dest


def test_local_remote_round_trip(source, expected, dvc_env, tmp_path):
    store = tmp_path / "store"
    run_dvc(dvc_env, source, "remote", "add", "-f", "-d", "shared", str(store))
    assert "pushed" in run_dvc(dvc_env, source, "push").stdout
    trained_md5 = lock_outs(source)[TRAINED]
    assert object_path(store, trained_md5).read_bytes() == (source / TRAINED).read_bytes()

    clone = fresh_clone(source, tmp_path / "clone")
    run_dvc(dvc_env, clone, "remote", "add", "--local", "-d", "shared", str(store))
    run_dvc(dvc_env, clone, "pull")
    assert json.loads(run_dvc(dvc_env, clone, "status", "--json").stdout) == {}
    assert snapshot(clone, lock_outs(clone)) == expected


@pytest.fixture(scope="module")
def s3(dvc_env):
    """A moto S3 server on a free port of 127.0.0.1 with one empty bucket; yields (endpoint, client)."""
    import boto3
    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        with pytest.MonkeyPatch.context() as mp:  # boto3 here must not see a real profile either
            for key in [k for k in os.environ if k.startswith("AWS_")]:
                mp.delenv(key)
            for key in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
                mp.setenv(key, dvc_env[key])
            client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client
    finally:
        server.stop()
        werkzeug.setLevel(level)


def add_s3_remote(env: dict, repo: Path, name: str, url: str, endpoint: str, default: bool = False):
    """Remote in .dvc/config.local only: the endpoint and the (dummy) credentials never reach git."""
    run_dvc(env, repo, "remote", "add", "--local", "-f", *(["-d"] if default else []), name, url)
    for key, value in {"endpointurl": endpoint, "access_key_id": "testing",
                       "secret_access_key": "testing", "region": REGION}.items():
        run_dvc(env, repo, "remote", "modify", "--local", name, key, value)


def test_s3_remote_round_trip(source, expected, s3, dvc_env, tmp_path):
    endpoint, client = s3
    url = f"s3://{BUCKET}/icm"
    add_s3_remote(dvc_env, source, "s3", url, endpoint)
    assert "pushed" in run_dvc(dvc_env, source, "push", "-r", "s3").stdout
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="icm/")["Contents"]}
    outs = lock_outs(source)
    key = {out: f"icm/files/md5/{outs[out][:2]}/{outs[out][2:]}" for out in (TRAINED, "data/mnist/prepared")}
    assert set(key.values()) <= keys, sorted(keys)
    assert client.get_object(Bucket=BUCKET, Key=key[TRAINED])["Body"].read() == (source / TRAINED).read_bytes()

    clone = fresh_clone(source, tmp_path / "clone")
    add_s3_remote(dvc_env, clone, "s3", url, endpoint, default=True)
    assert "endpointurl" in (clone / ".dvc" / "config.local").read_text()
    assert git(clone, "status", "--porcelain") == ""  # remote settings and credentials stay out of git
    run_dvc(dvc_env, clone, "pull")
    assert json.loads(run_dvc(dvc_env, clone, "status", "--json").stdout) == {}
    assert snapshot(clone, lock_outs(clone)) == expected


@pytest.fixture(scope="module")
def pushed(source, dvc_env, tmp_path_factory) -> Path:
    """A local remote holding every output of the source repo (copied, never modified, by the tests)."""
    store = tmp_path_factory.mktemp("pushed") / "store"
    run_dvc(dvc_env, source, "remote", "add", "--local", "-f", "pristine", str(store))
    run_dvc(dvc_env, source, "push", "-r", "pristine")
    return store


def corrupt_copy(pushed: Path, source: Path, dest: Path, keep_mode: bool) -> tuple[Path, bytes]:
    """Copy the remote and overwrite the object of trained.pt in the copy: same size, first 64 bytes
    inverted. keep_mode: leave it read-only as DVC wrote it (bit rot in place); else writable (the
    file was replaced). Returns (the object's path, the corrupted bytes)."""
    shutil.copytree(pushed, dest)
    obj = object_path(dest, lock_outs(source)[TRAINED])
    mode = stat.S_IMODE(obj.stat().st_mode)
    assert mode == 0o444, oct(mode)  # DVC makes remote objects read-only
    good = obj.read_bytes()
    bad = bytes(b ^ 0xFF for b in good[:64]) + good[64:]
    assert len(bad) == len(good) and hashlib.md5(bad).hexdigest() != hashlib.md5(good).hexdigest()
    obj.chmod(0o644)
    obj.write_bytes(bad)
    if keep_mode:
        obj.chmod(mode)
    return obj, bad


def test_pull_with_verify_refuses_a_corrupted_remote_object(source, expected, pushed, dvc_env, tmp_path):
    obj, bad = corrupt_copy(pushed, source, tmp_path / "store", keep_mode=True)
    clone = fresh_clone(source, tmp_path / "clone")
    run_dvc(dvc_env, clone, "remote", "add", "--local", "-d", "damaged", str(tmp_path / "store"))
    run_dvc(dvc_env, clone, "remote", "modify", "--local", "damaged", "verify", "true")

    r = run_dvc(dvc_env, clone, "pull", "-v", ok=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    # what the user sees (the same without -v), then the reason, logged at debug level only
    assert "failed to pull data from the cloud - Checkout failed for following targets:\n" \
           "models/mnist/trained.pt\n" in out, out
    cached = object_path(clone / ".dvc" / "cache", lock_outs(clone)[TRAINED])
    assert f"corrupted cache file '{cached}'" in out, LOG_FORMAT_CHANGED + out
    trained = clone / TRAINED
    assert not trained.exists() or trained.read_bytes() != bad
    assert not trained.exists(), "a file DVC could not verify must not appear in the workspace"
    assert not cached.exists()  # the bad download was dropped from the clone's cache
    assert obj.read_bytes() == bad  # and the remote was left as it was
    # everything else arrived intact; only the corrupted output is missing
    got = snapshot(clone, lock_outs(clone))
    assert {p for p in expected if got.get(p) != expected[p]} == {TRAINED}
    status = json.dumps(json.loads(run_dvc(dvc_env, clone, "status", "--json").stdout))
    assert TRAINED in status and "not in cache" in status


def test_without_verify_a_corrupted_remote_object_is_checked_out_silently(source, pushed, dvc_env, tmp_path):
    """DVC's default (verify false) trusts a read-only object in the remote: why the README tells you
    to set `verify true`. If this starts failing, DVC began verifying downloads by default."""
    _, bad = corrupt_copy(pushed, source, tmp_path / "store", keep_mode=True)
    clone = fresh_clone(source, tmp_path / "clone")
    run_dvc(dvc_env, clone, "remote", "add", "--local", "-d", "damaged", str(tmp_path / "store"))
    run_dvc(dvc_env, clone, "pull")
    assert (clone / TRAINED).read_bytes() == bad
    assert "Data and pipelines are up to date." in run_dvc(dvc_env, clone, "status").stdout


def test_a_writable_corrupted_object_in_a_local_remote_is_deleted_and_reported_missing(
        source, expected, pushed, dvc_env, tmp_path):
    """A local remote re-hashes any object that is not read-only when asked whether it has it; a
    mismatch is deleted from the remote, and the pull then fails on a missing file (verify or not)."""
    obj, _ = corrupt_copy(pushed, source, tmp_path / "store", keep_mode=False)
    clone = fresh_clone(source, tmp_path / "clone")
    run_dvc(dvc_env, clone, "remote", "add", "--local", "-d", "damaged", str(tmp_path / "store"))
    r = run_dvc(dvc_env, clone, "pull", "-v", ok=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    md5 = lock_outs(clone)[TRAINED]
    assert "Some of the cache files do not exist neither locally nor on remote. Missing cache files:\n" \
           f"md5: {md5}" in out, LOG_FORMAT_CHANGED + out
    assert "Checkout failed for following targets:\nmodels/mnist/trained.pt\n" in out
    assert f"corrupted cache file '{obj}'" in out, LOG_FORMAT_CHANGED + out
    assert not obj.exists()
    assert not (clone / TRAINED).exists()
    got = snapshot(clone, lock_outs(clone))
    assert {p for p in expected if got.get(p) != expected[p]} == {TRAINED}


# `python -m pipeline.remote`: remotes made with `add` verify downloads; `pull` names what it could not
# check out. Run from the clone, as a user would (it imports the clone's copy of pipeline/remote.py).

def run_remote(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.remote", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_remote_pull_names_the_corrupted_output_and_leaves_it_out(source, expected, pushed, dvc_env, tmp_path):
    obj, bad = corrupt_copy(pushed, source, tmp_path / "store", keep_mode=True)
    clone = fresh_clone(source, tmp_path / "clone")
    r = run_remote(dvc_env, clone, "add", "--local", "damaged", str(tmp_path / "store"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verify = true" in (clone / ".dvc" / "config.local").read_text()

    r = run_remote(dvc_env, clone, "pull")
    assert r.returncode == 1, r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {TRAINED}: the remote's copy is corrupted (md5 mismatch); it was not checked out. "
                      f"Fix the remote: delete {obj} and `dvc push` from a clone that has a good copy."], r.stderr
    # dvc's own message, as plain `dvc pull` prints it: no debug lines, tracebacks or timestamps
    assert r.stderr.startswith("ERROR: failed to pull data from the cloud - Checkout failed for following "
                               f"targets:\n{TRAINED}\nIs your cache up to date?\n"), r.stderr
    assert "DEBUG" not in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr
    assert not (clone / TRAINED).exists()
    assert not any(f.is_file() and f.read_bytes() == bad for f in clone.rglob("*") if ".dvc" not in f.parts)
    got = snapshot(clone, lock_outs(clone))
    assert {p for p in expected if got.get(p) != expected[p]} == {TRAINED}
    assert obj.read_bytes() == bad  # the remote is left for its owner to fix


def test_remote_pull_refuses_a_remote_without_verify(source, expected, pushed, dvc_env, tmp_path):
    clone = fresh_clone(source, tmp_path / "clone")
    run_dvc(dvc_env, clone, "remote", "add", "--local", "-d", "plain", str(pushed))  # verify false
    problem = ("remote 'plain' does not verify downloads, so a corrupted object would be checked out "
               "silently; fix: dvc remote modify --local plain verify true")
    r = run_remote(dvc_env, clone, "pull")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", f"error: {problem} (or pass --no-verify-ok to pull anyway)\n")
    assert not (clone / TRAINED).exists()

    r = run_remote(dvc_env, clone, "pull", "--no-verify-ok")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == f"warning: {problem}\n"
    assert "files fetched" in r.stdout
    assert snapshot(clone, lock_outs(clone)) == expected


def test_remote_helpers_parse_dvc_pull_output_and_map_objects_to_outputs(tmp_path):
    from pipeline import remote

    bad, gone, lost, member = "141b0f" + "0" * 26, "a" * 32, "b" * 32, "c" * 32
    tb = ["Traceback (most recent call last):", '  File "x.py", line 1, in f', "KeyError: 1", "",
          "During handling of the above exception, another exception occurred:", "",
          "Traceback (most recent call last):", '  File "y.py", line 2, in g', "OSError: 2", ""]
    stdout = [f"2026-01-01 00:00:00,000 DEBUG: corrupted cache file '/c/.dvc/cache/files/md5/14/{bad[2:]}'.",
              f"2026-01-01 00:00:00,001 DEBUG: corrupted cache file '/store/files/md5/aa/{gone[2:]}'.",
              f"2026-01-01 00:00:00,002 DEBUG: corrupted cache file '/c/.dvc/cache/files/md5/cc/{member[2:]}'.",
              "2026-01-01 00:00:00,003 DEBUG: failed to create 'out' from 'x'", *tb,
              "2026-01-01 00:00:00,004 DEBUG: failed to create 'd' from 'None'", "NoneType: None", "",
              "A       data/x/", "3 files fetched"]
    stderr = ["2026-01-01 00:00:00,005 WARNING: Some of the cache files do not exist neither locally nor on "
              "remote. Missing cache files:", f"md5: {gone}", f"name: m.pt, md5: {lost}",
              "2026-01-01 00:00:00,006 ERROR: failed to pull data from the cloud - Checkout failed for "
              "following targets:", "m.pt", "Is your cache up to date?", *tb]
    assert list(remote.visible(stdout)) == ["A       data/x/", "3 files fetched"]
    assert list(remote.visible(stderr)) == [
        "WARNING: Some of the cache files do not exist neither locally nor on remote. Missing cache files:",
        f"md5: {gone}", f"name: m.pt, md5: {lost}",
        "ERROR: failed to pull data from the cloud - Checkout failed for following targets:", "m.pt",
        "Is your cache up to date?"]

    corrupted, missing = remote.parse_failures("\n".join(stdout + stderr))
    assert corrupted == {bad: f"/c/.dvc/cache/files/md5/14/{bad[2:]}", gone: f"/store/files/md5/aa/{gone[2:]}",
                         member: f"/c/.dvc/cache/files/md5/cc/{member[2:]}"}
    assert missing == {gone, lost}

    listed, unlisted = "d" * 32 + ".dir", "e" * 32 + ".dir"
    cache = tmp_path / "cache"
    listing = cache / "files" / "md5" / listed[:2] / listed[2:]
    listing.parent.mkdir(parents=True)
    listing.write_text(json.dumps([{"md5": "f" * 32, "relpath": "a.pt"}, {"md5": member, "relpath": "sub/b.pt"}]))
    lock = {"stages": {"train": {"outs": [{"path": "models/m.pt", "md5": bad}, {"path": "m.pt", "md5": lost},
                                          {"path": "data/x", "md5": listed}]},
                       "eval": {"outs": [{"path": "reports/r.json", "md5": gone}]}}}
    assert remote.outputs_of(bad, lock, cache) == [("models/m.pt", "models/m.pt")]
    assert remote.outputs_of(member, lock, cache) == [("data/x/sub/b.pt", "data/x")]
    assert remote.outputs_of(listed, lock, cache) == [("data/x", "data/x")]  # a corrupted .dir listing
    assert remote.outputs_of("9" * 32, lock, cache) == []
    lock["stages"]["eval"]["outs"].append({"path": "data/y", "md5": unlisted})  # listing not in the cache
    assert remote.outputs_of("9" * 32, lock, cache) == [("a file inside data/y", "data/y")]

    fix = "`dvc push` from a clone that has a good copy"
    assert remote.failure_lines(corrupted, missing, lock, cache, "s3://b/icm/") == [
        "error: models/m.pt: the remote's copy is corrupted (md5 mismatch); it was not checked out. Fix the "
        f"remote: delete s3://b/icm/files/md5/14/{bad[2:]} and {fix}.",
        "error: reports/r.json: the remote's copy was corrupted (md5 mismatch) and DVC deleted it from the "
        f"remote; it was not checked out. Fix the remote: {fix}.",
        "error: data/x/sub/b.pt: the remote's copy is corrupted (md5 mismatch); data/x was not checked out. "
        f"Fix the remote: delete s3://b/icm/files/md5/cc/{member[2:]} and {fix}.",
        "error: m.pt: not in the remote (nor in the local cache); it was not checked out. Fix the remote: "
        "`dvc push` from a clone that has it (or rebuild it: `dvc repro`)."]

    config = {"core.remote": ("shared", ".dvc/config"), "remote.shared.url": ("../../store", ".dvc/config"),
              "remote.mine.url": ("/s", ".dvc/config.local"), "remote.mine.verify": ("true", ".dvc/config.local")}
    assert remote.remote_url(config, "shared") == os.path.join("..", "store")
    assert remote.verify_problem(config, "shared").endswith("fix: dvc remote modify shared verify true")
    assert remote.verify_problem(config, "mine") is None
    assert remote.verify_problem(config, "absent") is None and remote.verify_problem(config, None) is None
