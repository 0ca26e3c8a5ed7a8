"""Rate limits: sliding windows on requests and tokens, in process or shared through Redis."""

from lockgate.ratelimit.admission import RateLimitAdmission, build_admission
from lockgate.ratelimit.base import Decision, Limiter, Window, go_duration

__all__ = ["Decision", "Limiter", "RateLimitAdmission", "Window", "build_admission", "go_duration"]
