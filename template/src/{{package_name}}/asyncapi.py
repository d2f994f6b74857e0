"""The service's AsyncAPI 3.0 document, built from what the server registers.

The event names, payload schemas and scopes come from the routers that `server.py` wires
(`dispatch.Router.registrations`, `Router.sent`), the payloads and the ack envelope from
the pydantic models of `schemas.py`, the error codes from `dispatch.ERROR_MESSAGES`, the
rest from the answers and the settings' defaults: nothing here restates the API by hand.
`<script> asyncapi` prints it; `docs/asyncapi.json` is its committed copy, which
`tests/test_asyncapi.py` holds equal to it.

Choices the specification leaves open:
- The document describes the server, so a client event is an operation with action
  `receive`, whose `reply` is the ack; what the server emits is a `send` operation.
- One channel per Socket.IO namespace, its address the namespace; every namespace runs
  over the same websocket.
- The token is a bearer JWT, but not in an HTTP header: AsyncAPI 3.0 has no scheme type
  for a token in a protocol payload, and `http`/`bearer`/`JWT` says the most about it
  (the description says where it goes). Scopes belong to `oauth2` and `openIdConnect`
  schemes only, and this service needs neither flow nor discovery URL: each receive
  operation lists the scope it needs in the extension `x-scopes` (empty: none).
- Payload schemas are pydantic's JSON Schema; the models they reference are moved to
  `components/schemas`, so that every `$ref` resolves inside the document (AsyncAPI's
  default schema format is a superset of JSON Schema draft 07, which has no `$defs`).
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from pydantic import BaseModel

from .answers import JWT_ALGORITHM, JWT_AUDIENCE, JWT_ISSUER, PROJECT_NAME, SCRIPT, TLS_PROFILE
from .auth import REQUIRED_CLAIMS
from .dispatch import ERROR_MESSAGES, NOTICE_CODES, Registration, Router
from .keys import UnknownKeyError, VerificationKey
from .lifecycle import ADMIN_NAMESPACE, ADMIN_SCOPE
from .schemas import ErrorAck, Notice, OkAck
from .server import SOCKETIO_PATH, Service, build_service
from .settings import ENV_PREFIX, Settings

Document = dict[str, Any]
Mode = Literal["validation", "serialization"]
VERSION: Final = "3.0.0"
SCHEME: Final = "jwt"
SERVER: Final = "development"
_SCHEMAS: Final = "#/components/schemas/"


class _NoKeys:
    """A key source for a server that is only described, never served."""

    async def key_for(self, header: object) -> VerificationKey:
        raise UnknownKeyError("this server only describes itself")


def described_service() -> Service:
    """The service as `create_app` builds it, with the settings' defaults (not the
    environment's: the document must not change with the machine it is made on)."""
    return build_service(Settings.model_construct(), key_source=_NoKeys())


def channel_id(namespace: str) -> str:
    return namespace.strip("/").replace("/", ".") or "main"


def document(version: str, description: str) -> Document:
    """The AsyncAPI document of the service; `version` and `description` are the project's
    (its distribution's metadata)."""
    built = described_service().routers
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {
        "ack.ok": _message("ok", OkAck, schemas, "The ack of a handled event"),
        "ack.error": _message("error", ErrorAck, schemas, "The ack of a refused event"),
    }
    for code in NOTICE_CODES:
        summary = f"The session ends: {ERROR_MESSAGES[code]}"
        messages[f"notice.{code}"] = _message(code, Notice, schemas, summary)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for router in built:
        channel = channel_id(router.namespace)
        channels[channel] = _channel(router, schemas)
        for registration in router.registrations:
            operations[f"{channel}.receive.{registration.event}"] = _receive(channel, registration)
        for sent in router.sent:
            operations[f"{channel}.send.{sent.event}"] = _send(channel, f"server.{sent.event}")
        for code in NOTICE_CODES:
            operations[f"{channel}.send.{code}"] = _send(channel, f"notice.{code}")
    return {
        "asyncapi": VERSION,
        "info": {
            "title": PROJECT_NAME,
            "version": version,
            "description": _info(description),
        },
        "defaultContentType": "application/json",
        "servers": {SERVER: _server()},
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": messages,
            "securitySchemes": {SCHEME: _security_scheme()},
        },
    }


