"""``unieditkit gallery`` in a real headless browser: the page renders, filters and opens a sample.

Chromium loads the page from disk (``file://``, as a user would), runs its JavaScript, and prints the DOM it ends
up with (``--dump-dom``); the assertions read that DOM. ``scripts/install.sh`` installs Chromium where it can
(as root, with apt-get; CI), and there a missing browser is a broken install: the tests fail. A user without root
installs everything else; for them the tests skip with the one command that installs the browser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from unieditkit.cli import main
from unieditkit.inspect.gallery import page

pytestmark = pytest.mark.slow  # a headless browser per test

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1200,900", "--virtual-time-budget=5000",
]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            pytest.fail("chromium is not installed: run `bash scripts/install-browser.sh`", pytrace=False)
        pytest.skip("chromium is not installed (needs root): run `sudo bash scripts/install-browser.sh`")
    return exe


class Dom(HTMLParser):
    """The elements of a dumped DOM as (tag, attributes, text) with the text of leaf-level content."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None], list[str]]] = []
        self._open: list[int] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), []))
        if tag not in ("img", "meta", "br", "input"):
            self._open.append(len(self.elements) - 1)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self.elements[self._open.pop()][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for i in self._open:
            self.elements[i][2].append(data)

    def find(self, **attrs: str) -> list[tuple[str, dict[str, str | None], str]]:
        return [(t, a, "".join(x)) for t, a, x in self.elements if all(a.get(k) == v for k, v in attrs.items())]

    def body(self) -> dict[str, str | None]:
        return next(a for t, a, _ in self.elements if t == "body")

    def cards(self) -> list[dict[str, str | None]]:
        return [a for t, a, _ in self.find(**{"class": "card"})]


def dump_dom(html: Path, query: str, tmp_path: Path) -> Dom:
    url = html.resolve().as_uri() + query
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = Dom(proc.stdout)
    assert dom.body().get("data-ready") == "1", "the gallery's script did not run to the end:\n" + proc.stdout[-1500:]
    return dom


@pytest.fixture(scope="module")
def gallery(built_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gallery") / "g"
    assert main(["gallery", str(built_dataset), "--out", str(out)]) == 0
    return out / "index.html"


@pytest.fixture(scope="module")
def index(built_dataset: Path) -> list[dict]:
    return pq.read_table(built_dataset / "index.parquet").to_pylist()


def test_files_written(gallery: Path, index: list[dict]) -> None:
    keys = {r["key"] for r in index}
    assert {p.stem for p in (gallery.parent / "thumbs").glob("*.jpg")} == keys
    for key in list(keys)[:3]:
        assert {p.name for p in (gallery.parent / "full" / key).iterdir()} == {
            "ref.jpg", "ref_mask.png", "tgt.jpg", "mask_fine.png", "mask_rough.png", "mask_box.png", "fine.jpg", "rough.jpg", "box.jpg"}


def test_renders_all_cards_with_thumbnails(gallery: Path, index: list[dict], tmp_path: Path) -> None:
    dom = dump_dom(gallery, "", tmp_path)
    cards = dom.cards()
    assert sorted(c["data-key"] for c in cards) == sorted(r["key"] for r in index)
    assert not any("hidden" in c for c in cards)
    assert dom.find(id="status")[0][2] == f"{len(index)} of {len(index)} samples"
    thumbs = [a for t, a, _ in dom.elements if t == "img" and (a.get("src") or "").startswith("thumbs/")]
    assert not [a for a in thumbs if "data-broken" in a], "thumbnails failed to load"
    assert int(thumbs[0]["data-loaded"] or 0) > 100, "the first thumbnail did not load"


@pytest.mark.parametrize("query, field, value", [
    ("?subcategory=blouse", "subcategory", "blouse"),
    ("?domain=garments&split=val", "split", "val"),
    ("?pair_kind=video", "pair_kind", "video"),
])
def test_filters_from_the_url(gallery: Path, index: list[dict], tmp_path: Path, query: str, field: str, value: str) -> None:
    dom = dump_dom(gallery, query, tmp_path)
    shown = sorted(c["data-key"] for c in dom.cards() if "hidden" not in c)
    want = sorted(r["key"] for r in index if r[field] == value)
    assert shown == want
    assert dom.find(id="status")[0][2] == f"{len(want)} of {len(index)} samples"
    select = dom.find(id=f"f-{field}")[0][2]
    assert value in select


def test_detail_view_shows_images_and_json(gallery: Path, index: list[dict], built_dataset: Path, tmp_path: Path) -> None:
    key = index[0]["key"]
    dom = dump_dom(gallery, f"#{key}", tmp_path)
    (_, detail, _), = dom.find(id="detail")
    assert "hidden" not in detail
    shown = json.loads(dom.find(id="d-json")[0][2])
    assert shown["key"] == key and shown["subcategory"] == index[0]["subcategory"]
    figures = [a for t, a, _ in dom.elements if t == "img" and (a.get("src") or "").startswith(f"full/{key}/")]
    assert [a["src"].rsplit("/", 1)[1] for a in figures] == ["ref.jpg", "tgt.jpg", "fine.jpg", "rough.jpg", "box.jpg"]
    assert all(int(a.get("data-loaded") or 0) > 100 for a in figures), "full-size images did not load"


def test_hostile_text_stays_text(tmp_path: Path) -> None:
    """Metadata is data: a name with markup must show as text and must not end the page's script."""
    evil = '</script><script>document.body.dataset.pwned="1"</script><b>x</b>'
    meta = {"key": "k", "subcategory_name": evil}
    card = {"key": "k", "shard": "s", "domain": "d", "subcategory": evil, "pair_kind": "self", "split": "train", "name": evil, "json": meta}
    html = tmp_path / "index.html"
    html.write_text(page([card], evil), encoding="utf-8")
    dom = dump_dom(html, "", tmp_path)
    assert "data-pwned" not in dom.body()
    assert [x for t, a, x in dom.find(**{"class": "name"})] == [evil]
