"""Blinded two-contour rating studies: the manifest, the study folder and the owner's mapping.

The study folder holds what raters need and nothing that tells the sources apart:

    STUDY_DIR/
      study.json                 cases, scan references, the contour copies' ids and SHA-256
      contours/<case>/<id>.nii.gz every contour re-written on its scan's grid in one format, under a
                                 random id, with a random token in its header: original names,
                                 formats, headers and bytes are gone, so no copy hashes like its source
      answers/<rater>.jsonl      append-only answers, one file per rater

Everything that reveals the mapping is kept out of it, by default in a folder beside it:

    STUDY_DIR-owner/
      mapping.json               which contour id came from which source, and a copy of the manifest
      analysis/                  what `vbmd study analyze` writes

The rating side (``session.py``, the rating widget) reads ``study.json`` only; the analysis needs
the mapping (``mapping_path`` puts it elsewhere; never inside the study folder).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._atomic import fsync_dir
from ..errors import CancelledError, VbmdError
from ..io.nifti import write_nifti
from ..util import sha256_file, timestamp

STUDY_FILE = "study.json"
MAPPING_FILE = "owner/mapping.json"  # where studies made before the owner folder kept it (still read)
OWNER_SUFFIX = "-owner"
SCHEMA_VERSION = 1

# Okabe & Ito (2008) colour-blind-safe pair: distinguishable in all common colour-vision deficiencies.
COLOURS = (("orange", "#E69F00"), ("blue", "#0072B2"))
CONTOUR_NAMES = ("Contour 1", "Contour 2")
MANIFEST_FIELDS = ("case_id", "scan", "contour_a", "source_a", "contour_b", "source_b")


@dataclass(frozen=True)
class ManifestCase:
    case_id: str
    scan: Path
    contour_a: Path
    source_a: str
    contour_b: Path
    source_b: str
    where: str  # "line 3" / "case 2": where the case sits in the manifest, for messages


@dataclass
class ContourRef:
    contour_id: str
    file: str  # relative to the study folder
    sha256: str


@dataclass
class StudyCase:
    case_id: str
    scan: str  # absolute path, or relative to the study folder when copied
    scan_sha256: str
    contours: list[ContourRef]


@dataclass
class Study:
    """What a rater's session may read: no sources anywhere."""

    folder: Path
    study_id: str
    created: str
    allow_back: bool
    cases: list[StudyCase]
    colours: tuple = COLOURS
    extra: dict = field(default_factory=dict)

    @property
    def n_cases(self) -> int:
        return len(self.cases)

    def case(self, case_id: str) -> StudyCase:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise VbmdError(f"study has no case {case_id!r}", self.folder / STUDY_FILE)

    def resolve(self, relative_or_absolute: str) -> Path:
        path = Path(relative_or_absolute)
        return path if path.is_absolute() else self.folder / path


# -- hashing --------------------------------------------------------------------------------------
_HASH_CACHE: dict[tuple, str] = {}


