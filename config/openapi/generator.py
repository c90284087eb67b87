"""The schema generator: it reads the project's urlpatterns with the plain async views (chat
completions, the turn event stream, the health checks) swapped for their documentation views
(plain_views.py), since drf-spectacular reads DRF views only. The swap exists for the generator,
never for traffic."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator

from config.openapi.plain_views import DOCUMENTATION_VIEWS


def documented_urlpatterns() -> list[URLPattern | URLResolver]:
    """The project's urlpatterns with the plain views swapped for their documentation views."""
    return [_documented(pattern, DOCUMENTATION_VIEWS) for pattern in get_resolver().url_patterns]


def _documented(pattern: URLPattern | URLResolver, views: dict[Any, Any]) -> URLPattern | URLResolver:
    if isinstance(pattern, URLResolver):
        return URLResolver(
            pattern.pattern,
            [_documented(child, views) for child in pattern.url_patterns],
            pattern.default_kwargs,
            pattern.app_name,
            pattern.namespace,
        )
    view = views.get(pattern.callback)
    if view is None:
        return pattern
    return URLPattern(pattern.pattern, view.as_view(), pattern.default_args, pattern.name)


class ParleySchemaGenerator(SchemaGenerator):
    """Generates from the documented urlpatterns unless told another urlconf."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("urlconf") is None and kwargs.get("patterns") is None:
            kwargs["patterns"] = documented_urlpatterns()
        super().__init__(*args, **kwargs)
