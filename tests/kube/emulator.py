"""kmock's KubernetesEmulator, extended with what kopf and the Klio operator rely on.

kmock stores objects and serves discovery; this subclass adds the API server's bookkeeping:
uid / generation / creationTimestamp / resourceVersion, merge and JSON patches (422 on a failed
``test`` op), status-subresource isolation, label selectors on LIST/WATCH, a real LIST
resourceVersion, WATCH from ``?resourceVersion=`` without losing changes, and owner-reference
garbage collection (background propagation).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import datetime
import json
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import enums, k8s, references, rendering

Resource = kmock.resource
ObjectKey = tuple[Resource, str | None, str]


def _speed_up_request_parsing() -> None:
    """Two shortcuts in kmock's parsing of every request, which took half the emulator's CPU in
    a long run (the operator bench); the results are the same.

    - The HTTP method: kmock finds the enum member by scanning all of them, twice per request.
      A spelling always maps to the same member: remember it.
    - The resource, built from keywords only: kmock first checks the (absent) positional
      argument against a typing Protocol, which walks the Protocol's attributes on each call.
      With no positional arguments there is nothing to parse: go straight to the fields.
    """
    scan = vars(enums.method)["guess"].__func__
    members: dict[str, enums.method] = {}

    def guess(cls: type[enums.method], value: Any) -> Any:
        if cls is not enums.method or type(value) is not str:
            return scan(cls, value)
        found = members.get(value)
        if found is None:
            found = members[value] = scan(cls, value)
        return found

    enums.method.guess = classmethod(guess)  # type: ignore[method-assign,assignment]

    parse = references.resource.__init__

    def init(
        self: references.resource,
        arg1: Any = None,
        arg2: Any = None,
        arg3: Any = None,
        /,
        *,
        group: str | None = None,
        version: str | None = None,
        plural: str | None = None,
    ) -> None:
        if arg1 is None and arg2 is None and arg3 is None:
            self.__attrs_init__(group=group, version=version, plural=plural)
        else:
            parse(self, arg1, arg2, arg3, group=group, version=version, plural=plural)

    references.resource.__init__ = init  # type: ignore[method-assign]


_speed_up_request_parsing()

# What the operator and its tests touch: (group/version/plural, kind, namespaced, subresources).
BUILTIN_RESOURCES: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = (
    ("v1/namespaces", "Namespace", False, ("status",)),
    ("v1/configmaps", "ConfigMap", True, ()),
    ("v1/services", "Service", True, ("status",)),
    ("v1/pods", "Pod", True, ("status",)),
    ("v1/events", "Event", True, ()),
    ("v1/serviceaccounts", "ServiceAccount", True, ()),
    ("apps/v1/deployments", "Deployment", True, ("status", "scale")),
    ("batch/v1/jobs", "Job", True, ("status",)),
    ("autoscaling/v2/horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("status",)),
    ("klio.io/v1alpha1/kliojobs", "KlioJob", True, ("status", "scale")),
)
OPTIONAL_RESOURCES: dict[str, tuple[str, str, bool, tuple[str, ...]]] = {
    "monitoring.coreos.com": (
        "monitoring.coreos.com/v1/servicemonitors",
        "ServiceMonitor",
        True,
        (),
    ),
    "keda.sh": ("keda.sh/v1alpha1/scaledobjects", "ScaledObject", True, ("status",)),
}
VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


class UnprocessableEntityError(k8s.KubernetesError):
    """422, as the API server answers a JSON patch whose ``test`` op fails."""


class ConflictError(k8s.KubernetesError):
    """409 on creating an object that exists."""


class NotFoundError(k8s.KubernetesError):
    """404 for an absent object."""


class ForbiddenError(k8s.KubernetesError):
    """403: RBAC refuses the call (see ``KlioKubernetesEmulator.forbidden``)."""


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``None`` removes a key)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Mapping[str, Any], operations: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON patch, leaving `target` as it was: only the containers on an operation's
    path are copied, shallowly (a deep copy of the object was most of the emulator's time per
    patch). A patch that moves or copies values copies the top-level stanzas it touches whole,
    so a value it duplicates is never shared with `target`."""
    paths: list[list[str]] = []
    duplicates = False
    for operation in operations:
        if not isinstance(operation, Mapping):
            raise jsonpatch.InvalidJsonPatch(f"not an operation: {operation!r}")
        op = operation.get("op")
        if op == "test":
            continue
        duplicates = duplicates or op in ("move", "copy")
        for pointer in (operation.get("path"), operation.get("from")):
            if isinstance(pointer, str):
                paths.append(jsonpointer.JsonPointer(pointer).parts)
    if any(not parts for parts in paths):  # the whole document is replaced
        document: Any = copy.deepcopy(dict(target))
    elif duplicates:
        touched = {parts[0] for parts in paths}
        document = {k: copy.deepcopy(v) if k in touched else v for k, v in target.items()}
    else:
        document = dict(target)
        for parts in paths:
            _copy_path(document, parts)
    return jsonpatch.JsonPatch(operations).apply(document, in_place=True)