def dumps(doc: Document) -> str:
    """The committed form: two-space JSON, non-ASCII kept, and a final newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _info(description: str) -> str:
    return (
        f"{description}\n\n"
        "Socket.IO (protocol 5) over Engine.IO 4, websocket transport only, over TLS. Each "
        "namespace is a channel. Every client event is acknowledged: the operation's reply "
        'is `{"ok": true, ...}` or `{"ok": false, "error": {"code": C, "message": M}}`, '
        "where C is a stable code to act on. A receive operation's `x-scopes` lists the "
        "scope the token must grant for it (none when empty). When the server ends a "
        "session it sends a notice named by the reason's code, then disconnects.\n\n"
        f"Generated from the code by `{SCRIPT} asyncapi`; do not edit by hand."
    )


def _server() -> dict[str, Any]:
    port = Settings.model_fields["port"].default
    return {
        "host": "localhost:{port}",
        "protocol": "wss",
        "pathname": f"/{SOCKETIO_PATH}/",
        "title": "Development server",
        "description": (
            f"What `{SCRIPT} serve` starts. Connect to `/{SOCKETIO_PATH}/?EIO=4&transport="
            "websocket` (no HTTP long-polling), from an allowed Origin when in a browser, "
            f"over TLS with Mozilla's {TLS_PROFILE} profile."
        ),
        "variables": {
            "port": {
                "default": str(port),
                "description": (
                    f"The TLS port: `{ENV_PREFIX}PORT` or `{SCRIPT} serve --port` changes it."
                ),
            }
        },
        "security": [{"$ref": f"#/components/securitySchemes/{SCHEME}"}],
    }


def _security_scheme() -> dict[str, Any]:
    claims = ", ".join(f"`{claim}`" for claim in REQUIRED_CLAIMS)
    return {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": (
            "A JWT in the Socket.IO CONNECT packet's `auth` payload, exactly "
            '`{"token": "<jwt>"}` (never in a header or the query string), on every '
            f"namespace. Signed with {JWT_ALGORITHM}; issuer `{JWT_ISSUER}` and audience "
            f"`{JWT_AUDIENCE}` by default (settings `{ENV_PREFIX}JWT_ISSUER`, "
            f"`{ENV_PREFIX}JWT_AUDIENCE`); required claims: {claims}. The `scope` claim "
            "(space-separated, or a list) grants the operations' `x-scopes`; the "
            "`rooms` claim lists the rooms the subject may join (names, `prefix*` or `*`). "
            "A refused token gets `connect_error` with the message `unauthorized`. The "
            "session ends when the token expires unless `reauth` renews it."
        ),
    }


def _channel(router: Router, schemas: dict[str, Any]) -> dict[str, Any]:
    namespace = router.namespace
    messages: dict[str, Any] = {}
    for registration in router.registrations:
        messages[f"client.{registration.event}"] = _message(
            registration.event, registration.schema, schemas, mode="validation"
        )
    for sent in router.sent:
        messages[f"server.{sent.event}"] = _message(sent.event, sent.schema, schemas)
    for key in ("ack.ok", "ack.error", *(f"notice.{code}" for code in NOTICE_CODES)):
        messages[key] = {"$ref": f"#/components/messages/{key}"}
    needs = f" Connecting needs the scope `{ADMIN_SCOPE}`." if namespace == ADMIN_NAMESPACE else ""
    return {
        "address": namespace,
        "title": f"Namespace {namespace}",
        "description": f"The Socket.IO namespace `{namespace}`.{needs}",
        "messages": messages,
    }


def _receive(channel: str, registration: Registration) -> dict[str, Any]:
    ref = f"#/channels/{channel}"
    scopes = [registration.scope] if registration.scope is not None else []
    return {
        "action": "receive",
        "channel": {"$ref": ref},
        "title": f"{registration.event} ({registration.namespace})",
        "summary": _summary(registration.schema),
        "messages": [{"$ref": f"{ref}/messages/client.{registration.event}"}],
        "reply": {
            "channel": {"$ref": ref},
            "messages": [
                {"$ref": f"{ref}/messages/ack.ok"},
                {"$ref": f"{ref}/messages/ack.error"},
            ],
        },
        "x-scopes": scopes,
    }


def _send(channel: str, message: str) -> dict[str, Any]:
    ref = f"#/channels/{channel}"
    return {
        "action": "send",
        "channel": {"$ref": ref},
        "messages": [{"$ref": f"{ref}/messages/{message}"}],
    }


def _summary(model: type[BaseModel]) -> str:
    return (model.__doc__ or model.__name__).strip().splitlines()[0]


def _message(
    event: str,
    model: type[BaseModel],
    schemas: dict[str, Any],
    summary: str | None = None,
    *,
    mode: Mode = "serialization",
) -> dict[str, Any]:
    """A message named `event` whose payload is `model`: as the server validates it (a
    client's event) or as it serializes it (what the server sends)."""
    return {
        "name": event,
        "title": event,
        "summary": summary or _summary(model),
        "payload": {"$ref": _SCHEMAS + _schema(model, schemas, mode)},
    }


def _schema(model: type[BaseModel], schemas: dict[str, Any], mode: Mode) -> str:
    """Add `model`'s JSON Schema and those of the models it references to `schemas`;
    returns its name there."""
    found = model.model_json_schema(ref_template=_SCHEMAS + "{model}", mode=mode)
    for name, schema in [*found.pop("$defs", {}).items(), (model.__name__, found)]:
        if schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two schemas named {name}: rename one of the models")
    return model.__name__
