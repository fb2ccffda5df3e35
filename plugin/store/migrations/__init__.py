"""Alembic environment and revisions; packaged so Database.migrate works from a wheel."""
