#!/usr/bin/env python3
"""Open a report.html in headless Chromium and check that every plot rendered.

    scripts/check_report.py results/report/report.html [--chromium PATH] [--screenshot FILE]

A copy of the page (the report itself is never modified) gets a small script that runs after
the page's load event and writes, into the DOM, each <img>'s `complete`, `naturalWidth` and
`naturalHeight`; `chromium --headless --dump-dom` prints that DOM. The check passes when the
browser saw as many images as the HTML has <img> tags and every one decoded with a non-zero
size, and the page loads nothing from outside itself (self-contained).

Exit 0: all rendered; 1: something did not render or the page is not self-contained;
2: no Chromium, or the file is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
MARK = "harness-check"
PROBE = f"""
<script>
window.addEventListener("load", function () {{
  var out = Array.prototype.map.call(document.images, function (img) {{
    return {{alt: img.alt, complete: img.complete, w: img.naturalWidth, h: img.naturalHeight}};
  }});
  var pre = document.createElement("pre");
  pre.id = "{MARK}";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}});
</script>
"""


class _Sources(HTMLParser):
    """<img> count and every src/href that would load something from outside the page."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images += 1
        for key in ("src", "href"):
            value = attrs.get(key)
            if value and not (value.startswith("data:") or value.startswith("#")) and (tag != "a"):
                self.external.append(f"<{tag} {key}={value[:60]}>")


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium binary: `explicit`, $CHROMIUM, or the first of CANDIDATES on PATH."""
    for name in filter(None, (explicit, os.environ.get("CHROMIUM"), *CANDIDATES)):
        path = shutil.which(name)
        if path:
            return path
    return None


def check(html_path: Path, chromium: str, screenshot: Path | None = None, timeout_s: float = 120.0) -> dict:
    """Render `html_path` in headless Chromium; return what the browser saw."""
    text = html_path.read_text(encoding="utf-8")
    sources = _Sources()
    sources.feed(text)
    probed = text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE
    with tempfile.TemporaryDirectory(prefix="check-report-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(probed, encoding="utf-8")
        flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--no-default-browser-check", f"--user-data-dir={Path(tmp) / 'profile'}",
                 "--virtual-time-budget=20000", "--hide-scrollbars"]
        done = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                              timeout=timeout_s)
        if screenshot is not None:
            subprocess.run([chromium, *flags, f"--screenshot={screenshot.resolve()}", "--window-size=1280,2400",
                            html_path.resolve().as_uri()], capture_output=True, text=True, timeout=timeout_s)
    match = re.search(rf'<pre id="{MARK}">(.*?)</pre>', done.stdout, re.DOTALL)
    seen = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">")) if match else None
    version = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    return {"browser": version, "expected_images": sources.images, "seen": seen, "external": sources.external,
            "returncode": done.returncode, "stderr_tail": done.stderr.strip().splitlines()[-3:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--chromium", help="Chromium binary (default: $CHROMIUM or chromium on PATH)")
    parser.add_argument("--screenshot", type=Path, help="Also save a full-page screenshot here")
    args = parser.parse_args(argv)
    if not args.html.is_file():
        print(f"check_report: error: {args.html}: no such file", file=sys.stderr)
        return 2
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("check_report: error: no Chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    result = check(args.html, chromium, args.screenshot)
    seen = result["seen"]
    if seen is None:
        print(f"FAIL {args.html}: {result['browser']} produced no result (exit {result['returncode']}): "
              f"{' | '.join(result['stderr_tail'])}")
        return 1
    broken = [img for img in seen if not (img["complete"] and img["w"] > 0 and img["h"] > 0)]
    ok = len(seen) == result["expected_images"] and not broken and not result["external"]
    print(f"{'OK' if ok else 'FAIL'} {args.html}: {result['browser']}: {len(seen) - len(broken)}/"
          f"{result['expected_images']} images rendered; external resources: {len(result['external'])}")
    for img in seen:
        status = "ok    " if img not in broken else "BROKEN"
        print(f"  {status} {img['w']}x{img['h']}  {img['alt'][:110]}")
    for ref in result["external"]:
        print(f"  EXTERNAL {ref}")
    if args.screenshot:
        print(f"screenshot: {args.screenshot}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
