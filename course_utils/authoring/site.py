"""The course website: a Jupyter Book built from the committed, executed notebooks, with nothing re-run.

``python -m course_utils site`` (``make site``) writes a book source folder (``build/site-src``): a
``_config.yml`` and a ``_toc.yml`` generated from ``lessons.LESSONS``, and a copy of every lesson prepared
for the web (figures with alt text, local badges, no live widgets). Then Jupyter Book turns it into
static HTML (``build/site/_build/html``), offline.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from course_utils.assets import REPO_ROOT
from course_utils.errors import SettingError
from course_utils.lessons import BRANCH, LESSONS, NOTEBOOKS, REPO_SLUG, check_notebook, check_output_folder

BUILD = REPO_ROOT / "build"
SITE_STATIC = Path(__file__).parent / "site_static"
# The nav cells' badges come from the internet; the site uses local copies so they show offline too.
BADGES = {"https://colab.research.google.com/assets/colab-badge.svg": "_static/colab-badge.svg",
          "https://mybinder.org/badge_logo.svg": "_static/binder-badge.svg"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("*An interactive control appears here when the notebook runs: open the lesson in Colab or "
               "Binder (the badges at the top) to use it.*")
TITLE_CALL = re.compile(r"\b(suptitle|set_title|title)\s*[(=]\s*(\"[^\"\n]+\"|'[^'\n]+')")
ABBREVIATIONS = ("et al.", "e.g.", "i.e.", "vs.", "cf.", "Fig.")
MAX_ALT = 250


def book_config() -> dict:
    """The book's ``_config.yml``: title, no execution, repository and Colab/Binder launch buttons."""
    return {
        "title": "Transfer learning, measured",
        "author": "The transfer-learning course authors",
        "copyright": "2026",
        "only_build_toc_files": True,
        "exclude_patterns": ["_build", "**.ipynb_checkpoints"],
        # The committed outputs are the ones shown: the site never runs a lesson.
        "execute": {"execute_notebooks": "off"},
        "parse": {"myst_enable_extensions": ["dollarmath", "colon_fence"]},
        "repository": {"url": f"https://github.com/{REPO_SLUG}", "path_to_book": "notebooks", "branch": BRANCH},
        "launch_buttons": {"notebook_interface": "jupyterlab", "binderhub_url": "https://mybinder.org",
                           "colab_url": "https://colab.research.google.com"},
        "html": {"use_repository_button": True, "home_page_in_navbar": True, "use_multitoc_numbering": False},
        # Links like 00_start_here.ipynb#the-lessons resolve to headings (JB1 passes only this section on);
        # markdown outputs (00's lesson map) are MyST, not CommonMark, so their tables and links work.
        # html_context's default_mode: pydata-sphinx-theme logs a console error when none is set.
        "sphinx": {"config": {"myst_heading_anchors": 3, "nb_render_markdown_format": "myst",
                              "html_context": {"default_mode": "auto"}},
                   "extra_extensions": ["course_utils.authoring.site"]},  # setup() below: one copy of each script
    }


def book_toc() -> dict:
    """The book's ``_toc.yml``: 00_start_here as the root page, then every lesson in the order taught."""
    return {"format": "jb-book", "root": LESSONS[0].slug,
            "chapters": [{"file": lesson.slug} for lesson in LESSONS[1:]]}


