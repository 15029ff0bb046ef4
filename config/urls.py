from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from config.health import healthz

api_patterns = [
    path("", include("accounts.api_urls")),
    path("", include("chat.api_urls")),
    path("", include("escalation.api_urls")),
    path("", include("labeling.api_urls")),
    path("", include("training.api_urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Browsers ask for /favicon.ico on pages that name no icon (admin, API, JSON).
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
    path("api/", include((api_patterns, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's init script comes from its own URL (no inline script under the CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # ReDoc writes its styles into the page and searches in a worker from a blob: URL.
    path(
        "api/redoc/",
        csp_update({"style-src": [SELF, UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
            SpectacularRedocView.as_view(url_name="schema")
        ),
        name="api-redoc",
    ),
    path("accounts/", include("accounts.urls")),
    path("agent/", include("escalation.urls")),
    path("labeling/", include("labeling.urls")),
    path("training/", include("training.urls")),
    path("", include("chat.urls")),
]

# Media (transcripts, adapters, exports) is never served at a URL, not even under DEBUG:
# transcripts are read through the API by support staff, run artifacts through the admin.

admin.site.site_header = "Loopdesk"
admin.site.site_title = "Loopdesk admin"
admin.site.index_title = "Support, labeling and training"
