"""Neo4j Browser with a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Logs in to the test server's Browser, plays the graphrecall guide and style from the API, runs the guide's
neighbour query and checks that a graph is drawn with the style's captions (brand and category). Runs in CI
(``.ci/run`` installs chromium); elsewhere it is skipped when chromium or playwright is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from test_retrievers import add_catalogue, build_tiny_graph

CHROMIUM = os.environ.get("GRAPHRECALL_CHROMIUM", "/usr/bin/chromium")
GUIDE = Path(__file__).resolve().parents[1] / "graph_schema" / "browser" / "guide.html"
pytestmark = pytest.mark.browser


def _need_browser():
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail("the Browser test needs " + " and ".join(missing))
        pytest.skip("needs " + " and ".join(missing))


def guide_queries() -> list[str]:
    import html

    return [html.unescape(q) for q in re.findall(r'<pre class="[^"]*runnable">(.*?)</pre>', GUIDE.read_text(), re.S)]


@pytest.fixture
def api_server(driver, tmp_path):
    """The API (serving /guide) on a free port, in a thread."""
    import uvicorn

    from graphrecall.query.serve.api import create_app
    from graphrecall.query.serve.snapshot import SnapshotRetriever

    faiss_dir = build_tiny_graph(driver, tmp_path)
    add_catalogue(driver)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(SnapshotRetriever.from_neo4j(driver, faiss_dir)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def run_command(page, command: str) -> None:
    """Type into Browser's main (Monaco) editor as a person would, then Ctrl+Enter."""
    page.locator("#monaco-main-editor").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    for line in command.splitlines():  # Monaco auto-indents after a newline: type each line from its start
        page.keyboard.type(line.strip())
        page.keyboard.press("Shift+Enter")
    page.keyboard.press("Control+Enter")


def test_guide_and_style_draw_a_captioned_graph(neo4j_server, api_server, tmp_path):
    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    server, settings = neo4j_server
    if server is None:
        pytest.skip("needs the local test server (its Browser and password)")
    queries = guide_queries()
    assert queries[0].startswith(":style") and any("SWING|COOC|TRANSITION" in q for q in queries)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server.browser_url, timeout=60_000)
            page.locator('input[data-testid="boltaddress"]').fill(f"127.0.0.1:{server.bolt_port}", timeout=60_000)
            page.locator('input[data-testid="username"]').fill("neo4j")
            page.locator('input[data-testid="password"]').fill(settings.password)
            page.locator('button[data-testid="connect"]').click()
            expect(page.locator("#monaco-main-editor")).to_be_visible(timeout=30_000)
            base = f"http://localhost:{api_server}"

            run_command(page, f":play {base}/guide/guide.html")  # the guide, fetched from the API
            expect(page.get_by_text("Similar items from interaction logs").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("1 / 5").first).to_be_visible()  # five slides
            run_command(page, f":style {base}/guide/graphrecall.grass")
            expect(page.get_by_text("{brand} {category}").first).to_be_visible(timeout=30_000)

            neighbours = next(q for q in queries if "SWING|COOC|TRANSITION" in q)
            # the query's own frame: Browser sometimes drops its Bolt connection once just after connecting and
            # reconnects (a late ":play start" frame lands on top); as a person would, rerun the query then
            frame = page.locator('[data-testid="frame"]').filter(has_text="SWING|COOC|TRANSITION").first
            nodes = frame.locator("svg g.node")
            for _ in range(3):
                run_command(page, neighbours)
                expect(nodes.first.or_(frame.get_by_text("No connection found"))).to_be_visible(timeout=30_000)
                if nodes.count():
                    break
                page.wait_for_timeout(3_000)
            expect(nodes.first).to_be_visible(timeout=30_000)
            assert nodes.count() >= 3  # the item and its neighbours, drawn
            captions = " ".join(frame.locator("svg g.node text").all_text_contents())
            page.screenshot(path=str(tmp_path / "browser.png"))  # kept with the test's tmp_path, for a look
            assert "b1" in captions and "c1" in captions, captions  # "{brand} {category}" from the style
        finally:
            browser.close()
