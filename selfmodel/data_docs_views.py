"""GX's Data Docs page views, with their Jinja templates compiled once per process.

GX builds a new view, and so a new Jinja environment, for every site build: `UpdateDataDocsAction` after
each validation recompiles some fifty templates, most of a second each time. These views keep GX's
templates, filters and output and share one environment per (view class, custom folders). The site
config in selfmodel.quality names them (GX's documented `view` option of a site section and the index).

Imports GX: import this module only where Data Docs are built.
"""

from __future__ import annotations

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView

_ENVIRONMENTS: dict[tuple, object] = {}


class _CompiledOnce:
    def __init__(self, custom_styles_directory=None, custom_views_directory=None) -> None:
        key = (type(self), custom_styles_directory, custom_views_directory)
        environment = _ENVIRONMENTS.get(key)
        if environment is None:
            super().__init__(custom_styles_directory, custom_views_directory)
            _ENVIRONMENTS[key] = self.env
            return
        # Its filters are bound to the view that made it, which had these same folders: same output.
        self.custom_styles_directory = custom_styles_directory
        self.custom_views_directory = custom_views_directory
        self.env = environment


class PageView(_CompiledOnce, DefaultJinjaPageView):
    """Suite and validation pages."""


class IndexPageView(_CompiledOnce, DefaultJinjaIndexPageView):
    """The site's index.html."""
