"""countersign-client: what an agent needs to work through Countersign, the approval gateway.

The core needs only httpx: the client (`Countersign`), the decorator (`requires_approval`), one call that
proposes and waits (`ask`) and the webhook signature check (`verify_signature`). The framework adapters and
the MCP proxy are modules of their own, each with its extra:

    pip install countersign-client                    # core
    pip install "countersign-client[mcp]"             # countersign-mcp-proxy
    pip install "countersign-client[openai-agents]"   # countersign_client.openai_agents
    pip install "countersign-client[langgraph]"       # countersign_client.langgraph
    pip install "countersign-client[claude-agent-sdk]"  # countersign_client.claude_agent_sdk
"""

from countersign_client.approval import Approval, ask
from countersign_client.client import (
    Action,
    ApiError,
    Blocked,
    Cancelled,
    Countersign,
    CountersignError,
    DispatchFailed,
    Expired,
    Rejected,
    Shadowed,
    TimedOut,
    Unreachable,
)
from countersign_client.decorator import requires_approval
from countersign_client.signatures import SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECONDS, sign, verify_signature

__version__ = "0.2.0"

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE_SECONDS",
    "Action",
    "ApiError",
    "Approval",
    "Blocked",
    "Cancelled",
    "Countersign",
    "CountersignError",
    "DispatchFailed",
    "Expired",
    "Rejected",
    "Shadowed",
    "TimedOut",
    "Unreachable",
    "ask",
    "requires_approval",
    "sign",
    "verify_signature",
]
