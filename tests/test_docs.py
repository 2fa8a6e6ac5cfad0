"""The docs site: built from a clean checkout with `mlops-nb docs` (what `make docs` runs), then read as files and in Chromium."""
import html, re, subprocess, sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit, unquote
import pytest
from conftest import MLOPS_NB, REPO, clean_checkout, clean_env, free_port, wait_for_url

pytestmark = pytest.mark.slow
DIRECTIVE = re.compile(r"#\|\s*(default_exp|export|exporti|exports|hide|eval|echo|output|code-fold|include)\b")


class Page(HTMLParser):
    "The links, ids, headings and text of one HTML page."
    def __init__(self, text):
        super().__init__(); self.links, self.ids, self.headings, self.text, self._h = [], set(), [], [], None
        self.feed(text)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"): self.ids.add(a["id"])
        for k in ("href", "src"):
            if a.get(k): self.links.append(a[k])
        if re.fullmatch(r"h[1-6]", tag): self._h = []
    def handle_endtag(self, tag):
        if re.fullmatch(r"h[1-6]", tag) and self._h is not None:
            self.headings.append(" ".join("".join(self._h).split()).rstrip("#").strip()); self._h = None
    def handle_data(self, data):
        self.text.append(data)
        if self._h is not None: self._h.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    checkout = clean_checkout(tmp_path_factory.mktemp("checkout"))
    out, before = checkout / "_docs", {p.name for p in checkout.iterdir()}
    r = subprocess.run([MLOPS_NB, "docs"], cwd=checkout, capture_output=True, text=True, timeout=600, env=clean_env())
    assert r.returncode == 0, f"mlops-nb docs failed:\n{r.stdout}\n{r.stderr}"
    assert "docs built" in r.stdout and (out / "index.html").exists()
    assert {p.name for p in checkout.iterdir()} - before == {"_docs", "_proc"}  # the site and nbdev's staging folder, both git-ignored, nothing else
    return out


def pages(site: Path) -> dict[Path, Page]:
    "Every page of the site (not the theme's template fragments under _static/)."
    return {p: Page(p.read_text(encoding="utf-8")) for p in site.rglob("*.html") if "_static" not in p.relative_to(site).parts}


def test_every_notebook_has_a_page(site):
    from mlops_nb.ops.docs import page_path
    for nb in sorted((REPO / "notebooks").rglob("*.ipynb")):
        assert (site / f"{page_path(nb, REPO / 'notebooks')}.html").exists(), f"no page for {nb.relative_to(REPO)}"
    for nb in sorted((REPO / "pipelines").glob("*.ipynb")):
        assert (site / "pipelines" / f"{nb.stem}.html").exists(), f"no page for pipelines/{nb.name}"
    for md in sorted((REPO / "notebooks").glob("*.md")):  # hand-written pages, e.g. deployment
        assert (site / f"{md.stem}.html").exists(), f"no page for {md.name}"
    assert (site / "library.html").exists() and (site / "pipelines" / "index.html").exists()


def test_the_jupyterlab_page_shows_the_panel_s_screenshots(site):
    page = Page((site / "jupyterlab.html").read_text(encoding="utf-8"))
    shown = {Path(unquote(urlsplit(link).path)).name for link in page.links if link.endswith(".png")}
    assert shown == {p.name for p in (REPO / "notebooks" / "images").glob("*.png")}  # each one (test_internal_links_resolve: they load)
    assert {"Pipelines: a form per pipeline", "Live progress", "Runs: compare two"} <= set(page.headings)


def test_no_directive_text_and_hidden_cells_stay_hidden(site):
    for path, page in pages(site).items():
        text = html.unescape("".join(page.text))
        assert not DIRECTIVE.search(text), f"{path.relative_to(site)} shows nbdev directive text: {DIRECTIVE.search(text).group(0)}"
    data = Page((site / "ml" / "data.html").read_text(encoding="utf-8"))
    text = "".join(data.text)
    assert "load-table" in data.ids, sorted(data.ids)  # the show_doc entry of an exported function, linkable
    assert "Read a table, its text columns understood" in text  # its docstring
    assert "raise DataError(f" not in text  # but not the exported source
    assert "demo.defect.mean()" not in text and "maintainers' checks" not in text  # nor a `#| hide` cell (notebooks/ml/01_data.ipynb)
    assert "Round trip through a file" in text and "load_table(p)" in text  # while the example cells around it are shown


