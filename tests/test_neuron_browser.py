"""The report's neuron browser: cards travel as inert JSON, and in headless Chromium a real mouse click on a
neuron (Chrome DevTools Protocol ``Input.dispatchMouseEvent``) opens its card."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from langneurons.formats.card import save_cards
from langneurons.reporting import write_report

EVIL = "<script>alert(1)</script>"
LANGS = ["en", "fr"]


def card(layer: int, neuron: int, token: str) -> dict:
    top = [{"value": 3.5 - i, "text": f"il {token} {EVIL}", "position": 2, "token": token, "left": "il ",
            "right": f" {EVIL}", "sentence": i} for i in range(3)]  # fmt: skip
    return {"layer": layer, "neuron": neuron, "site": "act", "model": EVIL,
            "languages": {"en": {"probability": 0.05, "mean": -0.1, "top": []},
                          "fr": {"probability": 0.62, "mean": 0.4, "top": top}},
            "writes": {"promoted": [{"token": "le", "token_id": 5, "score": 2.0, "language": "fr"}],
                       "suppressed": [{"token": "the", "token_id": 6, "score": -2.0, "language": "en"}],
                       "language_share": {"en": 0.02, "fr": 0.41}}}  # fmt: skip


def cards_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    by_layer = {lang: {"by_layer": [{"layer": 0, "neurons": 0, "writes": 0}, {"layer": 1, "neurons": 2, "writes": 1},
                                    {"layer": 2, "neurons": 1, "writes": 1}], "neurons": 3, "writes": 2}
                for lang in LANGS}  # fmt: skip
    save_cards(run / "lape.cards.json", {
        "cards": [card(2, 17, "maison"), card(1, 4, "chat")], "languages": LANGS, "num_layers": 3, "method": "lape",
        "model": EVIL, "site": "act", "run": str(run),
        "ranked": {"fr": [[2, 17, 0.62, 0.41], [1, 4, 0.5, 0.3], [1, 9, 0.2, 0.0]], "en": [[0, 3, 0.4, None]]},
        "writes_by_layer": {"rule": "share above the 95% quantile", "languages": by_layer},
    })  # fmt: skip
    return run


def test_cards_are_inert_json_and_the_writes_table_is_drawn(tmp_path):
    run = cards_run(tmp_path)
    write_report(run, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Neuron browser: lape.cards" in page
    assert "<script>alert(1)" not in page and "\\u003cscript\\u003ealert(1)" in page
    assert "<td>1/2</td>" in page and "<td>2/3</td>" in page  # layer 1 row, and the whole set


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class DevTools:
    """The smallest Chrome DevTools Protocol client: one page's websocket (RFC 6455 text frames), no dependency."""

    def __init__(self, url: str):
        host, rest = url.removeprefix("ws://").split("/", 1)
        name, port = host.split(":")
        self.sock = socket.create_connection((name, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())  # fmt: skip
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        assert b" 101 " in response.split(b"\r\n")[0], response
        self.next_id = 0

    def _send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
                                if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))  # fmt: skip
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "devtools closed the connection"
            buf += chunk
        return buf

    def _receive(self) -> str:
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            message += self._exact(n)
            if b0 & 0x80:
                return message.decode()

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._receive())
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply.get("result", {})

    def js(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")


def open_page(tmp_path: Path, page: Path):
    profile = tmp_path / "profile"
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1400,1000",
           page.resolve().as_uri()]  # fmt: skip
    port_file = profile / "DevToolsActivePort"
    port_file.unlink(missing_ok=True)  # a stale one from an earlier browser names a closed port
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        assert time.time() < deadline and proc.poll() is None, "chromium did not start its devtools endpoint"
        time.sleep(0.1)
    port = port_file.read_text().split()[0]
    for _ in range(100):
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10).read())
        pages = [t for t in targets if t.get("type") == "page" and t.get("url", "").startswith("file:")]
        if pages:
            return proc, DevTools(pages[0]["webSocketDebuggerUrl"])
        time.sleep(0.1)
    raise AssertionError("no page target")


def click(tools: DevTools, selector: str) -> None:
    """A real mouse click (pressed + released at the element's centre), as a user's would be."""
    box = tools.js(f"(function(){{var e=document.querySelector({json.dumps(selector)});"
                   "e.scrollIntoView({block: 'center'}); var r=e.getBoundingClientRect();"
                   "return [r.left + r.width / 2, r.top + r.height / 2];})()")  # fmt: skip
    for kind in ("mousePressed", "mouseReleased"):
        tools.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)


@pytest.mark.skipif(chromium() is None, reason="no chromium here (CI installs Debian's chromium)")
def test_a_click_on_a_neuron_opens_its_card_in_headless_chromium(tmp_path):
    run = cards_run(tmp_path)
    out = tmp_path / "report.html"
    write_report(run, out)
    proc, tools = open_page(tmp_path, out)
    try:
        deadline = time.time() + 30
        while tools.js("document.readyState") != "complete" and time.time() < deadline:
            time.sleep(0.1)
        assert tools.js("document.documentElement.getAttribute('data-report-error')") is None
        deadline = time.time() + 30  # a loaded machine may run the page's script after readyState says complete
        while True:
            tools.js("document.querySelector('.ln-lang').value = 'fr'; "
                     "document.querySelector('.ln-lang').dispatchEvent(new Event('change'))")  # fmt: skip
            if tools.js("document.querySelectorAll('.ln-list li').length") == 3 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert tools.js("document.querySelectorAll('.ln-list li').length") == 3
        assert tools.js("document.querySelector('.ln-card-view').getAttribute('data-open')") == ""
        click(tools, '[data-neuron="1:4"]')
        assert tools.js("document.querySelector('.ln-card-view').getAttribute('data-open')") == "1:4"
        view = tools.js("document.querySelector('.ln-card-view').innerText")
        assert "neuron 1:4" in view and "0.620" in view and "promoted: le" in view
        assert tools.js("document.querySelector('.ln-card-view mark').textContent") == "chat"
        assert tools.js("document.querySelectorAll('.ln-card-view script').length") == 0  # the evil text is text
        # a neuron without a card says how to make one; typing L:N opens the other card
        click(tools, '[data-neuron="1:9"]')
        assert "langneurons explain" in tools.js("document.querySelector('.ln-card-view').innerText")
        tools.js("document.querySelector('.ln-go').value = '2:17'")
        click(tools, ".ln-go-btn")
        assert tools.js("document.querySelector('.ln-card-view mark').textContent") == "maison"
        if os.environ.get("LANGNEURONS_SCREENSHOT"):  # docs/figures/neuron-browser.png
            tools.js("document.getElementById('browser-neurons-lape-cards').scrollIntoView()")
            shot = tools.call("Page.captureScreenshot", format="png")["data"]
            Path(os.environ["LANGNEURONS_SCREENSHOT"]).write_bytes(base64.b64decode(shot))
    finally:
        proc.kill()
        proc.wait(timeout=30)
