"""Production: refuses to start on a development key or with DEBUG on."""

from django.core.exceptions import ImproperlyConfigured

from .base import *
from .base import env

SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
if len(SECRET_KEY) < 32 or SECRET_KEY.startswith(("dev-", "django-insecure")):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set to a random value of 32+ characters.")
if DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production (unset DJANGO_DEBUG).")

SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