def plain_text(markdown: str) -> str:
    """Markdown reduced to its words: no links, bold or italics with '*', code marks, dollars or line breaks."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"[*`$]+", "", text)
    return " ".join(text.split())


def first_sentence(text: str) -> str:
    """The first sentence of a paragraph, not cut at 'et al.' or 'e.g.'."""
    for i, abbreviation in enumerate(ABBREVIATIONS):
        text = text.replace(abbreviation, f"\0{i}\0")
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    for i, abbreviation in enumerate(ABBREVIATIONS):
        sentence = sentence.replace(f"\0{i}\0", abbreviation)
    return sentence


def shorten(text: str, limit: int = MAX_ALT) -> str:
    """Text cut at a word boundary to at most ``limit`` characters."""
    return text if len(text) <= limit else text[:limit - 1].rsplit(" ", 1)[0] + "…"


def section_heading(markdown_cells: list) -> str:
    """The last markdown heading in these cells (a lesson's sections are its headings), or ''."""
    for cell in reversed(markdown_cells):
        headings = [line.lstrip("#").strip() for line in cell.source.splitlines() if re.match(r"#{1,6}\s", line)]
        if headings:
            return plain_text(headings[-1])
    return ""


def paragraph_after_heading(markdown: str) -> str:
    """The first paragraph after a markdown cell's last heading (or of the cell, when it has none)."""
    lines = markdown.splitlines()
    last = max((i for i, line in enumerate(lines) if re.match(r"#{1,6}\s", line)), default=-1)
    return re.split(r"\n\s*\n", "\n".join(lines[last + 1:]).strip())[0]


def figure_alt(cells: list, index: int) -> str:
    """Alt text for the figures of code cell ``index``: '<section heading> — <title or caption>'.

    The section heading is the nearest markdown heading above the cell (the lesson's title before the
    first section). The title is the plain string literal passed to ``suptitle``, ``set_title`` or
    ``title=`` in the cell (suptitle first, several joined by '; '; f-strings are panel labels and are
    skipped). Without one, the caption is the first sentence of the nearest markdown cell above, taken
    from the first paragraph after its last heading; when that cell ends with a heading, the heading alone
    is the alt text. Markdown marks are dropped and the text is cut at 250 characters.
    """
    found = sorted(TITLE_CALL.findall(cells[index].source), key=lambda call: call[0] != "suptitle")
    caption = "; ".join(dict.fromkeys(literal[1:-1] for _, literal in found))
    markdown = [cell for cell in cells[:index] if cell.cell_type == "markdown"]
    if not caption and markdown:
        caption = first_sentence(plain_text(paragraph_after_heading(markdown[-1].source))).rstrip(":;, ")
    heading = section_heading(markdown)
    return shorten(f"{heading} — {caption}" if heading and caption else heading or caption or "A figure")


def is_image(output: dict) -> bool:
    """Whether a notebook output shows an image (a figure)."""
    return any(key.startswith("image/") for key in output.get("data", {}))


def static_output(output: dict) -> dict | None:
    """An output as a static page can show it: live widgets become a note or (progress bars) nothing."""
    data = output.get("data", {})
    if WIDGET_VIEW not in data:
        return output
    text = "".join(data.get("text/plain", ""))
    if re.search(r"\d+%\|", text) or text.strip() == "Output()":  # a tqdm bar or an empty output area
        return None
    import nbformat

    return nbformat.v4.new_output("display_data", data={"text/markdown": WIDGET_NOTE})


def split_figures(cell: dict) -> list[dict]:
    """A code cell with several figures as one cell per figure (the later ones without their code)."""
    starts = [i for i, output in enumerate(cell.outputs) if is_image(output)][1:]
    if not starts:
        return [cell]
    pieces, bounds = [], [0, *starts, len(cell.outputs)]
    for j, (start, end) in enumerate(zip(bounds, bounds[1:])):
        piece = copy.deepcopy(cell)
        if j:
            # Hidden on the page (remove-input), but not empty: myst-nb skips empty cells.
            piece.source, piece.id = "# (the cell above, continued)", f"{cell.get('id', 'cell')}-figure{j + 1}"
            piece.metadata["tags"] = [*cell.metadata.get("tags", []), "remove-input"]
        piece.outputs = cell.outputs[start:end]
        pieces.append(piece)
    return pieces


def site_notebook(nb: dict) -> dict:
    """A lesson prepared for the web: alt text on figures, local badges, lesson links and anchors that
    resolve on the site, live widgets replaced by what a static page can show."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)  # their JavaScript would come from a CDN, and no kernel drives them
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for remote, local in BADGES.items():
                cell.source = cell.source.replace(f"]({remote})", f"]({local})")
            # JupyterLab's anchors keep the heading's case; the site's are lower case (myst_heading_anchors).
            cell.source = re.sub(r"(\.ipynb#)([^)\s]+)", lambda m: m[1] + m[2].lower(), cell.source)
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        cell.outputs = [out for out in map(static_output, cell.outputs) if out is not None]
        pieces = split_figures(cell)
        alt = figure_alt(nb.cells, index)
        for j, piece in enumerate(pieces):
            if any(map(is_image, piece.outputs)):
                text = alt if len(pieces) == 1 else shorten(f"{alt} (figure {j + 1} of {len(pieces)})")
                piece.metadata["mystnb"] = {**piece.metadata.get("mystnb", {}), "image": {"alt": text}}
        cells += pieces
    nb.cells = cells
    return nb


def write_if_changed(path: Path, text: str) -> None:
    """Write a file only when its text changes, so that a second build redoes only what changed."""
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def write_source(src: Path) -> Path:
    """Write the book's source folder: config, table of contents, badges and the web copies of the lessons."""
    import nbformat
    import yaml

    src.mkdir(parents=True, exist_ok=True)
    write_if_changed(src / "_config.yml", yaml.safe_dump(book_config(), sort_keys=False, allow_unicode=True))
    write_if_changed(src / "_toc.yml", yaml.safe_dump(book_toc(), sort_keys=False))
    shutil.copytree(SITE_STATIC, src / "_static", dirs_exist_ok=True)
    for lesson in LESSONS:
        nb = site_notebook(nbformat.read(NOTEBOOKS / f"{lesson.slug}.ipynb", as_version=4))
        write_if_changed(src / f"{lesson.slug}.ipynb", nbformat.writes(nb) + "\n")
    for stale in set(src.glob("*.ipynb")) - {src / f"{lesson.slug}.ipynb" for lesson in LESSONS}:
        stale.unlink()
    return src


def check_inputs(out: Path, src: Path) -> None:
    """Stop with one line unless Jupyter Book is installed, every lesson reads and both output folders can be written."""
    if importlib.util.find_spec("jupyter_book") is None:
        raise SettingError("Jupyter Book is not installed: `pip install -e '.[classroom]'` (or `make install`).")
    for lesson in LESSONS:
        check_notebook(NOTEBOOKS / f"{lesson.slug}.ipynb")
    check_output_folder(out, "the website")
    check_output_folder(src, "the website's source")


def build_site(out: Path | None = None, strict: bool = False) -> Path:
    """Build the course website into ``out`` (default build/site) and return the folder with index.html.

    Nothing is executed and nothing is downloaded. Sphinx's warnings are printed; with ``strict`` any
    warning fails the build (subprocess.CalledProcessError).
    """
    out = Path(out) if out else BUILD / "site"
    src = out.parent / f"{out.name}-src"
    check_inputs(out, src)
    write_source(src)
    # Jupyter Book 1 (Sphinx and sphinx-book-theme, all from pip) builds with no network. Jupyter Book 2
    # (mystmd) fetches its book theme from the internet at build time and fails offline, so not 2.
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(src),
               "--path-output", str(out), "--builder", "html", "-q", *(["-W", "--keep-going"] if strict else [])]
    start = time.perf_counter()
    # From the repository root, so that Sphinx imports this module even where the package isn't installed.
    done = subprocess.run(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)  # warnings go to stderr
    if done.returncode:
        print(done.stdout, file=sys.stderr)
        raise subprocess.CalledProcessError(done.returncode, command)
    html = out / "_build" / "html"
    for lesson in LESSONS:  # the page's download button gives the committed notebook, not the web copy
        shutil.copyfile(NOTEBOOKS / f"{lesson.slug}.ipynb", html / "_sources" / f"{lesson.slug}.ipynb")
    print(f"site built in {time.perf_counter() - start:.0f} s: {html / 'index.html'}")
    return html


def drop_repeated_scripts(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Keep one copy of each script on a page: inline scripts added after the builder starts land twice,
    and the second ``const THEBE_JS_URL`` is a JavaScript error in every page's console."""
    kept, seen = [], set()
    for script in context.get("script_files", []):
        key = (str(script.filename or ""), tuple(sorted(script.attributes.items())))  # None and "" alike
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app) -> dict:
    """Sphinx extension hook (the book's _config.yml loads this module): tidy the pages' scripts."""
    app.connect("html-page-context", drop_repeated_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
