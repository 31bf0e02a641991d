"""Countersign settings: one module, every knob an environment variable.

With nothing set, the product runs embedded: SQLite, an in-process channel
layer, Celery tasks executed in-process and periodic jobs run by a thread of
the server (see approvals/management/commands/serve.py). Set DATABASE_URL and
REDIS_URL to run on PostgreSQL and Redis with separate worker and beat.
One module on purpose (about 470 lines): every knob and its safe default in
one place, as the design asks.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def envstr(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value in (None, "") else value


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in envstr(name, default).split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(envstr("DATA_DIR", str(BASE_DIR / "var")))


def _local_secret_key() -> str:
    """A random key kept beside the embedded database, so a fresh machine
    never runs on a guessable default and sessions survive restarts."""
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY") or _local_secret_key()
DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
SITE_URL = envstr("SITE_URL", "http://localhost:8000")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", SITE_URL)

# HTTPS=1 in production: secure cookies, redirect to https and HSTS.
HTTPS = envbool("HTTPS", False)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", HTTPS)
if envbool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp; docs/security.md): scripts, styles,
# sockets and requests from this origin only, and no inline script, style or
# event handler anywhere, so text an agent wrote can never run in a reader's
# browser even if it escaped the templates. CSP_REPORT_ONLY=1 reports instead
# of blocking (to try a change); CSP_REPORT_URI is where browsers report.
# (Local names: django-csp's check refuses settings named CSP_*, its old format.)
_csp_report_only = envbool("CSP_REPORT_ONLY", False)
_csp_report_uri = envstr("CSP_REPORT_URI", "")
_CSP = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],  # the API, htmx's requests and the sockets (ws: and wss: of this host)
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        **({"report-uri": [_csp_report_uri]} if _csp_report_uri else {}),
    }
}
if _csp_report_only:
    CONTENT_SECURITY_POLICY_REPORT_ONLY = _CSP
else:
    CONTENT_SECURITY_POLICY = _CSP

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "csp",
    "axes",
    "audit",
    "agents",
    "approvals",
    "sso",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "audit.context.RequestContextMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# Database: PostgreSQL through DATABASE_URL, else an embedded SQLite file.
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    # The test runner's database, named per run (./test sets it) so that two
    # runs sharing one PostgreSQL server never create or drop each other's.
    if TEST_DATABASE_NAME := os.environ.get("TEST_DATABASE_NAME", ""):
        DATABASES["default"]["TEST"] = {"NAME": TEST_DATABASE_NAME}
    # A connection pool per process (psycopg_pool). Under ASGI every request,
    # and every websocket message's database call, runs in a thread of its
    # own; a persistent connection per thread would leak (one per thread until
    # PostgreSQL runs out), and no persistence costs a new backend per request.
    # The pool hands each thread a warm connection and takes it back when
    # Django closes it. Size it so that processes x DB_POOL_SIZE stays under
    # PostgreSQL's max_connections; 0 turns pooling off (a connection per
    # request). Pooling and CONN_MAX_AGE exclude each other, so the latter is 0.
    # A request finding the pool empty waits up to DB_POOL_TIMEOUT seconds (a
    # burst of slow requests, say logins hashing passwords, queues rather than fails).
    DB_POOL_SIZE = envint("DB_POOL_SIZE", 8)
    if DB_POOL_SIZE:
        # Beside the options DATABASE_URL's query gave (sslmode, application_name).
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": DB_POOL_SIZE,
            "timeout": envint("DB_POOL_TIMEOUT", 30),
        }
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "countersign.sqlite3"),
            # WAL and immediate transactions let the server, the in-process
            # tasks and the scheduler thread write without "database is locked".
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# SQLite ignores an index's INCLUDE columns (models.W040): the embedded run
# works without them, so the warning would only repeat itself on every start.
SILENCED_SYSTEM_CHECKS = [] if DATABASE_URL else ["models.W040"]

# Redis: Celery broker, Channels layer and cache when REDIS_URL is set.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": envstr("CACHE_PREFIX", "countersign"),
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "config.channel_layer.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        # Reads block up to 5 s on Redis; redis-py's default 5 s socket
                        # time-out would cut them off, killing idle sockets and long polls.
                        "socket_timeout": 15,
                        # Connections per process and event loop; a burst of joins and
                        # leaves (a thousand sockets closing at once) waits its turn for
                        # up to `timeout` seconds instead of failing (config/channel_layer.py).
                        "max_connections": envint("CHANNEL_LAYER_CONNECTIONS", 50),
                        "timeout": 10,
                    }
                ],
                "prefix": envstr("CHANNELS_PREFIX", "countersign"),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery. Embedded: tasks run in the calling process (after commit) and the
# server's scheduler thread plays beat. With Redis: a real worker and beat.
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
if REDIS_URL:  # kombu's, keeping a Redis client per channel (config/celery_broker.py)
    CELERY_BROKER_TRANSPORT = "config.celery_broker:Transport"
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a killed worker's task runs again
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = envstr("CELERY_QUEUE", "countersign")
CELERY_BEAT_SCHEDULE = {
    "expire-stale-actions": {"task": "approvals.tasks.expire_stale_actions", "schedule": timedelta(minutes=1)},
    "escalate-overdue-actions": {"task": "approvals.tasks.escalate_overdue_actions", "schedule": timedelta(minutes=1)},
    "send-lead-digests": {"task": "approvals.tasks.send_lead_digests", "schedule": timedelta(hours=1)},
    "evaluate-trust": {"task": "approvals.tasks.evaluate_trust", "schedule": timedelta(hours=1)},
    "seal-audit-chain": {"task": "audit.tasks.seal_audit_chain", "schedule": timedelta(minutes=1)},
    "enforce-audit-retention": {"task": "audit.tasks.enforce_audit_retention", "schedule": timedelta(hours=24)},
    "send-audit-anchor": {"task": "audit.tasks.send_audit_anchor", "schedule": timedelta(hours=1)},
    "sweep-dispatches": {
        "task": "approvals.tasks.sweep_dispatches",
        "schedule": timedelta(seconds=envint("DISPATCH_SWEEP_SECONDS", 10)),
    },
    "detect-anomalies": {"task": "approvals.tasks.detect_anomalies", "schedule": timedelta(minutes=1)},
}
# Beat records its heartbeat for /healthz on every tick (approvals.monitoring.heartbeats).
CELERY_BEAT_SCHEDULER = "approvals.monitoring.heartbeats:HeartbeatScheduler"
EMBEDDED_SCHEDULER = envbool("EMBEDDED_SCHEDULER", not REDIS_URL)

# Dispatch (docs/dispatch.md). Webhook retries wait base, 2 x base, 4 x base, ... seconds, at most max.
DISPATCH_RETRY_BASE_SECONDS = envint("DISPATCH_RETRY_BASE_SECONDS", 2)
DISPATCH_RETRY_MAX_SECONDS = envint("DISPATCH_RETRY_MAX_SECONDS", 300)
# The sweeper re-queues a dispatch this long after it should have started or
# finished (an attempt's time-out, a retry's due time): a lost message or a
# killed worker is recovered within time-out + grace + the sweep interval.
DISPATCH_GRACE_SECONDS = envint("DISPATCH_GRACE_SECONDS", 5)
# A signed receiver at /demo-target/ for the demo's webhook action types
# (approvals/demo/target.py): on in the embedded run, off with real services.
DEMO_TARGET = envbool("DEMO_TARGET", not REDIS_URL)

# Monitoring (docs/monitoring.md). Detectors run every minute; each threshold is a knob.
ANOMALY_WINDOW_MINUTES = envint("ANOMALY_WINDOW_MINUTES", 15)  # recent pace, against...
ANOMALY_BASELINE_DAYS = envint("ANOMALY_BASELINE_DAYS", 7)  # ...the pace over these days before it
DISPATCH_ERROR_WINDOW_MINUTES = envint("DISPATCH_ERROR_WINDOW_MINUTES", 60)
DISPATCH_ERROR_PERCENT = envint("DISPATCH_ERROR_PERCENT", 50)
DISPATCH_ERROR_MIN_ATTEMPTS = envint("DISPATCH_ERROR_MIN_ATTEMPTS", 5)
BLOCKED_WINDOW_MINUTES = envint("BLOCKED_WINDOW_MINUTES", 60)
BLOCKED_ALERT_AT = envint("BLOCKED_ALERT_AT", 5)
BLOCKED_SUSPEND_AT = envint("BLOCKED_SUSPEND_AT", 20)
# An alert acknowledged and found again within this many minutes is shown but not sent again.
ALERT_REPEAT_MINUTES = envint("ALERT_REPEAT_MINUTES", 60)
# Outbound alert webhooks: a generic JSON body signed with ALERT_WEBHOOK_SECRET, and Slack's.
ALERT_WEBHOOK_URLS = envlist("ALERT_WEBHOOK_URLS", "")
ALERT_WEBHOOK_SECRET = envstr("ALERT_WEBHOOK_SECRET", "")
ALERT_SLACK_WEBHOOK_URLS = envlist("ALERT_SLACK_WEBHOOK_URLS", "")
ALERT_WEBHOOK_TIMEOUT_SECONDS = envint("ALERT_WEBHOOK_TIMEOUT_SECONDS", 10)
if ALERT_WEBHOOK_URLS and not ALERT_WEBHOOK_SECRET:
    raise ImproperlyConfigured("ALERT_WEBHOOK_URLS needs ALERT_WEBHOOK_SECRET: receivers must verify the signature.")
# Decision callbacks (docs/api.md): a proposal's callback_url must be https on one of these hosts
# ("*.example.com" for its subdomains); empty, no callback_url is accepted. Plain http only when DEBUG.
CALLBACK_ALLOWED_HOSTS = envlist("CALLBACK_ALLOWED_HOSTS", "")
CALLBACK_ALLOW_HTTP = DEBUG
CALLBACK_TIMEOUT_SECONDS = envint("CALLBACK_TIMEOUT_SECONDS", 10)
# Retries wait base, 2 x base, 4 x base, ... seconds, at most max; after max attempts the callback is given up.
CALLBACK_RETRY_BASE_SECONDS = envint("CALLBACK_RETRY_BASE_SECONDS", 5)
CALLBACK_RETRY_MAX_SECONDS = envint("CALLBACK_RETRY_MAX_SECONDS", 900)
CALLBACK_MAX_ATTEMPTS = envint("CALLBACK_MAX_ATTEMPTS", 8)
# One-click decisions by email (docs/queue.md): how long an approve / reject link lives; never past the
# action's expiry.
DECISION_LINK_MAX_AGE_MINUTES = envint("DECISION_LINK_MAX_AGE_MINUTES", 60)
# The new-item email shows the preview of the effect (the payload as the lead reads it); off, emails carry
# facts and links only and no payload leaves the system by email (docs/security.md).
DECISION_EMAIL_PREVIEW = envbool("DECISION_EMAIL_PREVIEW", True)
# Slack (docs/slack.md): the app's bot token posts new pending actions to each department's channel; the
# signing secret verifies the interactions endpoint's requests. SLACK_API_URL points the Web API elsewhere
# (tests use a stand-in on loopback).
SLACK_BOT_TOKEN = envstr("SLACK_BOT_TOKEN", "")
SLACK_SIGNING_SECRET = envstr("SLACK_SIGNING_SECRET", "")
SLACK_API_URL = envstr("SLACK_API_URL", "https://slack.com/api/")
SLACK_TIMEOUT_SECONDS = envint("SLACK_TIMEOUT_SECONDS", 10)
# The MCP door (docs/mcp.md): how long a tools/call waits for a decision or a dispatch before it answers
# "pending" (keep it under the MCP clients' request time-out), and how often it sends progress meanwhile.
MCP_WAIT_SECONDS = envint("MCP_WAIT_SECONDS", 45)
MCP_PROGRESS_SECONDS = envint("MCP_PROGRESS_SECONDS", 5)
# /healthz: a worker or beat silent for longer than this is reported down.
HEARTBEAT_SECONDS = envint("HEARTBEAT_SECONDS", 15)
HEARTBEAT_MAX_AGE_SECONDS = envint("HEARTBEAT_MAX_AGE_SECONDS", 90)
# /metrics answers these client addresses, or anyone sending "Authorization: Bearer <METRICS_TOKEN>".
METRICS_ALLOWED_IPS = envlist("METRICS_ALLOWED_IPS", "127.0.0.1,::1")
METRICS_TOKEN = envstr("METRICS_TOKEN", "")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Failed logins (django-axes; docs/security.md): after LOGIN_FAILURE_LIMIT
# wrong passwords for one user name from one address, that pair is locked out
# for LOGIN_COOLOFF_MINUTES, right password or not, on the login page and the
# admin's alike. A guess is not an audit event; a lockout is (audit/auth_events.py).
# The address is REMOTE_ADDR: behind a proxy every client shares the proxy's,
# and the lock then holds the user name from anywhere.
AUTHENTICATION_BACKENDS = [
    "approvals.login_guard.LoginGuard",  # refuses a locked-out pair before any password is checked
    "django.contrib.auth.backends.ModelBackend",
    "sso.backend.OIDCBackend",  # single sign-on; authenticates nobody unless OIDC_RP_CLIENT_ID is set
]
AXES_ENABLED = envbool("LOGIN_THROTTLE", True)
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# A try while locked out neither extends the lockout nor counts as a new one.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_DISABLE_ACCESS_LOG = True  # successful logins are in the audit trail already
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# Single sign-on with OpenID Connect (docs/sso.md), off unless OIDC_RP_CLIENT_ID is set.
# The provider's endpoints come from OIDC_OP_DISCOVERY (its issuer URL or discovery
# document), each overridable by its own variable. mozilla-django-oidc reads these names.
OIDC_RP_CLIENT_ID = envstr("OIDC_RP_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = envstr("OIDC_RP_CLIENT_SECRET", "")
OIDC_OP_DISCOVERY = envstr("OIDC_OP_DISCOVERY", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = envstr("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = envstr("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = envstr("OIDC_OP_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = envstr("OIDC_OP_JWKS_ENDPOINT", "")
OIDC_OP_ISSUER = envstr("OIDC_OP_ISSUER", "")  # checked against the ID token's iss when known
OIDC_RP_SIGN_ALGO = envstr("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = envstr("OIDC_RP_SCOPES", "openid email profile")
OIDC_PROVIDER_NAME = envstr("OIDC_PROVIDER_NAME", "single sign-on")  # "Sign in with <name>"
OIDC_TIMEOUT = envint("OIDC_TIMEOUT_SECONDS", 10)
OIDC_USE_PKCE = envbool("OIDC_USE_PKCE", True)
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"
if OIDC_RP_CLIENT_ID:
    _endpoints = ["OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT"]
    if OIDC_RP_SIGN_ALGO.startswith(("RS", "ES")):
        _endpoints.append("OIDC_OP_JWKS_ENDPOINT")
    _missing = [name for name in _endpoints if not globals()[name]]
    if not OIDC_RP_CLIENT_SECRET or (_missing and not OIDC_OP_DISCOVERY):
        raise ImproperlyConfigured(
            "OIDC_RP_CLIENT_ID needs OIDC_RP_CLIENT_SECRET, and OIDC_OP_DISCOVERY or "
            + ", ".join(_missing or _endpoints)
        )
# PASSWORD_LOGIN=0: the login page offers single sign-on only, and refuses passwords (the admin's login too).
PASSWORD_LOGIN = envbool("PASSWORD_LOGIN", True)
if not PASSWORD_LOGIN and not OIDC_RP_CLIENT_ID:
    raise ImproperlyConfigured("PASSWORD_LOGIN=0 needs single sign-on (OIDC_RP_CLIENT_ID): nobody could log in.")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "queue"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# config/asgi.py serves /static/ from the app folders (no collectstatic). A
# middleware would do it synchronously and so cost every long-poll a thread.

# Embedded: one console line per mail, the mail itself readable by an admin at /demo/mail/.
EMAIL_BACKEND = envstr(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if REDIS_URL else "approvals.demo.mail.OneLineEmailBackend",
)
DEMO_MAIL_DIR = Path(envstr("DEMO_MAIL_DIR", str(DATA_DIR / "demo-mail")))
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "countersign@localhost")

# New agent keys expire after this many days unless the issuer picks another
# date (the admin's form shows it; issue_agent_key --expires-in-days). 0: no expiry.
AGENT_KEY_EXPIRY_DAYS = envint("AGENT_KEY_EXPIRY_DAYS", 90)

# Agent request bodies above this size are refused with 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("MAX_REQUEST_BYTES", 256 * 1024)
# Agent API requests a server process runs at once, each on a thread of its
# own; the rest wait for one, holding no thread (config.agent_api.Lanes).
# Keep it at most DB_POOL_SIZE: each holds a database connection while it runs.
AGENT_API_THREADS = envint("AGENT_API_THREADS", 4)
if AGENT_API_THREADS < 1:
    raise ImproperlyConfigured(f"AGENT_API_THREADS={AGENT_API_THREADS}: at least 1, or no agent request would run.")

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_AUTHENTICATION_CLASSES": ["agents.authentication.AgentKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "approvals.api.errors.handle",
    # Per agent, in the shared cache; past it, 429 with Retry-After.
    "DEFAULT_THROTTLE_RATES": {"agent": envstr("AGENT_RATE_LIMIT", "1200/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Countersign agent API",
    "DESCRIPTION": "Agents propose actions; a policy and department leads decide. "
    'Every error is {"error": {"code", "message", "fields"?}}.',
    "VERSION": "1.0.0",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",  # served from the package, no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Audit trail: events older than this are archived, then purged (never under 90 days).
AUDIT_RETENTION_DAYS = max(90, envint("AUDIT_RETENTION_DAYS", 365))
AUDIT_ARCHIVE_DIR = Path(envstr("AUDIT_ARCHIVE_DIR", str(DATA_DIR / "audit-archive")))
# How events are hash-chained after commit: "background" (a sequencer thread per
# process), "inline" (in the committing thread; tests) or "off" (benchmarks only).
AUDIT_SEALING = envstr("AUDIT_SEALING", "background")
AUDIT_SEAL_COALESCE_SECONDS = float(envstr("AUDIT_SEAL_COALESCE_SECONDS", "0.2"))
# Witnesses of the chain's head, sent every hour (docs/audit.md), comma-separated:
# file:/path (a line appended), mailto:address, or an https:// webhook (a JSON
# POST, signed with AUDIT_WITNESS_SECRET when set). The default, a file beside
# the data, catches a rewrite by someone who can reach only the database; a
# witness on another machine or in a mailbox also catches one by the host's
# owner. `verify_audit --anchors FILE` checks the chain against the lines.
AUDIT_WITNESS = envlist("AUDIT_WITNESS", f"file:{DATA_DIR / 'audit-anchors.log'}")
AUDIT_WITNESS_SECRET = envstr("AUDIT_WITNESS_SECRET", "")
for _witness in AUDIT_WITNESS:
    if not _witness.startswith(("file:/", "mailto:", "https://", "http://")):
        raise ImproperlyConfigured(
            f"AUDIT_WITNESS: {_witness!r} is not file:/absolute/path, mailto:address or an http(s):// URL."
        )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    # django-axes logs every login and cleanup at INFO; its warnings (a lockout) stay.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