def _copy_path(document: dict[str, Any], parts: list[str]) -> None:
    """Replace each container on the way to the last part by a shallow copy (a path that does
    not exist stops early: the patch then fails as it would have)."""
    container: Any = document
    for part in parts[:-1]:
        if isinstance(container, dict) and part in container:
            key: Any = part
        elif isinstance(container, list) and part.isdigit() and int(part) < len(container):
            key = int(part)
        else:
            return
        child = container[key]
        if isinstance(child, dict):
            child = dict(child)
        elif isinstance(child, list):
            child = list(child)
        else:
            return
        container[key] = child
        container = child


_SET_TERM = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term.strip() for term in terms if term.strip()]


def label_selector_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Compile a Kubernetes label selector string (equality- and set-based) into a predicate."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split_selector(selector):
        if match := _SET_TERM.match(term):
            key, op, raw = match.groups()
            values = {v.strip() for v in raw.split(",") if v.strip()}
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif "!=" in term:
            key, value = (part.strip() for part in term.split("!=", 1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in term:
            key, value = (part.strip() for part in term.replace("==", "=").split("=", 1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            absent = term[1:].strip()
            checks.append(lambda labels, k=absent: k not in labels)
        else:
            checks.append(lambda labels, k=term: k in labels)
    return lambda labels: all(check(labels) for check in checks)


def _spec_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that makes a new generation: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


@dataclasses.dataclass(frozen=True)
class ApiCall:
    """One object request as RBAC sees it: who, which verb, on which group/resource."""

    agent: str
    verb: str
    group: str
    resource: str  # plural, or plural/subresource


# kmock's action → the RBAC verb (PATCH is the only update method our clients use).
_VERBS = {
    enums.action.LIST: "list",
    enums.action.WATCH: "watch",
    enums.action.FETCH: "get",
    enums.action.CREATE: "create",
    enums.action.UPDATE: "patch",
    enums.action.DELETE: "delete",
}


@attrs.define(kw_only=True)
class KlioKubernetesEmulator(kmock.KubernetesEmulator):
    """A kmock API server that behaves enough like Kubernetes for kopf and the Klio operator."""

    optional_groups: tuple[str, ...] = ()
    _resource_version: int = attrs.field(default=0, init=False)
    _event_log: dict[Resource, list[tuple[int, dict[str, Any]]]] = attrs.field(
        factory=lambda: defaultdict(list), init=False
    )
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _by_resource: dict[Resource, dict[ObjectKey, None]] = attrs.field(
        factory=lambda: defaultdict(dict), init=False
    )
    watched: set[str] = attrs.field(factory=set, init=False)
    """Plurals of the resources some client has started watching (to know a client is up)."""
    watch_selectors: defaultdict[str, set[str | None]] = attrs.field(
        factory=lambda: defaultdict(set), init=False
    )
    """The label selectors of the watches of each plural (None: a watch of everything)."""
    tally: Counter[str] = attrs.field(factory=Counter, init=False)
    """Object requests served, by `<action> <plural>[/<subresource>]` (for benches)."""
    calls: list[ApiCall] = attrs.field(factory=list, init=False)
    """Every object request, with its client's User-Agent (what RBAC must allow)."""
    forbidden: set[tuple[str, str]] = attrs.field(factory=set, init=False)
    """(RBAC verb, plural) pairs refused with 403, as a Role lacking them would."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        declared = list(BUILTIN_RESOURCES)
        declared += [OPTIONAL_RESOURCES[group] for group in self.optional_groups]
        for key, kind, namespaced, subresources in declared:
            self.resources[key] = kmock.ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=namespaced,
                verbs=set(VERBS),
                subresources=set(subresources),
            )

    # -- bookkeeping -------------------------------------------------------------------------

    def _next_version(self) -> int:
        self._resource_version += 1
        return self._resource_version

    def _emit(self, resource: Resource, event_type: str, raw: dict[str, Any], version: int) -> None:
        self._event_log[resource].append((version, {"type": event_type, "object": raw}))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _live(self, key: ObjectKey) -> dict[str, Any] | None:
        if key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key].raw

    def _store(self, key: ObjectKey, raw: dict[str, Any]) -> None:
        # Stored objects are never changed in place afterwards: each version shares the
        # stanzas it did not change with the one before (and with the watch events).
        if key in self.objects:
            self.objects[key].create(raw)  # appends a version: the full new state
        else:
            self.objects[key] = raw
        self._by_resource[key[0]][key] = None

    def _live_of(self, resource: Resource) -> list[dict[str, Any]]:
        objects = [self.objects[key] for key in list(self._by_resource.get(resource, {}))]
        return [obj.raw for obj in objects if not obj.deleted]

    def live_objects(self, resource: Resource | str | None = None) -> list[dict[str, Any]]:
        """Every stored, not deleted object (of one resource if given), for assertions."""
        if resource is not None:
            return self._live_of(Resource(resource) if isinstance(resource, str) else resource)
        return [raw for res in list(self._by_resource) for raw in self._live_of(res)]

    # -- mutations ----------------------------------------------------------------------------

    def _create(self, request: rendering.Request) -> str:
        """Store a new object; returns its name (generated from `generateName` if need be)."""
        assert request.resource is not None
        if not isinstance(request.data, Mapping):
            raise UnprocessableEntityError(
                status=422, reason="Invalid", message="body must be an object"
            )
        # Only the metadata is written to: the rest is shared with the recorded request.
        raw = {**request.data, "metadata": dict(request.data.get("metadata") or {})}
        meta = raw["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if not meta.get("name"):
            raise UnprocessableEntityError(
                status=422, reason="Invalid", message="metadata.name: Required"
            )
        namespace = request.namespace or meta.get("namespace")
        key: ObjectKey = (request.resource, namespace, meta["name"])
        if self._live(key) is not None:
            raise ConflictError(
                status=409, reason="AlreadyExists", message=f"{meta['name']} exists"
            )
        version = self._next_version()
        if namespace is not None:
            meta["namespace"] = namespace
        meta.update(
            uid=str(uuid.uuid4()),
            generation=1,
            creationTimestamp=_now(),
            resourceVersion=str(version),
        )
        raw.pop("status", None)  # status is written through the status subresource only
        self._store(key, raw)
        self._emit(request.resource, "ADDED", raw, version)
        return str(meta["name"])

    def _patch(self, request: rendering.Request) -> None:
        assert request.resource is not None and request.name is not None
        key: ObjectKey = (request.resource, request.namespace, request.name)
        current = self._live(key)
        if current is None:
            raise NotFoundError(status=404, reason="NotFound", message=f"{request.name} not found")
        expected = (
            (request.data.get("metadata") or {}).get("resourceVersion")
            if isinstance(request.data, Mapping)
            else None
        )
        if expected is not None and expected != current["metadata"].get("resourceVersion"):
            raise ConflictError(
                status=409, reason="Conflict", message="the object has been modified"
            )
        if isinstance(request.data, list):
            try:
                patched = json_patch(current, request.data)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                raise UnprocessableEntityError(
                    status=422, reason="Invalid", message=str(exc)
                ) from exc
        else:
            patched = merge_patch(current, request.data or {})
        if request.subresource == "status":
            new = {**current, "status": patched.get("status")}
            if new["status"] is None:
                new.pop("status")
        elif request.subresource is None:
            new = {k: v for k, v in patched.items() if k != "status"}
            if "status" in current:
                new["status"] = current["status"]
        else:
            raise UnprocessableEntityError(
                status=422,
                reason="Invalid",
                message=f"subresource {request.subresource} unsupported",
            )
        # A merge patch shares the stanzas it left alone with `current` (and with the watch
        # event that carried it): the metadata written below must be a copy of its own.
        new["metadata"] = dict(new.get("metadata") or {})
        # The server owns identity fields, whatever the patch said.
        for field in ("uid", "creationTimestamp", "namespace", "name", "generation"):
            if field in current["metadata"]:
                new["metadata"][field] = current["metadata"][field]
        if new == current:
            return  # a no-op patch neither bumps the version nor emits an event
        if _spec_of(new) != _spec_of(current):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(key, new)
            return
        version = self._next_version()
        meta["resourceVersion"] = str(version)
        self._store(key, new)
        self._emit(request.resource, "MODIFIED", new, version)

    def _delete(self, key: ObjectKey) -> None:
        current = self._live(key)
        if current is None:
            raise NotFoundError(status=404, reason="NotFound", message=f"{key[2]} not found")
        meta = current["metadata"]
        if meta.get("deletionTimestamp"):
            return
        if meta.get("finalizers"):
            new = {**current, "metadata": dict(current["metadata"])}
            version = self._next_version()
            new["metadata"].update(deletionTimestamp=_now(), resourceVersion=str(version))
            self._store(key, new)
            self._emit(key[0], "MODIFIED", new, version)
        else:
            self._remove(key, current)

    def _remove(self, key: ObjectKey, last: dict[str, Any]) -> None:
        version = self._next_version()
        last = {**last, "metadata": {**last["metadata"], "resourceVersion": str(version)}}
        self._store(key, last)
        self.objects[key].delete()
        self._emit(key[0], "DELETED", last, version)
        self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Delete dependents whose owners are all gone (background propagation)."""
        live_keys = [
            key
            for keys in list(self._by_resource.values())
            for key in list(keys)
            if not self.objects[key].deleted
        ]
        live_uids = {self.objects[key].raw["metadata"].get("uid") for key in live_keys}
        for key in live_keys:
            if self.objects[key].deleted:
                continue  # collected by an earlier step of this pass
            owners = self.objects[key].raw.get("metadata", {}).get("ownerReferences") or []
            if owners and not any(ref.get("uid") in live_uids for ref in owners):
                self._delete(key)

    # -- serving ------------------------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # Object requests are served here directly: kmock's reaction routing checks each new
        # request against every request seen so far, which turns a long run quadratic.
        # (So kmock's `<<` reactions apply to discovery and non-Kubernetes paths only.)
        if request.resource is None or request.resource.plural is None or request.action is None:
            return await super()._handle(request)
        self.tally[
            f"{request.action.name} {request.resource.plural}"
            + (f"/{request.subresource}" if request.subresource else "")
        ] += 1
        self.calls.append(
            ApiCall(
                agent=request.headers.get("User-Agent", ""),
                verb=_VERBS[request.action],
                group=request.resource.group or "",
                resource=request.resource.plural
                + (f"/{request.subresource}" if request.subresource else ""),
            )
        )
        call = self.calls[-1]
        if (call.verb, call.resource) in self.forbidden:
            message = f'{call.resource} is forbidden: cannot {call.verb} resource "{call.resource}"'
            raise ForbiddenError(status=403, reason="Forbidden", message=message)
        if request.action == enums.action.WATCH:
            return await self._stream_watch(request)
        async with self._lock:
            created = ""
            if request.action == enums.action.CREATE:
                created = self._create(request)
            elif request.action == enums.action.UPDATE:
                self._patch(request)
            elif request.action == enums.action.DELETE:
                self._delete((request.resource, request.namespace, request.name or ""))
        if request.action == enums.action.LIST:
            payload = await self._serve_list(request)
        elif request.action == enums.action.CREATE:
            payload = self._stored(request, created)
        else:
            payload = self._stored(request, request.name or "")
        return aiohttp.web.json_response(payload)

    def _stored(self, request: rendering.Request, name: str) -> dict[str, Any]:
        """The object as last stored (even if just deleted), or 404."""
        assert request.resource is not None
        namespace = request.namespace
        if request.action == enums.action.CREATE and namespace is None:
            namespace = (request.data.get("metadata") or {}).get("namespace")
        key: ObjectKey = (request.resource, namespace, name)
        if key not in self.objects or self.objects[key].empty:
            raise NotFoundError(status=404, reason="NotFound", message=f"{name} not found")
        obj = self.objects[key]
        if request.action == enums.action.FETCH and obj.deleted:
            raise NotFoundError(status=404, reason="NotFound", message=f"{name} not found")
        return dict(obj.last.raw)

    async def _stream_watch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        assert request._raw_request is not None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        try:
            async for event in self._serve_watch(request):
                if isinstance(event, dict):
                    await response.write(json.dumps(event).encode() + b"\n")
        except ConnectionResetError:  # the client went away
            return response
        await response.write_eof()
        return response

    def _matcher(self, request: rendering.Request) -> Callable[[Mapping[str, Any]], bool]:
        """Does an object fall under the request's namespace, name and label selector?"""
        selector = request.params.get("labelSelector")
        labels_match = label_selector_matcher(selector) if selector else None

        def matches(raw: Mapping[str, Any]) -> bool:
            meta = raw.get("metadata", {})
            if request.namespace is not None and meta.get("namespace") != request.namespace:
                return False
            if request.name is not None and meta.get("name") != request.name:
                return False
            return labels_match is None or labels_match(meta.get("labels") or {})

        return matches

    def _known(self, resource: Resource | None) -> bool:
        if resource in self.resources or resource in self._by_resource:
            return True
        return any(res == resource for res in self._get_resources())

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        if not self._known(request.resource):
            raise k8s.KubernetesResourceNotFoundError()
        assert request.resource is not None
        matches = self._matcher(request)
        async with self._lock:
            items = [raw for raw in self._live_of(request.resource) if matches(raw)]
            version = self._resource_version
        return {"metadata": {"resourceVersion": str(version)}, "items": items}

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""  # send the headers now: the stream is open even if nothing happens
        assert request.resource is not None
        self.watched.add(str(request.resource.plural))
        self.watch_selectors[str(request.resource.plural)].add(request.params.get("labelSelector"))
        since = request.params.get("resourceVersion")
        timeout = request.params.get("timeoutSeconds")
        deadline = asyncio.get_running_loop().time() + float(timeout) if timeout else None
        matches = self._matcher(request)
        async with self._lock:
            log = self._event_log[request.resource]
            if since and since != "0":
                position = next((i for i, (v, _) in enumerate(log) if v > int(since)), len(log))
                replay: list[dict[str, Any]] = []
            else:  # no version: the current state as ADDED, then every change after it
                position = len(log)
                replay = [
                    {"type": "ADDED", "object": raw}
                    for raw in self._live_of(request.resource)
                    if matches(raw)
                ]
        for event in replay:
            yield event
        while True:
            changed = self._changed
            while position < len(log):
                _, event = log[position]
                position += 1
                if matches(event["object"]):
                    yield event
            remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if remaining is not None and remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=remaining)


def force_close_client(url: Any) -> aiohttp.ClientSession:
    """kmock's own client without keep-alive, so server shutdown does not wait for idle sockets."""
    return aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(force_close=True))


@contextlib.asynccontextmanager
async def running_emulator(
    optional_groups: tuple[str, ...] = (),
) -> AsyncIterator[KlioKubernetesEmulator]:
    """Start the emulator on a free localhost port; ``emulator.url`` is the API server's URL."""
    emulator = KlioKubernetesEmulator(optional_groups=optional_groups)
    async with emulator, kmock.Server(emulator, client_fct=force_close_client):
        yield emulator
