"""Run every benchmark and print one summary table: natgrad against its peers.

Usage::

    python benchmarks/run_all.py            # every benchmarks/bench_*.py, full sizes
    python benchmarks/run_all.py --quick    # the short versions (each script's --quick)
    python benchmarks/run_all.py --quick --only krylov woodbury   # prints, writes nothing
    python benchmarks/run_all.py --collect  # runs nothing: summarises benchmarks/results

Every ``benchmarks/bench_<name>.py`` runs in its own subprocess (so one
crashing benchmark does not stop the others, and each starts with a fresh
BLAS thread pool).  From each, one or more summary rows are collected:

    benchmark | natgrad figure | peer figure | ratio | goal | met

The rows come from, in this order of preference:

1. lines the script prints to stdout in the machine-readable form::

       SUMMARY|<benchmark>|<natgrad figure>|<peer figure>|<ratio>|<goal>|<met>

   (``met`` is ``yes``/``no``; free text in the other fields, no ``|``);
2. otherwise, the markdown the script wrote to
   ``benchmarks/results/<name>.md`` (``<name>-quick.md`` with ``--quick``),
   read by a parser for that benchmark when one is registered below, or by a
   generic one that picks up every table row or line that states a goal and
   whether it was met.

The table is printed and written with the machine description (CPU, cores,
BLAS, library versions, date) to ``benchmarks/results/summary.md``
(``summary-quick.md`` for ``--quick``).  The exit status is 1 when a
benchmark script failed (crashed, timed out, or wrote no results); goals that
are not met are reported in the table, not in the exit status.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import RESULTS, machine_info, markdown_table  # noqa: E402

SUMMARY_PREFIX = "SUMMARY|"
HEADER = ["benchmark", "natgrad", "peer", "ratio", "goal", "met"]


@dataclass
class Row:
    benchmark: str
    natgrad: str
    peer: str
    ratio: str
    goal: str
    met: str

    def cells(self) -> list[str]:
        return [self.benchmark, self.natgrad, self.peer, self.ratio, self.goal, self.met]


@dataclass
class Outcome:
    name: str
    returncode: int | None
    seconds: float
    rows: list[Row] = field(default_factory=list)
    source: str = ""
    error: str = ""


# ---------------------------------------------------------------------------
# parsing helpers
# ---------------------------------------------------------------------------


def _clean(text: str) -> str:
    return " ".join(text.replace("|", "/").split())


def _met(text: str) -> str:
    """Normalise a verdict: 'yes', 'no' or the text itself."""
    t = text.strip().lower()
    if t.startswith("not run"):
        return _clean(text)
    if t.startswith(("yes", "met", "true", "ok")):
        return "yes"
    if t.startswith(("no", "not met", "false")):
        return "no"
    return _clean(text)


def parse_summary_lines(stdout: str) -> list[Row]:
    """Rows printed by a script as ``SUMMARY|benchmark|natgrad|peer|ratio|goal|met``."""
    rows = []
    for line in stdout.splitlines():
        if not line.startswith(SUMMARY_PREFIX):
            continue
        parts = line[len(SUMMARY_PREFIX):].split("|")
        parts += [""] * (6 - len(parts))
        b, ng, peer, ratio, goal, met = (p.strip() for p in parts[:6])
        rows.append(Row(b, ng, peer, ratio, goal, _met(met)))
    return rows


def markdown_tables(text: str) -> list[tuple[str, list[dict[str, str]]]]:
    """Every pipe table in ``text`` as ``(heading above it, rows as dicts)``."""
    tables = []
    lines = text.splitlines()
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if (line.startswith("|") and i + 1 < len(lines)
                and re.match(r"^\|(\s*:?-{3,}:?\s*\|)+\s*$", lines[i + 1].strip())):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                rows.append(dict(zip(header, cells)))
                i += 1
            tables.append((heading, rows))
            continue
        i += 1
    return tables


_GOAL_CELL = re.compile(r"^(?P<ratio>.*?)\s*\(goal (?P<goal>[^:]+):\s*(?P<met>yes|no|NO|YES)\)\s*$")


def generic_rows(name: str, text: str) -> list[Row]:
    """Rows from any markdown result: table rows with a "goal met" column or a
    cell ``<ratio> (goal <goal>: yes|NO)``, and lines ``<goal>: met|NOT met ...``."""
    rows: list[Row] = []
    for heading, table in markdown_tables(text):
        for rec in table:
            label = next(iter(rec.values()), "")
            ms_keys = [k for k in rec if k.endswith(" ms") or k.startswith("median")]
            for key, value in rec.items():
                m = _GOAL_CELL.match(value)
                if m:
                    ng = rec.get(ms_keys[0], "") if ms_keys else ""
                    rows.append(Row(f"{name}: {label}", ng, "", _clean(m["ratio"]),
                                    _clean(m["goal"]), _met(m["met"])))
            goal_key = next((k for k in rec if k.lower() in ("goal met", "met", "goal")), None)
            if goal_key:
                ratio_key = next((k for k in rec if "ratio" in k.lower()), None)
                rows.append(Row(f"{name}: {label}", "", "", rec.get(ratio_key, "") if ratio_key else "",
                                "see the benchmark page", _met(rec[goal_key])))
    for line in text.splitlines():
        m = re.match(r"^\s*[-*]\s*(?P<goal>[^:]+?):\s*(?P<met>met|NOT met)\b(?P<rest>.*)$", line)
        if m:
            rows.append(Row(f"{name}", "", "", _clean(m["rest"].lstrip(":( ").rstrip(")")),
                            _clean(m["goal"]), _met(m["met"])))
    return rows


# ---------------------------------------------------------------------------
# parsers for the benchmarks whose markdown has a known layout
# ---------------------------------------------------------------------------


def _krylov(text: str) -> list[Row]:
    goal = "iterations within 2 %, time ratio ≤ 1.05"
    rows = []
    for _, table in markdown_tables(text):
        for rec in table:
            if "goal met" not in rec:
                continue
            rows.append(Row(
                f"krylov: cg {rec.get('problem', '')} vs scipy.sparse.linalg.cg",
                f"{rec.get('natgrad ms', '?')} ms, {rec.get('natgrad iters', '?')} its",
                f"{rec.get('scipy ms', '?')} ms, {rec.get('scipy iters', '?')} its",
                f"{rec.get('time ratio', '?')} (time), {rec.get('iter diff', '?')} (iters)",
                goal, _met(rec["goal met"])))
    return rows


def _nystrom(text: str) -> list[Row]:
    rows = []
    sections = re.split(r"^### ", text, flags=re.M)[1:]
    for sec in sections:
        title = sec.splitlines()[0].strip()
        tables = markdown_tables("### " + sec)
        best = re.search(r"Best rank (\d+): ([\d.]+)× fewer iterations, ([\d.]+)× less wall time "
                         r"\(goal ([^:]+): (\w+)\)", sec)
        if not tables or not best:
            continue
        recs = tables[0][1]
        scipy = next((r for r in recs if r.get("solver", "").startswith("scipy")), {})
        rank = best[1]
        ng = next((r for r in recs if r.get("solver") == "natgrad nystrom_pcg" and r.get("rank") == rank), {})
        rows.append(Row(
            f"nystrom: nystrom_pcg {title} vs scipy cg",
            f"{ng.get('median ms', '?')} ms, {ng.get('iterations', '?')} its (rank {rank})",
            f"{scipy.get('median ms', '?')} ms, {scipy.get('iterations', '?')} its",
            f"{best[2]}× fewer its, {best[3]}× less time",
            _nystrom_goal(best[4]), _met(best[5])))
    return rows


def _nystrom_goal(goal: str) -> str:
    parts = [p.strip() for p in goal.split(" and ")]
    if len(parts) == 2:
        return f"{parts[0]} fewer iterations and {parts[1]} less time"
    return goal


def _woodbury(text: str) -> list[Row]:
    rows = []
    for heading, table in markdown_tables(text):
        if not table or "median ms" not in table[0]:
            continue
        natgrad_ms = table[0].get("median ms", "?")
        for rec in table:
            m = _GOAL_CELL.match(rec.get("ratio", ""))
            if not m:
                continue
            rows.append(Row(
                f"woodbury: {heading} — {rec.get('method', '')}",
                f"{natgrad_ms} ms", f"{rec.get('median ms', '?')} ms",
                _clean(m["ratio"]), _clean(m["goal"]), _met(m["met"])))
    return rows


def _series(text: str) -> list[Row]:
    rows = []
    for line in text.splitlines():
        m = re.match(r"^- (?P<goal>.+?): (?P<met>met|NOT met)\b:?\s*(?P<rest>.*)$", line)
        if not m:
            continue
        rest = m["rest"].strip()
        both = re.search(r"at (\S+) HVPs, plain at (\S+)", rest) or re.search(r"\((\S+) vs (\S+) HVPs\)", rest)
        one = re.search(r"at (\S+) HVPs", rest) or re.search(r"\((\S+) HVPs\)", rest)
        if both:
            natgrad, peer = f"{both[1]} HVPs (Wynn-accelerated)", f"{both[2]} HVPs (plain series)"
            budget = re.search(r"within (\d+) HVPs", rest)
            ratio = f"— = not reached within {budget[1]} HVPs" if budget and "—" in both[0] else ""
        elif one:
            natgrad, peer, ratio = f"{one[1]} HVPs", "", ""
        else:
            natgrad, peer, ratio = _clean(rest), "", ""
        rows.append(Row("series: saddle-free solve, case (a)", natgrad, peer, ratio,
                        _clean(m["goal"]), _met(m["met"])))
    return rows


def _adapters(text: str) -> list[Row]:
    """Section "Adapter overhead vs the raw framework call (goal ≤ N %)": the
    worst overhead per framework."""
    rows = []
    for heading, table in markdown_tables(text):
        goal = re.search(r"goal ≤ ([\d.]+) ?%", heading)
        if not goal or not table or "overhead [%]" not in table[0]:
            continue
        limit = float(goal[1])
        for fw in dict.fromkeys(r.get("framework", "") for r in table):
            recs = [r for r in table if r.get("framework") == fw]
            try:
                worst = max(recs, key=lambda r: float(r["overhead [%]"]))
                overhead = float(worst["overhead [%]"])
            except (KeyError, ValueError):
                continue
            rows.append(Row(
                f"adapters: {fw} adapter vs raw {fw} (worst call: {worst.get('call', '')})",
                f"{worst.get('adapter [s]', '?')} s", f"{worst.get('raw [s]', '?')} s",
                f"{1 + overhead / 100:.3f} ({overhead:+.1f} %)", f"overhead ≤ {goal[1]} %",
                "yes" if overhead <= limit else "no"))
    for heading, table in markdown_tables(text):
        goal = re.search(r"Jacobian .*goal ≤ ([\d.]+) s", heading)
        if not goal or not table:
            continue
        for rec in table:
            try:
                t_torch, t_jax = float(rec["PyTorch [s]"]), float(rec["JAX [s]"])
            except (KeyError, ValueError):
                continue
            rows.append(Row(
                f"adapters: PINN Jacobian (N × P), {rec.get('Laplacian inside the residual', '')}",
                f"PyTorch {t_torch:.3g} s", f"JAX {t_jax:.3g} s", f"{t_torch / t_jax:.2f} (PyTorch / JAX)",
                f"≤ {goal[1]} s", "yes" if max(t_torch, t_jax) <= float(goal[1]) else "no"))
    return rows


def _hmatrix(text: str) -> list[Row]:
    """The scaling table's goals: at n = 20k build time, storage and matvec
    speed-up; at 100k storage; the fitted exponents."""
    goals = {}
    m = re.search(r"Goals at n = 20k: build ≤ ([\d.]+) s, storage ≤ ([\d.]+)% of dense, "
                  r"matvec ≥ ([\d.]+)× faster than dense; at 100k storage ≤ ([\d.]+)%"
                  r"(?: and peak memory ≤ ([\d.]+) GB)?", text)
    if m:
        goals = {"build": float(m[1]), "storage": float(m[2]), "speedup": float(m[3]), "storage100k": float(m[4]),
                 "peak100k": float(m[5]) if m[5] else None}
    rows: list[Row] = []
    for heading, table in markdown_tables(text):
        if heading != "Scaling" or not goals:
            continue
        by_n = {rec.get("n", ""): rec for rec in table}
        rec = by_n.get("20000")
        if rec:
            try:
                build = float(rec["build s"])
                storage = float(rec["storage / dense"].rstrip("%"))
                speedup = float(rec["speed-up"])
            except (KeyError, ValueError):
                pass
            else:
                rows += [
                    Row("hmatrix: build, n = 20k, exp(−r), eps 1e-6", f"{build:g} s", "", "",
                        f"≤ {goals['build']:g} s", "yes" if build <= goals["build"] else "no"),
                    Row("hmatrix: storage, n = 20k", f"{storage:g} % of dense", "dense", "",
                        f"≤ {goals['storage']:g} %", "yes" if storage <= goals["storage"] else "no"),
                    Row("hmatrix: matvec vs dense matvec, n = 20k", f"{rec.get('H matvec ms', '?')} ms",
                        f"{rec.get('dense matvec ms', '?')} ms", f"{speedup:g}× faster",
                        f"≥ {goals['speedup']:g}×", "yes" if speedup >= goals["speedup"] else "no"),
                ]
        big = by_n.get("100000")
        if big is not None:
            try:
                storage = float(big["storage / dense"].rstrip("%"))
            except (KeyError, ValueError):
                rows.append(Row("hmatrix: n = 100k", _clean(next(iter(list(big.values())[1:]), "not run")),
                                "", "", f"storage ≤ {goals['storage100k']:g} %", "no"))
            else:
                rows.append(Row("hmatrix: storage, n = 100k", f"{storage:g} % of dense", "dense", "",
                                f"≤ {goals['storage100k']:g} %",
                                "yes" if storage <= goals["storage100k"] else "no"))
                peak = big.get("peak RSS GB", "")
                if goals["peak100k"] is not None and re.fullmatch(r"[\d.]+", peak):
                    rows.append(Row("hmatrix: peak memory of the build, n = 100k", f"{peak} GB", "", "",
                                    f"≤ {goals['peak100k']:g} GB",
                                    "yes" if float(peak) <= goals["peak100k"] else "no"))
    fit = re.search(r"storage ∝ n\^(\d+(?:\.\d+)?), matvec time ∝ n\^(\d+(?:\.\d+)?)", text)
    if fit:
        worst = max(float(fit[1]), float(fit[2]))
        rows.append(Row("hmatrix: fitted exponents in n (storage, matvec)", f"{fit[1]}, {fit[2]}", "dense: 2, 2",
                        "", "≤ 1.2", "yes" if worst <= 1.2 else "no"))
    return rows


#: benchmark name -> parser of its markdown result (falls back to generic_rows)
PARSERS: dict[str, Callable[[str], list[Row]]] = {
    "krylov": _krylov,
    "nystrom": _nystrom,
    "woodbury": _woodbury,
    "series": _series,
    "adapters": _adapters,
    "hmatrix": _hmatrix,
}


def rows_from_markdown(name: str, text: str) -> list[Row]:
    parser = PARSERS.get(name)
    rows = parser(text) if parser else []
    return rows or generic_rows(name, text)


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------


def discover(only: list[str] | None) -> list[tuple[str, Path]]:
    scripts = sorted(HERE.glob("bench_*.py"))
    found = [(p.stem[len("bench_"):], p) for p in scripts]
    if only:
        unknown = set(only) - {n for n, _ in found}
        if unknown:
            raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; "
                             f"available: {', '.join(n for n, _ in found)}")
        found = [(n, p) for n, p in found if n in only]
    return found


def summary_path(name: str, quick: bool) -> Path:
    """Where a run keeps the SUMMARY lines a benchmark printed."""
    return RESULTS / (f"{name}-quick.summary" if quick else f"{name}.summary")


def collect_one(name: str, quick: bool) -> Outcome:
    """Summary rows of an earlier run, read from ``benchmarks/results`` only."""
    result_path = RESULTS / (f"{name}-quick.md" if quick else f"{name}.md")
    out = Outcome(name, 0, 0.0)
    lines = summary_path(name, quick)
    # the SUMMARY lines of the last run_all run, unless the script has since written newer results itself
    if lines.exists() and not (result_path.exists() and result_path.stat().st_mtime > lines.stat().st_mtime):
        out.rows, out.source = parse_summary_lines(lines.read_text()), str(lines.relative_to(HERE.parent))
    elif result_path.exists():
        out.rows = rows_from_markdown(name, result_path.read_text())
        out.source = str(result_path.relative_to(HERE.parent))
    else:
        out.error = f"no {result_path.name} from an earlier run"
    return out


def run_one(name: str, script: Path, quick: bool, timeout: float | None, verbose: bool) -> Outcome:
    result_path = RESULTS / (f"{name}-quick.md" if quick else f"{name}.md")
    cmd = [sys.executable, str(script)] + (["--quick"] if quick else [])
    start_wall = time.time()
    t0 = time.perf_counter()
    print(f"==> {name}: {' '.join(cmd[1:])}", flush=True)
    try:
        proc = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"})
    except subprocess.TimeoutExpired as exc:
        out = Outcome(name, None, time.perf_counter() - t0, error=f"timed out after {exc.timeout:.0f} s")
        print(f"    {out.error}", flush=True)
        return out
    seconds = time.perf_counter() - t0
    out = Outcome(name, proc.returncode, seconds)
    if verbose:
        sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        out.error = f"exit status {proc.returncode}: {tail}"
    out.rows = parse_summary_lines(proc.stdout)
    if out.rows:
        out.source = "stdout SUMMARY lines"
        # kept beside the markdown so that --collect can summarise this run later
        summary_lines = [line for line in proc.stdout.splitlines() if line.startswith(SUMMARY_PREFIX)]
        summary_path(name, quick).write_text("\n".join(summary_lines) + "\n")
    elif result_path.exists() and result_path.stat().st_mtime >= start_wall - 1:
        out.rows = rows_from_markdown(name, result_path.read_text())
        out.source = str(result_path.relative_to(HERE.parent))
        if not out.rows:
            out.rows = [Row(name, "", "", "", "no goal stated in the results", "")]
    elif not out.error:
        out.error = f"wrote no fresh {result_path.name} and printed no SUMMARY lines"
    status = "ok" if not out.error else out.error.splitlines()[0]
    print(f"    {status} ({seconds:.1f} s, {len(out.rows)} summary rows)", flush=True)
    return out


def summary_markdown(outcomes: list[Outcome], quick: bool, collected: bool = False) -> str:
    rows = [r.cells() for o in outcomes for r in o.rows]
    met = sum(1 for o in outcomes for r in o.rows if r.met == "yes")
    judged = sum(1 for o in outcomes for r in o.rows if r.met in ("yes", "no"))
    runs = [[o.name, "ok" if not o.error else _clean(o.error.splitlines()[0]),
             "collected" if collected else f"{o.seconds:.1f}",
             o.source or "—"] for o in outcomes]
    parts = [
        f"natgrad against its peers, every benchmark {'(--quick)' if quick else '(full sizes)'}"
        f"{', collected from the results each script last wrote' if collected else ''}; "
        f"goals met: {met} of {judged}.  Each row compares natgrad with a peer on the same problem "
        "in the same run; the per-benchmark pages give the details.",
        markdown_table(HEADER, rows) if rows else "No summary rows were collected.",
        "### Runs\n\n" + markdown_table(["benchmark", "status", "seconds", "rows from"], runs),
    ]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run each benchmark with --quick")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (bench_NAME.py)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per benchmark (default: 900 with --quick, none otherwise)")
    parser.add_argument("--verbose", action="store_true", help="echo every benchmark's own output")
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: summarise the results the scripts last wrote to benchmarks/results")
    args = parser.parse_args(argv)
    timeout = args.timeout if args.timeout is not None else (900.0 if args.quick else None)

    benches = discover(args.only)
    if not benches:
        print("no benchmarks/bench_*.py found")
        return 1
    t0 = time.perf_counter()
    if args.collect:
        outcomes = [collect_one(n, args.quick) for n, _ in benches]
    else:
        outcomes = [run_one(n, p, args.quick, timeout, args.verbose) for n, p in benches]
    body = summary_markdown(outcomes, args.quick, args.collect)
    if not args.collect:
        body += f"\n\ntotal time {time.perf_counter() - t0:.1f} s"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("summary-quick.md" if args.quick else "summary.md")
    text = f"# Benchmark summary\n\n{body}\n\n## Machine\n\n{machine_info()}"
    print()
    print(text)
    if args.only:
        print(f"(--only: {path.name} not written; it summarises complete runs)")
    else:
        path.write_text(text)
        print(f"written to {path}")
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
