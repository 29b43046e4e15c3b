"""The Vega bundle is built once per vl-convert version and then read from the cache folder."""

from __future__ import annotations

import pytest
import vl_convert

from analyze.report import page


def test_bundle_is_cached_on_disk_and_read_back(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    page.vega_bundle.cache_clear()
    try:
        built = page.vega_bundle()
        path = tmp_path / "flatlas" / f"vega-bundle-{vl_convert.__version__}.js"
        assert path.read_text(encoding="utf-8") == built == vl_convert.javascript_bundle()
        assert not list(path.parent.glob("*.part"))

        def refuse() -> str:
            raise AssertionError("bundled again although the cache holds it")

        monkeypatch.setattr(vl_convert, "javascript_bundle", refuse)
        page.vega_bundle.cache_clear()
        assert page.vega_bundle() == built
        # an unwritable cache folder only costs the bundling
        monkeypatch.undo()
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
        (tmp_path / "file").write_text("not a folder")
        page.vega_bundle.cache_clear()
        assert page.vega_bundle() == built
    finally:
        page.vega_bundle.cache_clear()
