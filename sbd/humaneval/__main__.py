"""Command line: ``python -m sbd.humaneval {serve,report,export} --run-id <generate run> …``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from sbd.humaneval.schedule import FOILS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sbd.humaneval", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--run-id", required=True, help="the generate run")
        sp.add_argument("--foil", default="generated", choices=FOILS,
                        help="foil: another test sample's generated image, or a random bank image")
        sp.add_argument("--store", default=None,
                        help="study folder (default: 'humaneval/' beside the run's local artifacts)")

    s = sub.add_parser("serve", help="serve the rating page")
    common(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--token", default=None,
                   help="access token raters must give (generated and printed when --host is not loopback)")
    s.add_argument("--seed", type=int, default=None, help="seed of foils and schedules (new study: 0)")
    s.add_argument("--data-dir", default=None, help="data folder holding the bank (foil=bank)")

    r = sub.add_parser("report", help="statistics, logged to the generate run")
    common(r)
    r.add_argument("--judge-run-id", default=None,
                   help="run with test/judge2afc_acc (default: the evaluate run of this generate run)")
    r.add_argument("--no-log", action="store_true", help="print only, log nothing")

    e = sub.add_parser("export", help="write the answers as CSV")
    common(e)
    e.add_argument("--out", default=None, help="CSV path (default: answers-<foil>.csv in the study folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            from sbd.humaneval.server import serve
            from sbd.humaneval.study import open_study

            study = open_study(args.run_id, foil=args.foil, seed=args.seed, store_dir=args.store,
                               data_dir=args.data_dir)
            serve(study, host=args.host, port=args.port, token=args.token)
        elif args.command == "report":
            from sbd.humaneval.report import report

            result = report(args.run_id, foil=args.foil, store_dir=args.store,
                            judge_run_id=args.judge_run_id, log=not args.no_log)
            print(json.dumps(result, default=float))
        else:
            from sbd.humaneval.study import open_study

            study = open_study(args.run_id, foil=args.foil, store_dir=args.store, create=False)
            out = study.store.export_csv(args.out or study.root / f"answers-{args.foil}.csv")
            print(out)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
