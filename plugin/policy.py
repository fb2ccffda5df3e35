"""Per-tenant routing policy (YAML): which tasks run, where labels go, thresholds, overrides.

A helpdesk admin edits this file by hand, so every mistake is reported with its file and
line (``FILE:LINE: dotted.path: message``), all of them at once, and a running server picks
up edits without a restart (:class:`PolicyStore`) while keeping the last good version when
an edit is broken.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tempfile
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from deskpilot.config import Settings
from deskpilot.errors import InputDataError, PolicyError

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
"""Task and system names: the same slugs as adapter task names (adapters/registry.py)."""
TENANT_RE = re.compile(r"^[a-z0-9_-]{1,63}$")
MAX_POLICY_BYTES = 1_000_000
MAX_POLICY_NODES = 100_000
ROUTING_KEYS = ("queue", "group", "assignee")
"""Fields that say who handles a ticket; triage replaces all of them (see tasks/route.py)."""
_SKIP_REFERENCES = "deskpilot.policy.skip_references"

Loc = tuple[str | int, ...]


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError("use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit")
    return value


def _label(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _field_value(value: Any) -> str | int:
    """Outside-system field values are ids: strings or whole numbers, nothing nested."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a string or a whole number")
    return value


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Name = Annotated[str, AfterValidator(_name)]
Label = Annotated[str, AfterValidator(_label)]
Score = Annotated[float, Field(ge=0.0, le=1.0)]
FieldValue = Annotated[str | int, PlainValidator(_field_value)]
Pattern = Annotated[str | None, AfterValidator(_regex)]


