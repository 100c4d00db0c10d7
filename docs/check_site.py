"""Open the built site in headless Chromium and check that its pages render.

Run after the build, from the repository root::

    python docs/check_site.py                  # checks docs/_build/html
    python docs/check_site.py path/to/html     # another build

It loads the front page and one gallery page (and the gallery's index) in headless Chromium, through
Selenium and chromedriver (Debian: ``apt-get install -y chromium chromium-driver``; Selenium is in the
``docs`` extra), and checks, after the page's scripts have run: the title, the navigation bar's links
(the user guide, the API reference, the gallery) and that each link leads to a built page, and that
every image has loaded (``naturalWidth > 0``), the gallery page's figures included. It saves a
screenshot of each page beside the build (``<html>/../site-check/``) and exits with status 1 and a
list of the problems if any check fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

DOCS = Path(__file__).resolve().parent
# What must be reachable from the navigation bar: the link text and the page it leads to.
NAVIGATION = {
    "User guide": "user_guide/index.html", "API reference": "api.html", "Examples": "auto_examples/index.html"
}
GALLERY_PAGE = "auto_examples/plot_image_classifier.html"

# Every <img> of the page: where it points, whether it has loaded, its natural size, and its classes.
IMAGES_JS = """
return Array.from(document.images).map(img => ({
    src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth,
    height: img.naturalHeight, classes: img.className}));
"""
# The navigation bar's links: text and absolute URL.
NAV_JS = """
const bar = document.querySelector('nav.navbar-nav, .bd-header nav, header nav');
if (!bar) return null;
return Array.from(bar.querySelectorAll('a')).map(a => ({text: a.textContent.trim(), href: a.href}));
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("check_site: no Chromium found; install it (Debian: apt-get install -y chromium chromium-driver)")


def _driver(profile: str):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        sys.exit('check_site: Selenium is not installed; pip install -e ".[docs]"')
    chromedriver = shutil.which("chromedriver")
    if chromedriver is None:
        sys.exit("check_site: no chromedriver found; install it (Debian: apt-get install -y chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--no-first-run", "--window-size=1280,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(60)
    return driver


def _local(url: str) -> Path:
    return Path(url2pathname(urlparse(url).path))


def _load(driver, page: Path, shot: Path) -> tuple[str, list[dict]]:
    """Open ``page``, wait until it and its images have loaded, save a screenshot; title and images."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(driver, 30).until(lambda d: all(img["complete"] for img in d.execute_script(IMAGES_JS)))
    driver.save_screenshot(str(shot))
    return driver.title, driver.execute_script(IMAGES_JS)


def check(html: Path) -> list[str]:
    """The problems found on the front page and a gallery page of the site built in ``html``."""
    problems = []
    pages = [html / "index.html", html / "auto_examples" / "index.html", html / GALLERY_PAGE]
    for page in pages:
        if not page.is_file():
            problems.append(f"{page} was not built")
    if problems:
        return problems
    shots = html.parent / "site-check"
    shots.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="check-site-chromium-") as profile:
        driver = _driver(profile)
        try:
            for page in pages:
                name = page.relative_to(html).as_posix()
                title, images = _load(driver, page, shots / name.replace("/", "-").replace(".html", ".png"))
                print(f"{name}: title {title!r}, {len(images)} images")
                if "sktransfer" not in title:
                    problems.append(f"{name}: title {title!r} does not name sktransfer")
                links = driver.execute_script(NAV_JS)
                if not links:
                    problems.append(f"{name}: no navigation bar")
                    links = []
                for text, target in NAVIGATION.items():
                    found = [link for link in links if link["text"] == text]
                    if not found:
                        problems.append(f"{name}: the navigation bar has no link {text!r} (it has "
                                        f"{[link['text'] for link in links]})")
                    elif _local(found[0]["href"]) != (html / target).resolve():
                        problems.append(f"{name}: {text!r} leads to {found[0]['href']}, not {target}")
                    elif not (html / target).is_file():
                        problems.append(f"{name}: {text!r} leads to {target}, which was not built")
                for image in images:
                    if not image["complete"] or image["width"] == 0:
                        problems.append(f"{name}: image {image['src']} did not load")
                figures = [image for image in images if "sphx-glr" in image["classes"]]
                if page.name == Path(GALLERY_PAGE).name and not figures:
                    problems.append(f"{name}: no gallery figure")
                for image in figures:
                    print(f"  figure {Path(urlparse(image['src']).path).name}: {image['width']}x{image['height']}")
        finally:
            driver.quit()
    print(f"screenshots in {shots}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", type=Path, default=DOCS / "_build" / "html", help="the built site")
    problems = check(parser.parse_args(argv).html.resolve())
    for problem in problems:
        print(f"check_site: {problem}", file=sys.stderr)
    print("check_site: the pages render" if not problems else f"check_site: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
