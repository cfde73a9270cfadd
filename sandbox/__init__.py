"""The development sandbox: a simulated institution and fake external APIs on 127.0.0.1.

For development, tests, the demo and benchmarks only; never point it at real data.
"""

from courseinv.sandbox.canvas import CanvasServer, LeakyBucket, ThrottleSpec
from courseinv.sandbox.httpserver import Faults, Latency, RequestLog, SandboxServer
from courseinv.sandbox.institution import Institution, InstitutionSpec

__all__ = [
    "CanvasServer",
    "Faults",
    "Institution",
    "InstitutionSpec",
    "Latency",
    "LeakyBucket",
    "RequestLog",
    "SandboxServer",
    "ThrottleSpec",
]
