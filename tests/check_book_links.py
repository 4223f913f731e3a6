"""Checks the built book's internal links: every relative href and src in
every page names a file of the book, and every #fragment an id on that
page. External links (http, https, mailto) are not fetched.

    python tests/check_book_links.py BOOK_DIR [README.md]

With README.md, also checks that its relative links name files that
exist beside it. Exits 1 listing every broken link.
"""

import html.parser
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urldefrag


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value:
                self.links.append(value)


def parse(path, cache={}):
    if path not in cache:
        p = Page()
        p.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = p
    return cache[path]


def external(link):
    return re.match(r"^[a-z][a-z0-9+.-]*:", link) is not None


def check_book(root):
    broken = []
    for page in sorted(root.rglob("*.html")):
        if page.name == "404.html":
            continue  # mdBook's, with links from the site's root (site-url)
        for link in parse(page).links:
            if external(link):
                continue
            target, fragment = urldefrag(link)
            dest = page if not target else (page.parent / unquote(target)).resolve()
            if dest.is_dir():
                dest = dest / "index.html"
            if not dest.exists():
                broken.append(f"{page.relative_to(root)}: {link}: no such file")
            elif fragment and dest.suffix == ".html" and unquote(fragment) not in parse(dest).ids:
                broken.append(f"{page.relative_to(root)}: {link}: no #{fragment} there")
    return broken


def check_markdown(md):
    broken = []
    for link in re.findall(r"\]\(([^)\s]+)\)", md.read_text(encoding="utf-8")):
        target, _ = urldefrag(link)
        if not external(link) and target and not (md.parent / target).exists():
            broken.append(f"{md.name}: {link}: no such file")
    return broken


def main():
    root = Path(sys.argv[1]).resolve()
    pages = list(root.rglob("*.html"))
    if not pages:
        print(f"check_book_links: no pages in {root}", file=sys.stderr)
        return 1
    broken = check_book(root)
    for md in sys.argv[2:]:
        broken += check_markdown(Path(md))
    for b in broken:
        print(f"broken link: {b}", file=sys.stderr)
    if broken:
        return 1
    print(f"check_book_links: {len(pages)} pages, every internal link resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
