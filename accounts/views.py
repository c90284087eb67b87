"""Browser pages of the accounts app (its API is in accounts/api/)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.views.generic import TemplateView

from accounts.jwt import jwt_pair_issue
from config.db import database_guard
from config.errors import ApiError, error_response


class ApiTokenPage(LoginRequiredMixin, TemplateView):
    """/accounts/api-token/: where a person signed in in the browser (by password or through an
    identity provider) gets a JWT pair for the API. The button posts the page's own form, with
    the CSRF token that Django's middleware checks, and the answer shows the new pair."""

    template_name = "account/api_token.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # While the database cannot be reached: 503 database_unavailable with Retry-After, at once
        # once the outage is known, as the API answers, rather than an error page after the pool's
        # timeout.
        try:
            with database_guard():
                response = super().dispatch(request, *args, **kwargs)
                if hasattr(response, "render"):  # a template's database work happens here too
                    response.render()
                return response
        except ApiError as unavailable:
            return error_response(unavailable)

    def post(self, request: HttpRequest) -> HttpResponse:
        response = self.render_to_response(self.get_context_data(pair=jwt_pair_issue(user=request.user)))
        # Tokens are credentials: no cache may keep the page that shows them (RFC 6749, 5.1).
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response
