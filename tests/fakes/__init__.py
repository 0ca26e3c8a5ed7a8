"""Fake upstreams: real HTTP servers on 127.0.0.1 speaking the providers' exact wire formats."""
