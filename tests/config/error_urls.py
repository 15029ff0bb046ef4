"""The platform's URLs plus views that fail on purpose (for the error-page tests)."""

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path

from config.urls import urlpatterns as platform_urlpatterns


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug with a secret in it: DATABASES")


def missing(request: HttpRequest) -> HttpResponse:
    raise Http404("No such article")


def forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


urlpatterns = [
    path("test-errors/broken/", broken),
    path("test-errors/missing/", missing),
    path("test-errors/forbidden/", forbidden),
    *platform_urlpatterns,
]
