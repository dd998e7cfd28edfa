"""Breaking changes between two OpenAPI documents of one API version (oasdiff's question, for
the parts this API uses; oasdiff itself is a Go binary that no registry here ships).

`breaking(old, new)` lists, as readable lines, what a client written against `old` would trip
over in `new`:

- an operation removed, or a success status it answered removed;
- a request that `old` accepted and `new` refuses: a parameter or body property newly
  required or removed, a narrower type (other type, fewer enum values, a shorter maximum
  length, a smaller maximum, a new or changed pattern);
- a response that no longer has what `old` promised: a property removed, a required property
  optional, a wider type (other type, more enum values), a required header gone.

What only adds (operations, optional parameters, response properties, headers) passes. `$ref`s
are followed, each schema pair compared once.
"""

from __future__ import annotations

from typing import Any

_SUCCESS = ("200", "201", "202", "204", "304")
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class _Diff:
    def __init__(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.old, self.new = old, new
        self.found: list[str] = []
        self._seen: set[tuple[int, int, str]] = set()

    def resolve(self, document: dict[str, Any], node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def operations(self) -> None:
        for path, old_ops in self.old.get("paths", {}).items():
            new_ops = self.new.get("paths", {}).get(path)
            for method in (m for m in old_ops if m in _METHODS):
                where = f"{method.upper()} {path}"
                if new_ops is None or method not in new_ops:
                    self.found.append(f"{where}: operation removed")
                    continue
                self.operation(where, old_ops[method], new_ops[method])

    def operation(self, where: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        old_security = self._schemes(self.old, old)
        new_security = self._schemes(self.new, new)
        if old_security is not None and new_security is not None:
            lost = old_security - new_security
            if lost:
                self.found.append(f"{where}: no longer accepts {', '.join(sorted(lost))}")
        self.parameters(where, old.get("parameters", []), new.get("parameters", []))
        old_body = self.resolve(self.old, old.get("requestBody"))
        new_body = self.resolve(self.new, new.get("requestBody"))
        if new_body and new_body.get("required") and not (old_body and old_body.get("required")):
            self.found.append(f"{where}: request body now required")
        if old_body and new_body:
            for media, content in old_body.get("content", {}).items():
                theirs = new_body.get("content", {}).get(media)
                if theirs is None:
                    self.found.append(f"{where}: request body {media} no longer accepted")
                    continue
                self.schema(f"{where} request", content.get("schema"), theirs.get("schema"), True)
        for status, old_response in old.get("responses", {}).items():
            new_response = new.get("responses", {}).get(status)
            if new_response is None:
                if status in _SUCCESS:
                    self.found.append(f"{where}: response {status} removed")
                continue
            self.response(f"{where} {status}", old_response, new_response)

    @staticmethod
    def _schemes(document: dict[str, Any], operation: dict[str, Any]) -> set[str] | None:
        """The ways to call it: each security requirement's schemes ("" for none)."""
        requirements = operation.get("security", document.get("security"))
        if requirements is None:
            return None
        return {"+".join(sorted(r)) or "no credentials" for r in requirements}

    def parameters(self, where: str, old: list[Any], new: list[Any]) -> None:
        def keyed(document: dict[str, Any], items: list[Any]) -> dict[tuple[str, str], Any]:
            resolved = [self.resolve(document, item) for item in items]
            return {  # header names are case-insensitive; query and path names are not
                (p["in"], p["name"].lower() if p["in"] == "header" else p["name"]): p
                for p in resolved
            }

        old_by, new_by = keyed(self.old, old), keyed(self.new, new)
        for key, parameter in new_by.items():
            if parameter.get("required") and not old_by.get(key, {}).get("required"):
                self.found.append(f"{where}: {key[0]} parameter {parameter['name']} now required")
        for key, parameter in old_by.items():
            theirs = new_by.get(key)
            if theirs is None:
                self.found.append(f"{where}: {key[0]} parameter {parameter['name']} removed")
                continue
            label = f"{where} {key[0]} parameter {parameter['name']}"
            self.schema(label, parameter.get("schema"), theirs.get("schema"), True)

    def response(self, where: str, old: Any, new: Any) -> None:
        old, new = self.resolve(self.old, old), self.resolve(self.new, new)
        for name, header in old.get("headers", {}).items():
            header = self.resolve(self.old, header)
            theirs = new.get("headers", {}).get(name)
            if header.get("required") and (
                theirs is None or not self.resolve(self.new, theirs).get("required")
            ):
                self.found.append(f"{where}: header {name} no longer always sent")
        for media, content in old.get("content", {}).items():
            theirs = new.get("content", {}).get(media)
            if theirs is None:
                self.found.append(f"{where}: {media} body removed")
                continue
            self.schema(f"{where} body", content.get("schema"), theirs.get("schema"), False)

    def schema(self, where: str, old: Any, new: Any, request: bool) -> None:
        """`request`: the client sends it (new must accept all old did); else the server does
        (new must send nothing old clients would not expect)."""
        old, new = self.resolve(self.old, old), self.resolve(self.new, new)
        if not isinstance(old, dict) or not isinstance(new, dict):
            return
        key = (id(old), id(new), str(request))
        if key in self._seen:
            return
        self._seen.add(key)
        old_types, new_types = self.types(self.old, old), self.types(self.new, new)
        if old_types and new_types:
            lost, gained = old_types - new_types, new_types - old_types
            if request and lost:
                self.found.append(f"{where}: type {'/'.join(sorted(lost))} no longer accepted")
            if not request and gained:
                self.found.append(f"{where}: may now be {'/'.join(sorted(gained))}")
        old_enum, new_enum = old.get("enum"), new.get("enum")
        if old_enum is not None or new_enum is not None:
            if (
                request
                and new_enum is not None
                and (old_enum is None or set(map(str, old_enum)) - set(map(str, new_enum)))
            ):
                self.found.append(f"{where}: enum narrowed")
            if (
                not request
                and old_enum is not None
                and (new_enum is None or set(map(str, new_enum)) - set(map(str, old_enum)))
            ):
                self.found.append(f"{where}: enum widened")
        if request:
            for bound in ("maxLength", "maximum", "maxItems"):
                if bound in new and (bound not in old or new[bound] < old[bound]):
                    self.found.append(f"{where}: {bound} lowered")
            for bound in ("minLength", "minimum", "minItems"):
                if bound in new and (bound not in old or new[bound] > old[bound]):
                    self.found.append(f"{where}: {bound} raised")
            if "pattern" in new and new.get("pattern") != old.get("pattern"):
                self.found.append(f"{where}: pattern changed")
            if (
                new.get("additionalProperties") is False
                and old.get("additionalProperties") is not False
            ):
                self.found.append(f"{where}: other properties no longer accepted")
        # A format is a narrowing: breaking when a request gains or changes one, or a response
        # loses or changes one.
        if new.get("format") != old.get("format") and "format" in (new if request else old):
            self.found.append(f"{where}: format {old.get('format')} -> {new.get('format')}")
        self.properties(where, old, new, request)
        for part in ("items", "additionalProperties"):
            if isinstance(old.get(part), dict):
                self.schema(f"{where}[{part}]", old[part], new.get(part), request)
        for combinator in ("anyOf", "oneOf", "allOf"):
            olds, news = old.get(combinator, []), new.get(combinator, [])
            for index, (a, b) in enumerate(zip(olds, news, strict=False)):
                self.schema(f"{where}/{combinator}[{index}]", a, b, request)

    def properties(
        self, where: str, old: dict[str, Any], new: dict[str, Any], request: bool
    ) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        if request:
            for name in sorted(new_required - old_required):
                self.found.append(f"{where}: property {name} now required")
            for name in sorted(set(old_props) - set(new_props)):
                self.found.append(f"{where}: property {name} no longer accepted")
        else:
            for name in sorted(old_props):
                if name not in new_props:
                    self.found.append(f"{where}: property {name} removed")
            for name in sorted(old_required - new_required):
                if name in new_props:
                    self.found.append(f"{where}: property {name} no longer always present")
        for name in sorted(set(old_props) & set(new_props)):
            self.schema(f"{where}.{name}", old_props[name], new_props[name], request)

    def types(self, document: dict[str, Any], schema: dict[str, Any]) -> set[str]:
        """Its JSON types, a union's (`anyOf`/`oneOf`, pydantic's Optional) included."""
        kind = schema.get("type")
        if kind is not None:
            return {kind} if isinstance(kind, str) else set(kind)
        branches = schema.get("anyOf") or schema.get("oneOf") or []
        found: set[str] = set()
        for branch in branches:
            resolved = self.resolve(document, branch)
            if not isinstance(resolved, dict):
                return set()
            inner = self.types(document, resolved)
            if not inner:
                return set()  # a branch of unknown type: no claim about the union
            found |= inner
        return found


def breaking(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diff = _Diff(old, new)
    diff.operations()
    return diff.found
