#!/usr/bin/env python3
"""Drives a program in a pseudo-terminal, as a person at a terminal would (for `helix chat`).

Usage: pty_driver.py STEPS_JSON -- PROGRAM [ARGS...]
STEPS_JSON is a list of steps, run in order:
  {"expect": "REGEX", "timeout": SECONDS}   wait until the output so far (ANSI escapes
                                           removed) matches REGEX after the last match
  {"send": "TEXT"}                          type TEXT (use "\r" for Enter, "\u0004" Ctrl-D)
  {"interrupt": true}                       press Ctrl-C (the terminal sends SIGINT)
It prints the whole transcript on stdout, then exits with the program's exit code, or 99
when an expectation timed out (the transcript says where).
"""
import json
import os
import pty
import re
import select
import signal
import sys
import time

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def main() -> int:
    steps = json.loads(sys.argv[1])
    argv = sys.argv[sys.argv.index("--") + 1 :]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    raw = b""
    searched_from = 0

    def pump(deadline: float) -> bool:
        nonlocal raw
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], min(left, 0.1))
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            raw += chunk
        return True

    for step in steps:
        if "expect" in step:
            pattern = re.compile(step["expect"])
            deadline = time.monotonic() + step.get("timeout", 30)
            while True:
                text = ANSI.sub(b"", raw).decode("utf-8", "replace")
                found = pattern.search(text, searched_from)
                if found:
                    searched_from = found.end()
                    break
                if not pump(deadline) and time.monotonic() >= deadline:
                    sys.stdout.write(ANSI.sub(b"", raw).decode("utf-8", "replace"))
                    sys.stdout.write(f"\n[pty_driver: timed out waiting for {step['expect']!r}]\n")
                    os.kill(pid, signal.SIGKILL)
                    return 99
        elif "send" in step:
            os.write(fd, step["send"].encode())
        elif step.get("interrupt"):
            os.write(fd, b"\x03")
    # Read to the end (the program leaves), then reap it.
    status = None
    deadline = time.monotonic() + 30
    while status is None and time.monotonic() < deadline:
        try:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    raw += chunk
        except OSError:
            pass
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
    if status is None:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        raw += b"\n[pty_driver: the program did not leave within 30 s]\n"
    sys.stdout.write(ANSI.sub(b"", raw).decode("utf-8", "replace"))
    return os.waitstatus_to_exitcode(status)

if __name__ == "__main__":
    sys.exit(main())
