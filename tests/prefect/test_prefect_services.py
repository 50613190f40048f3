"""The real-service fixtures themselves: SLURM runs a batch job, PostgreSQL answers SQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from flint.prefect._postgres import PostgresInstance

import conftest as _root
from services import SlurmService

if not hasattr(_root, "slurm_cluster"):  # until tests/conftest.py imports them
    from services import postgres_server, slurm_cluster  # noqa: F401

pytestmark = pytest.mark.integration


def test_slurm_runs_a_batch_job(slurm_cluster: SlurmService, tmp_path: Path) -> None:
    out = tmp_path / "hello.out"
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\necho hello-from-$SLURM_JOB_ID > {out}\n")
    job_id = slurm_cluster.run("sbatch", "--parsable", "-n", "1", "--mem=100M", "-o", str(tmp_path / "slurm-%j.out"), str(script)).strip()
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert out.read_text().strip() == f"hello-from-{job_id.split(';')[0]}"


def test_postgres_answers_sql(postgres_server: PostgresInstance) -> None:
    import asyncpg

    async def query() -> list[str]:
        conn = await asyncpg.connect(postgres_server.url("postgresql"))
        try:
            rows = await conn.fetch("SELECT extname FROM pg_extension")
            return [r["extname"] for r in rows]
        finally:
            await conn.close()

    assert "pg_trgm" in asyncio.run(query())  # Prefect needs it
    assert postgres_server.password_file.stat().st_mode & 0o777 == 0o600
