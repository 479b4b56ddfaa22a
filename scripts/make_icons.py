#!/usr/bin/env python3
"""The app icons a phone asks for, drawn from web/icon.svg by Chromium (Playwright, as the tests
use): web/icon-192.png and web/icon-512.png (the icon as it is), web/icon-maskable-512.png (the
whale inside the middle 80%, the safe zone a launcher's mask never cuts, on the icon's blue to
the edges). Run by hand when web/icon.svg changes; the PNGs are committed.

    python3 scripts/make_icons.py [--chromium /usr/bin/chromium]"""
import argparse
import pathlib
import re

from playwright.sync_api import sync_playwright

WEB = pathlib.Path(__file__).resolve().parents[1] / "web"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    svg = (WEB / "icon.svg").read_text()
    blue = re.search(r'<rect[^>]*fill="(#[0-9a-fA-F]{6})"', svg).group(1)
    inner = svg.split(">", 1)[1].rsplit("</svg>", 1)[0]
    # maskable: no rounded corners (the mask makes its own shape), the drawing scaled to 80%
    maskable = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" fill="{blue}"/>'
                f'<g transform="translate(6.4 6.4) scale(0.8)">{inner}</g></svg>')
    jobs = [("icon-192.png", svg, 192), ("icon-512.png", svg, 512), ("icon-maskable-512.png", maskable, 512)]
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=a.chromium)
        for name, text, size in jobs:
            page = b.new_page(viewport={"width": size, "height": size})
            sized = text.replace("<svg ", f'<svg width="{size}" height="{size}" style="display:block" ', 1)
            page.set_content(f'<html><body style="margin:0;background:transparent">{sized}</body></html>')
            page.screenshot(path=str(WEB / name), omit_background=True, clip={"x": 0, "y": 0, "width": size, "height": size})
            page.close()
            print(f"web/{name}: {size}x{size}")
        b.close()


if __name__ == "__main__":
    main()
