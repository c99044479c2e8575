"""Stack Exchange post HTML as readable plain text that keeps code and LaTeX recognisable.

Code blocks become ``` fences and inline code `backticks`; MathJax ($...$, $$...$$) is already plain
text in the dump and passes through untouched; links keep their text, images their alt text.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

BLOCK_TAGS = {"p", "div", "blockquote", "ul", "ol", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "hr"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.in_pre = 0
        self.quote_starts: list[int] = []  # where each open <blockquote>'s text begins in parts

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "pre":
            self.in_pre += 1
            self.parts.append("\n```\n")
        elif tag == "code" and not self.in_pre:
            self.parts.append("`")
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "img":
            alt = dict(attrs).get("alt") or "image"
            self.parts.append(f"[{alt}]")
        elif tag in BLOCK_TAGS:
            self.parts.append("\n\n")
            if tag == "blockquote":
                self.quote_starts.append(len(self.parts))

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.in_pre = max(0, self.in_pre - 1)
            self.parts.append("\n```\n")
        elif tag == "code" and not self.in_pre:
            self.parts.append("`")
        elif tag == "blockquote" and self.quote_starts:
            # Quote whole lines once the quote is complete, so inline markup inside a line stays inline.
            start = self.quote_starts.pop()
            quoted = re.sub(r"(?m)^(?=\S)", "> ", "".join(self.parts[start:]).strip("\n"))
            self.parts[start:] = [quoted, "\n\n"]
        elif tag in BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str | None) -> str:
    if not html:
        return ""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts).replace("\r\n", "\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n+```\n", "\n```\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()
