"""The API's OpenAPI description (GET /v1/openapi.json) and docs page (GET /v1/docs).

- schema.py: the generator (with documentation-only views standing for the plain async views),
  the AutoSchema that reads the operations table, and drf-spectacular extensions;
- operations.py: what each endpoint (URL name and method) takes and answers;
- responses.py: the shapes of the hand-built JSON answers, as serializers for documentation only;
- hooks.py: what every operation shares (the error envelope, security, permissions);
- views.py: the two public views."""
