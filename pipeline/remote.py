"""DVC remotes that verify downloads, and a `dvc pull` that names the outputs it could not check out.

    python -m pipeline.remote add [--local] [-f] NAME URL      # dvc remote add -d + verify true
    python -m pipeline.remote pull [--no-verify-ok] [ARGS...]  # dvc pull ARGS, explained

DVC 3 hashes downloads only if the remote has `verify = true`; otherwise a corrupted remote object is
checked out silently and `dvc pull` succeeds. With verify, DVC drops the bad download and fails with
"Checkout failed for following targets: ... Is your cache up to date?", logging the cause ("corrupted
cache file '<path>'") only under -v. So `pull` refuses a remote without verify (exit 1) unless given
--no-verify-ok (then it warns), runs `dvc pull -v ARGS`, echoes what plain `dvc pull` would print, and
on failure adds one `error:` line per output whose remote object is corrupted or missing (exit 1).
Other failures keep dvc's exit code.

Those two log lines are DVC's, not an API, so pyproject.toml pins dvc to the minor release the tests
cover (3.67), and tests/test_remotes.py fails with a message naming CORRUPTED and MISSING_ITEM when a
DVC release logs them differently. We found no DVC command that names the corrupted object
instead: `dvc data status` and `dvc status -c` report outputs missing from the workspace or the
remote, not why a verified download was dropped.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterable, Iterator

import yaml

LOG_PREFIX = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (TRACE|DEBUG|INFO|WARNING|ERROR|CRITICAL): ")
CORRUPTED = re.compile(r"corrupted cache file '([^']+)'")
OBJECT = re.compile(r"[/\\]([0-9a-f]{2})[/\\]([0-9a-f]{30}(?:\.dir)?)$")  # .../files/md5/xx/yyyy in a cache or remote
MISSING_ITEM = re.compile(r"(?:name: .*, )?md5: ([0-9a-f]{32}(?:\.dir)?)")
TRACEBACK_GOES_ON = ("Traceback (most recent call last):", "During handling of the above exception",
                     "The above exception was the direct cause")


def dvc_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def read_config(cwd: Path | None = None) -> dict[str, tuple[str, str]]:
    """Every dvc config setting, all levels merged (system, global, repo, local), as
    key -> (value, file it came from), e.g. "remote.shared.verify" -> ("true", ".dvc/config.local")."""
    out = subprocess.run(dvc_cmd("config", "--list", "--show-origin"), cwd=cwd, capture_output=True,
                         text=True).stdout
    config = {}
    for line in out.splitlines():
        origin, _, setting = line.partition("\t")
        key, _, value = setting.partition("=")
        config[key] = (value, origin)
    return config


def remote_url(config: dict, name: str) -> str | None:
    """The remote's URL; a relative folder (stored relative to its config file) made relative to here."""
    url, origin = config.get(f"remote.{name}.url", (None, ""))
    if url and "://" not in url and not os.path.isabs(url):
        url = os.path.normpath(os.path.join(os.path.dirname(origin), url))
    return url


def verify_problem(config: dict, name: str | None) -> str | None:
    """Why pulling from remote `name` could check out a corrupted file (None: it verifies, or is unknown)."""
    if not name or f"remote.{name}.url" not in config:
        return None  # no such remote: dvc pull says so itself
    if config.get(f"remote.{name}.verify", ("",))[0].lower() in ("true", "1", "yes"):
        return None
    level = "--local " if config[f"remote.{name}.url"][1].endswith("config.local") else ""
    return (f"remote '{name}' does not verify downloads, so a corrupted object would be checked out "
            f"silently; fix: dvc remote modify {level}{name} verify true")


def visible(lines: Iterable[str]) -> Iterator[str]:
    """The lines of `dvc ... -v` output that plain dvc would print: no DEBUG/TRACE records, no
    tracebacks (each ends on a blank line), no timestamps."""
    in_traceback = after_blank = False
    for line in lines:
        if in_traceback:
            if not after_blank or line.startswith(TRACEBACK_GOES_ON):
                after_blank = line == ""
                continue
            in_traceback = False
        if line.endswith("Traceback (most recent call last):") or line == "NoneType: None":  # no exception
            in_traceback, after_blank = True, False
            continue
        m = LOG_PREFIX.match(line)
        if m and m[1] in ("DEBUG", "TRACE"):
            continue
        yield f"{m[1]}: {line[m.end():]}" if m else line


def parse_failures(log: str) -> tuple[dict[str, str], set[str]]:
    """From `dvc pull -v` output: {md5: path} of the objects found corrupted (the path is in the
    clone's cache, or in a folder remote that deleted it), and the md5s reported missing."""
    corrupted = {}
    for path in CORRUPTED.findall(log):
        if m := OBJECT.search(path):
            corrupted[m[1] + m[2]] = path
    missing, in_list = set(), False
    for line in log.splitlines():
        if in_list and (m := MISSING_ITEM.fullmatch(line)):
            missing.add(m[1])
        else:
            in_list = line.endswith("Missing cache files:")
    return corrupted, missing


