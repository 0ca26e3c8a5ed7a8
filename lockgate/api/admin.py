"""Admin routes under /admin: virtual key management (master key or a JWT with the admin role)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/admin", tags=["Admin"])
