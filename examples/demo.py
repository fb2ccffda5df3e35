"""`make run`: demo data, demo adapters and a demo API key, then the gateway.

Idempotent: data, adapters and the key are created only when missing, so a second
`make run` starts serving in seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_tickets import generate, write_csv

from deskpilot.adapters.registry import Registry
from deskpilot.config import get_settings
from deskpilot.store import Database, authenticate_key, create_api_key

DEMO_TASKS = {"queue": "queue", "priority": "priority"}


def ensure_data(folder: Path) -> Path:
    path = folder / "tickets.csv"
    if not path.is_file():
        print(f"generating demo tickets -> {path}", flush=True)
        write_csv(generate(), path)
    return path


def ensure_adapters(data: Path, tenant: str, registry: Registry) -> None:
    for task, column in DEMO_TASKS.items():
        if registry.champion_version(tenant, task):
            continue
        print(f"training the demo '{task}' classifier (one-off, a few minutes on 2 cores)", flush=True)
        cmd = [
            sys.executable, "-m", "deskpilot.cli", "train", "classifier",
            "--task", task, "--data", str(data), "--label-column", column,
            "--tenant", tenant, "--epochs", "1", "--max-minutes", "4",
        ]  # fmt: skip
        subprocess.run(cmd, check=True)


def ensure_policy(folder: Path, tenant: str) -> Path:
    """The demo helpdesk's routing policy; edit it there, it is read again on change."""
    path = folder / f"{tenant}.yaml"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text((Path(__file__).resolve().parent / "policy.yaml").read_text(encoding="utf-8"))
        print(f"routing policy for tenant '{tenant}' -> {path}", flush=True)
    return path


def ensure_key(folder: Path, db: Database, tenant: str) -> str:
    """The demo key is kept in a 0600 file so repeated runs print the same one."""
    key_file = folder / "api_key"
    with db.session() as session:
        if key_file.is_file():
            key = key_file.read_text(encoding="utf-8").strip()
            if authenticate_key(session, key) is not None:
                return key
        _, key = create_api_key(session, tenant, "demo", ("read", "write"))
    key_file.write_text(key + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    return key


def main() -> None:
    settings = get_settings()
    folder = settings.home / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    tenant = settings.default_tenant
    data = ensure_data(folder)
    ensure_adapters(data, tenant, Registry(settings.adapters_dir))
    db = Database(settings.db_url)
    db.migrate()
    key = ensure_key(folder, db, tenant)
    db.dispose()
    policy = ensure_policy(settings.policies_dir, tenant)

    url = f"http://{settings.host}:{settings.port}"
    print(
        f"""
deskpilot is starting on {url}  (API docs: {url}/docs)
demo API key (tenant '{tenant}'): {key}

try it:
curl -s {url}/v1/classify -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
  -d '{{"task": "queue", "texts": ["I was charged twice for my subscription this month"]}}'

send a ticket through the workflow (routed with {policy}; its helpdesk URL is a
placeholder, so the action shows up as retried in the ticket until you point it at yours):
curl -s {url}/v1/tickets -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \
  -d '{{"subject": "Charged twice", "body": "I was charged twice this month", "external_id": "T-1"}}'
curl -s {url}/v1/tickets/1 -H "Authorization: Bearer {key}"
""",
        flush=True,
    )
    os.execv(sys.executable, [sys.executable, "-m", "deskpilot.cli", "serve"])


if __name__ == "__main__":
    main()
