"""Run the README's quick-start `serve` example as written and check that it answers signals.

After `make demo` on a fresh clone (and `make test`, which must leave the demo's bundle alone), this takes the
bash block of the README that follows "Then ask the trained models for a signal", starts its `serve` command,
runs each of its `curl` commands with bash, and checks every answer: a signal for each `POST /signals`, the
served version for `GET /models`. Exits 1 naming the command and its answer when one fails. CI runs it
(`make check-quickstart`).

    python scripts/check_quickstart.py [README.md]
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

MARKER = "Then ask the trained models for a signal"
SIGNALS = {"buy", "sell", "hold"}
START_SECONDS = 120


def quickstart_commands(readme: str) -> tuple[str, list[str]]:
    """The serve command and the curl commands of the README's quick-start block (comments and line
    continuations resolved)."""
    at = readme.find(MARKER)
    if at < 0:
        raise SystemExit(f"check_quickstart: the README has no '{MARKER}' paragraph")
    block = re.search(r"```bash\n(.*?)```", readme[at:], flags=re.S)
    if block is None:
        raise SystemExit(f"check_quickstart: no ```bash block after '{MARKER}'")
    commands: list[str] = []
    pending = ""
    for raw in block.group(1).splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        command = (pending + line.strip()).strip()
        pending = ""
        if command:
            commands.append(command)
    serve = [c for c in commands if " serve" in c and not c.startswith("curl")]
    curls = [c for c in commands if c.startswith("curl")]
    if len(serve) != 1 or not curls:
        raise SystemExit(f"check_quickstart: expected one serve command and curl commands, got {commands}")
    return serve[0], curls


def port_of(serve: str) -> int:
    words = shlex.split(serve)
    return int(words[words.index("--port") + 1]) if "--port" in words else 8000


def wait_until_up(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"check_quickstart: the serve command exited with {server.returncode} before answering")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/models", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise SystemExit(f"check_quickstart: nothing answered on port {port} within {START_SECONDS} s")


def check_answer(command: str, output: str) -> str:
    try:
        answer = json.loads(output)
    except json.JSONDecodeError:
        raise SystemExit(f"check_quickstart: `{command}` answered no JSON: {output[:500]!r}") from None
    if "/signals" in command:
        if answer.get("signal") not in SIGNALS:
            raise SystemExit(f"check_quickstart: `{command}` answered no signal: {output[:500]}")
        return f"{answer['symbol']} {answer['signal']} (position {answer.get('position')}, {answer.get('source')})"
    if "/book" in command:
        books = answer.get("books")
        if not books or not all(book.get("positions") for book in books):
            raise SystemExit(f"check_quickstart: `{command}` answered no live book with positions: {output[:500]}")
        return ", ".join(f"book {book.get('name')}: {len(book['positions'])} positions" for book in books)
    if "/models" in command:
        if not answer.get("model_version"):
            raise SystemExit(f"check_quickstart: `{command}` named no model version: {output[:500]}")
        return f"version {answer['model_version']}, serving {answer.get('symbols')}"
    return "answered"


def main(argv: list[str]) -> int:
    readme = Path(argv[0] if argv else "README.md")
    serve, curls = quickstart_commands(readme.read_text(encoding="utf-8"))
    port = port_of(serve)
    server = subprocess.Popen(["bash", "-c", f"exec {serve}"], cwd=readme.parent, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        wait_until_up(port, server)
        for command in curls:
            done = subprocess.run(["bash", "-c", command], cwd=readme.parent, capture_output=True, text=True,
                                  timeout=60, check=False)
            if done.returncode != 0:
                raise SystemExit(f"check_quickstart: `{command}` exited {done.returncode}: {done.stderr[:500]}")
            print(f"ok  {command}\n    -> {check_answer(command, done.stdout)}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
