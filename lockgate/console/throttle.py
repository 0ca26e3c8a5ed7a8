"""The login throttle: failed logins counted per user name and per client address (each a FailureGuard).

Once either is over its limit, every login for that name or from that address gets 429 with
Retry-After, a right password too (or the 401/200 difference would keep guessing useful). The
counts are per process: with several replicas an attacker gets each replica's allowance.
"""

from __future__ import annotations

from lockgate.auth.guard import FailureGuard


class LoginThrottle:
    def __init__(self, per_user: int, per_address: int) -> None:
        self.users = FailureGuard(per_user, max_clients=10_000)
        self.addresses = FailureGuard(per_address, max_clients=50_000)

    def check(self, user: str | None, address: str | None) -> None:
        """Raise TooManyAuthFailures (429, retry_after_s) when this name or address failed too often.

        `user` None: no name to count (a token login, whose claims are not trusted before it verifies:
        one shared name would let anyone lock every admin out of token login).
        """
        if user is not None:
            self.users.check(user)
        self.addresses.check(address)

    def failed(self, user: str | None, address: str | None) -> None:
        if user is not None:
            self.users.failed(user)
        self.addresses.failed(address)
