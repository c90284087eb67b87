"""The Agents API: GET/POST /v1/agents, GET/PATCH/DELETE /v1/agents/{slug}."""