class _Model(BaseModel):
    """Typos are errors (``extra="forbid"``); ids written as numbers are read as strings."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


CONNECTOR_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class SystemConfig(_Model):
    """A connected outside system. ``credentials`` names a secret in settings, never holds one."""

    # ours: generic, slack, jira, zendesk, servicenow, erpnext, odoo; or a plugin's name
    # (`deskpilot connectors list`). An unknown name fails when an action is delivered.
    connector: str
    url: str | None = None
    credentials: str | None = None
    options: dict[str, str] = {}

    @field_validator("connector")
    @classmethod
    def _connector_name(cls, value: str) -> str:
        if not CONNECTOR_RE.fullmatch(value):
            raise ValueError(f"{value!r} is no connector name (lowercase letters, digits, '-' or '_')")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an http:// or https:// URL")
        return value


class Destination(_Model):
    """Where a ticket goes in one system: the system's own queue/group/assignee/field ids."""

    system: str
    queue: str | None = None
    group: str | None = None
    assignee: str | None = None
    fields: dict[str, FieldValue] = {}

    @field_validator("fields")
    @classmethod
    def _no_routing_keys(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        clash = [k for k in ROUTING_KEYS if k in value]
        if clash:
            raise ValueError(f"set {', '.join(clash)} as its own key, not under fields")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Destination:
        if not self.as_fields():
            raise ValueError("a destination needs a queue, group, assignee or fields")
        return self

    def as_fields(self) -> dict[str, str | int]:
        """The system field ids this destination sets, routing keys first."""
        out: dict[str, str | int] = {k: v for k in ROUTING_KEYS if (v := getattr(self, k)) is not None}
        out.update(self.fields)
        return out

    def describe(self) -> str:
        """Short human form, e.g. ``helpdesk:queue=billing-team``."""
        return describe_target(self.system, self.as_fields())


class TaskPolicy(_Model):
    """One classifier task: label -> destination, and how sure the model must be."""

    destinations: dict[Label, Destination] = {}
    field: str | None = None
    system: str | None = None
    default: Destination | None = None
    thresholds: dict[Label, Score] = {}
    min_score: Score | None = None
    target_precision: Score | None = None
    abstain_to_triage: bool = True

    @model_validator(mode="after")
    def _does_something(self) -> TaskPolicy:
        if not (self.destinations or self.default or self.field):
            raise ValueError("a task needs destinations, a default or a field to set")
        return self

    def threshold(self, label: str) -> float:
        """The minimum calibrated score for ``label``: its own, else ``min_score``, else 0."""
        return self.thresholds.get(label, self.min_score or 0.0)


class Condition(_Model):
    """When an override applies: every part that is set must match."""

    requester_in: list[str] = []
    requester_domain_in: list[str] = []
    subject_matches: Pattern = None
    text_matches: Pattern = None
    metadata: dict[str, str] = {}

    @field_validator("requester_in", "requester_domain_in")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [v.strip().lower().lstrip("@") for v in value]

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not self.model_dump(exclude_defaults=True):
            raise ValueError(
                "set at least one of requester_in, requester_domain_in, subject_matches, "
                "text_matches, metadata"
            )
        return self


class OverrideRule(_Model):
    """A deterministic rule (e.g. VIP requester -> priority high), applied before the model."""

    name: Label
    when: Condition
    set: dict[Name, Label] = Field(min_length=1)


class RespondPolicy(_Model):
    """Draft replies for routed tickets. Drafts go to people (an internal note or thread reply)
    and are never sent to a customer unless ``send_to_customer`` names the ticket's class."""

    responder: Name = "reply"
    task: Name | None = None
    classes: list[Label] = []
    send_to_customer: list[Label] = []

    def drafts_for(self, labels: dict[str, str | None], first_task: str) -> str | None:
        """The class label when a ticket decided as ``labels`` (task -> label) gets a draft."""
        label = labels.get(self.task or first_task)
        if label is None:
            return None
        return label if not self.classes or label in self.classes else None


DOCUMENT_RECORDS = ("purchase_invoice", "task")


class DocumentDestination(_Model):
    """The ERP record a class of documents becomes, e.g. a draft purchase invoice, or a task in
    a team's project (``queue``: an ERPNext Project name / an Odoo project id)."""

    system: str
    create: Literal["purchase_invoice", "task"] = "task"
    queue: str | None = None
    assignee: str | None = None
    fields: dict[str, FieldValue] = {}

    def as_fields(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {"create": self.create}
        out.update({k: v for k in ("queue", "assignee") if (v := getattr(self, k)) is not None})
        out.update(self.fields)
        return out


class DocumentsPolicy(_Model):
    """Incoming documents: the classifier task, where each class is filed, how sure to be."""

    task: Name = "doctype"
    destinations: dict[Label, DocumentDestination] = {}
    triage: DocumentDestination
    thresholds: dict[Label, Score] = {}
    min_score: Score | None = None

    def threshold(self, label: str) -> float:
        return self.thresholds.get(label, self.min_score or 0.0)


class Policy(_Model):
    """One tenant's routing policy. ``tasks`` order is the order tasks run.

    A tenant that only files documents may leave ``tasks`` empty; then ``triage`` (for
    tickets) may be left out too.
    """

    version: Literal[1] = 1
    systems: dict[Name, SystemConfig] = Field(min_length=1)
    tasks: dict[Name, TaskPolicy] = {}
    triage: Destination | None = None
    overrides: list[OverrideRule] = []
    respond: RespondPolicy | None = None
    documents: DocumentsPolicy | None = None

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Policy:
        if info.context and info.context.get(_SKIP_REFERENCES):
            return self  # parse_policy checks them itself, with line numbers
        problems = reference_problems(self.model_dump())
        if problems:
            raise ValueError("; ".join(f"{dotted(loc)}: {msg}" for loc, msg in problems))
        return self

    def ticket_triage(self) -> Destination:
        """Where unsure tickets go (always set when there are tasks: see the validator)."""
        if self.triage is None:
            raise PolicyError("the routing policy has no triage destination for tickets")
        return self.triage

    def field_system(self, task: str) -> str | None:
        """The system whose ticket gets ``tasks[task].field`` when no destination applies."""
        spec = self.tasks[task]
        if spec.system:
            return spec.system
        return next(iter(self.systems)) if len(self.systems) == 1 else None


def describe_target(system: str, fields: dict[str, Any]) -> str:
    return f"{system}:" + ",".join(f"{k}={v}" for k, v in fields.items())


# --- cross-field checks (on plain data, so they run even when other fields are wrong) ------
def _items(value: Any) -> Iterator[tuple[Any, Any]]:
    return iter(value.items()) if isinstance(value, dict) else iter(())


def _known(names: list[str]) -> str:
    return ", ".join(names) or "none"


def reference_problems(data: Any) -> list[tuple[Loc, str]]:
    """Names that must point at something defined elsewhere in the policy."""
    if not isinstance(data, dict):
        return []
    systems = [str(k) for k, _ in _items(data.get("systems"))]
    tasks = [str(k) for k, _ in _items(data.get("tasks"))]
    problems: list[tuple[Loc, str]] = []

    def system_ref(loc: Loc, value: Any) -> None:
        if isinstance(value, str) and value not in systems:
            problems.append((loc, f"unknown system '{value}' (known: {_known(systems)})"))

    for task, spec in _items(data.get("tasks")):
        if not isinstance(spec, dict):
            continue
        for label, dest in _items(spec.get("destinations")):
            if isinstance(dest, dict):
                system_ref(("tasks", task, "destinations", label, "system"), dest.get("system"))
        if isinstance(spec.get("default"), dict):
            system_ref(("tasks", task, "default", "system"), spec["default"].get("system"))
        system_ref(("tasks", task, "system"), spec.get("system"))
        if spec.get("field") and spec.get("system") is None and len(systems) > 1:
            problems.append(
                (("tasks", task, "field"), f"say which system gets it: add 'system' ({_known(systems)})")
            )
    if isinstance(data.get("triage"), dict):
        system_ref(("triage", "system"), data["triage"].get("system"))
    elif tasks and data.get("triage") is None:
        problems.append((("triage",), "required when there are tasks (where unsure tickets go)"))
    if not tasks and data.get("documents") is None:
        problems.append((("tasks",), "a policy needs tasks (for tickets), documents, or both"))
    documents = data.get("documents")
    if isinstance(documents, dict):
        for label, dest in _items(documents.get("destinations")):
            if isinstance(dest, dict):
                system_ref(("documents", "destinations", label, "system"), dest.get("system"))
        if isinstance(documents.get("triage"), dict):
            system_ref(("documents", "triage", "system"), documents["triage"].get("system"))
    respond = data.get("respond")
    if isinstance(respond, dict) and isinstance(respond.get("task"), str) and respond["task"] not in tasks:
        problems.append((("respond", "task"), f"unknown task '{respond['task']}' (known: {_known(tasks)})"))
    seen: dict[str, int] = {}
    for i, rule in enumerate(data.get("overrides") or []):
        if not isinstance(rule, dict):
            continue
        name = rule.get("name")
        if isinstance(name, str) and name in seen:
            problems.append((("overrides", i, "name"), f"duplicate rule name '{name}' (rule {seen[name]})"))
        elif isinstance(name, str):
            seen[name] = i
        for task, _ in _items(rule.get("set")):
            if str(task) not in tasks:
                problems.append(
                    (("overrides", i, "set", task), f"unknown task '{task}' (known: {_known(tasks)})")
                )
    return problems


# --- parsing with line numbers --------------------------------------------------------------
class PolicyValidationError(PolicyError):
    """Every problem in a policy file, each one ``FILE:LINE: dotted.path: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, order=True)
class _Problem:
    line: int
    path: str
    message: str

    def render(self, filename: str) -> str:
        where = f"{filename}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def dotted(loc: Loc) -> str:
    """``('overrides', 0, 'when')`` -> ``overrides[0].when``."""
    out = ""
    for seg in loc:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else str(seg))
    return out


def _key_text(node: Node) -> str | None:
    return node.value if isinstance(node, ScalarNode) else None


def _line_of(root: Node, loc: Loc) -> int:
    """1-based line of the deepest node along ``loc``; a mapping value is shown at its key."""
    node, line = root, root.start_mark.line
    for seg in loc:
        if isinstance(node, MappingNode):
            pairs = [(k, v) for k, v in node.value if _key_text(k) == str(seg)]
            if not pairs:
                break
            key, node = pairs[-1]  # the constructor keeps the last duplicate too
            line = key.start_mark.line
        elif isinstance(node, SequenceNode) and isinstance(seg, int) and 0 <= seg < len(node.value):
            node = node.value[seg]
            line = node.start_mark.line
        else:
            break
    return line + 1


def _duplicates(node: Node, loc: Loc = (), seen: set[int] | None = None) -> Iterator[_Problem]:
    """Keys given twice (YAML keeps the last one silently); aliased nodes are visited once."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            text = _key_text(key)
            line = key.start_mark.line + 1
            if text is not None and text in first:
                msg = f"duplicate key '{text}' (first at line {first[text]})"
                yield _Problem(line, dotted((*loc, text)), msg)
            elif text is not None:
                first[text] = line
            yield from _duplicates(value, (*loc, text if text is not None else "?"), seen)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicates(item, (*loc, i), seen)


def _expanded_size(node: Node, memo: dict[int, int]) -> int:
    """Nodes after expanding aliases, in linear time: refuses "billion laughs" files."""
    if id(node) not in memo:
        children: list[Node] = []
        if isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, SequenceNode):
            children = list(node.value)
        memo[id(node)] = 1 + sum(_expanded_size(child, memo) for child in children)
    return memo[id(node)]


def _unwrap(tp: Any) -> Any:
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    return tp


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (to list its fields)."""
    tp: Any = Policy
    for seg in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            spec = tp.model_fields.get(str(seg))
            if spec is None:
                return None
            tp = spec.annotation
        elif get_origin(tp) in (dict, list):
            tp = get_args(tp)[-1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _message(error: Any) -> str:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        if model is None:
            return f"unknown field '{loc[-1]}'"
        allowed = list(model.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown field '{loc[-1]}' ({hint}allowed: {', '.join(allowed)})"
    if kind == "missing":
        return "required field is missing"
    msg = str(error["msg"]).removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    value = error.get("input")
    if kind != "value_error" and not isinstance(value, dict | list):
        msg += f" (got {value!r})"
    return msg


def _validation_problems(root: Node, exc: ValidationError) -> Iterator[_Problem]:
    for error in exc.errors():
        loc: Loc = tuple(seg for seg in error["loc"] if seg != "[key]")
        yield _Problem(_line_of(root, loc), dotted(loc), _message(error))


def _compose(text: str) -> tuple[Node | None, Any]:
    """The node tree (for line numbers) and the plain data, from one parse."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


def parse_policy(text: str, filename: str = "<policy>") -> Policy:
    """Validate a policy; raise :class:`PolicyValidationError` listing every problem."""
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise PolicyValidationError([f"{filename}:1: file is larger than {MAX_POLICY_BYTES} bytes"])
    try:
        root, data = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise PolicyValidationError([f"{filename}:{line}: invalid YAML: {what}"]) from None
    except yaml.YAMLError as exc:
        raise PolicyValidationError([f"{filename}:1: invalid YAML: {exc}"]) from None
    if root is None:
        raise PolicyValidationError([f"{filename}:1: the policy is empty"])
    if not isinstance(data, dict):
        line = root.start_mark.line + 1
        raise PolicyValidationError([f"{filename}:{line}: the policy must be a mapping (key: value)"])
    if _expanded_size(root, {}) > MAX_POLICY_NODES:
        raise PolicyValidationError(
            [f"{filename}:1: more than {MAX_POLICY_NODES} values once aliases are expanded"]
        )
    problems = list(_duplicates(root))
    problems += [_Problem(_line_of(root, loc), dotted(loc), msg) for loc, msg in reference_problems(data)]
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(data, context={_SKIP_REFERENCES: True})
    except ValidationError as exc:
        problems += _validation_problems(root, exc)
    if problems or policy is None:
        raise PolicyValidationError([p.render(filename) for p in sorted(set(problems))])
    return policy


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file ({exc.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyValidationError([f"{path}:{line}: not valid UTF-8 text"]) from None


def load_policy(path: Path | str) -> Policy:
    path = Path(path)
    return parse_policy(_read_text(path), filename=str(path))


# --- per-tenant store ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    stamp: tuple[int, int, int]
    policy: Policy | None
    error: str | None


class PolicyStore:
    """``{folder}/{tenant}.yaml``, cached and reloaded when the file changes.

    A broken edit never takes routing down: the last good policy keeps serving and
    :meth:`error` says what is wrong until the file is fixed.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyStore:
        return cls(settings.policies_dir)

    def path(self, tenant: str) -> Path:
        if not TENANT_RE.fullmatch(tenant):
            raise InputDataError(f"invalid tenant {tenant!r}: use 1-63 of a-z, 0-9, '-', '_'")
        return self.folder / f"{tenant}.yaml"

    def get(self, tenant: str) -> Policy | None:
        """The tenant's policy, or None when it has no (valid) policy file."""
        path = self.path(tenant)
        with self._lock:
            try:
                st = path.stat()
            except FileNotFoundError:
                self._entries.pop(tenant, None)
                return None
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            entry = self._entries.get(tenant)
            if entry is None or entry.stamp != stamp:
                entry = self._load(tenant, path, stamp, entry)
                self._entries[tenant] = entry
            return entry.policy

    def error(self, tenant: str) -> str | None:
        """Why the tenant's current file is not in use (None when it is)."""
        self.get(tenant)
        with self._lock:
            entry = self._entries.get(tenant)
            return entry.error if entry else None

    def put(self, tenant: str, text: str) -> Policy:
        """Validate, then replace the tenant's file atomically (readers never see half a file)."""
        path = self.path(tenant)
        policy = parse_policy(text, filename=path.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{tenant}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return policy

    def _load(self, tenant: str, path: Path, stamp: tuple[int, int, int], old: _Entry | None) -> _Entry:
        try:
            return _Entry(stamp, load_policy(path), None)
        except PolicyError as exc:
            kept = old.policy if old else None
            note = "keeping the last good policy" if kept else "no policy in use"
            log.warning("routing policy for tenant %r is invalid (%s):\n%s", tenant, note, exc)
            return _Entry(stamp, kept, str(exc))