def outputs_of(md5: str, lock: dict, cache: Path) -> list[tuple[str, str]]:
    """(file, output) for every dvc.lock output whose object is `md5`: the output itself, or a file of a
    directory output, named from the .dir listing in `cache`. If no output matches and exactly one
    directory output's listing is not in the cache: ("a file inside <dir>", <dir>)."""
    found, unlisted = [], []
    for stage in (lock or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            path, out_md5 = out["path"], out.get("md5", "")
            if out_md5 == md5:
                found.append((path, path))
            elif out_md5.endswith(".dir"):
                try:
                    listing = json.loads((cache / "files" / "md5" / out_md5[:2] / out_md5[2:]).read_text())
                except (OSError, ValueError):
                    unlisted.append((f"a file inside {path}", path))
                    continue
                found += [(f"{path}/{e['relpath']}", path) for e in listing if e.get("md5") == md5]
    return found or (unlisted if len(unlisted) == 1 else [])


def failure_lines(corrupted: dict[str, str], missing: set[str], lock: dict, cache: Path,
                  url: str | None) -> list[str]:
    """One `error:` line per output whose remote object is corrupted or missing."""
    lines = []
    for md5 in [*corrupted, *sorted(missing - corrupted.keys())]:
        obj = f"files/md5/{md5[:2]}/{md5[2:]}"
        if md5 not in corrupted:
            what, fix = "not in the remote (nor in the local cache)", \
                "`dvc push` from a clone that has it (or rebuild it: `dvc repro`)"
        elif md5 in missing:  # a folder remote hashed a writable object, found it bad and deleted it
            what, fix = "the remote's copy was corrupted (md5 mismatch) and DVC deleted it from the remote", \
                "`dvc push` from a clone that has a good copy"
        else:
            where = f"{url.rstrip('/')}/{obj}" if url else f"{obj} in the remote"
            what, fix = "the remote's copy is corrupted (md5 mismatch)", \
                f"delete {where} and `dvc push` from a clone that has a good copy"
        for file, out in outputs_of(md5, lock, cache) or [(f"object {obj}", "")]:
            gone = "it was" if out in ("", file) else f"{out} was"
            lines.append(f"error: {file}: {what}; {gone} not checked out. Fix the remote: {fix}.")
    return lines


def run_verbose(args: list[str]) -> tuple[int, str]:
    """Run `dvc ARGS` (ARGS include -v), echo its visible lines as they come; return (code, full log)."""
    proc = subprocess.Popen(dvc_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            encoding="utf-8", errors="replace", bufsize=1)
    logs = []

    def echo(stream, dest):
        raw = []

        def lines():
            for line in stream:
                raw.append(line)
                yield line.rstrip("\n")

        for line in visible(lines()):
            print(line, file=dest, flush=True)
        logs.append("".join(raw))

    err = threading.Thread(target=echo, args=(proc.stderr, sys.stderr))
    err.start()
    echo(proc.stdout, sys.stdout)
    err.join()
    return proc.wait(), "\n".join(logs)


def pull(args: list[str], remote: str | None = None, no_verify_ok: bool = False) -> int:
    config = read_config()
    name = remote or config.get("core.remote", (None,))[0]
    if problem := verify_problem(config, name):
        if not no_verify_ok:
            print(f"error: {problem} (or pass --no-verify-ok to pull anyway)", file=sys.stderr)
            return 1
        print(f"warning: {problem}", file=sys.stderr)
    code, log = run_verbose(["pull", "-v", *(["-r", remote] if remote else []), *args])
    if code == 0:
        return 0
    corrupted, missing = parse_failures(log)
    if not (corrupted or missing):
        return code
    cache_dir, origin = config.get("cache.dir", (".dvc/cache", ".dvc/config"))
    cache = Path(os.path.dirname(origin), cache_dir) if "cache.dir" in config else Path(cache_dir)
    lock_file = Path("dvc.lock")
    lock = yaml.safe_load(lock_file.read_text()) if lock_file.exists() else {}
    for line in failure_lines(corrupted, missing, lock, cache, name and remote_url(config, name)):
        print(line, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.remote", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="dvc remote add -d NAME URL, then dvc remote modify NAME verify true")
    add.add_argument("--local", action="store_true", help="write .dvc/config.local (git-ignored)")
    add.add_argument("-f", "--force", action="store_true", help="replace an existing remote NAME")
    add.add_argument("name")
    add.add_argument("url")
    pl = sub.add_parser("pull", allow_abbrev=False, help="dvc pull [ARGS...]; names corrupted/missing outputs")
    pl.add_argument("-r", "--remote", help="remote to pull from (default: core.remote)")
    pl.add_argument("--no-verify-ok", action="store_true", help="pull even if the remote has verify false")
    args, rest = parser.parse_known_args(argv)
    if args.command == "pull":
        return pull(rest, args.remote, args.no_verify_ok)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    level = ["--local"] if args.local else []
    for cmd in (["remote", "add", *level, *(["-f"] if args.force else []), "-d", args.name, args.url],
                ["remote", "modify", *level, args.name, "verify", "true"]):
        if code := subprocess.run(dvc_cmd(*cmd)).returncode:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
