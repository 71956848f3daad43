"""Screenshots of the built documentation in headless Chromium (a developer's check, not part of
``make test``): ``make docs`` first, then ``python docs/take_screenshots.py``.

Needs ``pip install playwright`` and a Chromium: ``python -m playwright install chromium`` where its
download is reachable, otherwise the system's (Debian: ``apt-get install chromium``; the path is
found on PATH or given as ``CHROMIUM=/path/to/chromium``). Writes ``docs/screenshots/docs_*.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parent
HTML = DOCS / "_build" / "html"
OUT = DOCS / "screenshots"

PAGES = {
    # name: (page, height in pixels to keep; None: the whole page)
    "docs_landing_page.png": ("index.html", None),
    "docs_tutorial_own_scene.png": ("tutorials/tutorial_1_own_scene.html", None),
    "docs_tutorial_hodoscopes.png": ("tutorials/tutorial_6_hodoscopes.html", None),
    "docs_tutorial_sweep_on_ray.png": ("tutorials/tutorial_7_sweep_on_ray.html", None),
    "docs_configuration_reference.png": ("reference/configuration.html", 2200),
}


def main() -> None:
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        for name, (path, height) in PAGES.items():
            page.goto((HTML / path).as_uri())
            page.wait_for_load_state("networkidle")
            if height is None:
                page.screenshot(path=OUT / name, full_page=True)
            else:
                page.screenshot(path=OUT / name, full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": height})
            print(OUT / name)
        browser.close()


if __name__ == "__main__":
    main()