def sha256_path(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder (a DICOM series): names and contents of its files in order."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode() + b"\0")
            digest.update(bytes.fromhex(sha256_path(child)))
        return digest.hexdigest()
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _HASH_CACHE.get(key)
    if cached:
        return cached
    _HASH_CACHE[key] = sha256_file(path)
    return _HASH_CACHE[key]


# -- manifest -------------------------------------------------------------------------------------
def _problems_error(path: Path, problems: list[str]) -> VbmdError:
    noun = "problem" if len(problems) == 1 else "problems"
    return VbmdError(f"{len(problems)} {noun}:\n" + "\n".join(f"  {p}" for p in problems), path)


def owner_folder(study_dir: str | Path) -> Path:
    """The owner's folder beside a study folder (``STUDY_DIR-owner``): mapping and analysis."""
    study_dir = Path(study_dir)
    return study_dir.parent / f"{study_dir.name}{OWNER_SUFFIX}"


def read_manifest(path: str | Path) -> list[ManifestCase]:
    """Parse a CSV or JSON manifest; every problem found is reported, one line each."""
    cases, problems = parse_manifest(path)
    if problems:
        raise _problems_error(Path(path), problems)
    return cases


def parse_manifest(path: str | Path) -> tuple[list[ManifestCase], list[str]]:
    """The manifest's well-formed cases and one line per problem of the others (the file itself
    unreadable or without cases raises)."""
    from .._atomic import non_regular_reason

    path = Path(path)
    reason = non_regular_reason(path)
    if reason:
        raise VbmdError("no such manifest file" if reason == "no such file" else reason, path)
    base = path.parent
    rows: list[tuple[str, dict]] = []
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise VbmdError(f"cannot read manifest ({exc})", path) from None
    if path.suffix.lower() == ".json":
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VbmdError(f"not valid JSON (line {exc.lineno}: {exc.msg})", path) from None
        except RecursionError:
            raise VbmdError("JSON nests too deeply to be a manifest", path) from None
        items = payload.get("cases") if isinstance(payload, dict) else payload
        if not isinstance(items, list):
            raise VbmdError('a JSON manifest is a list of cases or {"cases": [...]}', path)
        for number, item in enumerate(items, 1):
            if not isinstance(item, dict):
                problems.append(f"case {number}: not an object")
                continue
            rows.append((f"case {number}", item))
    else:
        reader = csv.DictReader(text.splitlines())
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [f for f in MANIFEST_FIELDS if f not in header]
        if missing:
            raise VbmdError(
                f"missing column(s) {', '.join(missing)}; a manifest has the columns {', '.join(MANIFEST_FIELDS)}",
                path,
            )
        for number, row in enumerate(reader, 2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
            if not any(row.values()):
                continue
            rows.append((f"line {number}", row))
    if not rows and not problems:
        raise VbmdError("manifest lists no cases", path)

    cases: list[ManifestCase] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        values = {f: str(row.get(f, "") if row.get(f) is not None else "").strip() for f in MANIFEST_FIELDS}
        empty = [f for f in MANIFEST_FIELDS if not values[f]]
        label = f"{where} (case {values['case_id']})" if values["case_id"] else where
        if empty:
            problems.append(f"{label}: empty {', '.join(empty)}")
            continue
        if values["case_id"] in seen:
            problems.append(f"{label}: case id repeats {seen[values['case_id']]}")
            continue
        seen[values["case_id"]] = where
        if values["source_a"].casefold() == values["source_b"].casefold():
            problems.append(f"{label}: both contours have the source {values['source_a']!r}; a study compares two sources")
            continue

        def resolve(p: str) -> Path:
            q = Path(p).expanduser()
            return q if q.is_absolute() else (base / q)

        cases.append(ManifestCase(
            case_id=values["case_id"], scan=resolve(values["scan"]),
            contour_a=resolve(values["contour_a"]), source_a=values["source_a"],
            contour_b=resolve(values["contour_b"]), source_b=values["source_b"], where=label,
        ))
    return cases, problems


def _load_case(case: ManifestCase, problems: list[str]):
    """Read the scan and both contours on its grid; append a line per problem instead of raising."""
    from ..io import read_mask, read_scan
    from ..io.identity import identity_mismatch
    from ..scan import align_mask

    scan = None
    for label, p in (("scan", case.scan), ("contour_a", case.contour_a), ("contour_b", case.contour_b)):
        if not p.exists():
            problems.append(f"{case.where}: {label} {p}: no such file")
    if any(pr.startswith(f"{case.where}:") for pr in problems):
        return None
    try:
        scan = read_scan(case.scan)
    except VbmdError as exc:
        problems.append(f"{case.where}: scan {case.scan}: {exc.problem}")
        return None
    if scan.kind != "image":
        problems.append(f"{case.where}: scan {case.scan}: is a mask, not a greyscale scan")
        return None
    masks = []
    for label, p in (("contour_a", case.contour_a), ("contour_b", case.contour_b)):
        try:
            mask = read_mask(p)
        except VbmdError as exc:
            problems.append(f"{case.where}: {label} {p}: {exc.problem}")
            continue
        mismatch = identity_mismatch(mask, scan)
        if mismatch:
            problems.append(f"{case.where}: {label} {p}: {mismatch}")
            continue
        try:
            mask = scan.with_data(align_mask(mask, scan).astype(np.uint8), kind="mask", unit="unknown")
        except VbmdError as exc:
            problems.append(f"{case.where}: {label} {p}: {exc.problem} (a contour must lie on its scan's grid)")
            continue
        if not np.any(mask.data):
            problems.append(f"{case.where}: {label} {p}: the contour is empty")
            continue
        masks.append(mask)
    if len(masks) != 2:
        return None
    return scan, masks


def _safe_name(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "case"
    return f"{slug[:40]}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def _check_mapping_place(mapping_path: Path, out_dir: Path, inputs: list[Path]) -> None:
    """The mapping may be written only outside the study folder, as a new file, over no input."""
    from .._atomic import check_not_input

    resolved = mapping_path.resolve()
    if resolved == out_dir.resolve() or out_dir.resolve() in resolved.parents:
        raise VbmdError("lies inside the study folder, which raters get: the mapping would unblind them; "
                        "keep it outside (the default is STUDY_DIR-owner/)", mapping_path)
    check_not_input(mapping_path, protect=inputs) if mapping_path.parent.exists() else None
    if mapping_path.exists():
        raise VbmdError("already exists; a new study needs a new mapping file", mapping_path)


def create_study(
    manifest: str | Path,
    out_dir: str | Path,
    *,
    allow_back: bool = False,
    copy_scans: bool = False,
    mapping_path: str | Path | None = None,
    title: str | None = None,
    progress=None,
    cancel=None,
) -> Study:
    """Check every file of the manifest, then build the study folder (atomically: all or nothing).

    Every problem of the manifest (its rows and the files they name) is reported at once. Contours
    are re-written on their scan's grid as NIfTI under random ids, each with a random token in its
    header, so neither their names, formats, headers nor bytes tell the sources apart or match a
    source file. Scans are referenced by absolute path (or copied with ``copy_scans``) with their
    SHA-256. The mapping (with a copy of the manifest) goes to ``mapping_path``, by default
    ``STUDY_DIR-owner/mapping.json``: never into the folder raters get.
    """
    from .._atomic import ensure_output_folder, write_text_atomic

    manifest = Path(manifest)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise VbmdError("study folder exists and is not empty; choose a new folder", out_dir)
    if not out_dir.parent.is_dir():
        raise VbmdError("parent folder does not exist", out_dir.parent)
    default_owner = mapping_path is None
    mapping_path = Path(mapping_path) if mapping_path is not None else owner_folder(out_dir) / "mapping.json"
    cases, problems = parse_manifest(manifest)
    if not cases and not problems:
        raise VbmdError("manifest lists no cases", manifest)
    inputs = [manifest] + [p for c in cases for p in (c.scan, c.contour_a, c.contour_b)]
    _check_mapping_place(mapping_path, out_dir, inputs)
    if default_owner and mapping_path.parent.exists() and any(mapping_path.parent.iterdir()):
        raise VbmdError("owner folder exists and is not empty; choose a new study folder or --mapping FILE",
                        mapping_path.parent)

    total = len(cases) * 2
    for i, case in enumerate(cases):
        if cancel and cancel():
            raise CancelledError()
        if progress:
            progress(i, total, f"checking case {case.case_id}")
        result = _load_case(case, problems)
        del result  # read again while writing; keeps one case in memory at a time
    if problems:
        raise _problems_error(manifest, problems)

    study_id = secrets.token_hex(8)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        public_cases = []
        mapping_cases = []
        for i, case in enumerate(cases):
            if cancel and cancel():
                raise CancelledError()
            if progress:
                progress(len(cases) + i, total, f"writing case {case.case_id}")
            scan, masks = _load_case(case, [])
            folder_name = _safe_name(case.case_id)
            if copy_scans:
                target = work / "scans" / folder_name / case.scan.name
                target.parent.mkdir(parents=True, exist_ok=True)
                if case.scan.is_dir():
                    shutil.copytree(case.scan, target)
                else:
                    shutil.copy2(case.scan, target)
                scan_ref = target.relative_to(work).as_posix()
            else:
                scan_ref = str(case.scan.resolve())
            scan_hash = sha256_path(case.scan)
            sources = [(case.source_a, case.contour_a, masks[0]), (case.source_b, case.contour_b, masks[1])]
            secrets.SystemRandom().shuffle(sources)  # the order in study.json says nothing either
            refs, mapped = [], []
            for source, original, mask in sources:
                contour_id = secrets.token_hex(6)
                rel = f"contours/{folder_name}/{contour_id}.nii.gz"
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                neutral = scan.with_data(
                    mask.data.astype(np.uint8), kind="mask", unit="unknown", calibration=None,
                    header={}, source=None, hand=None,
                )
                # a random token in the header: the copy never hashes like any file a rater could
                # make (e.g. by re-running a reproducible segmentation and writing it the same way)
                write_nifti(work / rel, neutral, token=secrets.token_hex(8))
                digest = sha256_path(work / rel)
                refs.append(ContourRef(contour_id=contour_id, file=rel, sha256=digest))
                mapped.append({
                    "contour_id": contour_id, "source": source, "original": str(original.resolve()),
                    "original_sha256": sha256_path(original), "file": rel, "sha256": digest,
                })
            public_cases.append(StudyCase(case.case_id, scan_ref, scan_hash, refs))
            mapping_cases.append({"case_id": case.case_id, "contours": mapped})

        created = timestamp(utc=True)
        public = {
            "schema": SCHEMA_VERSION,
            "kind": "napari-vbmd blinded two-contour rating study",
            "study_id": study_id,
            "created": created,
            "settings": {"allow_back": bool(allow_back), "colours": [list(c) for c in COLOURS]},
            "cases": [
                {
                    "case_id": c.case_id, "scan": c.scan, "scan_sha256": c.scan_sha256,
                    "contours": [{"contour_id": r.contour_id, "file": r.file, "sha256": r.sha256} for r in c.contours],
                }
                for c in public_cases
            ],
        }
        (work / STUDY_FILE).write_text(json.dumps(public, indent=2) + "\n", encoding="utf-8")
        (work / "answers").mkdir()
        owner = {
            "schema": SCHEMA_VERSION, "study_id": study_id, "created": created, "title": title,
            "study_folder": str(out_dir.resolve()),
            "manifest": str(manifest.resolve()), "manifest_sha256": sha256_path(manifest),
            "manifest_copy": manifest.read_text(encoding="utf-8-sig"),
            "sources": sorted({c.source_a for c in cases} | {c.source_b for c in cases}),
            "cases": mapping_cases,
        }
        for p in work.rglob("*"):
            if p.is_file():
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
        ensure_output_folder(mapping_path.parent)
        write_text_atomic(mapping_path, json.dumps(owner, indent=2) + "\n", protect=inputs)
        try:
            if out_dir.exists():
                out_dir.rmdir()  # empty (checked above)
            os.replace(work, out_dir)
        except BaseException:
            mapping_path.unlink(missing_ok=True)  # no mapping of a study that does not exist
            raise
        fsync_dir(out_dir.parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if progress:
        progress(total, total, "done")
    return load_study(out_dir)


def load_study(folder: str | Path) -> Study:
    """The rater-visible part of a study (never the mapping)."""
    folder = Path(folder)
    path = folder / STUDY_FILE
    if not path.is_file():
        raise VbmdError(f"not a rating study folder (no {STUDY_FILE})", folder)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        cases = [
            StudyCase(
                case_id=str(c["case_id"]), scan=str(c["scan"]), scan_sha256=str(c["scan_sha256"]),
                contours=[ContourRef(str(r["contour_id"]), str(r["file"]), str(r["sha256"])) for r in c["contours"]],
            )
            for c in payload["cases"]
        ]
        settings = payload.get("settings", {})
        study = Study(
            folder=folder, study_id=str(payload["study_id"]), created=str(payload.get("created", "")),
            allow_back=bool(settings.get("allow_back", False)), cases=cases,
            colours=tuple(tuple(c) for c in settings.get("colours", COLOURS)),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, RecursionError, OSError) as exc:
        raise VbmdError(f"damaged study file ({type(exc).__name__}: {exc})", path) from None
    if any(len(c.contours) != 2 for c in cases):
        raise VbmdError("every case must have exactly two contours", path)
    return study


def default_mapping_path(study: Study) -> Path:
    """``STUDY_DIR-owner/mapping.json``; for studies made before it, ``STUDY_DIR/owner/mapping.json``."""
    beside = owner_folder(study.folder) / "mapping.json"
    legacy = study.folder / MAPPING_FILE
    return legacy if not beside.is_file() and legacy.is_file() else beside


def load_mapping(study: Study, mapping_path: str | Path | None = None) -> dict:
    """The owner's mapping {case_id: {contour_id: source}} plus the raw file, checked against the study."""
    path = Path(mapping_path) if mapping_path else default_mapping_path(study)
    if not path.is_file():
        raise VbmdError("no owner mapping here; pass the mapping file the study was created with", path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        by_case = {str(c["case_id"]): {str(m["contour_id"]): str(m["source"]) for m in c["contours"]}
                   for c in payload["cases"]}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise VbmdError(f"damaged mapping file ({exc})", path) from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise VbmdError(f"damaged mapping file ({type(exc).__name__}: {exc})", path) from None
    if payload.get("study_id") != study.study_id:
        raise VbmdError(f"mapping belongs to study {payload.get('study_id')}, not {study.study_id}", path)
    for case in study.cases:
        ids = {r.contour_id for r in case.contours}
        if set(by_case.get(case.case_id, {})) != ids:
            raise VbmdError(f"mapping does not match the study's contours of case {case.case_id}", path)
    return {"sources": payload.get("sources", []), "cases": by_case, "title": payload.get("title")}
