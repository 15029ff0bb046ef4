"""Production: refuses to start on a development key or with DEBUG on, and speaks only
HTTPS (``manage.py check --deploy`` passes without warnings; tests/config/test_settings.py).

Behind a TLS-terminating proxy or load balancer, set ``DJANGO_SECURE_PROXY_SSL_HEADER``
to the header it sets (usually ``X-Forwarded-Proto``) and make sure the proxy overwrites
it: Django then knows a request came over HTTPS. Without a proxy leave it unset.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *
from .base import env

SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
# Django's own deploy check asks for 50+ characters with some variety.
if (
    len(SECRET_KEY) < 50
    or len(set(SECRET_KEY)) < 5
    or SECRET_KEY.startswith(("dev-", "django-insecure"))
):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a random value of 50+ characters "
        '(python -c "import secrets; print(secrets.token_urlsafe(50))").'
    )
if DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production (unset DJANGO_DEBUG).")

# --- HTTPS -----------------------------------------------------------------------------------
_proxy_header = env("DJANGO_SECURE_PROXY_SSL_HEADER", default="")
if _proxy_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Load balancers probe the health check over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# A year of HSTS, subdomains included, eligible for browsers' preload lists.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
