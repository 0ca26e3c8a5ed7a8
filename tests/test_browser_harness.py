"""The browser harness itself: Chromium launches headless and reports a page's script errors."""

from __future__ import annotations

from typing import Any

from tests.browser import browser_page  # noqa: F401


def test_a_page_renders_and_its_errors_are_collected(browser_page: Any) -> None:
    browser_page.set_content("<p id=x>hello</p><script>document.getElementById('x').textContent += ' world'</script>")
    assert browser_page.text_content("#x") == "hello world"
    assert browser_page.problems == []
    browser_page.evaluate("setTimeout(() => { throw new Error('boom') }, 0)")
    browser_page.wait_for_timeout(100)
    assert any("boom" in p for p in browser_page.problems)
