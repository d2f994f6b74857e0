"""MkDocs hook: the "AsyncAPI reference" page (asyncapi.md), written from docs/asyncapi.json
at each build.

The page follows the AsyncAPI 3.0 structure, not one document: each operation with its
direction (`action`), channel (a Socket.IO namespace), security, messages, reply and `x-`
extensions, and each payload schema as a table of fields, with local `$ref`s followed.
The JSON file itself is published next to the page for download.
tests/test_docs_site.py checks that every operation and message is named on the page.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

PAGE = "asyncapi.md"
SOURCE = "asyncapi.json"
DIRECTIONS = {
    "receive": "client → server (the service receives it)",
    "send": "server → client (the service sends it)",
}
# Schema keywords shown in the constraints column, with the words that introduce them.
CONSTRAINTS = [
    ("format", "format"),
    ("minLength", "min length"),
    ("maxLength", "max length"),
    ("pattern", "pattern"),
    ("minimum", "≥"),
    ("exclusiveMinimum", ">"),
    ("maximum", "≤"),
    ("exclusiveMaximum", "<"),
    ("multipleOf", "multiple of"),
    ("minItems", "min items"),
    ("maxItems", "max items"),
    ("minProperties", "min fields"),
    ("maxProperties", "max fields"),
    ("default", "default"),
]
MAX_DEPTH = 8  # deeper nesting (or a recursive schema) is cut with a note


def code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f"<code>{html.escape(text)}</code>"


def anchor(prefix: str, name: str) -> str:
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


class Document:
    """An AsyncAPI document with its local references (`#/...`) resolved on demand."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def pointer(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise PluginError(f"{SOURCE}: only local references are supported, not {ref!r}")
        node: Any = self.data
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError):
                raise PluginError(f"{SOURCE}: {ref!r} points at nothing") from None
        return node

    def resolve(self, node: Any) -> tuple[Any, str | None]:
        """The node behind any chain of `$ref`s, and the last key of the first one (the
        name the author gave it)."""
        name = None
        seen: set[str] = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if ref in seen:
                raise PluginError(f"{SOURCE}: {ref!r} refers to itself")
            seen.add(ref)
            name = name or ref.rsplit("/", 1)[-1]
            node = self.pointer(ref)
        return node, name


