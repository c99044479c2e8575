"""html_to_text: Stack Exchange HTML as plain text in which code and LaTeX stay recognisable."""

from __future__ import annotations

import pytest

from selfmodel.sources.html_text import html_to_text


def test_inline_code_gets_backticks_and_latex_passes_through() -> None:
    html = r"<p>Call <code>qiskit.execute</code> on $\langle\psi|H|\psi\rangle$ and $$\sum_i x_i$$.</p>"

    assert html_to_text(html) == r"Call `qiskit.execute` on $\langle\psi|H|\psi\rangle$ and $$\sum_i x_i$$."


def test_code_blocks_become_fences_with_entities_decoded_and_indentation_kept() -> None:
    html = "<p>Try:</p>\n\n<pre><code>if x &lt; 2:\n    print(x &amp; y)\n</code></pre>\n\n<p>Done.</p>"

    assert html_to_text(html) == "Try:\n```\nif x < 2:\n    print(x & y)\n```\n\nDone."


def test_backticks_inside_a_code_block_are_not_added() -> None:
    assert html_to_text("<pre><code>a = `b`</code></pre>") == "```\na = `b`\n```"


@pytest.mark.parametrize("html", [
    "<pre><code>a\n</code></pre>\n\n<pre><code>b\n</code></pre>",
    "<pre><code>a</code></pre><pre><code>b</code></pre>",
])
def test_adjacent_code_blocks_stay_two_closed_blocks(html: str) -> None:
    text = html_to_text(html)

    assert text.count("```") == 4
    assert text.split("```")[1].strip() == "a" and text.split("```")[3].strip() == "b"


def test_an_empty_code_block_leaves_no_open_fence() -> None:
    assert html_to_text("<p>x</p><pre></pre><p>y</p>").count("```") % 2 == 0


def test_links_keep_their_text_and_images_their_alt_text() -> None:
    html = '<p>See <a href="https://example.org">the docs</a>: <img src="c.png" alt="circuit"> <img src="d.png"></p>'

    assert html_to_text(html) == "See the docs: [circuit] [image]"


def test_blockquotes_are_prefixed_and_paragraphs_separated() -> None:
    html = "<blockquote>\n  <p>quoted text\nsecond line</p>\n</blockquote>\n\n<p>after</p>"

    assert html_to_text(html) == "> quoted text\n> second line\n\nafter"


def test_list_items_and_line_breaks() -> None:
    assert html_to_text("<ul><li>one</li><li>two</li></ul>") == "- one\n- two"
    assert html_to_text("<p>a<br>b</p>") == "a\nb"


@pytest.mark.parametrize("empty", [None, "", "<p></p>", "<p>  </p>\n"])
def test_no_content_is_an_empty_string(empty: str | None) -> None:
    assert html_to_text(empty) == ""


def test_a_blockquote_quotes_whole_lines_and_keeps_inline_markup_inline() -> None:
    text = html_to_text("<p>a</p><blockquote><p>I like <em>this</em> a lot</p><p>second</p></blockquote><p>after</p>")
    assert text == "a\n\n> I like this a lot\n\n> second\n\nafter"
    assert html_to_text("<blockquote><blockquote>inner</blockquote>outer</blockquote>") == "> > inner\n\n> outer"
