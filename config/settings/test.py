"""Tests: SQLite in memory by default; Postgres + Redis when DATABASE_URL / REDIS_URL are set."""

import uuid

from .base import *
from .base import CHANNEL_LAYERS, REDIS_URL, SQLITE, VAR_DIR

SECRET_KEY = "test-only-key-loopdesk-0123456789abcdef"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
MEDIA_ROOT = VAR_DIR / "test-media" / uuid.uuid4().hex[:8]
TRAINING_OUTPUT_DIR = MEDIA_ROOT / "training"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

if REDIS_URL:
    # Concurrent test runs on one Redis must not hear each other's groups.
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"test-{uuid.uuid4().hex[:8]}"
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Tasks run inline unless a test starts a worker; tests that need the queue override this.
# Own queue and heartbeat keys, so a worker running on the same Redis is not seen.
Q_CLUSTER = {**Q_CLUSTER, "sync": True, "name": f"test-{uuid.uuid4().hex[:8]}"}
ASSISTANT_TIMEOUT_SECONDS = 10.0
CHAT_WARM_UP_ASSISTANT = False

if "pool" in DATABASES["default"].get("OPTIONS", {}):
    # Browser tests fork a Daphne child: it must not inherit the parent's pool (its
    # threads do not survive the fork and its sockets are the parent's).
    del DATABASES["default"]["OPTIONS"]["pool"]
    DATABASES["default"]["CONN_MAX_AGE"] = 0

if SQLITE:
    # A file, not memory: browser tests serve the app from a separate Daphne process.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{uuid.uuid4().hex[:8]}.sqlite3")}