def type_text(doc: Document, schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any" if schema is True else "nothing"
    if "$ref" in schema:
        target, name = doc.resolve(schema)
        return f"{name} ({type_text(doc, target)})"
    if "const" in schema:
        return f"constant {json.dumps(schema['const'])}"
    kind = schema.get("type")
    if isinstance(kind, list):
        text = " or ".join(kind)
    elif kind == "array" and "items" in schema:
        text = f"array of {type_text(doc, schema['items'])}"
    elif kind:
        text = str(kind)
    elif "enum" in schema:
        text = "enum"
    elif "properties" in schema:
        text = "object"
    elif "oneOf" in schema or "anyOf" in schema:
        options = schema.get("oneOf", schema.get("anyOf", []))
        text = "one of: " + "; ".join(type_text(doc, option) for option in options)
    else:
        text = "any"
    return text


def constraints(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    found = [f"{words} {code(schema[key])}" for key, words in CONSTRAINTS if key in schema]
    if "enum" in schema:
        found.append("one of " + ", ".join(code(value) for value in schema["enum"]))
    if schema.get("uniqueItems"):
        found.append("unique items")
    if schema.get("additionalProperties") is False:
        found.append("no other fields")
    if schema.get("deprecated"):
        found.append("deprecated")
    return found


def rows(
    doc: Document, schema: Any, path: str, required: bool | None, depth: int = 0
) -> Iterator[tuple[str, str, str, str, str]]:
    """(field, type, required, constraints, description) for `schema` at `path` and for
    every field below it; a `$ref` is followed to its target's fields."""
    target, _ = doc.resolve(schema) if isinstance(schema, dict) else (schema, None)
    if path:
        description = target.get("description", "") if isinstance(target, dict) else ""
        if isinstance(schema, dict) and "description" in schema:
            description = schema["description"]
        extras = constraints(target)
        if isinstance(schema, dict) and "$ref" in schema:
            extras = constraints(schema) + extras
        mark = {True: "yes", False: "no", None: ""}[required]
        yield path, type_text(doc, schema), mark, "; ".join(extras), html.escape(description)
    if not isinstance(target, dict):
        return
    if depth >= MAX_DEPTH:
        yield f"{path}.…", "", "", "nested deeper than shown here", ""
        return
    merged = merge_all_of(doc, target)
    needed = set(merged.get("required", []))
    prefix = f"{path}." if path else ""
    for name, field in merged.get("properties", {}).items():
        yield from rows(doc, field, f"{prefix}{name}", name in needed, depth + 1)
    if isinstance(merged.get("additionalProperties"), dict):
        yield from rows(doc, merged["additionalProperties"], f"{prefix}*", None, depth + 1)
    for index, item in enumerate(merged.get("prefixItems", [])):
        yield from rows(doc, item, f"{path}[{index}]", None, depth + 1)
    items = merged.get("items")
    if isinstance(items, dict):
        item, _ = doc.resolve(items)
        if isinstance(item, dict) and ("properties" in item or "allOf" in item):
            yield from rows(doc, items, f"{path}[]", None, depth + 1)


def merge_all_of(doc: Document, schema: dict[str, Any]) -> dict[str, Any]:
    """`allOf` parts folded into one schema's properties and required fields."""
    if "allOf" not in schema:
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    properties = dict(merged.get("properties", {}))
    required = list(merged.get("required", []))
    for part in schema["allOf"]:
        part, _ = doc.resolve(part)
        part = merge_all_of(doc, part) if isinstance(part, dict) else {}
        properties.update(part.get("properties", {}))
        required += part.get("required", [])
    return {**merged, "properties": properties, "required": required}


def error_codes(doc: Document, schema: Any, depth: int = 0) -> list[Any]:
    """The values a field named `code` may take anywhere in `schema`: the error codes of an
    acknowledgement envelope such as `{"ok": false, "error": {"code": ...}}`."""
    schema, _ = doc.resolve(schema)
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return []
    found = []
    for name, field in schema.get("properties", {}).items():
        field, _ = doc.resolve(field)
        if name == "code" and isinstance(field, dict):
            found += field.get("enum", []) + ([field["const"]] if "const" in field else [])
        found += error_codes(doc, field, depth + 1)
    for keyword in ("oneOf", "anyOf", "allOf"):
        for part in schema.get(keyword, []):
            found += error_codes(doc, part, depth + 1)
    return found


def table(doc: Document, schema: Any) -> list[str]:
    """The payload as HTML tables: one per alternative of a top-level oneOf/anyOf."""
    target, _ = doc.resolve(schema) if isinstance(schema, dict) else (schema, None)
    for keyword in ("oneOf", "anyOf"):
        if isinstance(target, dict) and keyword in target and "properties" not in target:
            lines = [f"<p>{'One' if keyword == 'oneOf' else 'Any'} of these shapes:</p>", ""]
            for number, option in enumerate(target[keyword], 1):
                resolved, name = doc.resolve(option)
                title = resolved.get("title", name) if isinstance(resolved, dict) else name
                label = f"{number}. {title}" if title else f"{number}."
                lines += [f"<p><em>{html.escape(label)}</em></p>", "", *table(doc, option)]
            return lines
    found = list(rows(doc, schema, "", None))
    if not found:
        return [f"<p>A value of type {html.escape(type_text(doc, schema))}.</p>", ""]
    head = "".join(
        f"<th>{name}</th>" for name in ("field", "type", "required", "constraints", "description")
    )
    body = [
        "<tr>"
        + "".join(f"<td>{cell}</td>" for cell in (code(path), html.escape(kind), *rest))
        + "</tr>"
        for path, kind, *rest in found
    ]
    summary = constraints(target)
    note = [f"<p>The payload: {'; '.join(summary)}.</p>", ""] if summary else []
    return [*note, f"<table><thead><tr>{head}</tr></thead><tbody>", *body, "</tbody></table>", ""]


def message_name(doc: Document, reference: Any) -> tuple[dict[str, Any], str]:
    message, key = doc.resolve(reference)
    if not isinstance(message, dict):
        raise PluginError(f"{SOURCE}: a message is not an object: {reference!r}")
    return message, str(message.get("name") or key or "message")


def with_traits(doc: Document, node: dict[str, Any]) -> dict[str, Any]:
    """A message or operation with its `traits` applied: a trait's fields, unless the node
    sets them itself."""
    merged: dict[str, Any] = {}
    for trait in node.get("traits", []):
        trait, _ = doc.resolve(trait)
        merged.update(trait if isinstance(trait, dict) else {})
    return {**merged, **{key: value for key, value in node.items() if key != "traits"}}


def extensions(node: dict[str, Any]) -> list[str]:
    return [f"- `{key}`: {code(value)}" for key, value in node.items() if key.startswith("x-")]


def message_section(doc: Document, reference: Any, level: str, done: dict[int, str]) -> list[str]:
    """A message with its payload table, or, when the page already shows it (the same
    acknowledgement envelope answers many events), a link to it."""
    message, name = message_name(doc, reference)
    if id(message) in done:
        return [f"Message `{name}`: as [above](#{done[id(message)]}).", ""]
    base = target = anchor("message", name)
    number = 2
    while target in done.values():  # two messages of one name: one per direction, say
        target, number = f"{base}-{number}", number + 1
    done[id(message)] = target
    message = with_traits(doc, message)
    title = f" ({message['title']})" if message.get("title") and message["title"] != name else ""
    lines = [f"{level} Message `{name}`{title} {{#{target}}}", ""]
    for key in ("summary", "description"):
        if message.get(key):
            lines += [str(message[key]), ""]
    if message.get("contentType"):
        lines += [f"Content type: `{message['contentType']}`", ""]
    lines += extensions(message) + ([""] if extensions(message) else [])
    if "headers" in message:
        lines += ["Headers:", "", *table(doc, message["headers"])]
    if "payload" in message:
        payload = message["payload"]
        if isinstance(payload, dict) and "schemaFormat" in payload and "schema" in payload:
            lines += [f"Schema format: `{payload['schemaFormat']}`", ""]
            payload = payload["schema"]
        lines += table(doc, payload)
    else:
        lines += ["No payload.", ""]
    return lines


def security_text(doc: Document, requirements: list[Any]) -> str:
    parts = []
    for requirement in requirements:
        scheme, name = doc.resolve(requirement)
        if not isinstance(scheme, dict):
            continue
        text = f"`{name or scheme.get('type', 'scheme')}` ({scheme.get('type', '?')}"
        if scheme.get("bearerFormat"):
            text += f", {scheme['bearerFormat']}"
        text += ")"
        if scheme.get("scopes"):
            text += ", scopes " + ", ".join(f"`{scope}`" for scope in scheme["scopes"])
        parts.append(text)
    return "; ".join(parts) or "none"


def operation_security(doc: Document, operation: dict[str, Any]) -> str:
    """The operation's own security requirements or, without any, its servers' (AsyncAPI
    3.0: an operation without `security` is guarded by the server's)."""
    if operation.get("security"):
        return security_text(doc, operation["security"])
    servers = [doc.resolve(server)[0] for server in doc.data.get("servers", {}).values()]
    inherited = [
        req for server in servers if isinstance(server, dict) for req in server.get("security", [])
    ]
    return f"the connection's, {security_text(doc, inherited)}" if inherited else "none"


def operation_section(
    doc: Document, op_id: str, operation: dict[str, Any], done: dict[int, str]
) -> list[str]:
    channel, channel_key = doc.resolve(operation.get("channel", {}))
    address = channel.get("address") if isinstance(channel, dict) else None
    first = operation.get("messages") or list((channel or {}).get("messages", {}).values())
    event = ", ".join(f"`{message_name(doc, ref)[1]}`" for ref in first) or "none"
    action = str(operation.get("action", ""))
    lines = [f"### `{op_id}` {{#{anchor('operation', op_id)}}}", ""]
    for key in ("title", "summary", "description"):
        if operation.get(key):
            lines += [str(operation[key]), ""]
    lines += [
        f"- Event: {event}",
        f"- Direction: {DIRECTIONS.get(action, code(action))} (`action: {action}`)",
        f"- Channel: `{channel_key}`, namespace `{address}`"
        if address is not None
        else f"- Channel: `{channel_key}`",
        f"- Security: {operation_security(doc, operation)}",
        *extensions(operation),
        "",
    ]
    for reference in first:
        lines += message_section(doc, reference, "####", done)
    reply = operation.get("reply")
    if reply:
        reply, _ = doc.resolve(reply)
        lines += ["#### Reply (acknowledgement)", ""]
        if "address" in reply:
            place, _ = doc.resolve(reply["address"])
            lines += [f"Address: {code(place.get('location', ''))}", ""]
        if "channel" in reply:
            lines += [f"Channel: `{doc.resolve(reply['channel'])[1]}`", ""]
        lines += extensions(reply) + ([""] if extensions(reply) else [])
        codes = [
            code
            for reference in reply.get("messages", [])
            for code in error_codes(doc, message_name(doc, reference)[0].get("payload"))
        ]
        if codes:
            listed = ", ".join(f"`{c}`" for c in dict.fromkeys(codes))
            lines += [f"Error codes: {listed}.", ""]
        for reference in reply.get("messages", []):
            lines += message_section(doc, reference, "#####", done)
    return lines


def markdown_table(title: str, columns: list[str], rows: list[list[str]]) -> list[str]:
    """A section with one table, or nothing when there are no rows."""
    if not rows:
        return []
    lines = [f"## {title}", "", f"| {' | '.join(columns)} |", "|---" * len(columns) + "|"]
    lines += [f"| {' | '.join(cell.replace(chr(10), ' ') for cell in row)} |" for row in rows]
    return [*lines, ""]


def overview(doc: Document) -> list[str]:
    data = doc.data
    info = data.get("info", {})
    lines = [
        "# AsyncAPI reference",
        "",
        f"The events of **{info.get('title', 'the service')}** {info.get('version', '')},"
        " generated from"
        f" [`{SOURCE}`]({SOURCE}) (AsyncAPI {data.get('asyncapi')}; download it for code"
        ' generators and validators). "Receive" and "send" are the service\'s view: a',
        "client sends what the service receives.",
        "",
    ]
    if info.get("description"):
        lines += [str(info["description"]), ""]
    if data.get("defaultContentType"):
        lines += [f"Default content type: `{data['defaultContentType']}`.", ""]
    lines += extensions(info) + extensions(data) + [""]
    servers = [(name, doc.resolve(server)[0]) for name, server in data.get("servers", {}).items()]
    lines += markdown_table(
        "Servers",
        ["server", "host", "protocol", "path", "security"],
        [
            [
                f"`{name}`",
                f"`{server.get('host', '')}`",
                f"`{server.get('protocol', '')}`",
                f"`{server.get('pathname', '/')}`",
                security_text(doc, server.get("security", [])),
            ]
            for name, server in servers
        ],
    )
    schemes = data.get("components", {}).get("securitySchemes", {})
    if schemes:
        lines += ["## Security schemes", ""]
        for name, scheme in schemes.items():
            scheme, _ = doc.resolve(scheme)
            details = [f"type `{scheme.get('type')}`"]
            for key in ("scheme", "bearerFormat", "in", "name", "openIdConnectUrl"):
                if key in scheme:
                    details.append(f"{key} `{scheme[key]}`")
            if scheme.get("scopes"):
                details.append("scopes " + ", ".join(f"`{s}`" for s in scheme["scopes"]))
            description = f": {scheme['description']}" if scheme.get("description") else ""
            lines.append(f"- `{name}` ({', '.join(details)}){description}")
        lines.append("")
    channels = [
        (name, doc.resolve(channel)[0]) for name, channel in data.get("channels", {}).items()
    ]
    lines += markdown_table(
        "Channels (namespaces)",
        ["channel", "namespace", "messages", "description"],
        [
            [
                f"`{name}`",
                f"`{channel.get('address')}`",
                ", ".join(
                    f"`{message_name(doc, m)[1]}`" for m in channel.get("messages", {}).values()
                ),
                ". ".join(str(channel[k]) for k in ("title", "description") if channel.get(k)),
            ]
            for name, channel in channels
        ],
    )
    return lines


def unused_messages(doc: Document, operations: list[dict[str, Any]]) -> list[Any]:
    """The messages of the channels and components that no operation sends or receives
    (nor replies with), each once, so that the page still names them."""
    seen: set[int] = set()
    for operation in operations:
        reply, _ = doc.resolve(operation.get("reply", {}))
        for reference in [*operation.get("messages", []), *reply.get("messages", [])]:
            seen.add(id(doc.resolve(reference)[0]))
    data = doc.data
    candidates = [
        *(
            m
            for c in data.get("channels", {}).values()
            for m in doc.resolve(c)[0].get("messages", {}).values()
        ),
        *data.get("components", {}).get("messages", {}).values(),
    ]
    unused = []
    for reference in candidates:
        node = id(doc.resolve(reference)[0])
        if node not in seen:
            seen.add(node)
            unused.append(reference)
    return unused


def page(data: dict[str, Any]) -> str:
    version = str(data.get("asyncapi", ""))
    if not version.startswith("3."):
        raise PluginError(f"{SOURCE}: an AsyncAPI 3 document is expected, not version {version!r}")
    doc = Document(data)
    lines = overview(doc)
    operations = data.get("operations", {})
    lines += ["## Operations", ""]
    done: dict[int, str] = {}
    for op_id, operation in operations.items():
        lines += operation_section(doc, op_id, with_traits(doc, doc.resolve(operation)[0]), done)
    others = unused_messages(doc, [doc.resolve(o)[0] for o in operations.values()])
    if others:
        lines += ["## Messages of no operation", ""]
        for message in others:
            lines += message_section(doc, message, "###", done)
    return "\n".join(lines) + "\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    source = Path(config.docs_dir) / SOURCE
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PluginError(f"{source}: {exc}") from None
    files.append(File.generated(config, PAGE, content=page(data)))
    return files
