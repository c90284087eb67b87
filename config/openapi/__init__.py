"""The API's OpenAPI description (GET /v1/openapi.json) and docs page (GET /v1/docs).

What each endpoint takes and answers is on its view: `@extend_schema` naming the input
serializer and the output serializers (each app's api/shapes.py) that also render the answers.
Here is only what drf-spectacular cannot infer:

- schema.py: the generator (with the documentation-only views of plain_views.py standing for the
  plain async views), the AutoSchema's additions, and the extensions for fields it cannot read;
- plain_views.py: what the chat completions, turn events and health views take and answer;
- parts.py: what views' decorators share: the Server-Sent Events answer, an error answer, path
  parameters, request examples, the links between operations;
- hooks.py: what every operation shares (the error envelope, security, permissions);
- views.py: the two public views."""
