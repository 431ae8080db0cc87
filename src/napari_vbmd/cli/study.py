"""`vbmd study create|analyze`: blinded two-contour rating studies."""
from __future__ import annotations

import sys

from ._output import print_json, print_table


def register(subparsers) -> None:
    p = subparsers.add_parser("study", help="blinded two-contour rating studies (create, analyze)")
    sub = p.add_subparsers(dest="study_command", metavar="ACTION", required=True)

    c = sub.add_parser("create", help="check a manifest and build a study folder for raters")
    c.add_argument("manifest", help="CSV or JSON: case_id, scan, contour_a, source_a, contour_b, source_b")
    c.add_argument("-o", "--output", required=True, metavar="STUDY_DIR", help="new (or empty) study folder")
    c.add_argument("--allow-back", action="store_true", help="let raters go back to earlier cases")
    c.add_argument("--copy-scans", action="store_true", help="copy the scans into the study folder")
    c.add_argument("--mapping", metavar="FILE",
                   help="where the owner's contour-to-source mapping (with a copy of the manifest) goes; default "
                   "STUDY_DIR-owner/mapping.json, beside the study folder; never inside it")
    c.add_argument("--title", help="a title for the owner's records (never shown to raters)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=run_create)

    a = sub.add_parser("analyze", help="unblind and analyse a study's answers (owner only)")
    a.add_argument("study_dir", metavar="STUDY_DIR")
    a.add_argument("--mapping", metavar="FILE", help="the mapping file, if kept outside the study folder")
    a.add_argument("--out", metavar="DIR", help="where answers.csv, summary.json and the plot go "
                   "(default STUDY_DIR-owner/analysis, beside the study folder)")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=run_analyze)


class _Progress:
    """One self-overwriting line on stderr; `end()` closes it so an error message starts on its own line."""

    def __init__(self):
        self.open = False

    def __call__(self, step, total, message):
        sys.stderr.write(f"\r[{step}/{total}] {message[:60]:<60}")
        self.open = step < total
        if not self.open:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def end(self):
        if self.open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.open = False


def run_create(args) -> int:
    from ..rating import create_study

    progress = None if args.json else _Progress()
    try:
        study = create_study(
            args.manifest, args.output, allow_back=args.allow_back, copy_scans=args.copy_scans,
            mapping_path=args.mapping, title=args.title, progress=progress,
        )
    finally:
        if progress:
            progress.end()
    from ..rating.study import owner_folder

    mapping = args.mapping or str(owner_folder(study.folder) / "mapping.json")
    if args.json:
        print_json({"study_dir": str(study.folder), "study_id": study.study_id, "n_cases": study.n_cases,
                    "allow_back": study.allow_back, "mapping": mapping})
        return 0
    print_table([
        ("study folder (give to raters)", str(study.folder)),
        ("study id", study.study_id),
        ("cases", study.n_cases),
        ("raters may go back", "yes" if study.allow_back else "no"),
        ("owner mapping (keep from raters)", mapping),
    ])
    return 0


def run_analyze(args) -> int:
    from ..rating import analyze_study
    from ..rating.analysis import summary_rows

    summary = analyze_study(args.study_dir, mapping_path=args.mapping, out_dir=args.out)
    if args.json:
        print_json(summary)
        return 0
    print_table(summary_rows(summary))
    return 0