def test_navigation_follows_the_layers_and_pages_document_their_parameters(site):
    library = Page((site / "library.html").read_text(encoding="utf-8"))
    layers = ["core", "ml", "track", "runner", "serving", "ops", "cli"]
    assert [h for h in library.headings if h in layers] == layers  # one section per layer, lowest first
    for layer in layers:
        assert any(p.parent.name == layer for p in site.rglob("*.html")), f"no pages for the {layer} layer"
    data = (site / "ml" / "data.html").read_text(encoding="utf-8")
    assert "# a data file (CSV, Parquet, JSON lines)" in html.unescape(re.sub(r"<[^>]+>", "", data))  # a parameter's docment, in the signature
    assert re.search(r"<strong>Details</strong>.*?<td[^>]*>(<p>)?path(</p>)?</td>.*?a data file \(CSV, Parquet", data, re.S)  # and in a table
    validate = (site / "ml" / "validate.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", validate))
    assert "| column | kind |" not in text  # the Schema example's Markdown table renders as a table ...
    assert re.search(r"<table[^>]*>\s*<thead>\s*<tr[^>]*><th[^>]*>(<p>)?column(</p>)?</th>\s*<th[^>]*>(<p>)?kind", validate)  # ... a table
    assert "mlops-nb.css" in data and (site / "_static" / "mlops-nb.css").is_file()  # long signatures wrap


def test_internal_links_resolve(site):
    broken = []
    all_pages = pages(site)
    for path, page in all_pages.items():
        for link in page.links:
            u = urlsplit(link)
            if u.scheme or link.startswith(("//", "mailto:", "javascript:")): continue
            target = path if not u.path else (path.parent / unquote(u.path)).resolve()
            if target.is_dir(): target = target / "index.html"
            if not target.exists(): broken.append(f"{path.relative_to(site)} -> {link}"); continue
            if u.fragment and target.suffix == ".html":
                ids = all_pages[target].ids if target in all_pages else Page(target.read_text(encoding="utf-8")).ids
                if u.fragment not in ids: broken.append(f"{path.relative_to(site)} -> {link} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:20])


def test_index_matches_the_readme(site):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    from mlops_nb.ops.docs import readme_text
    assert readme == readme_text(REPO / "notebooks" / "index.ipynb"), "README.md is not the index notebook's text: run `make export`"
    index = Page((site / "index.html").read_text(encoding="utf-8"))
    fence, heads = False, []
    for line in readme.splitlines():
        if line.startswith("```"): fence = not fence
        elif not fence and (m := re.match(r"^#{1,3} (.*)", line)): heads.append(m.group(1).replace("`", ""))
    missing = [h for h in heads if h not in index.headings]
    assert not missing, f"README headings missing from the docs' home page: {missing}"
    assert "Library" in "".join(index.text) and "Pipelines" in "".join(index.text)


def test_search_index_holds_the_pages(site):
    assert (site / "search.html").exists()
    idx = (site / "searchindex.js").read_text(encoding="utf-8")
    for word in ("champion", "drift", "load_tabl"):
        assert word in idx, word


@pytest.fixture(scope="module")
def docs_server(site):
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_url(f"http://127.0.0.1:{port}/index.html", 60, p)
    yield f"http://127.0.0.1:{port}"
    p.terminate(); p.wait(10)


def test_pages_in_chromium(docs_server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.goto(f"{docs_server}/index.html")
    page.screenshot(path=str(tmp_path / "index.png"))
    assert page.locator("h1").first.inner_text().strip() == "mlops-nb"
    nav = page.locator("nav").all_inner_texts()
    assert any("Library" in t and "Pipelines" in t and "Deployment" in t for t in nav), nav
    assert page.locator("h2", has_text="Two ways in").is_visible()
    page.get_by_role("link", name="Library").first.click()
    page.get_by_role("link", name="data", exact=True).first.click()
    page.wait_for_url(re.compile(r"/ml/data\.html"))
    page.screenshot(path=str(tmp_path / "data.png"), full_page=True)
    assert page.locator("h1").first.inner_text().strip() == "data"
    assert page.locator("#load-table").is_visible()  # the show_doc entry
    assert "def load_table(" in page.locator("pre", has_text="load_table").first.inner_text()
    assert page.locator("table.dataframe").count() >= 1  # an example's output (demo.head())
    assert (tmp_path / "index.png").stat().st_size > 10_000 and (tmp_path / "data.png").stat().st_size > 10_000
    page.goto(f"{docs_server}/search.html?q=champion")
    page.wait_for_selector("#search-results li", timeout=15_000)
    assert page.locator("#search-results li").count() >= 3
    page.close()


def test_docs_outside_a_project_is_one_clear_message(tmp_path):
    r = subprocess.run([MLOPS_NB, "docs"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no nbdev project at or above" in r.stderr and "[tool.nbdev]" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "_proc").exists() and not (tmp_path / "_docs").exists()
