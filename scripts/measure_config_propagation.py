"""How long a change of the Config resource made through one replica takes to reach another.

Starts two `okura serve` replicas on one PostgreSQL database and one blob directory, then
repeatedly PATCHes spec.readOnly through replica A and times until replica B refuses (or
accepts again) a blob upload. Prints the median and the worst of the rounds.

    .venv/bin/python scripts/measure_config_propagation.py [--rounds 20] [--poll 2s]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.postgres import PG_ADMIN_URL, create_database, drop_database
from tests.support.servers import OkuraServer

CONFIG = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster"


def upload_status(server: OkuraServer) -> int:
    data = os.urandom(64)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = httpx.post(f"{server.url}/v2/measure/config/blobs/uploads/", params={"digest": digest}, content=data)
    return r.status_code


def round_trip(a: OkuraServer, b: OkuraServer, read_only: bool) -> float:
    wanted = 405 if read_only else 201
    start = time.monotonic()
    r = httpx.patch(
        f"{a.url}{CONFIG}",
        content=json.dumps({"spec": {"readOnly": read_only}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    r.raise_for_status()
    while upload_status(b) != wanted:
        if time.monotonic() - start > 30:
            raise SystemExit("replica B did not apply the change within 30 s")
        time.sleep(0.01)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--poll", default="2s", help="instances.config_poll_interval of the replicas")
    parser.add_argument("--database-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    os.environ.setdefault("OKURA_TEST_POSTGRES_URL", args.database_url)
    url = asyncio.run(create_database("okura_measure_config"))
    root = Path(tempfile.mkdtemp(prefix="okura-measure-config-"))
    env = {
        "OKURA_DATABASE_URL": url,
        "OKURA_STORAGE_FILESYSTEM_ROOT": str(root / "blobs"),
        "OKURA_INSTANCES_CONFIG_POLL_INTERVAL": args.poll,
    }
    a = OkuraServer(root / "a", env=env)
    b = OkuraServer(root / "b", env=env)
    try:
        a.start(timeout=60)
        b.start(timeout=60)
        times = [round_trip(a, b, read_only=i % 2 == 0) for i in range(args.rounds)]
    finally:
        a.stop()
        b.stop()
        asyncio.run(drop_database(url))
    print(
        f"config change through A in effect on B (poll {args.poll}, {args.rounds} rounds): "
        f"median {statistics.median(times):.3f} s, worst {max(times):.3f} s, best {min(times):.3f} s"
    )


if __name__ == "__main__":
    main()
