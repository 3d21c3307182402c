"""The course website, built once from the committed notebooks and opened in a real (headless) Chromium.

Every lesson page loads with its headings, its figures (decoded, with alt text, the committed images
themselves: nothing was re-run), its tables, a working "next" link and the Colab/Binder badges.
The site is served from 127.0.0.1; any other request is refused and recorded, so the test also shows
that the pages need no network. Screenshots go to artifacts/site/.
"""

import base64
import functools
import hashlib
import http.server
import json
import re
import threading
import time
from pathlib import PurePosixPath
from urllib.parse import urlparse

import nbformat
import pytest
import yaml
from conftest import REPO

from course_utils.lessons import LESSONS, binder_url, colab_url
from course_utils.authoring.site import WIDGET_NOTE, book_toc, figure_alt, plain_text, site_notebook, write_source

SHOTS = REPO / "artifacts" / "site"
# MathJax comes from its CDN (no local copy is installed): the site's only remote resource, and only
# a nicety (offline, lesson 06b's formulas show as TeX source).
ALLOWED_REMOTE = ("https://cdn.jsdelivr.net/npm/mathjax@3/",)
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$", re.M)
FILE_NAME = re.compile(r"^[\w. -]+\.(png|jpe?g|gif|svg|webp)$", re.I)
SLUGS = [lesson.slug for lesson in LESSONS]


