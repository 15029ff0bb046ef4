"""Every setting Loopdesk reads, declared once.

With no environment at all the platform runs on embedded parts: SQLite, the in-memory
channel layer, django-q2's ORM broker, console e-mail, local media and offline models.
Set DATABASE_URL / REDIS_URL (and the USE_* flags) to move each part to a real service.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env("LOOPDESK_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded SQLite database and media live here

# --- core -------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Only local/test settings fall back to a development key; production.py refuses it.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "axes",
    "csp",
    "config.apps.LoopdeskConfig",
    "chat",
    "accounts",
    "escalation",
    "labeling",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A NUL in a query parameter is a 400, never a database error (chat.middleware).
    "chat.middleware.UnstorableQueryMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: answers a locked-out sign-in with its page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- the run command (scripts/run, manage.py runplatform) -----------------------------------
RUN_HOST = env("LOOPDESK_HOST", default="127.0.0.1")
RUN_PORT = env.int("PORT", default=8000)
# Daphne processes ``scripts/run`` starts on the port. One process runs Python on one
# core at a time (the GIL): with the Redis layer, one per core the process may use, at
# most 8 (each holds its own copy of the models, about 0.7 GB); ``bench/chat_ws.py`` and
# docs/chat-benchmark.md. The in-memory layer needs exactly 1.
WEB_PROCESSES = env.int(
    "WEB_PROCESSES",
    default=min(len(os.sched_getaffinity(0)), 8) if env("REDIS_URL", default="") else 1,
)

# --- database ---------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'loopdesk.sqlite3'}"),
}
SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
if SQLITE:
    # WAL lets Daphne and the worker processes read while one writes; IMMEDIATE
    # transactions make concurrent writers wait instead of failing, and they wait in a
    # queue on a lock file rather than in SQLite's sleep-and-retry (config.db.sqlite3).
    DATABASES["default"]["ENGINE"] = "config.db.sqlite3"
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # One connection per thread, kept open: opening SQLite (and registering its
    # functions) on every call cost a fifth of a turn. Threads are bounded (see
    # DATABASE_THREADS), and so are connections.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=600)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    # psycopg's pool (Django's "pool" option): a connection is borrowed per database
    # call and returned after it, so the connections of a process are bounded by
    # DATABASE_POOL_MAX whatever the number of threads; CONN_MAX_AGE must stay 0 with it.
    # DATABASE_POOL_MAX=0 turns the pool off (then CONN_MAX_AGE applies, e.g. behind
    # PgBouncer).
    _pool_max = env.int("DATABASE_POOL_MAX", default=8)
    if _pool_max > 0:
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN", default=1),
            "max_size": _pool_max,
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
        }
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Threads that run the sockets' and the turns' ORM work in a server process (chat.events);
# 0 runs it on Channels' single thread instead. SQLite takes one writer at a time: a
# second thread of the same process only competes for the GIL while the lock is held
# (two processes on SQLite: 110 msg/s with two threads each, 120-133 with one;
# docs/chat-benchmark.md).
DATABASE_THREADS = env.int("DATABASE_THREADS", default=1 if SQLITE else 4)

# --- redis: channel layer, cache, task broker --------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
CHANNEL_LAYERS: dict[str, dict[str, Any]]

if REDIS_URL:
    # Channel-layer events are notifications: every message, turn, ticket and queue place
    # is in the database, and each socket reads it back on (re)connect and after a turn
    # (the chat's resume and catch-up reads, the inbox's snapshot). So the default is
    # channels-redis's Pub/Sub layer: a group_send is one PUBLISH, delivery one read of
    # the process's subscription, with no per-channel lists, capacity scans or backup
    # queue. Measured against the list-based layer on the saturation benchmark: about a
    # third less server CPU per answered message (docs/chat-benchmark.md).
    # CHANNEL_LAYER_BACKEND=core selects the list-based layer, which also buffers events
    # for a socket that is briefly gone (capacity and expiry below).
    _channel_layer_backend = env("CHANNEL_LAYER_BACKEND", default="pubsub")
    if _channel_layer_backend not in ("pubsub", "core"):
        raise ImproperlyConfigured("CHANNEL_LAYER_BACKEND must be 'pubsub' or 'core'.")
    _channel_layer_config: dict[str, Any] = {
        "hosts": [REDIS_URL],
        "prefix": env("CHANNEL_LAYER_PREFIX", default="loopdesk"),
    }
    if _channel_layer_backend == "core":
        _channel_layer_config |= {
            # Events waiting for one process's sockets. A turn sends a socket 2-3 events,
            # an agent's inbox one per ticket change: 500 absorbs a burst of tickets
            # while bounding what a stalled process piles up in Redis.
            "capacity": env.int("CHANNEL_LAYER_CAPACITY", default=500),
            # An event nobody read for 30 s is stale: the page's replay and the socket's
            # catch-up read bring the conversation back from the database.
            "expiry": env.int("CHANNEL_LAYER_EXPIRY", default=30),
            # A socket stays in its groups this long without re-joining: longer than an
            # agent's working day at the console (the default, one day), else a
            # long-lived socket would silently stop hearing its group.
            "group_expiry": env.int("CHANNEL_LAYER_GROUP_EXPIRY", default=86400),
        }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": {
                "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "core": "channels_redis.core.RedisChannelLayer",
            }[_channel_layer_backend],
            "CONFIG": _channel_layer_config,
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="loopdesk"),
        }
    }
else:
    # One process only: WebSocket fan-out happens inside Daphne. Production uses Redis.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # Shared between Daphne and the worker processes (rate limits, worker heartbeats).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "loopdesk_cache",
        }
    }

# django-q2: the ORM broker by default, Redis when REDIS_URL is set. Training jobs go to
# a separate cluster ("training") so that GPU machines start only that one.
TRAINING_CLUSTER = "training"
Q_CLUSTER = {
    "name": "default",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=300),
    "retry": env.int("Q_RETRY", default=360),
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.5,
    "save_limit": 1000,
    "label": "Background tasks",
    "ALT_CLUSTERS": {
        TRAINING_CLUSTER: {
            "workers": env.int("Q_TRAINING_WORKERS", default=1),
            "timeout": env.int("Q_TRAINING_TIMEOUT", default=6 * 3600),
            "retry": env.int("Q_TRAINING_TIMEOUT", default=6 * 3600) + 600,
            "max_attempts": 1,
        },
    },
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- browser security headers (every environment, so tests and the run command show any
# page that breaks under them) -------------------------------------------------------------
# Only this origin's scripts, styles, fonts, images and connections (the chat's WebSocket
# included): no inline script or style anywhere. The one exception is ReDoc, which writes
# its own styles (config/urls.py). Nothing may frame the pages.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# Browser features no page uses are switched off (django-permissions-policy).
PERMISSIONS_POLICY: dict[str, list[str]] = {
    "accelerometer": [],
    "camera": [],
    "display-capture": [],
    "geolocation": [],
    "gyroscope": [],
    "magnetometer": [],
    "microphone": [],
    "midi": [],
    "payment": [],
    "usb": [],
}

# --- client addresses ---------------------------------------------------------------------
# Proxies (addresses or networks, e.g. "10.0.0.0/8") whose X-Forwarded-For is believed.
# Empty: the connection's peer is the client (chat.clients). Behind a load balancer, list
# it here, or every visitor shares its address in the rate limits and login lock-outs.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

# --- auth, i18n, static, media ----------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# django-axes first: every sign-in (admin, customer, API token) is refused while its
# username and client address are locked out.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After LOGIN_FAILURE_LIMIT wrong passwords for one username from one client address,
# that pair is locked out for LOGIN_LOCKOUT_MINUTES (the right password included); a
# success resets the count. Locked-out attempts get a 429 page.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "chat.clients.client_address_of_request"
AXES_LOCKOUT_TEMPLATE = "errors/lockout.html"
AXES_VERBOSE = False
# Staff pages (@login_required) send people to the admin login; customers sign in at
# /accounts/login/ (accounts app), which staff may use too.
LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/"
# Off: customer accounts are made by staff in the admin. On: /accounts/signup/ lets
# anyone create a customer account from the chat's sign-in page.
CUSTOMER_SIGNUP_ENABLED = env.bool("CUSTOMER_SIGNUP_ENABLED", default=False)
LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))

USE_S3_STORAGE = env.bool("USE_S3_STORAGE", default=False)
AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME", default="")
AWS_S3_REGION_NAME = env("AWS_S3_REGION_NAME", default=env("AWS_REGION", default="us-east-1"))
STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage"
        if USE_S3_STORAGE
        else "django.core.files.storage.FileSystemStorage",
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- e-mail -------------------------------------------------------------------------------
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Loopdesk <support@loopdesk.local>")

# --- API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Hashed tokens with an expiry (django-rest-knox), from POST /api/auth/token/.
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    # Per account, anonymous callers per client address (chat.clients).
    "DEFAULT_THROTTLE_CLASSES": [
        "chat.clients.AddressAnonThrottle",
        "chat.clients.AddressUserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("API_THROTTLE_ANON", default="60/min"),
        "user": env("API_THROTTLE_USER", default="600/min"),
        "token": env("API_THROTTLE_TOKEN", default="10/min"),
    },
    # JSON within size and depth, storable text only (chat.parsers); files as multipart.
    "DEFAULT_PARSER_CLASSES": [
        "chat.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # One error shape for every API error: {code, message} (chat.errors).
    "EXCEPTION_HANDLER": "chat.errors.api_exception_handler",
}
# API tokens are stored hashed and expire this many days after they were issued.
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=30)
REST_KNOX = {"TOKEN_TTL": timedelta(days=API_TOKEN_TTL_DAYS), "AUTH_HEADER_PREFIX": "Token"}
# Every JSON body the API reads: at most this many bytes, nested at most this deep.
API_MAX_JSON_BYTES = env.int("API_MAX_JSON_BYTES", default=1024 * 1024)
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=16)
SPECTACULAR_SETTINGS = {
    "TITLE": "Loopdesk API",
    "DESCRIPTION": (
        "Conversations, escalations, labels and training runs for integrations.\n\n"
        "Authenticate with `Authorization: Token <token>`: POST /api/auth/token/ with the "
        "account's username and password (HTTP Basic) returns a token, shown once and "
        "valid for API_TOKEN_TTL_DAYS. Every error is `{code, message[, fields]}`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc come from drf-spectacular-sidecar's static files: /api/docs/
    # works without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name per choice set where several serializers share a field name.
    "ENUM_NAME_OVERRIDES": {
        "TicketStatusEnum": "escalation.models.Ticket.Status",
        "TicketOutcomeEnum": "escalation.models.Ticket.Outcome",
        "LabelStatusEnum": "labeling.models.Label.Status",
        "DomainEventNameEnum": "escalation.models.DomainEvent.Name",
        "TrainingRunStatusEnum": "training.models.TrainingRun.Status",
    },
}

# --- AWS (never reached unless these are set) -------------------------------------------
AWS_REGION = env("AWS_REGION", default="us-east-1")

# --- assistant ----------------------------------------------------------------------------
# local: retrieval answers with MiniLM + VADER, no network (default)
# bedrock: langchain-aws ChatBedrockConverse + Bedrock embeddings
# hf: a local transformers causal LM, optionally with a deployed LoRA adapter
ASSISTANT_PROVIDER = env("ASSISTANT_PROVIDER", default="local")
ASSISTANT_TIMEOUT_SECONDS = env.float("ASSISTANT_TIMEOUT_SECONDS", default=30.0)
# Cosine (MiniLM) below which the assistant says it does not know; bench/assistant_retrieval.py
ASSISTANT_MIN_RETRIEVAL_SCORE = env.float("ASSISTANT_MIN_RETRIEVAL_SCORE", default=0.30)
ASSISTANT_TOP_K = env.int("ASSISTANT_TOP_K", default=3)
# How often the assistant re-reads which retriever adapter is live for a slot (seconds):
# a deployment or rollback reaches every process within that time, without a restart.
ASSISTANT_ADAPTER_REFRESH_SECONDS = env.float("ASSISTANT_ADAPTER_REFRESH_SECONDS", default=5.0)
# VADER compound at or below this counts as clearly negative (the blog's "1").
ASSISTANT_NEGATIVE_SENTIMENT_BELOW = env.float("ASSISTANT_NEGATIVE_SENTIMENT_BELOW", default=-0.5)
BEDROCK_MODEL_ID = env("BEDROCK_MODEL_ID", default="anthropic.claude-3-haiku-20240307-v1:0")
BEDROCK_EMBEDDING_MODEL_ID = env(
    "BEDROCK_EMBEDDING_MODEL_ID", default="amazon.titan-embed-text-v2:0"
)
BEDROCK_GUARDRAIL_ID = env("BEDROCK_GUARDRAIL_ID", default="")
BEDROCK_GUARDRAIL_VERSION = env("BEDROCK_GUARDRAIL_VERSION", default="DRAFT")
HF_BASE_MODEL_PATH = env("HF_BASE_MODEL_PATH", default=str(VAR_DIR / "models" / "starter"))
HF_MAX_NEW_TOKENS = env.int("HF_MAX_NEW_TOKENS", default=64)
HF_MAX_LOADED_ADAPTERS = env.int("HF_MAX_LOADED_ADAPTERS", default=4)
# The offline starter model is a mechanics-only toy (its folder holds TOY_MODEL.txt): the
# hf provider refuses to answer customers with it unless an operator opts in here.
HF_ALLOW_TOY_MODEL = env.bool("HF_ALLOW_TOY_MODEL", default=False)

# A running turn this long past its deadline belongs to a process that died: the sweep
# (every minute) fails it and tells the customer.
TURN_SWEEP_GRACE_SECONDS = env.int("TURN_SWEEP_GRACE_SECONDS", default=15)
# Stream pieces are sent at most this often (the first at once).
STREAM_COALESCE_SECONDS = env.float("STREAM_COALESCE_SECONDS", default=0.05)
# The knowledge index re-checks the database for edited articles at most this often.
KNOWLEDGE_REFRESH_SECONDS = env.float("KNOWLEDGE_REFRESH_SECONDS", default=2.0)
# Answer memory (chat.assistant.memory): the MiniLM cosine between a question and an
# approved question at or above which the approved answer is the reply. Calibrated on the
# dev questions (`manage.py assistant_eval --memory`; docs/training.md "Answer memory").
ANSWER_MEMORY_MIN_SIMILARITY = env.float("ANSWER_MEMORY_MIN_SIMILARITY", default=0.75)
# ... and the cosine between the question and the approved answer it must reach too.
ANSWER_MEMORY_MIN_ANSWER_SIMILARITY = env.float("ANSWER_MEMORY_MIN_ANSWER_SIMILARITY", default=0.6)
# The live intent router version is re-checked in the database at most this often.
ROUTER_REFRESH_SECONDS = env.float("ROUTER_REFRESH_SECONDS", default=5.0)
# The evaluation part router versions are compared on before one goes live ("" = the
# shipped chat/assistant/datasets/intents_eval.jsonl).
ROUTER_EVAL_PART = env("ROUTER_EVAL_PART", default="")
# Model inference runs on one thread per process with this many torch threads (0: torch's
# default, the number of cores). One leaves the other core to the event loop and the
# database threads.
ASSISTANT_TORCH_THREADS = env.int("ASSISTANT_TORCH_THREADS", default=1)

CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=4000)
# Every socket frame: at most this many bytes and this deep (a message frame is flat).
SOCKET_MAX_FRAME_BYTES = env.int("SOCKET_MAX_FRAME_BYTES", default=64 * 1024)
SOCKET_MAX_FRAME_DEPTH = env.int("SOCKET_MAX_FRAME_DEPTH", default=8)
# Per account (signed in) or visitor cookie, and per client address: people behind one
# address (an office, a mobile carrier) share the second budget, so it is larger.
CHAT_RATE_LIMIT_MESSAGES = env("CHAT_RATE_LIMIT_MESSAGES", default="20/min")
CHAT_RATE_LIMIT_CONVERSATIONS = env("CHAT_RATE_LIMIT_CONVERSATIONS", default="10/hour")
CHAT_RATE_LIMIT_MESSAGES_PER_ADDRESS = env("CHAT_RATE_LIMIT_MESSAGES_PER_ADDRESS", default="60/min")
CHAT_RATE_LIMIT_CONVERSATIONS_PER_ADDRESS = env(
    "CHAT_RATE_LIMIT_CONVERSATIONS_PER_ADDRESS", default="30/hour"
)
# Load the assistant's models when the first chat socket of a server process opens.
CHAT_WARM_UP_ASSISTANT = env.bool("CHAT_WARM_UP_ASSISTANT", default=True)

# --- escalation ---------------------------------------------------------------------------
USE_COMPREHEND = env.bool("USE_COMPREHEND", default=False)
STEP_FUNCTIONS_STATE_MACHINE_ARN = env("STEP_FUNCTIONS_STATE_MACHINE_ARN", default="")
STEP_FUNCTIONS_CALLBACK_SECRET = env("STEP_FUNCTIONS_CALLBACK_SECRET", default="")
USE_SES = env.bool("USE_SES", default=False)
ESCALATION_AGENT_PRESENCE_SECONDS = env.int("ESCALATION_AGENT_PRESENCE_SECONDS", default=90)
ESCALATION_RETRY_MAX_ATTEMPTS = env.int("ESCALATION_RETRY_MAX_ATTEMPTS", default=5)
ESCALATION_RETRY_BASE_SECONDS = env.int("ESCALATION_RETRY_BASE_SECONDS", default=10)
ESCALATION_CALLBACK_MAX_SKEW_SECONDS = env.int("ESCALATION_CALLBACK_MAX_SKEW_SECONDS", default=300)
ESCALATION_TICKET_EXPIRY_HOURS = env.int("ESCALATION_TICKET_EXPIRY_HOURS", default=24)
# An assigned ticket whose agent has not written to the customer within this many seconds
# of the assignment goes back to the queue (the sweep runs every minute).
ESCALATION_ASSIGNEE_REPLY_SECONDS = env.int("ESCALATION_ASSIGNEE_REPLY_SECONDS", default=300)
ESCALATION_WEBHOOK_TIMEOUT_SECONDS = env.float("ESCALATION_WEBHOOK_TIMEOUT_SECONDS", default=5.0)
# Webhooks reach public addresses only; networks listed here (CIDR, e.g. "10.1.2.0/24"
# for an internal receiver) are allowed too. Loopback, private, link-local (the cloud
# metadata service) and reserved addresses are refused otherwise.
ESCALATION_WEBHOOK_ALLOWED_NETWORKS = env.list("ESCALATION_WEBHOOK_ALLOWED_NETWORKS", default=[])

# --- labeling / training ------------------------------------------------------------------
LABELING_REVIEWERS_PER_ITEM = env.int("LABELING_REVIEWERS_PER_ITEM", default=3)
LABELING_JUDGE_MIN_AGREEMENT = env.float("LABELING_JUDGE_MIN_AGREEMENT", default=0.6)
# local: MiniLM similarity heuristic (offline default); bedrock: an LLM via ChatBedrockConverse
LABELING_JUDGE_PROVIDER = env("LABELING_JUDGE_PROVIDER", default="local")
LABELING_JUDGE_BEDROCK_MODEL_ID = env("LABELING_JUDGE_BEDROCK_MODEL_ID", default=BEDROCK_MODEL_ID)
# Reviewers see the AI score of an item only after submitting their own label.
LABELING_SHOW_JUDGE_BEFORE_LABEL = env.bool("LABELING_SHOW_JUDGE_BEFORE_LABEL", default=False)
# Items whose reviewer scores differ by at least this much go to adjudication.
LABELING_ADJUDICATION_SPREAD = env.int("LABELING_ADJUDICATION_SPREAD", default=2)
# Ground Truth manifests: the label attribute name and job name of the blog's example.
LABELING_GT_LABEL_ATTRIBUTE = env("LABELING_GT_LABEL_ATTRIBUTE", default="RHLF-custom-feedback")
LABELING_GT_JOB_NAME = env("LABELING_GT_JOB_NAME", default="rhlf-custom-feedback")
# Largest Ground Truth output manifest an import accepts (API and admin).
LABELING_MANIFEST_MAX_BYTES = env.int("LABELING_MANIFEST_MAX_BYTES", default=20 * 1024 * 1024)
TRAINING_OUTPUT_DIR = Path(env("TRAINING_OUTPUT_DIR", default=str(VAR_DIR / "training")))
# A running run whose worker sent no heartbeat for this long is failed by the sweep.
TRAINING_HEARTBEAT_TIMEOUT_SECONDS = env.int("TRAINING_HEARTBEAT_TIMEOUT_SECONDS", default=120)
# A training child silent (no output, no heartbeat) for this long is killed.
TRAINING_STALL_SECONDS = env.int("TRAINING_STALL_SECONDS", default=900)
# Held-out questions answered before/after a run for its evaluation.
TRAINING_EVAL_PROMPTS = env.int("TRAINING_EVAL_PROMPTS", default=16)
# Guards of online runs (PPO, GRPO, RLOO), overridable per run with the hyperparameters
# guard_max_kl / guard_max_length_drift / guard_warmup_steps (null switches one off): a
# run stops and fails at the first logged step whose KL per answer (nats, summed over the
# answer's tokens) or mean answer length drift (share of the first steps' mean) passes.
TRAINING_GUARD_MAX_KL = env.float("TRAINING_GUARD_MAX_KL", default=4.0)
TRAINING_GUARD_MAX_LENGTH_DRIFT = env.float("TRAINING_GUARD_MAX_LENGTH_DRIFT", default=0.5)
TRAINING_GUARD_WARMUP_STEPS = env.int("TRAINING_GUARD_WARMUP_STEPS", default=3)

# Nothing may fetch weights from a model hub at run time.
HF_HUB_OFFLINE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "client_error_without_traceback": {"()": "config.log_filters.ClientErrorWithoutTraceback"}
    },
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Only the root handler prints: Django's own console handler (under DEBUG) printed
        # every request error a second time.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.request": {"filters": ["client_error_without_traceback"]},
        "django.channels.server": {"level": "WARNING"},
        # django-q2 logs two lines per task and per scheduled sweep; failures are
        # warnings or errors. Our tasks log their own summary (e.g. one line per
        # embedding batch). LOG_LEVEL_TASKS=INFO shows every task again.
        "django-q": {"level": env("LOG_LEVEL_TASKS", default="WARNING")},
    },
}
