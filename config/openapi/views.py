"""The two public views of the API's description: GET /v1/openapi.json and GET /v1/docs.

Apart from schema.py: drf-spectacular's views read DEFAULT_GENERATOR_CLASS, which names
config.openapi.schema, when they are imported."""

from __future__ import annotations

import functools
from typing import Any

from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiJsonRenderer2
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer, TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from config.openapi.generator import ParleySchemaGenerator


@functools.cache
def schema_document() -> dict[str, Any]:
    """The description, generated once per process: it depends on the code alone, and generating
    it on every request of a public endpoint would cost a noticeable fraction of a second each."""
    return ParleySchemaGenerator().get_schema(request=None, public=True)


class CompactJsonRenderer(OpenApiJsonRenderer2):
    """application/json without drf-spectacular's default indent (the document is large);
    `Accept: application/json; indent=2` still asks for one."""

    def get_indent(self, accepted_media_type: str, renderer_context: dict) -> int | None:
        return JSONRenderer.get_indent(self, accepted_media_type, renderer_context)


class SchemaView(SpectacularJSONAPIView):
    """GET /v1/openapi.json: public, JSON by default."""

    permission_classes = [AllowAny]
    authentication_classes = []
    renderer_classes = [CompactJsonRenderer, OpenApiJsonRenderer]
    generator_class = ParleySchemaGenerator

    @extend_schema(
        operation_id="retrieveOpenApiSchema",
        summary="This OpenAPI description",
        tags=["Operability"],
        description="Every endpoint of this server, generated from its routes. Public.",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="The OpenAPI 3 document.")},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(schema_document(), headers={"Content-Disposition": 'inline; filename="openapi.json"'})


class DocsView(SpectacularSwaggerView):
    """GET /v1/docs: Swagger UI, its scripts and styles served by this server (sidecar)."""

    permission_classes = [AllowAny]
    authentication_classes = []
    renderer_classes = [TemplateHTMLRenderer]
    # A page, nothing else: DRF's OPTIONS answer (its metadata) has no template to render into.
    http_method_names = ["get", "head"]
    url_name = "openapi-schema"
    title = "Parley API"

    @extend_schema(
        operation_id="retrieveDocs",
        summary="The API docs page",
        tags=["Operability"],
        description="This description as a page to read and try requests from; its scripts and "
        "styles are served by this server, so it works offline. Public.",
        responses={200: OpenApiResponse(OpenApiTypes.STR, description="An HTML page (Swagger UI).")},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
