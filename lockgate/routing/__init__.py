"""Routing parts: strategies (which deployment first), health (cool-downs, half-open),
backoff (how long to wait), shared cool-downs (Redis) and stream resumption.

The Router itself lives in ``lockgate.router`` and ties these together.
"""
