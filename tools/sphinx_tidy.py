"""A Sphinx extension for the book's HTML: nothing on a page that logs a console error.

* Each script is emitted once: sphinx-thebe registers its inline configuration (``const THEBE_JS_URL
  = ...``) on every ``env-before-read-docs``, which Jupyter Book fires twice, once with the filename
  ``None`` and once ``''`` (so Sphinx's own check does not see the copy), and the second copy failed
  with "Identifier 'THEBE_JS_URL' has already been declared" (sphinx-togglebutton's script likewise).
* The theme starts in light mode: without a ``default_mode`` the theme's first script reads an empty
  mode and logs "Got invalid theme mode".

Loaded by ``_config.yml`` (``sphinx: local_extensions``); ``tools/book.py build`` points it here.
"""

from __future__ import annotations


def _unique_scripts(app, pagename, templatename, context, doctree) -> None:
    seen, kept = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (getattr(script, "filename", str(script)) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"][:] = kept  # in place: the builder restores its own list for the next page
    context.setdefault("default_mode", "light")


def setup(app) -> dict:
    app.connect("html-page-context", _unique_scripts, priority=900)  # after the extensions that add scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
