"""The embedded platform (``scripts/run``, ``manage.py``): embedded defaults and a fixed
development key. DEBUG stays off (plain error pages, nothing disclosed) unless a developer
asks for it with ``DJANGO_DEBUG=true``; WhiteNoise serves the static files either way."""

from .base import *

SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-loopdesk-not-for-production"
WHITENOISE_USE_FINDERS = True
