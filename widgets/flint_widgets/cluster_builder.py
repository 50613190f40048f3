"""A form for the cluster YAML (:mod:`flint.prefect.clusters`).

The form only builds the mapping a cluster YAML file holds; checking it is
:func:`flint.prefect.clusters.validate_spec` (the loader's validator), previews are
:meth:`ClusterSpec.to_yaml` and :func:`flint.prefect.clusters.job_script`, loading is
:func:`flint.prefect.clusters.load_cluster_spec`.

Examples
--------
>>> b = ClusterBuilder(platform="SLURM")
>>> b.set_values(cores="2", memory="8GB", walltime="01:00:00")
>>> b.spec.cluster_kwargs["cores"]
2
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flint.errors import FlintConfigError
from flint.io import atomic_write_text
from flint.prefect.clusters import (
    ClusterSpec,
    example_specs,
    job_script,
    load_cluster_spec,
    valid_cluster_kwargs,
    validate_spec,
)
from flint_widgets._common import ErrorArea, failed_html, guarded, message_html, pre

__all__ = ["ClusterBuilder", "PLATFORMS", "problems_of", "FORM_SOURCE", "translate_kwargs", "memory_note"]

logger = logging.getLogger(__name__)

#: platform label -> Dask cluster class (``None``: connect to a running scheduler)
PLATFORMS: dict[str, str | None] = {
    "Local": "distributed.LocalCluster",
    "SLURM": "dask_jobqueue.SLURMCluster",
    "PBS": "dask_jobqueue.PBSCluster",
    "SGE": "dask_jobqueue.SGECluster",
    "LSF": "dask_jobqueue.LSFCluster",
    "OAR": "dask_jobqueue.OARCluster",
    "HTCondor": "dask_jobqueue.HTCondorCluster",
    "Moab": "dask_jobqueue.MoabCluster",
    "Scheduler address": None,
}

#: the ``source`` name validate_spec puts in front of messages about the form
FORM_SOURCE = "<form>"


@dataclass(frozen=True)
class _Field:
    key: str
    kind: str  # "int", "str", "bool", "lines"
    label: str
    placeholder: str = ""
    help: str = ""


_LOCAL_FIELDS = (
    _Field("n_workers", "int", "workers", "1", "number of Dask workers started now"),
    _Field("threads_per_worker", "int", "threads/worker", "1", "flint stages run their own threads: keep 1"),
    _Field("processes", "bool", "processes", help="workers in separate processes (False: threads of this kernel)"),
    _Field("memory_limit", "str", "memory/worker", "4GB", "'auto' or an amount with a unit such as 4GB"),
)
_JOBQUEUE_FIELDS = (
    _Field("cores", "int", "cores", "1", "Dask threads per job"),
    _Field("processes", "int", "processes", "1", "Dask worker processes per job"),
    _Field("job_cpu", "int", "job CPUs", "8", "CPUs the batch system gives each job (wsclean uses them)"),
    _Field("memory", "str", "memory", "64GB", "memory per job, with a unit"),
    _Field("walltime", "str", "walltime", "0-04:00:00", "HH:MM:SS or D-HH:MM:SS"),
    _Field("queue", "str", "queue/partition", "work", "the batch queue (SLURM partition)"),
    _Field("account", "str", "account", "", "the project to charge"),
    _Field("interface", "str", "interface", "ib0", "network interface of the workers ('lo' on one machine)"),
    _Field("local_directory", "str", "local dir", "$TMPDIR", "node-local scratch for the workers"),
    _Field("log_directory", "str", "log dir", "flint_logs", "where each job writes its log"),
    _Field("job_extra_directives", "lines", "extra directives", "--qos=normal", "one batch directive per line"),
    _Field("job_script_prologue", "lines", "prologue", "source ~/venv/bin/activate", "shell lines run before the worker, one per line"),
)
_ADAPT_FIELDS = (
    _Field("minimum", "int", "adapt min", "1", "fewest workers adaptive scaling keeps"),
    _Field("maximum", "int", "adapt max", "4", "most workers adaptive scaling starts"),
)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "local": {"n_workers": "1", "threads_per_worker": "1", "processes": True, "memory_limit": "2GB"},
    "jobqueue": {"cores": "1", "processes": "1", "memory": "4GB", "walltime": "01:00:00"},
}
#: neutral values put in place of a bad required field while looking for further problems
_STAND_INS: dict[str, Any] = {"cores": 1, "processes": 1, "memory": "1GB"}
#: keywords dask-jobqueue refuses at Start although its signature has them: they go in scheduler_options
_JOBQUEUE_VIA_SCHEDULER = ("dashboard_address", "host")
#: the form's CSS: fields with a problem are outlined in red
_CSS = (
    "<style>.flint-invalid input,.flint-invalid textarea{outline:2px solid #c62828;outline-offset:-1px}"
    ".flint-cluster-builder .widget-label{overflow:visible}</style>"
)
_KEY_RE = re.compile(r"^(?:cluster_kwargs|adapt_kwargs)\.(\w+)$|^(address|cluster_class|cluster_kwargs|adapt_kwargs)$")


def _parse(kind: str, raw: Any) -> Any:
    """Form text -> YAML value; ``None`` means "not set". Unparseable text is kept so the validator names it."""
    if kind == "bool":
        return bool(raw)
    text = str(raw).strip()
    if not text:
        return None
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            return text
    if kind == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    return text


def _unparse(kind: str, value: Any) -> Any:
    if kind == "bool":
        return bool(value)
    if value is None:
        return ""
    if kind == "lines":
        return "\n".join(str(v) for v in (value if isinstance(value, list | tuple) else [value]))
    return str(value)


def _problem_key(exc: FlintConfigError) -> tuple[str, str]:
    """(form key, message) of a validate_spec error about the form."""
    text = str(exc)
    prefix = f"{FORM_SOURCE}: "
    if text.startswith(prefix):
        text = text[len(prefix):]
    key, sep, msg = text.partition(": ")
    m = _KEY_RE.match(key) if sep else None
    if m is None:
        return "", str(exc)
    return (m.group(1) or m.group(2)), msg


def problems_of(mapping: Mapping[str, Any]) -> tuple[ClusterSpec | None, dict[str, str]]:
    """Validate a cluster mapping and collect every problem, keyed by the form field.

    Uses :func:`validate_spec` (which stops at the first problem) repeatedly, leaving
    out each offending key, so all fields with a problem are reported at once.
    """
    data: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in mapping.items()}
    problems: dict[str, str] = {}
    stood_in: set[str] = set()
    for _ in range(32):
        try:
            spec = validate_spec(data, source=FORM_SOURCE)
            _check_start_keys(spec)
        except FlintConfigError as exc:
            key, msg = _problem_key(exc)
            if stood_in and any(re.search(rf"\b{k}\b", msg) for k in stood_in):
                # a consequence of a stand-in value (e.g. 'cannot share 1 cores'), not the user's input
                return None, problems
            if key in problems or not key:
                problems.setdefault(key, msg)
                return None, problems
            problems[key] = msg
            removed = False
            for block in ("cluster_kwargs", "adapt_kwargs"):
                sub = data.get(block)
                if isinstance(sub, dict) and key in sub:
                    # a neutral stand-in keeps required keys present, so later checks still run
                    if key in _STAND_INS:
                        sub[key] = _STAND_INS[key]
                        stood_in.add(key)
                    else:
                        del sub[key]
                    removed = True
            if not removed:
                return None, problems
            continue
        return (spec, {}) if not problems else (None, problems)
    return None, problems


def _check_start_keys(spec: ClusterSpec) -> None:
    """Keywords the cluster class has in its signature but refuses when started."""
    if not spec.is_jobqueue:
        return
    for key in _JOBQUEUE_VIA_SCHEDULER:
        if key in spec.cluster_kwargs:
            raise FlintConfigError(
                f"{FORM_SOURCE}: cluster_kwargs.{key}: {spec.cluster_class} takes it only under scheduler_options; "
                f"write 'scheduler_options: {{{key}: {spec.cluster_kwargs[key]!r}}}'"
            )


def translate_kwargs(kwargs: Mapping[str, Any], cluster_class: str) -> tuple[dict[str, Any], list[str]]:
    """Keywords for ``cluster_class`` from those of another class, and what was changed.

    Keywords the class does not accept are dropped; ``dashboard_address``/``host`` move
    into (jobqueue) or out of (LocalCluster) ``scheduler_options``.
    """
    accepted = set(valid_cluster_kwargs(cluster_class))
    jobqueue = cluster_class.startswith("dask_jobqueue.")
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in kwargs.items():
        if jobqueue and key in _JOBQUEUE_VIA_SCHEDULER:
            out.setdefault("scheduler_options", {})[key] = value
            notes.append(f"{key} moved into scheduler_options")
        elif not jobqueue and key == "scheduler_options" and isinstance(value, Mapping):
            for k, v in value.items():
                if k in accepted:
                    out[k] = v
                    notes.append(f"scheduler_options.{k} became {k}")
                else:
                    notes.append(f"dropped scheduler_options.{k}")
        elif key in accepted:
            if key == "scheduler_options" and isinstance(value, Mapping) and isinstance(out.get(key), dict):
                out[key].update(value)
            else:
                out[key] = value
        else:
            notes.append(f"dropped {key} ({cluster_class.rsplit('.', 1)[-1]} has no such keyword)")
    return out, notes


def memory_note(spec: ClusterSpec, script: str) -> str:
    """Why the job script asks for a different amount of memory than typed (dask-jobqueue rounds to GiB)."""
    from dask.utils import format_bytes, parse_bytes

    memory = spec.cluster_kwargs.get("memory")
    m = re.search(r"--mem=(\S+)|-l mem=(\S+)|#BSUB -M (\S+)", script)
    if not memory or m is None:
        return ""
    asked = next(g for g in m.groups() if g)
    try:
        typed = parse_bytes(str(memory))
    except ValueError:
        return ""
    unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", asked.upper().removesuffix("B").removesuffix("I"))
    if unit is None or abs(parse_bytes(f"{unit[1]}{unit[2]}iB" if unit[2] else unit[1]) - typed) < 1024**2:
        return ""  # the batch system gets what was typed (its K/M/G are powers of 1024)
    return (
        f"memory {memory} = {format_bytes(typed)} (powers of 1024); the batch system is asked for {asked}: "
        "dask-jobqueue writes whole GiB, rounded. Type e.g. 32GiB for exactly --mem=32G."
    )


class ClusterBuilder:
    """The cluster YAML form: platform, fields, adaptive bounds, previews, load/save, presets.

    Parameters
    ----------
    platform
        Initial platform, a key of :data:`PLATFORMS`.
    preset
        Name of a packaged example spec (``flint/data/clusters``) to load first.

    Attributes
    ----------
    widget
        The ``VBox`` to display (``display(builder)`` works too).
    spec
        The validated :class:`ClusterSpec`, or ``None`` while the form has problems.
    problems
        ``{field: message}`` for every field with a problem.
    """

    def __init__(self, platform: str = "Local", preset: str | None = None) -> None:
        import ipywidgets as w

        self.errors = ErrorArea()
        self.spec: ClusterSpec | None = None
        self.problems: dict[str, str] = {}
        self._listeners: list[Callable[[ClusterBuilder], None]] = []
        self._updating = False

        self.platform = w.Dropdown(options=list(PLATFORMS), value=platform, description="platform")
        self.platform.add_class("flint-platform")
        self.preset = w.Dropdown(options=example_specs(), description="preset")
        self.use_preset = w.Button(description="Use preset", icon="download")
        self.address = w.Text(description="address", placeholder="tcp://10.0.0.5:8786")
        self.fields: dict[str, dict[str, Any]] = {"local": {}, "jobqueue": {}, "adapt": {}}
        self._messages: dict[str, Any] = {}
        self._rows: dict[str, Any] = {}
        self._kinds: dict[tuple[str, str], str] = {}
        for group, defs in (("local", _LOCAL_FIELDS), ("jobqueue", _JOBQUEUE_FIELDS), ("adapt", _ADAPT_FIELDS)):
            for f in defs:
                self.fields[group][f.key] = self._make_field(w, group, f)
        self.adapt = w.Checkbox(value=False, description="adaptive scaling", indent=False)
        self.extra = w.Textarea(
            description="other keywords",
            style={"description_width": "110px"},
            placeholder="YAML mapping of any other cluster keyword, e.g.\njob_name: flint-worker",
            layout=w.Layout(width="100%", height="60px"),
        )
        self._messages["address"] = w.HTML()
        self._messages["extra"] = w.HTML()
        self._messages["cluster_class"] = w.HTML()
        self.status = w.HTML()
        self.status.add_class("flint-spec-status")
        self.platform_note = w.HTML()
        self.platform_note.add_class("flint-platform-note")
        self.memory_note = w.HTML()
        self._platform_seen = platform
        self.path = w.Text(description="YAML file", placeholder="cluster.yaml", layout=w.Layout(width="50%"))
        self.load_button = w.Button(description="Load", icon="folder-open")
        self.save_button = w.Button(description="Save", icon="save")
        self.file_message = w.HTML()
        self.yaml_preview = w.HTML()
        self.script_preview = w.HTML()
        previews = w.Tab(children=[self.yaml_preview, self.script_preview])
        previews.set_title(0, "YAML")
        previews.set_title(1, "job script")

        self._local_box = w.VBox([self._rows[f"local.{f.key}"] for f in _LOCAL_FIELDS])
        self._jobqueue_box = w.VBox([self._rows[f"jobqueue.{f.key}"] for f in _JOBQUEUE_FIELDS])
        self._address_box = w.HBox([self.address, self._messages["address"]])
        adapt_box = w.VBox([self.adapt, *(self._rows[f"adapt.{f.key}"] for f in _ADAPT_FIELDS)])
        self.widget = w.VBox(
            [
                w.HTML("<b>Cluster specification</b>" + _CSS),
                w.HBox([self.platform, self.preset, self.use_preset]),
                self.platform_note,
                self._messages["cluster_class"],
                self._local_box,
                self._jobqueue_box,
                self._address_box,
                adapt_box,
                self.extra,
                self._messages["extra"],
                self.status,
                w.HBox([self.path, self.load_button, self.save_button]),
                self.file_message,
                previews,
                self.memory_note,
                self.errors.output,
            ]
        )
        self.widget.add_class("flint-cluster-builder")
        self.set_values(**_DEFAULTS["local"])
        self.set_values(**_DEFAULTS["jobqueue"])

        self.platform.observe(guarded(self.errors, "platform")(self._on_platform), names="value")
        self.adapt.observe(self._on_change, names="value")
        self.extra.observe(self._on_change, names="value")
        self.address.observe(self._on_change, names="value")
        for field_widgets in self.fields.values():
            for widget in field_widgets.values():
                widget.observe(self._on_change, names="value")
        self.use_preset.on_click(guarded(self.errors, "preset")(lambda _b: self.load(self.preset.value)))
        self.load_button.on_click(guarded(self.errors, "load")(lambda _b: self.load(self.path.value)))
        self.save_button.on_click(guarded(self.errors, "save")(lambda _b: self.save(self.path.value)))
        if preset is not None:
            self.load(preset)
        else:
            self.refresh()

    # ------------------------------------------------------------------ construction

    def _make_field(self, w: Any, group: str, f: _Field) -> Any:
        style = {"description_width": "110px"}
        if f.kind == "bool":
            widget = w.Checkbox(value=True, description=f.label, style=style)
        elif f.kind == "lines":
            widget = w.Textarea(description=f.label, placeholder=f.placeholder, style=style, layout=w.Layout(width="480px", height="52px"))
        else:
            widget = w.Text(description=f.label, placeholder=f.placeholder, style=style, layout=w.Layout(width="320px"))
        widget.tooltip = f"{f.key}: {f.help}" if f.help else f.key
        widget.add_class(f"flint-field-{f.key}")
        msg = w.HTML()
        msg.add_class(f"flint-msg-{f.key}")
        self._messages[f"{group}.{f.key}"] = msg
        self._rows[f"{group}.{f.key}"] = w.HBox([widget, msg])
        self._kinds[(group, f.key)] = f.kind
        return widget

    def _on_platform(self, change: Any) -> None:
        """Platform switched: carry over the 'other keywords' the new class accepts (and say what changed)."""
        if self._updating:
            return
        cls = self.cluster_class
        label = {"distributed.LocalCluster": "local", "dask_jobqueue.SLURMCluster": "slurm"}.get(cls or "")
        if label in self.preset.options:
            self.preset.value = label  # the preset box follows the platform
        notes: list[str] = []
        if cls is not None:
            try:
                extra = self._extra_kwargs()
            except FlintConfigError:
                extra = {}
            if extra:
                kept, notes = translate_kwargs(extra, cls)
                self._updating = True
                try:
                    self.extra.value = yaml.safe_dump(kept, sort_keys=False).strip() if kept else ""
                finally:
                    self._updating = False
        self.refresh()  # first: the note then says the form shows the new platform's fields
        self.platform_note.value = (
            message_html(f"switched to {change['new']}: " + "; ".join(notes), ok=True) if notes else ""
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ state

    @property
    def cluster_class(self) -> str | None:
        """The Dask cluster class of the chosen platform (``None``: a scheduler address)."""
        return PLATFORMS[self.platform.value]

    @property
    def valid(self) -> bool:
        """True when the form describes a valid spec."""
        return self.spec is not None

    def visible_fields(self) -> list[str]:
        """Keys of the fields shown for the current platform (others are not written)."""
        cls = self.cluster_class
        if cls is None:
            return []
        group = "local" if cls.endswith("LocalCluster") else "jobqueue"
        accepted = set(valid_cluster_kwargs(cls))
        return [k for k in self.fields[group] if k in accepted]

    def set_values(self, **values: Any) -> None:
        """Set form fields by key (strings as typed; ``adapt`` min/max via ``minimum``/``maximum``)."""
        self._updating = True
        try:
            for key, value in values.items():
                hits = [(g, ws[key]) for g, ws in self.fields.items() if key in ws]
                if key in {"adapt"}:
                    self.adapt.value = bool(value)
                    continue
                if key == "address":
                    self.address.value = str(value or "")
                    continue
                if not hits:
                    raise FlintConfigError(f"{FORM_SOURCE}: the form has no field {key!r}; put it under 'other keywords'")
                for group, widget in hits:
                    kind = self._kinds[(group, key)]
                    if group == "local" and key == "processes" and not isinstance(value, bool):
                        continue
                    if group == "jobqueue" and key == "processes" and isinstance(value, bool):
                        continue
                    widget.value = _unparse(kind, value)
        finally:
            self._updating = False
        self.refresh()

    def mapping(self) -> dict[str, Any]:
        """The cluster YAML mapping the form describes (not yet validated)."""
        cls = self.cluster_class
        if cls is None:
            return {"address": self.address.value.strip() or None}
        group = "local" if cls.endswith("LocalCluster") else "jobqueue"
        kwargs: dict[str, Any] = {}
        for key in self.visible_fields():
            value = _parse(self._kinds[(group, key)], self.fields[group][key].value)
            if value is not None and value != []:
                kwargs[key] = value
        kwargs.update(self._extra_kwargs())
        out: dict[str, Any] = {"cluster_class": cls, "cluster_kwargs": kwargs}
        if self.adapt.value:
            adapt = {k: _parse("int", self.fields["adapt"][k].value) for k in ("minimum", "maximum")}
            out["adapt_kwargs"] = {k: v for k, v in adapt.items() if v is not None}
        return out

    def _extra_kwargs(self) -> dict[str, Any]:
        text = self.extra.value.strip()
        if not text:
            return {}
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FlintConfigError(f"{FORM_SOURCE}: other keywords: not valid YAML ({getattr(exc, 'problem', exc)}); write 'key: value' lines") from None
        if not isinstance(data, dict):
            raise FlintConfigError(f"{FORM_SOURCE}: other keywords: must be 'key: value' lines (got {data!r})")
        return data

    def set_spec(self, spec: ClusterSpec) -> None:
        """Fill the form from a spec (keywords without a field go to 'other keywords')."""
        label = next((k for k, v in PLATFORMS.items() if v == spec.cluster_class), None)
        if spec.address is None and label is None:
            raise FlintConfigError(f"{spec.source}: cluster_class: the form has no platform for {spec.cluster_class}; edit the YAML file directly")
        self._updating = True
        try:
            self.platform.value = label if spec.address is None else "Scheduler address"
            if spec.address is not None:
                self.address.value = spec.address
            else:
                group = "local" if spec.is_local else "jobqueue"
                for key, widget in self.fields[group].items():
                    widget.value = _unparse(self._kinds[(group, key)], spec.cluster_kwargs.get(key, True if self._kinds[(group, key)] == "bool" else None))
                rest = {k: v for k, v in spec.cluster_kwargs.items() if k not in self.fields[group]}
                self.extra.value = yaml.safe_dump(rest, sort_keys=False).strip() if rest else ""
            self.adapt.value = bool(spec.adapt_kwargs)
            for key in ("minimum", "maximum"):
                self.fields["adapt"][key].value = _unparse("int", (spec.adapt_kwargs or {}).get(key))
        finally:
            self._updating = False
        self.refresh()

    # ------------------------------------------------------------------ actions

    def load(self, path: str | os.PathLike[str]) -> ClusterSpec:
        """Load a cluster YAML file (or packaged preset name) into the form."""
        self.file_message.value = ""
        try:
            if not str(path).strip():
                raise FlintConfigError("no YAML file given; type a path such as cluster.yaml or pick a preset")
            spec = load_cluster_spec(path)
            self.set_spec(spec)
        except Exception as exc:
            self.file_message.value = failed_html(exc)
            raise
        self.platform_note.value = ""
        self.file_message.value = message_html(f"loaded {spec.source}", ok=True)
        return spec

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the form's spec as YAML (only when the form is valid)."""
        self.file_message.value = ""
        try:
            if not str(path).strip():
                raise FlintConfigError("no YAML file given; type a path such as cluster.yaml")
            if self.spec is None:
                raise FlintConfigError(f"the form has problems ({', '.join(self.problems)}); fix them before saving")
            out = atomic_write_text(Path(path).expanduser(), self.spec.to_yaml())
        except Exception as exc:
            self.file_message.value = failed_html(exc)
            raise
        self.file_message.value = message_html(f"saved {out}", ok=True)
        return out

    def on_change(self, callback: Callable[[ClusterBuilder], None]) -> None:
        """Call ``callback(builder)`` whenever the spec or its problems change."""
        self._listeners.append(callback)

    def _on_change(self, _change: Any = None) -> None:
        if not self._updating:
            guarded(self.errors, "refresh")(self.refresh)()

    def refresh(self) -> None:
        """Re-validate the form, update the inline messages and previews, notify listeners."""
        cls = self.cluster_class
        is_local = bool(cls and cls.endswith("LocalCluster"))
        self._local_box.layout.display = "" if is_local else "none"
        self._jobqueue_box.layout.display = "" if cls and not is_local else "none"
        self._address_box.layout.display = "" if cls is None else "none"
        visible = set(self.visible_fields())
        for key in self.fields["jobqueue"]:
            self._rows[f"jobqueue.{key}"].layout.display = "" if key in visible else "none"
        for key in ("minimum", "maximum"):
            self._rows[f"adapt.{key}"].layout.display = "" if self.adapt.value else "none"

        try:
            mapping = self.mapping()
        except FlintConfigError as exc:
            self.spec, self.problems, mapping = None, {"extra": str(exc).split(": ", 2)[-1]}, {}
        else:
            self.spec, self.problems = problems_of(mapping)
        self._show_messages(is_local)
        if self.spec is not None:
            self.status.value = message_html("✓ valid cluster spec", ok=True)
            self.yaml_preview.value = pre(self.spec.to_yaml())
        else:
            n = len(self.problems)
            self.status.value = message_html(f"{n} problem{'s' if n != 1 else ''}: fix the fields marked in red")
            self.yaml_preview.value = pre(yaml.safe_dump(mapping, sort_keys=False) if mapping else "")
        self.save_button.disabled = self.spec is None
        script = self._script_text()
        self.script_preview.value = pre(script)
        note = memory_note(self.spec, script) if self.spec is not None and self.spec.is_jobqueue else ""
        self.memory_note.value = message_html(note, ok=True) if note else ""
        for callback in self._listeners:
            callback(self)

    def _show_messages(self, is_local: bool) -> None:
        group = "local" if is_local else "jobqueue"
        shown: set[str] = set()
        for key, msg in self.problems.items():
            target = None
            if f"{group}.{key}" in self._messages:
                target = f"{group}.{key}"
            elif f"adapt.{key}" in self._messages:
                target = f"adapt.{key}"
            elif key in ("address", "extra", "cluster_class"):
                target = key
            else:
                target = "extra"  # a keyword typed under 'other keywords'
                msg = f"{key}: {msg}"
            self._messages[target].value = message_html(msg)
            shown.add(target)
        for name, widget in self._messages.items():
            if name not in shown:
                widget.value = ""
        for group, widgets in self.fields.items():
            for key, widget in widgets.items():
                if f"{group}.{key}" in shown:
                    widget.add_class("flint-invalid")
                else:
                    widget.remove_class("flint-invalid")
        for target, widget in (("extra", self.extra), ("address", self.address)):
            (widget.add_class if target in shown else widget.remove_class)("flint-invalid")

    def _script_text(self) -> str:
        spec = self.spec
        if spec is None:
            return "(fix the problems above to see the job script)"
        if not spec.is_jobqueue:
            return f"(no job script: {spec.cluster_class or spec.address} does not submit batch jobs)"
        log_dir = spec.cluster_kwargs.get("log_directory")
        if not log_dir:
            return job_script(spec)
        # dask-jobqueue creates log_directory when it builds a job: never while the user types
        with tempfile.TemporaryDirectory(prefix="flint-preview-") as tmp:
            stand_in = os.path.join(tmp, "logs")
            preview = dataclasses.replace(spec, cluster_kwargs={**spec.cluster_kwargs, "log_directory": stand_in})
            return job_script(preview).replace(stand_in, str(log_dir))
