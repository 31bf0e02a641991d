"""ASGI entry point: HTTP through Django, websockets through Channels, the
agent API (/api/v1/) through its lean door (config.agent_api) with long polls
(?wait=) parked in front of it, holding no thread (approvals.api.parking),
and the MCP door at /mcp/ (approvals.mcp.door) beside them."""

import asyncio
import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Static files are served here, outside the middleware chain, so that chain
# stays async end to end. At scale, put a CDN or proxy cache in front of /static/.
django_asgi_app = ASGIStaticFilesHandler(get_asgi_application())

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from approvals import live  # noqa: E402
from approvals.api.parking import ParkLongPolls  # noqa: E402
from approvals.mcp import door  # noqa: E402
from approvals.pages.routing_ws import websocket_urlpatterns  # noqa: E402
from config import agent_api  # noqa: E402

router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

mcp = door.MCPDoor()
agent_api_door = ParkLongPolls(agent_api.AgentAPIHandler())


async def application(scope, receive, send):
    live.bind_server_loop(asyncio.get_running_loop())
    if door.wants(scope):
        await mcp(scope, receive, send)
        return
    if agent_api.wants(scope):
        await agent_api_door(scope, receive, send)
        return
    await router(scope, receive, send)
