"""The migration graph Lockgate reads without Alembic equals Alembic's own, and a restart at head skips Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lockgate.store.db import _revisions, _script_heads, alembic_config


def test_the_plain_reading_of_the_migrations_equals_alembics() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    theirs = {rev.revision: tuple(rev._all_down_revisions) for rev in script.walk_revisions()}
    assert _revisions() == theirs
    assert _script_heads() == set(script.get_heads())


def test_a_restart_on_a_schema_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    program = f"""
import asyncio, sys
from lockgate.store.db import Store
async def main(): await (await Store({url!r}).open()).aclose()
asyncio.run(main())
print("alembic" in sys.modules)
"""
    first = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    again = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert first.stdout.split()[-1] == "True"  # an empty database is migrated by Alembic
    assert again.stdout.split()[-1] == "False"  # at head: checked with plain SQL only
