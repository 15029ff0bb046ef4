"""Developer machine: embedded defaults, DEBUG on, a fixed development key."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-loopdesk-not-for-production"  # noqa: F405
WHITENOISE_USE_FINDERS = True
