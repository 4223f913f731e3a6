"""Tests every command example of the README and the book (docs/src).

Each ```sh or ```python block says on the line before it how it is tested:

    <!-- example: run -->     run for real, line by line, in a sandbox
    <!-- example: check -->   not run: each `lgss` line's subcommand and
                              flags must exist (`lgss <cmd> --help`), each
                              script or file it runs must exist

A block without a marker fails the test: every command shown is tested.
`check` is for what cannot run here (a GPU, hours of training, the real
dataset, the test suite itself, a container engine, a cluster); in a `run`
block, a line that needs CUDA is checked instead where no GPU is.

The sandbox is a workspace as the book's "Getting started" describes it:
6 small synthetic movies in data/movies, lgss.toml = models/lgss-small.toml
(3 epochs), `movie.pkl` and `tt0047396.pkl` synthetic movies, and the
repository's models/, tests/, scripts/ and .venv/ beside them; `lgss` on PATH. Blocks
run in the order of SUMMARY.md (README first) and share the sandbox, so a
block may use what an earlier one made (the three lines: runs/latest).
Python blocks run with `--python`, an interpreter that has the lgss wheel.
Inline `lgss …` code spans in the prose are checked like `check` lines.

    python tests/book_examples.py --lgss BIN --python PY
"""

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--\s*example:\s*(run|check)\s*-->")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def pages():
    summary = (ROOT / "docs" / "src" / "SUMMARY.md").read_text()
    chapters = re.findall(r"\]\(([^)]+\.md)\)", summary)
    return [ROOT / "README.md"] + [ROOT / "docs" / "src" / c for c in chapters if c != "reference.md"]


def blocks(path):
    """(kind, language, body, line number) of every sh/python block."""
    text = path.read_text()
    for m in BLOCK.finditer(text):
        lang, body = m.group(1), m.group(2)
        if lang not in ("sh", "python"):
            continue
        before = text[: m.start()].rstrip("\n").split("\n")[-1]
        marker = MARKER.search(before)
        yield (marker.group(1) if marker else None), lang, body, text[: m.start()].count("\n") + 1


def command_lines(body):
    """Shell lines, continuations joined, comments and blanks dropped."""
    lines, current = [], ""
    for raw in body.split("\n"):
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        words = split(current)
        if words:
            lines.append((current.strip(), words))
        current = ""
    return lines


def split(line):
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split("#")[0].split()


class Help:
    """`lgss --help` and each subcommand's, read once."""

    def __init__(self, lgss):
        self.lgss, self.cache = lgss, {}

    def text(self, *cmd):
        if cmd not in self.cache:
            p = subprocess.run([self.lgss, *cmd, "--help"], capture_output=True, text=True)
            self.cache[cmd] = p.stdout if p.returncode == 0 else None
        return self.cache[cmd]

    def problems(self, words):
        """What is wrong with an `lgss …` command line's names (not values)."""
        args = [w for w in words[1:] if not w.startswith("-") or w.startswith("--")]
        sub = next((w for w in args if not w.startswith("-")), None)
        if sub is None:
            return []
        commands = re.findall(r"^  (\S+)", self.text().split("Commands:")[1].split("Options:")[0], re.M)
        if sub not in commands:
            return [f"lgss has no subcommand {sub}"]
        help_text = self.text(sub)
        out = []
        for w in words[1:]:
            if w.startswith("--") and len(w) > 2:
                flag = w.split("=")[0]
                known = any(flag in re.split(r"[ ,=\[<]", l.strip()) for l in help_text.splitlines())
                top = any(flag in re.split(r"[ ,=\[<]", l.strip()) for l in self.text().splitlines())
                if not (known or top):
                    out.append(f"lgss {sub} has no {flag}")
        return out


