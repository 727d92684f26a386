"""BigQuery's on-demand billing, in front of the emulator (which bills nothing).

What it reproduces, from BigQuery's documentation:
- on-demand bills every column a query references of each table it reads, whatever its
  WHERE or LIMIT, and at least 10 MB per table ("On-demand compute pricing"); here a table
  is billed its configured size whenever a query names it;
- `maximumBytesBilled`: "queries that will have bytes billed beyond this limit will fail
  (without incurring a charge)" (JobConfigurationQuery), with BigQuery's own message
  "Query exceeded limit for bytes billed: L. N or higher required." and reason
  `bytesBilledLimitExceeded` in the failed job's errorResult.
It also keeps every query job it saw, so tests count jobs per table.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gong_sync.cost import MIN_BILLED_PER_TABLE
from tests.faults.bigquery_fault_proxy import FaultProxy

_JOB_PATH = re.compile(r"/projects/[^/]+/(?:jobs|queries)/([^/?]+)")


@dataclass
class Job:
    """One query job as BigQuery would have billed it."""

    job_id: str
    sql: str
    billed: int
    refused: bool
    params: dict[str, Any]  # its scalar parameters, as sent (arrays are left out)


class BigQueryBilling(FaultProxy):
    """Bills query jobs by the tables they name, and refuses those over their cap."""

    def __init__(self, upstream: str, table_bytes: Mapping[str, int]) -> None:
        """Bill each table (by its name in the query) these many bytes."""
        super().__init__(upstream, match="\0nothing")
        self.table_bytes = dict(table_bytes)
        self.jobs: list[Job] = []
        self._by_id: dict[str, Job] = {}
        self._refused: dict[str, dict[str, Any]] = {}
        self._jobs_lock = threading.Lock()
        # Jobs whose result BigQuery no longer keeps (it does about 24 hours): 404 on reads.
        self.expired: set[str] = set()

    def bill(self, sql: str) -> int:
        """What on-demand pricing bills a query over unclustered tables."""
        named = [t for t in self.table_bytes if re.search(rf"\.{re.escape(t)}`", sql)]
        return sum(max(self.table_bytes[t], MIN_BILLED_PER_TABLE) for t in named)

    def jobs_reading(self, table: str) -> list[Job]:
        """The query jobs that named this table."""
        return [j for j in self.jobs if re.search(rf"\.{re.escape(table)}`", j.sql)]

    def page_queries(self) -> list[Job]:
        """The jobs that query a stream's pages (not derivations or lookups)."""
        return [j for j in self.jobs if "@limit" in j.sql]

    def answer(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes] | None:
        """Insert: refuse a query over its cap as BigQuery does; later calls see the same job."""
        found = _JOB_PATH.search(path)
        if method == "GET" and found and found.group(1) in self.expired:
            error = {"code": 404, "message": f"Not found: Job {found.group(1)}",
                     "errors": [{"reason": "notFound", "message": "Not found"}]}  # fmt: skip
            return 404, json.dumps({"error": error}).encode()
        if method == "GET" and found and found.group(1) in self._refused:
            return 200, json.dumps(self._refused[found.group(1)]).encode()
        if method != "POST" or not path.split("?")[0].rstrip("/").endswith("/jobs") or not body:
            return None
        request = json.loads(body)
        query = request.get("configuration", {}).get("query")
        if not query:
            return None
        job_id = request["jobReference"]["jobId"]
        billed = self.bill(query["query"])
        cap = query.get("maximumBytesBilled")
        refused = cap is not None and billed > int(cap)
        params = {
            p["name"]: p["parameterValue"]["value"]
            for p in query.get("queryParameters", [])
            if "value" in p.get("parameterValue", {})
        }
        job = Job(job_id, query["query"], 0 if refused else billed, refused, params)
        with self._jobs_lock:
            self.jobs.append(job)
            self._by_id[job_id] = job
        if not refused:
            return None
        error = {
            "reason": "bytesBilledLimitExceeded",
            "message": f"Query exceeded limit for bytes billed: {cap}."
            f" {billed} or higher required.",
        }
        self._refused[job_id] = {
            "kind": "bigquery#job",
            "jobReference": request["jobReference"],
            "configuration": request["configuration"],
            "status": {"state": "DONE", "errorResult": error, "errors": [error]},
            "statistics": {"query": {"totalBytesBilled": "0", "totalBytesProcessed": "0"}},
        }
        return 200, json.dumps(self._refused[job_id]).encode()

    def edit(self, method: str, path: str, body: bytes | None, data: bytes) -> bytes:
        """Add the bytes a job billed to the emulator's job and query-result answers."""
        if b"jobReference" not in data:
            return data
        try:
            answer = json.loads(data)
        except ValueError:
            return data
        job = self._by_id.get(str(answer.get("jobReference", {}).get("jobId")))
        if job is None:
            return data
        stats = answer.setdefault("statistics", {})
        stats["totalBytesProcessed"] = str(job.billed)
        stats.setdefault("query", {}).update(
            totalBytesBilled=str(job.billed), totalBytesProcessed=str(job.billed)
        )
        if "jobComplete" in answer:  # getQueryResults reports its own total
            answer["totalBytesProcessed"] = str(job.billed)
        return json.dumps(answer).encode()
