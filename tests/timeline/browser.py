"""Headless Chromium (Debian's ``chromium``), driven over the DevTools protocol on a pipe.

``--remote-debugging-pipe`` makes the browser read commands on its fd 3 and answer on fd 4:
no port is opened, nothing but the page under test is loaded. Every request the page makes
is recorded (``requests``), so a test can assert that it made none.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
MISSING = (
    f"{CHROMIUM} is not installed (Debian's chromium package): ./run test installs it when "
    "run as root, as CI does; or apt-get install chromium"
)


def available() -> bool:
    return os.access(CHROMIUM, os.X_OK)


class BrowserError(Exception):
    pass


class Browser:
    """One headless Chromium with one page; ``open`` loads a file in it."""

    def __init__(self, width: int = 1600, height: int = 1000) -> None:
        self.profile = tempfile.mkdtemp(prefix="conntrace-chromium-")
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()
        # The browser's fd 3 and fd 4, set in the child before it execs.
        wanted = {3: commands_read, 4: answers_write}

        def child_fds() -> None:
            # Out of the way first, so that placing one cannot overwrite the other.
            high = {target: fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for target, fd in wanted.items()}
            for target, fd in high.items():
                os.dup2(fd, target)

        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--disable-extensions",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            # The pipes are placed by child_fds, which runs before close_fds would close them:
            # every other descriptor of this process is close-on-exec already (PEP 446).
            close_fds=False,
            preexec_fn=child_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(answers_write)
        self._next_id = 0
        self._answered: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = ""
        self.width, self.height = width, height
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Network", "Runtime"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    # --- protocol ------------------------------------------------------------------------------

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._answers, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._cond.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                message, buffer = buffer.split(b"\0", 1)
                decoded = json.loads(message)
                with self._cond:
                    if "id" in decoded:
                        self._answered[decoded["id"]] = decoded
                    else:
                        self.events.append(decoded)
                    self._cond.notify_all()

    def send(self, method: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        with self._cond:
            self._next_id += 1
            number = self._next_id
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while number not in self._answered:
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise BrowserError(f"{method}: no answer from chromium")
                self._cond.wait(left)
            answer = self._answered.pop(number)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})  # type: ignore[no-any-return]

    # --- what tests use ------------------------------------------------------------------------

    def open(self, path: Path, timeout: float = 60) -> float:
        """Load ``path``; return the seconds until its script said it was drawn."""
        with self._cond:
            self.events.clear()
        started = time.monotonic()
        self.send("Page.navigate", url=path.resolve().as_uri())
        while time.monotonic() - started < timeout:
            if self.evaluate("document.getElementById('timeline')?.dataset.ready === '1'"):
                return time.monotonic() - started
            time.sleep(0.05)
        raise BrowserError(f"{path} was not drawn within {timeout} s")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def mouse(self, kind: str, x: float, y: float) -> None:
        """``kind``: mouseMoved, mousePressed, mouseReleased."""
        extra = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
        self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    def click(self, x: float, y: float) -> None:
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y)

    def press(self, key: str) -> None:
        codes = {"ArrowRight": 39, "ArrowLeft": 37, "ArrowDown": 40, "ArrowUp": 38, "Tab": 9}
        for kind in ("keyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent",
                type=kind,
                key=key,
                code=key,
                windowsVirtualKeyCode=codes.get(key, 0),
            )

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def requests(self) -> list[str]:
        """Every URL the page asked for, the page itself included."""
        with self._cond:
            return [
                event["params"]["request"]["url"]
                for event in self.events
                if event.get("method") == "Network.requestWillBeSent"
            ]

    def close(self) -> None:
        with contextlib.suppress(BrowserError):
            self.send("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        self._reader.join(timeout=5)
        os.close(self._answers)
        shutil.rmtree(self.profile, ignore_errors=True)