def plain(text: str) -> str:
    """A heading as both sides show it: Sphinx's curly quotes made straight, spaces collapsed."""
    text = text.translate(str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"'}))
    return " ".join(text.split())


def notebook_facts(slug: str) -> dict:
    """What the committed notebook says its page must show: headings, figures (by content hash), tables."""
    nb = json.loads((REPO / "notebooks" / f"{slug}.ipynb").read_text())
    markdown = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    headings = [line for text in markdown for line in text.splitlines() if re.match(r"#{1,2}\s", line)]
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    figures = [hashlib.sha256(base64.b64decode(value)).hexdigest() for o in outputs
               for mime, value in o.get("data", {}).items() if mime.startswith("image/") and mime != "image/svg+xml"]
    tables = sum(len(TABLE_RULE.findall(text)) for text in markdown)
    tables += sum("".join(o.get("data", {}).get("text/html", "")).count("<table") for o in outputs)
    tables += sum(len(TABLE_RULE.findall("".join(o.get("data", {}).get("text/markdown", "")))) for o in outputs)
    return {"h1": plain(plain_text(headings[0][2:])),
            "h2": [plain(plain_text(h[3:])) for h in headings if h.startswith("## ")],
            "figures": figures, "tables": tables}


def test_toc_follows_lessons(tmp_path):
    """The table of contents is generated from LESSONS: 00_start_here at the root, then the lesson order."""
    toc = book_toc()
    assert [toc["root"]] + [chapter["file"] for chapter in toc["chapters"]] == SLUGS
    src = write_source(tmp_path / "site-src")
    assert yaml.safe_load((src / "_toc.yml").read_text()) == toc
    config = yaml.safe_load((src / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert sorted(p.stem for p in src.glob("*.ipynb")) == sorted(SLUGS)


def test_figure_alt_rule():
    """Alt text: the section heading, then the figure's literal title, else the caption above the cell."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    cells = [md("# Lesson\n> subtitle"), md("## 2. A section\nThe curve, e.g. of loss, falls. Then more."),
             code('ax.set(title="loss per step")'), code('ax.set_title(f"{k}")\nplt.suptitle("All panels")'),
             code("plt.show()"), md("### Only a heading"), code("plt.show()")]
    assert figure_alt(cells, 2) == "2. A section — loss per step"
    assert figure_alt(cells, 3) == "2. A section — All panels"
    assert figure_alt(cells, 4) == "2. A section — The curve, e.g. of loss, falls."
    assert figure_alt(cells, 6) == "Only a heading"


def test_site_copy_keeps_figures_and_drops_live_widgets():
    """The web copy of a lesson has every committed figure, local badges and no widget state or views."""
    for slug in SLUGS:
        nb = nbformat.read(REPO / "notebooks" / f"{slug}.ipynb", as_version=4)
        web = site_notebook(nb)
        images = [o for c in web.cells if c.cell_type == "code" for o in c.outputs
                  if any(k.startswith("image/") for k in o.get("data", {}))]
        assert len(images) == len(notebook_facts(slug)["figures"]), slug
        text = nbformat.writes(web)
        assert "widgets" not in web.metadata and "widget-view+json" not in text, slug
        # Lesson 01's slider and lesson 05's text box leave a note in their place; progress bars leave nothing.
        assert (WIDGET_NOTE in text) == (slug in ("01_doctor_to_lawyer", "05_fine_tuning_language")), slug
        assert "colab-badge.svg)" in text and "https://colab.research.google.com/assets" not in text, slug


# ----------------------------------------------------------------------------------------------------
# The built site in a browser


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built once (strict: any Sphinx warning fails), served on 127.0.0.1 from a thread."""
    from course_utils.authoring.site import build_site

    start = time.perf_counter()
    html = build_site(tmp_path_factory.mktemp("site") / "site", strict=True)
    print(f"\nsite build: {time.perf_counter() - start:.1f} s")
    assert (html / "index.html").is_file()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page(site, browser):
    """A page that may fetch only from the site; records remote requests, console errors and page errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.remote, page.errors = [], []

    def route(request):
        if request.request.url.startswith(site):
            request.continue_()
        else:
            page.remote.append(request.request.url)
            request.abort()

    page.route("**/*", route)
    page.on("console", lambda msg: msg.type == "error" and page.errors.append(f"{msg.text} ({msg.location.get('url')})"))
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    page.close()


def heading_texts(page, tag: str) -> list[str]:
    """The article's headings of one level, without Sphinx's '#' permalinks."""
    return [plain(t) for t in page.eval_on_selector_all(
        f"article.bd-article {tag}",
        "els => els.map(e => { const c = e.cloneNode(true); c.querySelectorAll('.headerlink').forEach(a => a.remove());"
        " return c.textContent; })")]


@pytest.mark.slow
@pytest.mark.parametrize("slug", SLUGS)
def test_lesson_page(site, page, slug):
    facts = notebook_facts(slug)
    response = page.goto(f"{site}{slug}.html", wait_until="load")
    assert response.status == 200, f"{slug}: HTTP {response.status}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{slug}.png"))

    assert heading_texts(page, "h1") == [facts["h1"]], f"{slug}: the page's title"
    assert heading_texts(page, "h2") == facts["h2"], f"{slug}: the section headings"

    images = page.eval_on_selector_all("article.bd-article img", """els => els.map(e => ({
        src: e.getAttribute('src'), alt: e.getAttribute('alt') || '', ok: e.complete && e.naturalWidth > 0,
        figure: !!e.closest('.cell_output')}))""")
    broken = [i["src"] for i in images if not i["ok"]]
    assert not broken, f"{slug}: images not decoded: {broken}"
    no_alt = [i["src"] for i in images if not i["alt"].strip() or FILE_NAME.match(i["alt"].strip())]
    assert not no_alt, f"{slug}: images without a real alt text: {no_alt}"
    shown = [PurePosixPath(i["src"]).stem for i in images if i["figure"]]
    assert len(shown) == len(facts["figures"]), f"{slug}: {len(shown)} figures shown, {len(facts['figures'])} in the notebook"
    assert sorted(shown) == sorted(facts["figures"]), f"{slug}: the figures are not the committed outputs"

    tables = page.locator("article.bd-article table").count()
    assert tables >= facts["tables"], f"{slug}: {tables} tables shown, {facts['tables']} in the notebook"

    badges = page.eval_on_selector_all("article.bd-article a:has(> img)",
                                       "els => els.map(a => [a.querySelector('img').alt, a.href])")
    assert [href for alt, href in badges if alt == "Open in Colab"] == [colab_url(slug)] * 2, f"{slug}: Colab badges"
    assert [href for alt, href in badges if alt == "Launch Binder"] == [binder_url(slug)] * 2, f"{slug}: Binder badges"
    launch = page.eval_on_selector_all(".article-header-buttons a", "els => els.map(a => a.href)")
    assert {colab_url(slug), binder_url(slug)} <= set(launch), f"{slug}: the theme's launch buttons {launch}"
    contents = page.eval_on_selector_all("article.bd-article a", "els => els.filter(a => a.textContent.trim() === "
                                          "'contents').map(a => a.href)")
    assert contents == [f"{site}00_start_here.html#the-lessons"] * 2, f"{slug}: contents links {contents}"
    if slug == SLUGS[0]:
        assert page.locator("#the-lessons").count() == 1

    download = page.request.get(f"{site}_sources/{slug}.ipynb")
    assert download.body() == (REPO / "notebooks" / f"{slug}.ipynb").read_bytes(), f"{slug}: download button"

    unexpected = [url for url in page.remote if not url.startswith(ALLOWED_REMOTE)]
    assert not unexpected, f"{slug}: the page asks the network for {unexpected}"
    errors = [e for e in page.errors if not any(url in e for url in page.remote)]
    assert not errors, f"{slug}: console errors: {errors}"

    i = SLUGS.index(slug)
    if i + 1 == len(SLUGS):
        assert page.get_by_text("(last lesson) →").count() == 2
        return
    nxt = SLUGS[i + 1]
    page.get_by_role("link", name=f"{nxt} →", exact=True).first.click()
    page.wait_for_url(f"{site}{nxt}.html", timeout=10_000)
    assert heading_texts(page, "h1") == [notebook_facts(nxt)["h1"]], f"{slug}: 'next' did not lead to {nxt}"
    assert urlparse(page.url).path == f"/{nxt}.html"
