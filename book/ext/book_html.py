"""A Sphinx extension for the book's HTML: each inline script once.

Extensions that add an inline script (`app.add_js_file(None, body=...)`) while
the build runs get it written into every page twice under Sphinx 7.4: once as
added, once more when the builder re-reads the registry (as filename ``''``
instead of ``None``, so Sphinx's own de-duplication misses it). sphinx-thebe's
``const THEBE_JS_URL = ...`` then throws "already declared" in the browser.
This drops the second copy of any script before the page is written.
"""

from __future__ import annotations


def _key(script) -> tuple:
    return (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))


def _once_each(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _once_each)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
