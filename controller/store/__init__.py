"""The controller's own database (SQLAlchemy + Alembic migrations; SQLite or PostgreSQL)."""
