"""Fault campaign, full size (issue 8): 1,000 documents per profile, counted from the sandbox's store.

    .venv/bin/python benchmarks/bench_campaign.py [--count 1000] [--profile gp|air|both] [--seed 1]

Same harness as the CI-sized test (``tests/fixtures/campaign.py``, ``tests/campaign/test_campaign.py``):
the sandbox and two depositor processes on ONE agent home, every fault of issue 8 (resets before and
after commit, HTTP 500 and 503, SOAP Receiver faults, answers slower than the client timeout), the
depositors ``kill -9``'ed and restarted three times, the sandbox ``kill -9``'ed and restarted twice, two
full-disk episodes on a tmpfs agent home (root only; skipped otherwise, and said so). Prints the figures
table (sent, registered, lost, duplicates, false refusals, stuck, time) and, per profile, what went wrong.
Exit code 0 when every figure is as it must be (0 lost, 0 duplicates, 0 false refusals, 0 stuck), 1
otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.campaign import (  # noqa: E402
    CampaignConfig,
    CampaignResult,
    FaultRates,
    format_table,
    run_campaign,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000, help="documents per profile (default 1000)")
    parser.add_argument("--profile", choices=("gp", "air", "both"), default="both")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sandbox's fault draws")
    parser.add_argument("--workdir", type=Path, help="keep the run here (default: a temporary folder)")
    parser.add_argument("--pause", type=float, default=0.0, help="depositors' pause between documents (s)")
    parser.add_argument("--no-faults", action="store_true", help="the same run without injected faults")
    args = parser.parse_args(argv)
    profiles = ("gp", "air") if args.profile == "both" else (args.profile,)
    base = args.workdir or Path(tempfile.mkdtemp(prefix="ps-agent-campaign-"))
    base.mkdir(parents=True, exist_ok=True)
    pki = base / "pki"
    results: list[CampaignResult] = []
    for profile in profiles:
        config = CampaignConfig(
            profile,
            args.count,
            seed=args.seed,
            faults=FaultRates(seed=args.seed) if args.no_faults else None,
            kill_depositor_at=(0.1, 0.45, 0.8),
            kill_sandbox_at=(0.3, 0.65),
            full_disk_at=(0.55, 0.9),
            full_disk_handings=20,
            resume_every=25,
            pause_s=args.pause,
            run_deadline_s=3600.0,
            resume_deadline_s=300.0,
            resume_idle_s=10.0,
        )
        print(
            f"campagne {profile} : {args.count} documents, graine {args.seed} ({base / profile})", flush=True
        )
        result = run_campaign(config, base / profile, pki)
        print(result.summary(), flush=True)
        results.append(result)
    print()
    print(format_table([r.figures for r in results]))
    return 0 if all(r.figures.ok() and not r.skipped for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