def check_line(line, words, help_):
    """`check`: the names a line uses exist."""
    env_free = [w for w in words if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
    if not env_free:
        return []
    head = env_free[0]
    if head == "lgss" or head.endswith("/lgss"):
        return help_.problems(["lgss", *env_free[1:]])
    if head.startswith("scripts/") or head.startswith("benches/"):
        return [] if (ROOT / head).exists() else [f"{head} does not exist"]
    if head.endswith("python") and len(env_free) > 1 and not env_free[1].startswith("-"):
        return [] if (ROOT / env_free[1]).exists() else [f"{env_free[1]} does not exist"]
    return []


def needs_cuda(words):
    return any(w in ("ort-cuda", "tch-cuda") for w in words) or "--device cuda" in " ".join(words) \
        or any(w.endswith("=cuda") for w in words)


def sandbox(lgss, work):
    ws = work / "workspace"
    ws.mkdir()
    for name in ("models", "tests", ".venv", "examples", "scripts"):
        os.symlink(ROOT / name, ws / name)
    bin_dir = work / "bin"
    bin_dir.mkdir()
    os.symlink(lgss, bin_dir / "lgss")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    run = lambda *cmd: subprocess.run(cmd, cwd=ws, env=env, check=True, capture_output=True)  # noqa: E731
    run("lgss", "synth", "--out", "data/movies", "--movies", "6", "--size", "small", "--shots", "40..60", "--seed", "1")
    run("lgss", "synth", "--out", str(work / "one"), "--movies", "1", "--size", "small", "--shots", "50..50", "--seed", "8")
    for name in ("movie.pkl", "tt0047396.pkl"):
        shutil.copy(work / "one" / "tt0000001.pkl", ws / name)
    config = (ROOT / "models" / "lgss-small.toml").read_text()
    (ws / "lgss.toml").write_text(re.sub(r"(?m)^epochs = \d+", "epochs = 3", config))
    return ws, env


def cuda_available(lgss):
    """Whether both CUDA runtimes work here (`lgss doctor --json`)."""
    p = subprocess.run([lgss, "doctor", "--json"], capture_output=True, text=True)
    try:
        d = json.loads(p.stdout)
    except json.JSONDecodeError:
        return False
    return bool(d.get("libtorch", {}).get("cuda_available") and d.get("onnxruntime", {}).get("cuda_provider"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lgss", required=True, type=Path)
    ap.add_argument("--python", required=True, type=Path)
    a = ap.parse_args()
    lgss = a.lgss.resolve()
    help_ = Help(lgss)
    cuda = cuda_available(lgss)
    problems, ran, checked, spans = [], 0, 0, 0
    work = Path(tempfile.mkdtemp(prefix="lgss-book-examples-"))
    try:
        ws, env = sandbox(lgss, work)
        for page in pages():
            where = page.relative_to(ROOT)
            text = page.read_text()
            for span in re.findall(r"`(lgss [^`]+)`", BLOCK.sub("", text)):
                spans += 1
                problems += [f"{where}: `{span}`: {p}" for p in check_line(span, split(span), help_)]
            for kind, lang, body, line in blocks(page):
                here = f"{where}:{line}"
                if kind is None:
                    problems.append(f"{here}: a ```{lang} block without <!-- example: run|check -->")
                    continue
                if lang == "python":
                    if kind == "run":
                        p = subprocess.run([a.python, "-c", body], cwd=ws, env=env, capture_output=True, text=True)
                        ran += 1
                        if p.returncode != 0:
                            problems.append(f"{here}: the Python example failed:\n{p.stderr[-2000:]}")
                    else:
                        compile(body, here, "exec")
                        checked += 1
                    continue
                for cmd, words in command_lines(body):
                    if kind == "run" and not (needs_cuda(words) and not cuda):
                        p = subprocess.run(["bash", "-c", cmd], cwd=ws, env=env, capture_output=True, text=True,
                                           timeout=900)
                        ran += 1
                        print(f"ran   {here}: {cmd}", file=sys.stderr)
                        if p.returncode != 0:
                            problems.append(f"{here}: `{cmd}` exited {p.returncode}:\n{p.stderr[-2000:]}")
                    else:
                        checked += 1
                        problems += [f"{here}: `{cmd}`: {p}" for p in check_line(cmd, words, help_)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for p in problems:
        print(f"book example: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"book examples: {ran} run, {checked} checked (names only), {spans} inline `lgss …` spans checked"
          f"{'' if cuda else '; no GPU here: CUDA lines checked, not run'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
