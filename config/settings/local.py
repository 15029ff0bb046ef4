"""Developer machine: embedded defaults, DEBUG on, a fixed development key."""

from .base import *
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-loopdesk-not-for-production"
WHITENOISE_USE_FINDERS = True
